//! Reads a NixOS system root (`/run/current-system`, or any directory laid
//! out like one): its service units, the config files their command lines
//! name (Synapse's and MAS's as data, nginx's as text) and the stamps
//! masgen's tasks leave. Read-only; `diff --system` compares what it reads
//! with a build, `plan --system` tells from it where the host is.

mod unit;

pub use unit::Unit;
use unit::{exec_words, flag_values};

use std::collections::BTreeMap;
use std::fs;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Map, Value};

pub use crate::lower::tasks::{MAS_UNIT, SYNAPSE_UNIT};
pub const NGINX_UNIT: &str = "nginx.service";

/// Where MAS's nixpkgs unit renders its config at start (`envsubst` of the
/// store file into the runtime directory).
const MAS_RUNTIME_CONFIG: &str = "/run/matrix-authentication-service/config.yaml";

/// Where masgen's tasks leave their stamps, relative to the root.
const STAMP_DIR: &str = "var/lib/masgen";

/// What masgen can learn about a host from its system root.
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
    /// Synapse's config files in the order Synapse loads them: its
    /// `--config-path` arguments, a directory standing for its `*.yaml`
    /// files in sorted order.
    pub synapse_config_files: Vec<String>,
    /// The config file `nginx.service` names (`-c`) as `(path, text)`, or
    /// why it could not be read; `None` without nginx.service.
    pub nginx_config: Option<Result<(String, String), String>>,
    /// The stamps masgen's tasks leave on success (`var/lib/masgen` in the
    /// root), sorted.
    pub stamps: Vec<String>,
    pub notes: Vec<String>,
}

/// Reads the units, config files and stamps under `root`. `also_read` are
/// files the new configurations name (Synapse extra config files), read the
/// same way so both sides of a comparison see the same contents.
pub fn read(root: &Utf8Path, also_read: &[String]) -> anyhow::Result<SystemState> {
    anyhow::ensure!(
        root.is_dir(),
        "--system {root}: no such directory; give a NixOS system root such as /run/current-system"
    );
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
                for conf in sorted_entries(&dropins) {
                    if !conf.ends_with(".conf") {
                        continue;
                    }
                    if let Ok(extra) = fs::read_to_string(dropins.join(&conf)) {
                        text.push('\n');
                        text.push_str(&extra);
                    }
                }
                state.units.insert(name, Unit::parse(&text));
            }
            // A dangling link points into a store this root does not carry.
            Err(e) => state.notes.push(format!("{path}: {e}; unit not compared")),
        }
    }

    if let Some(unit) = state.units.get(SYNAPSE_UNIT) {
        let args = flag_values(&unit.exec_start(), &["--config-path", "-c"]);
        let (files, notes) = expand_config_dirs(root, &args);
        state.synapse_config_files = files;
        state.notes.extend(notes);
    }
    let mut wanted: Vec<String> = also_read.to_vec();
    wanted.extend(state.synapse_config_files());
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
                    m.values_mut().for_each(unsubstitute);
                }
            }
            state.mas_config_files.push(source.clone());
            state.files.insert(source, data);
        }
    }
    if let Some(unit) = state.units.get(NGINX_UNIT) {
        state.nginx_config = Some(match flag_values(&unit.exec_start(), &["-c"]).pop() {
            None => Err("its ExecStart names no config file (-c)".into()),
            Some(conf) => match resolve(root, &conf) {
                None => Err(format!("{conf} not found")),
                Some(path) => fs::read_to_string(&path)
                    .map(|text| (conf, text))
                    .map_err(|e| format!("cannot read {path}: {e}")),
            },
        });
    }
    // A live system root (`/run/current-system`, a store path) has no
    // `var/`: its stamps are the host's own, under /var/lib/masgen.
    let in_root = root.join(STAMP_DIR);
    let resolved = root.canonicalize_utf8().unwrap_or_else(|_| root.to_owned());
    let live = resolved.starts_with("/nix/store");
    state.stamps = if !in_root.exists() && live {
        sorted_entries(&Utf8Path::new("/").join(STAMP_DIR))
    } else {
        sorted_entries(&in_root)
    };
    Ok(state)
}

impl SystemState {
    /// The files `matrix-synapse.service`'s `ExecStart` names with
    /// `--config-path` (or `-c`), in order; none without the unit.
    /// A directory stands for its `*.yaml` files, as Synapse reads it.
    pub fn synapse_config_files(&self) -> Vec<String> {
        self.synapse_config_files.clone()
    }

    /// `files` merged the way Synapse (`deep == false`) or MAS (`deep`)
    /// merges its config files, and the files that could not be read, with
    /// why.
    pub fn merged(&self, files: &[String], deep: bool) -> (Value, Vec<(String, String)>) {
        let mut merged = Map::new();
        let mut unreadable = Vec::new();
        for f in files {
            match self.files.get(f) {
                Some(Ok(m)) if deep => merge_deep(&mut merged, m.clone()),
                Some(Ok(m)) => merge_shallow(&mut merged, m.clone()),
                Some(Err(e)) => unreadable.push((f.clone(), e.clone())),
                None => unreadable.push((f.clone(), "not read".into())),
            }
        }
        (Value::Object(merged), unreadable)
    }
}

/// Whether a Synapse config delegates authentication to MAS: the stable
/// `matrix_authentication_service` block or `experimental_features.msc3861`.
pub fn delegates(synapse_config: &Value) -> bool {
    let on = |p: &str| synapse_config.pointer(p) == Some(&Value::Bool(true));
    on("/matrix_authentication_service/enabled") || on("/experimental_features/msc3861/enabled")
}

/// Synapse's merge of several `--config-path` files: top-level keys of later
/// files replace earlier ones wholesale.
pub fn merge_shallow(target: &mut Map<String, Value>, file: Map<String, Value>) {
    for (k, v) in file {
        target.insert(k, v);
    }
}

/// MAS's merge of several `--config` files (figment `admerge`): objects merge
/// key by key, arrays are concatenated, anything else is replaced.
fn merge_deep(target: &mut Map<String, Value>, file: Map<String, Value>) {
    for (k, v) in file {
        match (target.get_mut(&k), v) {
            (Some(Value::Object(t)), Value::Object(f)) => merge_deep(t, f),
            (Some(Value::Array(t)), Value::Array(f)) => t.extend(f),
            (_, v) => {
                target.insert(k, v);
            }
        }
    }
}

/// Synapse's `--config-path` arguments as the files it loads
/// (`synapse/config/_base.py`, `find_config_files`): a directory gives its
/// regular `*.yaml` files in sorted order, anything else in it is ignored
/// (with a note, as Synapse prints one).
fn expand_config_dirs(root: &Utf8Path, args: &[String]) -> (Vec<String>, Vec<String>) {
    let mut files = Vec::new();
    let mut notes = Vec::new();
    for arg in args {
        let Some(dir) = resolve(root, arg).filter(|p| p.is_dir()) else {
            files.push(arg.clone());
            continue;
        };
        let base = arg.trim_end_matches('/');
        for name in sorted_entries(&dir) {
            let path = format!("{base}/{name}");
            if !dir.join(&name).is_file() {
                notes.push(format!(
                    "{path}: a subdirectory of Synapse's config directory; Synapse ignores it"
                ));
            } else if !name.ends_with(".yaml") {
                notes.push(format!("{path}: does not end in .yaml; Synapse ignores it"));
            } else {
                files.push(path);
            }
        }
    }
    (files, notes)
}

/// The names in a directory, sorted; none when it cannot be read.
fn sorted_entries(dir: &Utf8Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
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
    parse_yaml(&text).map_err(|e| format!("{resolved} is not YAML: {e}"))
}

/// Parses a YAML config file into JSON data, merge keys (`<<: *base`)
/// applied as Synapse's YAML loader does. An empty file is an empty object.
fn parse_yaml(text: &str) -> Result<Map<String, Value>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    let mut yaml: serde_norway::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    yaml.apply_merge()
        .map_err(|e| format!("a merge key (`<<`): {e}"))?;
    let value: Value = serde_json::to_value(&yaml).map_err(|e| e.to_string())?;
    match value {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        other => Err(format!(
            "expected a mapping at the top level, found {}",
            kind(&other)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A homeserver.yaml with anchors and merge keys reads as Synapse reads
    /// it: the merged keys are there, and no `<<` key is left.
    #[test]
    fn merge_keys_are_applied() {
        let text = "x-base: &base\n  issuer: https://sso.example.org\n  scopes: [openid]\noidc_providers:\n  - <<: *base\n    idp_id: staff\n";
        let m = parse_yaml(text).unwrap();
        assert_eq!(
            m["oidc_providers"][0],
            json!({"issuer": "https://sso.example.org", "scopes": ["openid"], "idp_id": "staff"})
        );
    }

    /// A `--config-path` directory is read as Synapse reads it: its `*.yaml`
    /// files in sorted order, other entries ignored with a note.
    #[test]
    fn a_config_directory_stands_for_its_yaml_files() {
        let root = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(root.path()).unwrap();
        let units = root.join("etc/systemd/system");
        fs::create_dir_all(&units).unwrap();
        fs::write(
            units.join(SYNAPSE_UNIT),
            "[Service]\nExecStart=/nix/store/x/bin/synapse --config-path /etc/hs.yaml --config-path /etc/conf.d/\n",
        )
        .unwrap();
        let conf = root.join("etc/conf.d");
        fs::create_dir_all(conf.join("sub.yaml")).unwrap();
        fs::write(
            root.join("etc/hs.yaml"),
            "server_name: a\npublic_baseurl: x\n",
        )
        .unwrap();
        fs::write(conf.join("20-b.yaml"), "server_name: c\n").unwrap();
        fs::write(
            conf.join("10-a.yaml"),
            "server_name: b\nreport_stats: true\n",
        )
        .unwrap();
        fs::write(conf.join("30-c.yml"), "server_name: d\n").unwrap();
        let state = read(root, &[]).unwrap();
        assert_eq!(
            state.synapse_config_files(),
            [
                "/etc/hs.yaml",
                "/etc/conf.d/10-a.yaml",
                "/etc/conf.d/20-b.yaml"
            ]
        );
        let (merged, unreadable) = state.merged(&state.synapse_config_files(), false);
        assert!(unreadable.is_empty(), "{unreadable:?}");
        assert_eq!(
            merged,
            json!({"server_name": "c", "public_baseurl": "x", "report_stats": true})
        );
        let notes = state.notes.join("\n");
        assert!(
            notes.contains("/etc/conf.d/30-c.yml: does not end in .yaml"),
            "{notes}"
        );
        assert!(
            notes.contains("/etc/conf.d/sub.yaml: a subdirectory"),
            "{notes}"
        );
    }

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
        let mut v = json!({"a": ["/run/credentials/matrix-authentication-service.service/k"]});
        unsubstitute(&mut v);
        assert_eq!(v, json!({"a": ["${CREDENTIALS_DIRECTORY}/k"]}));
    }

    #[test]
    fn synapse_merges_shallowly_and_mas_deeply() {
        let base = json!({"a": {"x": 1, "y": 2}, "l": [1]});
        let file = json!({"a": {"x": 9}, "l": [2]});
        let (Value::Object(mut s), Value::Object(f)) = (base.clone(), file.clone()) else {
            unreachable!()
        };
        merge_shallow(&mut s, f.clone());
        assert_eq!(Value::Object(s), json!({"a": {"x": 9}, "l": [2]}));
        let Value::Object(mut d) = base else {
            unreachable!()
        };
        merge_deep(&mut d, f);
        assert_eq!(
            Value::Object(d),
            json!({"a": {"x": 9, "y": 2}, "l": [1, 2]})
        );
    }
}
