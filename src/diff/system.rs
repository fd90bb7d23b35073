//! Reads a NixOS system root (`/run/current-system`, or any directory laid
//! out like one): its service units and the Synapse and MAS config files
//! their command lines name. Read-only; the comparison is in `compare`.

use std::collections::BTreeMap;
use std::fs;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Map, Value};

use super::compare::{MAS_UNIT, NGINX_UNIT, SYNAPSE_UNIT};
use super::nginx;
use super::units::{exec_words, flag_values, Unit};
use super::values;

/// What the comparison needs from a system root.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemState {
    /// The root as given on the command line.
    pub root: String,
    /// `etc/systemd/system/*.service`, parsed.
    pub units: BTreeMap<String, Unit>,
    /// Config files by the path the units (or masgen) name them, as data,
    /// or why they could not be read.
    pub files: BTreeMap<String, Result<Map<String, Value>, String>>,
    /// MAS's `--config` files, in order, resolved to readable sources (the
    /// runtime config to the store file it is rendered from, credentials to
    /// the files they load).
    pub mas_config_files: Vec<String>,
    /// nginx's routes from the config file `nginx.service` names (`-c`), or
    /// why it could not be read; `None` without nginx.service.
    pub nginx: Option<Result<BTreeMap<String, nginx::Routes>, String>>,
    pub notes: Vec<String>,
}

/// Where MAS's nixpkgs unit renders its config at start (`envsubst` of the
/// store file into the runtime directory).
const MAS_RUNTIME_CONFIG: &str = "/run/matrix-authentication-service/config.yaml";

/// Reads the units and config files under `root`. `also_read` are files the
/// new configurations name (Synapse extra config files), read the same way so
/// both sides of the comparison see the same contents.
pub fn read(root: &Utf8Path, also_read: &[String]) -> anyhow::Result<SystemState> {
    let unit_dir = root.join("etc/systemd/system");
    let entries = fs::read_dir(&unit_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {unit_dir}: {e}; --system needs a NixOS system root such as /run/current-system"
        )
    })?;
    let mut state = SystemState {
        root: root.to_string(),
        ..Default::default()
    };
    for entry in entries {
        let entry = entry.map_err(|e| anyhow::anyhow!("reading {unit_dir}: {e}"))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.ends_with(".service") || name.contains('@') {
            continue;
        }
        let path = unit_dir.join(&name);
        match fs::read_to_string(&path) {
            // A masked unit is a symlink to /dev/null.
            Ok(text) if text.trim().is_empty() => state
                .notes
                .push(format!("{path} is masked or empty; unit not compared")),
            Ok(mut text) => {
                // Drop-ins (`<unit>.d/*.conf`) apply after the unit, in name order.
                let dropins = unit_dir.join(format!("{name}.d"));
                if let Ok(entries) = fs::read_dir(&dropins) {
                    let mut confs: Vec<_> = entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().to_string())
                        .filter(|f| f.ends_with(".conf"))
                        .collect();
                    confs.sort();
                    for c in confs {
                        if let Ok(extra) = fs::read_to_string(dropins.join(&c)) {
                            text.push('\n');
                            text.push_str(&extra);
                        }
                    }
                }
                state.units.insert(name, Unit::parse(&text));
            }
            // A dangling link points into a store this root does not carry.
            Err(e) => state.notes.push(format!("{path}: {e}; unit not compared")),
        }
    }

    let mut wanted: Vec<String> = also_read.to_vec();
    if let Some(unit) = state.units.get(SYNAPSE_UNIT) {
        wanted.extend(flag_values(&unit.exec_start(), &["--config-path", "-c"]));
    }
    for f in wanted {
        if let std::collections::btree_map::Entry::Vacant(slot) = state.files.entry(f) {
            let data = read_yaml(root, slot.key());
            slot.insert(data);
        }
    }

    if let Some(unit) = state.units.get(MAS_UNIT).cloned() {
        let credentials = unit.credentials();
        for arg in flag_values(&unit.exec_start(), &["--config", "-c"]) {
            let (source, from_runtime) = mas_source(root, &unit, &credentials, &arg);
            let mut data = read_yaml(root, &source);
            if from_runtime {
                // The runtime file has ${CREDENTIALS_DIRECTORY} substituted;
                // masgen's settings keep the variable.
                if let Ok(m) = &mut data {
                    let mut v = Value::Object(std::mem::take(m));
                    unsubstitute(&mut v);
                    if let Value::Object(back) = v {
                        *m = back;
                    }
                }
            }
            state.mas_config_files.push(source.clone());
            state.files.insert(source, data);
        }
    }
    if let Some(unit) = state.units.get(NGINX_UNIT) {
        state.nginx = Some(match flag_values(&unit.exec_start(), &["-c"]).last() {
            None => Err("its ExecStart names no config file (-c)".into()),
            Some(conf) => match resolve(root, conf) {
                None => Err(format!("{conf} not found")),
                Some(path) => fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {path}: {e}"))
                    .and_then(|text| nginx::routes(&text).map_err(|e| format!("{conf}: {e}"))),
            },
        });
    }
    Ok(state)
}

/// The readable file behind one of MAS's `--config` arguments, and whether
/// it is the runtime (substituted) copy.
fn mas_source(
    root: &Utf8Path,
    unit: &Unit,
    credentials: &BTreeMap<String, String>,
    arg: &str,
) -> (String, bool) {
    for prefix in [
        "$CREDENTIALS_DIRECTORY/",
        "${CREDENTIALS_DIRECTORY}/",
        "%d/",
    ] {
        if let Some(name) = arg.strip_prefix(prefix) {
            if let Some(path) = credentials.get(name) {
                return (path.clone(), false);
            }
        }
    }
    if resolve(root, arg).is_some() {
        return (arg.to_string(), arg == MAS_RUNTIME_CONFIG);
    }
    // Not in the root (a runtime file): the ExecStartPre script renders it
    // with `envsubst … < /nix/store/…-config.yaml > <arg>`.
    for pre in unit.values("Service", "ExecStartPre") {
        let Some(script) = exec_words(pre).into_iter().next() else {
            continue;
        };
        let Some(path) = resolve(root, &script) else {
            continue;
        };
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        if let Some(source) = rendered_from(&text, arg) {
            return (source, false);
        }
    }
    (arg.to_string(), arg == MAS_RUNTIME_CONFIG)
}

/// In a shell script, the file redirected in (`< src`) on the command that
/// writes `target` (`> target`); `\` continuations are joined.
fn rendered_from(script: &str, target: &str) -> Option<String> {
    let joined = script.replace("\\\n", " ");
    for line in joined.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let writes = words
            .windows(2)
            .any(|w| w[0] == ">" && w[1].trim_matches(['\'', '"']) == target)
            || words.iter().any(|w| *w == format!(">{target}"));
        if !writes {
            continue;
        }
        for w in words.windows(2) {
            if w[0] == "<" {
                return Some(w[1].trim_matches(['\'', '"']).to_string());
            }
        }
        if let Some(w) = words.iter().find(|w| w.starts_with('<') && w.len() > 1) {
            return Some(w[1..].trim_matches(['\'', '"']).to_string());
        }
    }
    None
}

/// `/run/credentials/<unit>/x` → `${CREDENTIALS_DIRECTORY}/x` in every string.
fn unsubstitute(v: &mut Value) {
    match v {
        Value::String(s) => {
            let prefix = format!("/run/credentials/{MAS_UNIT}/");
            if let Some(rest) = s.strip_prefix(&prefix) {
                *s = format!("${{CREDENTIALS_DIRECTORY}}/{rest}");
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unsubstitute),
        Value::Object(m) => m.values_mut().for_each(unsubstitute),
        _ => {}
    }
}

/// An absolute path inside the root if it exists there (fixtures keep their
/// "store" files inside), else the path itself if it exists.
fn resolve(root: &Utf8Path, path: &str) -> Option<Utf8PathBuf> {
    let p = Utf8Path::new(path);
    if p.is_absolute() {
        let inside = root.join(path.trim_start_matches('/'));
        if inside.exists() {
            return Some(inside);
        }
    }
    p.exists().then(|| p.to_owned())
}

fn read_yaml(root: &Utf8Path, path: &str) -> Result<Map<String, Value>, String> {
    let Some(resolved) = resolve(root, path) else {
        return Err(if path.starts_with("/run/") {
            "not found (a runtime file, not part of the system root)".to_string()
        } else {
            "not found".to_string()
        });
    };
    let text = fs::read_to_string(&resolved).map_err(|e| format!("cannot read {resolved}: {e}"))?;
    values::parse_yaml(&text).map_err(|e| format!("{resolved} is not YAML: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_store_file_a_runtime_config_is_rendered_from() {
        let script = "#!/bin/sh\n/nix/store/g/bin/envsubst \\\n  '$CREDENTIALS_DIRECTORY' \\\n  < /nix/store/abc-config.yaml \\\n  > /run/matrix-authentication-service/config.yaml\n/nix/store/m/bin/mas-cli config check --config /run/matrix-authentication-service/config.yaml\n";
        assert_eq!(
            rendered_from(script, MAS_RUNTIME_CONFIG).as_deref(),
            Some("/nix/store/abc-config.yaml")
        );
    }

    #[test]
    fn puts_the_credentials_variable_back() {
        let mut v =
            serde_json::json!({"a": ["/run/credentials/matrix-authentication-service.service/k"]});
        unsubstitute(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["${CREDENTIALS_DIRECTORY}/k"]}));
    }
}
