//! Settings as data: key-path differences and keeping secrets out of the
//! output.

use std::collections::BTreeSet;

use serde_json::Value;

use super::changeset::{Change, SettingChange};

/// Differences between two settings values as key paths, sorted by path.
/// Where only one side has a key, the whole value at that key is one change.
pub fn diff(old: &Value, new: &Value) -> Vec<SettingChange> {
    let mut out = Vec::new();
    walk(&mut out, String::new(), Some(old), Some(new));
    out
}

fn walk(out: &mut Vec<SettingChange>, path: String, old: Option<&Value>, new: Option<&Value>) {
    match (old, new) {
        (None, None) => {}
        (Some(o), Some(n)) if o == n => {}
        (Some(Value::Object(o)), Some(Value::Object(n))) => {
            let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
            for k in keys {
                walk(out, join_key(&path, k), o.get(k), n.get(k));
            }
        }
        // Lists of objects or lists are compared element by element
        // (`listeners[0].port`); a list of plain values is one value.
        (Some(Value::Array(o)), Some(Value::Array(n)))
            if !path.is_empty() && o.iter().chain(n.iter()).any(is_structured) =>
        {
            for i in 0..o.len().max(n.len()) {
                walk(out, format!("{path}[{i}]"), o.get(i), n.get(i));
            }
        }
        (o, n) => out.push(SettingChange {
            path: if path.is_empty() {
                "(root)".into()
            } else {
                path
            },
            change: match (o, n) {
                (None, _) => Change::Added,
                (_, None) => Change::Removed,
                _ => Change::Changed,
            },
            old: o.cloned(),
            new: n.cloned(),
        }),
    }
}

fn is_structured(v: &Value) -> bool {
    matches!(v, Value::Object(_) | Value::Array(_))
}

/// `a.b`, or `a["m.homeserver"]` for a key that is not a plain name.
pub fn join_key(prefix: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (prefix.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{prefix}.{key}"),
        (_, false) => format!(
            "{prefix}[{}]",
            serde_json::to_string(key).unwrap_or_default()
        ),
    }
}

/// Top-level key paths present in `system` but not in `ours`, one level deep
/// for MAS (`database.max_connections`), top level for Synapse.
pub fn only_in(system: &Value, ours: &Value, deep: bool) -> Vec<String> {
    let mut out = Vec::new();
    collect_only(&mut out, String::new(), system, ours, deep);
    out
}

fn collect_only(out: &mut Vec<String>, path: String, system: &Value, ours: &Value, deep: bool) {
    let (Value::Object(s), Value::Object(o)) = (system, ours) else {
        return;
    };
    let keys: BTreeSet<&String> = s.keys().collect();
    for k in keys {
        let p = join_key(&path, k);
        match o.get(k) {
            None => out.push(p),
            Some(ov) if deep => collect_only(out, p, &s[k], ov, deep),
            Some(_) => {}
        }
    }
}

/// Removes the given top-level or nested key paths (as produced by
/// [`only_in`]) from `value`, so what is left compares what masgen sets.
pub fn remove_paths(value: &mut Value, paths: &[String]) {
    for p in paths {
        let keys = split_path(p);
        remove_keys(value, &keys);
    }
}

fn remove_keys(value: &mut Value, keys: &[String]) {
    let Value::Object(map) = value else { return };
    match keys {
        [] => {}
        [last] => {
            map.remove(last);
        }
        [first, rest @ ..] => {
            if let Some(child) = map.get_mut(first) {
                remove_keys(child, rest);
            }
        }
    }
}

/// The value at a path made by [`join_key`] (without list indexes).
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    split_path(path)
        .iter()
        .try_fold(value, |v, k| v.get(k.as_str()))
}

/// The object keys of a path made by [`join_key`]; list indexes are skipped.
fn split_path(path: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            if inner.starts_with('"') {
                // `["m.homeserver"]`
                let mut de = serde_json::Deserializer::from_str(inner).into_iter::<String>();
                match de.next() {
                    Some(Ok(k)) => {
                        let used = de.byte_offset();
                        keys.push(k);
                        rest = inner[used..].strip_prefix(']').unwrap_or(&inner[used..]);
                    }
                    _ => break,
                }
            } else {
                // `[3]`: a list index
                let end = inner.find(']').map(|i| i + 1).unwrap_or(inner.len());
                rest = &inner[end..];
            }
        } else {
            let trimmed = rest.trim_start_matches('.');
            let end = trimmed.find(['.', '[']).unwrap_or(trimmed.len());
            if end > 0 {
                keys.push(trimmed[..end].to_string());
            }
            rest = &trimmed[end..];
            if end == 0 && !rest.starts_with('[') {
                break;
            }
        }
    }
    keys
}

/// What an inline secret is shown as. masgen's own data only ever holds
/// secret *file paths*; values read from a system (or from extra config files)
/// can hold the secrets themselves.
pub const REDACTED: &str = "<redacted>";

/// Whether a key names an inline secret (not a `_path`/`_file` to one): the
/// spec's literal-secret names plus the token-like names a host's config holds.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    if k.ends_with("_path") || k.ends_with("_file") || k.ends_with("_dir") {
        return false;
    }
    const EXACT: &[&str] = &[
        "pepper",
        "secret",
        "password",
        "key",
        "encryption",
        "admin_token",
        "as_token",
        "hs_token",
        "access_token",
        "private_key",
        "secret_key",
        "macaroon_secret_key",
        "registration_shared_secret",
        "form_secret",
        "client_secret",
        "worker_replication_secret",
        "recaptcha_private_key",
    ];
    // The spec's own list (smtp_pass, api_key, ...) first: a key the spec
    // refuses as a literal secret is never printed from a host either.
    crate::spec::is_secret_key(&k)
        || EXACT.contains(&k.as_str())
        || k.ends_with("_secret")
        || k.ends_with("_password")
        || k.ends_with("_token")
}

/// Replaces every string or number under a secret key with [`REDACTED`].
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_key(k) && (v.is_string() || v.is_number()) {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Redacts a change whose own key is a secret (`password_config.pepper`),
/// keeping the fact that the two secrets differ.
pub fn redact_change(c: &mut SettingChange) {
    let leaf = split_path(&c.path).pop().unwrap_or_default();
    if is_secret_key(&leaf) {
        let hide = |v: &Value| {
            if v.is_string() || v.is_number() {
                Value::String(REDACTED.into())
            } else {
                let mut v = v.clone();
                redact(&mut v);
                v
            }
        };
        let old = c.old.as_ref().map(hide);
        let mut new = c.new.as_ref().map(hide);
        if old.is_some() && old == new {
            new = Some(Value::String(format!("{REDACTED} (different)")));
        }
        c.old = old;
        c.new = new;
    } else {
        if let Some(v) = c.old.as_mut() {
            redact(v);
        }
        if let Some(v) = c.new.as_mut() {
            redact(v);
        }
    }
}

/// A value as one line of JSON (strings quoted), for summaries.
pub fn show(value: Option<&Value>) -> String {
    match value {
        None => "(absent)".into(),
        Some(v) => serde_json::to_string(v).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_quote_dotted_keys_and_index_lists() {
        let old =
            json!({"a": {"m.homeserver": 1}, "l": [{"x": 1}, {"x": 2}], "s": [1, 2], "same": true});
        let new = json!({"a": {"m.homeserver": 2}, "l": [{"x": 1}, {"x": 3}, {"x": 4}], "s": [2], "same": true, "b": {"c": 1}});
        let paths: Vec<String> = diff(&old, &new)
            .iter()
            .map(|c| format!("{}:{:?}", c.path, c.change))
            .collect();
        assert_eq!(
            paths,
            [
                r#"a["m.homeserver"]:Changed"#,
                "b:Added",
                "l[1].x:Changed",
                "l[2]:Added",
                "s:Changed"
            ]
        );
    }

    #[test]
    fn secrets_are_redacted_but_paths_to_them_are_not() {
        let mut v = json!({
            "password_config": {"pepper": "hunter2", "enabled": true},
            "macaroon_secret_key_path": "/run/secrets/m",
            "upstream": [{"client_secret": "s", "token_endpoint_auth_method": "client_secret_basic"}],
        });
        redact(&mut v);
        assert_eq!(
            v,
            json!({
                "password_config": {"pepper": REDACTED, "enabled": true},
                "macaroon_secret_key_path": "/run/secrets/m",
                "upstream": [{"client_secret": REDACTED, "token_endpoint_auth_method": "client_secret_basic"}],
            })
        );
        let mut c = SettingChange {
            path: "password_config.pepper".into(),
            change: Change::Changed,
            old: Some(json!("a")),
            new: Some(json!("b")),
        };
        redact_change(&mut c);
        assert_eq!(c.old, Some(json!(REDACTED)));
        assert_eq!(c.new, Some(json!("<redacted> (different)")));
        let mut c = SettingChange {
            path: "secrets.keys[0].key".into(),
            change: Change::Changed,
            old: Some(json!("a")),
            new: Some(json!("b")),
        };
        redact_change(&mut c);
        assert_eq!(c.old, Some(json!(REDACTED)));
    }

    #[test]
    fn removes_only_the_listed_paths() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "m.x": {"y": 1}, "d": 3});
        remove_paths(&mut v, &["a.b".into(), r#"["m.x"].y"#.into(), "d".into()]);
        assert_eq!(v, json!({"a": {"c": 2}, "m.x": {}}));
    }
}

#[cfg(test)]
mod secret_key_tests {
    use super::*;

    /// Every name the spec refuses as a literal secret is redacted when read
    /// from a host (an SMTP password in a running homeserver.yaml, say).
    #[test]
    fn the_specs_secret_names_are_redacted() {
        for key in [
            "smtp_pass",
            "api_key",
            "access_key",
            "secret_access_key",
            "pepper",
        ] {
            assert!(is_secret_key(key), "{key}");
            let mut v = serde_json::json!({"email": {key: "hunter2"}});
            redact(&mut v);
            assert_eq!(v["email"][key], REDACTED, "{key}");
        }
        assert!(!is_secret_key("smtp_host"));
        assert!(!is_secret_key("client_secret_path"));
    }
}
