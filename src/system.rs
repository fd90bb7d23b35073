//! Reads a NixOS system root (`/run/current-system`, or any directory laid
//! out like one): its units and the Synapse / MAS config files their
//! `ExecStart` lines name. Read-only.

use std::collections::BTreeMap;
use std::fs;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::Value;

/// What masgen can learn about a host from its system root.
#[derive(Debug, Clone, Default)]
pub struct SystemRoot {
    pub root: Utf8PathBuf,
    /// Unit file name → contents, from `etc/systemd/system`.
    pub units: BTreeMap<String, String>,
    /// Synapse's merged config (top-level keys of later files win, as Synapse merges).
    pub synapse_config: Option<Value>,
    /// MAS's merged config (deep merge, as MAS's figment loader does).
    pub mas_config: Option<Value>,
    /// Marker files masgen's tasks leave under `var/lib/masgen` when they succeed.
    pub stamps: Vec<String>,
}

pub const SYNAPSE_UNIT: &str = "matrix-synapse.service";
pub const MAS_UNIT: &str = "matrix-authentication-service.service";

impl SystemRoot {
    pub fn read(root: &Utf8Path) -> Result<Self> {
        let unit_dir = root.join("etc/systemd/system");
        anyhow::ensure!(
            unit_dir.is_dir(),
            "{root} does not look like a NixOS system root: {unit_dir} is missing"
        );
        let mut units = BTreeMap::new();
        for entry in fs::read_dir(&unit_dir).with_context(|| format!("reading {unit_dir}"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.ends_with(".service") {
                continue;
            }
            let path = resolve(root, &unit_dir.join(&name));
            if let Ok(text) = fs::read_to_string(&path) {
                units.insert(name, text);
            }
        }
        let mut sys = SystemRoot {
            root: root.to_owned(),
            units,
            ..Default::default()
        };
        if let Some(unit) = sys.units.get(SYNAPSE_UNIT) {
            let files = exec_args(unit, "--config-path");
            sys.synapse_config = Some(load_merged(root, &files, false)?);
        }
        if let Some(unit) = sys.units.get(MAS_UNIT) {
            let files = exec_args(unit, "--config");
            if !files.is_empty() {
                sys.mas_config = Some(load_merged(root, &files, true)?);
            }
        }
        let stamp_dir = root.join("var/lib/masgen");
        if let Ok(entries) = fs::read_dir(&stamp_dir) {
            let mut stamps: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect();
            stamps.sort();
            sys.stamps = stamps;
        }
        Ok(sys)
    }

    /// Whether the Synapse config delegates authentication to MAS.
    pub fn synapse_delegates(&self) -> bool {
        let Some(c) = &self.synapse_config else {
            return false;
        };
        let stable =
            c.pointer("/matrix_authentication_service/enabled") == Some(&Value::Bool(true));
        let msc3861 =
            c.pointer("/experimental_features/msc3861/enabled") == Some(&Value::Bool(true));
        stable || msc3861
    }
}

/// A path inside the root when it exists there (fixtures keep their "store"
/// files inside), else the path as given (a real system's store paths).
fn resolve(root: &Utf8Path, path: &Utf8Path) -> Utf8PathBuf {
    let inside = root.join(path.as_str().trim_start_matches('/'));
    if path.is_absolute() && inside.exists() {
        inside
    } else {
        path.to_owned()
    }
}

/// Values of `flag X` / `flag=X` in a unit's ExecStart lines, in order.
pub fn exec_args(unit: &str, flag: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in unit.lines() {
        let Some(cmd) = line.trim().strip_prefix("ExecStart=") else {
            continue;
        };
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let mut i = 0;
        while i < words.len() {
            let w = words[i].trim_matches(|c| c == '"' || c == '\'');
            if w == flag {
                if let Some(v) = words.get(i + 1) {
                    out.push(v.trim_matches(|c| c == '"' || c == '\'').to_string());
                }
                i += 2;
                continue;
            }
            if let Some(v) = w.strip_prefix(&format!("{flag}=")) {
                out.push(v.to_string());
            }
            i += 1;
        }
    }
    out
}

fn load_merged(root: &Utf8Path, files: &[String], deep: bool) -> Result<Value> {
    let mut merged = serde_json::Map::new();
    for f in files {
        let path = resolve(root, Utf8Path::new(f));
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            // Runtime files (/run/...) are not in a system root; skip them.
            Err(_) if f.starts_with("/run/") => continue,
            Err(e) => return Err(e).with_context(|| format!("reading config file {path}")),
        };
        let value: Value =
            serde_norway::from_str(&text).with_context(|| format!("{path} is not YAML"))?;
        if let Value::Object(map) = value {
            if deep {
                deep_merge(&mut merged, map);
            } else {
                merged.extend(map);
            }
        }
    }
    Ok(Value::Object(merged))
}

fn deep_merge(base: &mut serde_json::Map<String, Value>, extra: serde_json::Map<String, Value>) {
    for (k, v) in extra {
        match (base.get_mut(&k), v) {
            (Some(Value::Object(b)), Value::Object(e)) => deep_merge(b, e),
            (Some(Value::Array(b)), Value::Array(e)) => b.extend(e),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_args_reads_both_forms() {
        let unit = "[Service]\nExecStart=/nix/store/x/bin/synapse --config-path /a.yaml --config-path=/b.yaml --keys-directory /k\n";
        assert_eq!(exec_args(unit, "--config-path"), ["/a.yaml", "/b.yaml"]);
        assert!(exec_args(unit, "--config").is_empty());
    }
}
