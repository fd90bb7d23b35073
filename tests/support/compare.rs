//! Comparing the reference renders with what nixpkgs writes
//! (tests/conformance_nixpkgs.rs): normal forms of settings, nginx configs
//! and unit texts in which the renders' documented forms and nixpkgs' own
//! meet (store-path hashes and package names, quoting, whitespace,
//! `#| ` lines holding nixpkgs' part of a file).

use std::collections::BTreeMap;

use super::nixos::NixosEval;

/// `/nix/store/<hash>-` → `/nix/store/<hash>-` with the literal `<hash>`: the
/// renders cannot know hashes (and the stand-in packages' are not real).
pub fn no_hashes(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("/nix/store/") {
        let (head, tail) = rest.split_at(i + "/nix/store/".len());
        out.push_str(head);
        match tail.get(32..33) {
            Some("-") if tail[..32].bytes().all(|b| b.is_ascii_alphanumeric()) => {
                out.push_str("<hash>");
                rest = &tail[32..];
            }
            _ => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

pub fn no_hashes_json(v: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(&no_hashes(&v.to_string())).expect("JSON")
}

/// The YAML a render documents in `#| ` comment lines: what nixpkgs adds.
pub fn documented(render: &str) -> serde_json::Value {
    let text: String = render
        .lines()
        .filter_map(|l| {
            l.strip_prefix("#| ")
                .or(if l == "#|" { Some("") } else { None })
        })
        .map(|l| format!("{l}\n"))
        .collect();
    if text.trim().is_empty() {
        return serde_json::json!({});
    }
    serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("documented block is not YAML: {e}\n{text}"))
}

/// Paths where `a` and `b` differ (for messages).
pub fn json_diff(a: &serde_json::Value, b: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    use serde_json::Value::Object;
    match (a, b) {
        (Object(x), Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => json_diff(u, v, &p, out),
                    (u, v) => out.push(format!("{p}: render {u:?} / nixpkgs {v:?}")),
                }
            }
        }
        _ if a != b => out.push(format!("{path}: render {a} / nixpkgs {b}")),
        _ => {}
    }
}

/// `base` with `over` merged in (objects recursively), as option defaults
/// lose to definitions.
pub fn merged(base: &serde_json::Value, over: &serde_json::Value) -> serde_json::Value {
    let mut out = base.clone();
    super::synapse::merge(&mut out, over);
    out
}

/// `/nix/store/<hash>-<name>` → `/nix/store/…`: package names and versions
/// of the stand-in set are not the real ones, and renders know no hashes.
pub fn no_store_names(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("/nix/store/") {
        out.push_str(&rest[..i]);
        out.push_str("/nix/store/…");
        let tail = &rest[i + "/nix/store/".len()..];
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || "\"';:".contains(c))
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A render with its `#| ` lines (nixpkgs' documented part) uncommented.
pub fn uncommented(render: &str) -> String {
    render
        .lines()
        .map(|l| {
            l.strip_prefix("#| ")
                .or((l == "#|").then_some(""))
                .unwrap_or(l)
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// nginx statements, whitespace-collapsed: `name args;`, `name args {`, `}`.
/// Comments (`#` outside quotes) are dropped.
pub fn nginx_statements(conf: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = conf.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                cur.push(c);
            }
            (None, '#') => {
                while chars.peek().is_some_and(|&n| n != '\n') {
                    chars.next();
                }
            }
            (None, ';' | '{' | '}') => {
                let words = cur.split_whitespace().collect::<Vec<_>>().join(" ");
                match c {
                    ';' => out.push(format!("{words};")),
                    '{' => out.push(format!("{words} {{")),
                    _ => {
                        assert!(words.is_empty(), "text before `}}`: {words}");
                        out.push("}".into());
                    }
                }
                cur.clear();
            }
            (None, c) => cur.push(c),
        }
    }
    assert!(cur.trim().is_empty(), "unterminated statement: {cur}");
    out
}

/// nixpkgs' nginx.conf with the files it includes that the evaluation
/// generated (the recommended proxy headers) written out in place.
pub fn inlined(eval: &NixosEval) -> String {
    let conf = eval.nginx_conf.as_deref().expect("nginx.conf");
    conf.lines()
        .map(|line| {
            let path = line
                .trim()
                .strip_prefix("include ")
                .map(|p| p.trim_end_matches(';'));
            match path.and_then(|p| eval.file(p)).and_then(|f| f.text.clone()) {
                Some(text) => text,
                None => format!("{line}\n"),
            }
        })
        .collect()
}

/// Words of a systemd value, with quotes removed (`"a b" c` → `a b`, `c`).
pub fn systemd_words(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            c => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(cur);
    }
    words
}

/// One word of a unit with the store forms of the render and of nixpkgs
/// made alike: a program → `<bin>/<name>`, the MAS and Synapse store config
/// files → `<mas-config>` / `<synapse-config>`, other store paths without
/// their package names.
pub fn unit_word(word: &str) -> String {
    let (plus, w) = match word.strip_prefix('+') {
        Some(w) => ("+", w),
        None => ("", word),
    };
    let norm = if let Some(tool) = w.strip_prefix("/run/current-system/sw/bin/") {
        format!("<bin>/{tool}")
    } else if w == "/run/current-system/sw/share/masgen/mas-config.yaml"
        || (w.starts_with("/nix/store/") && w.ends_with("-masgen-mas-config.yaml"))
    {
        "<mas-config>".into()
    } else if w == "/run/current-system/sw/share/masgen/homeserver.yaml"
        || (w.starts_with("/nix/store/") && w.ends_with("-homeserver.yaml"))
    {
        "<synapse-config>".into()
    } else if w.starts_with("/nix/store/") && w.contains("/bin/") {
        format!("<bin>/{}", w.rsplit('/').next().unwrap_or(w))
    } else {
        no_store_names(w)
    };
    format!("{plus}{norm}")
}

/// A unit as section → key → values (in order), words normalized.
pub fn unit_sections(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<Vec<String>>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<Vec<String>>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        let (key, value) = line.split_once('=').expect("key=value");
        let words = systemd_words(value).iter().map(|w| unit_word(w)).collect();
        out.entry(section.clone())
            .or_default()
            .entry(key.to_string())
            .or_default()
            .push(words);
    }
    out
}
