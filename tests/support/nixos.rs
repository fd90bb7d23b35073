//! Evaluating generated configurations with nixpkgs' own NixOS modules.
//!
//! A nixpkgs tree (at least `lib/` and `nixos/`) is taken from
//! `MASGEN_NIXPKGS` (else `~/.cache/masgen/nixpkgs`, the "2026" tree with the
//! MAS module) and `MASGEN_NIXPKGS_OLD` (else `~/.cache/masgen/nixpkgs-old`,
//! a release without it). Such a tree is fetched, not installed, so a missing
//! tree is a loud `SKIP:`, never a failure, even in CI. See docs/testing.md,
//! "NixOS evaluation with nixpkgs' own modules".
//!
//! [`evaluate`] runs tests/nixos/eval.nix: the generated flake's own
//! `outputs` function with local inputs, nixpkgs' `eval-config.nix` and the
//! stand-in package set tests/nixos/pkgs.nix (packages are never built). The
//! stand-in prints every generated file it is asked for on stderr
//! (`trace: masgen-file {json}`), which is how the contents behind the store
//! paths in the unit texts are recovered (the store is `dummy://`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{nix_instantiate, repo_root};

/// A nixpkgs tree the suite evaluates against.
#[derive(Clone, Debug)]
pub struct Tree {
    /// "2026" (has the MAS module with `credentials`) or "old" (a release
    /// without the MAS module, pre-2026 ACME).
    pub label: &'static str,
    pub path: PathBuf,
}

fn tree_from(var: &str, cache_name: &str) -> Option<PathBuf> {
    let path = match std::env::var_os(var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache/masgen")
            .join(cache_name),
    };
    path.join("nixos/lib/eval-config.nix")
        .is_file()
        .then_some(path)
}

/// The 2026 tree: `MASGEN_NIXPKGS`, else `~/.cache/masgen/nixpkgs`.
pub fn tree() -> Option<PathBuf> {
    tree_from("MASGEN_NIXPKGS", "nixpkgs")
}

/// The old-release tree: `MASGEN_NIXPKGS_OLD`, else `~/.cache/masgen/nixpkgs-old`.
pub fn old_tree() -> Option<PathBuf> {
    tree_from("MASGEN_NIXPKGS_OLD", "nixpkgs-old")
}

/// The trees present; prints a loud SKIP naming `what` for each missing one.
pub fn trees(what: &str) -> Vec<Tree> {
    let mut found = Vec::new();
    for (label, path, var) in [
        ("2026", tree(), "MASGEN_NIXPKGS"),
        ("old", old_tree(), "MASGEN_NIXPKGS_OLD"),
    ] {
        match path {
            Some(path) => found.push(Tree { label, path }),
            None => eprintln!(
                "SKIP: {what} on the {label} nixpkgs tree did not run: no tree \
                 (set {var} to a nixpkgs checkout with lib/ and nixos/; see docs/testing.md)"
            ),
        }
    }
    found
}

/// A file a module generated (`writeText`, `formats.<f>.generate`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedFile {
    pub path: String,
    pub name: String,
    /// The text of a `writeText`-like file.
    pub text: Option<String>,
    /// The value given to `formats.<format>.generate`.
    pub value: Option<Value>,
    pub format: Option<String>,
    /// Where the text sits below the store path (`/bin/<name>` for
    /// `writeShellScriptBin`), "" for a plain file.
    pub destination: String,
    pub executable: bool,
}

impl GeneratedFile {
    /// The file's content as the host would read it: the text, or the value
    /// serialised in its format (YAML; JSON for other formats).
    pub fn content(&self) -> String {
        match (&self.text, &self.value) {
            (Some(text), _) => text.clone(),
            (None, Some(value)) if self.format.as_deref() == Some("yaml") => {
                serde_norway::to_string(value).unwrap_or_default()
            }
            (None, Some(value)) => serde_json::to_string_pretty(value).unwrap_or_default(),
            (None, None) => String::new(),
        }
    }
}

/// What nixpkgs would deploy for one configuration.
#[derive(Clone, Debug)]
pub struct NixosEval {
    pub configuration: String,
    /// `lib.trivial.release` of the tree.
    pub release: String,
    pub failed_assertions: Vec<String>,
    pub warnings: Vec<String>,
    /// `systemd.units."<name>".text` for matrix-synapse, MAS, nginx,
    /// postgresql and every `masgen-*` unit, keyed by unit name
    /// ("nginx.service").
    pub units: BTreeMap<String, String>,
    /// Per unit of `units`: the units that require / want it (`requiredBy`,
    /// `wantedBy`; NixOS makes links for them, not lines of the text).
    pub required_by: BTreeMap<String, Vec<String>>,
    pub wanted_by: BTreeMap<String, Vec<String>>,
    /// Per service (no `.service`): `ExecStart`, `ExecStartPre`, ... as
    /// texts (a script file's text in place of its path), `script`, `preStart`.
    pub exec: BTreeMap<String, Value>,
    /// `environment.etc` sources under `nginx/` or `matrix*`: name -> path.
    pub etc: BTreeMap<String, String>,
    /// Every generated file the evaluation used, by store path.
    pub files: BTreeMap<String, GeneratedFile>,
    /// homeserver.yaml as nixpkgs writes it (its path and settings).
    pub synapse_config_path: Option<String>,
    pub synapse_settings: Option<Value>,
    /// The MAS config.yaml the MAS unit renders from.
    pub mas_config_path: Option<String>,
    pub mas_settings: Option<Value>,
    /// nginx.conf as nixpkgs writes it.
    pub nginx_conf_path: Option<String>,
    pub nginx_conf: Option<String>,
    /// Nix's own stderr without the file traces (deprecation traces etc.).
    pub stderr: String,
}

impl NixosEval {
    pub fn file(&self, path: &str) -> Option<&GeneratedFile> {
        self.files.get(path)
    }

    /// Writes every generated file below `dir` (its store path's base name,
    /// plus its destination) and returns store path -> local path, for
    /// [`localize`]. Executables get mode 0755.
    pub fn write_files(&self, dir: &Path) -> std::io::Result<BTreeMap<String, PathBuf>> {
        use std::os::unix::fs::PermissionsExt;
        let mut written = BTreeMap::new();
        for (store_path, file) in &self.files {
            let base = dir.join(store_path.trim_start_matches("/nix/store/"));
            let target = base.join(file.destination.trim_start_matches('/'));
            let target = if file.destination.is_empty() {
                base.clone()
            } else {
                target
            };
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&target, file.content())?;
            if file.executable {
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
            }
            written.insert(store_path.clone(), base);
        }
        Ok(written)
    }

    /// The exec texts of a service, one string each.
    pub fn exec_texts(&self, service: &str) -> Vec<String> {
        let Some(Value::Object(map)) = self.exec.get(service) else {
            return Vec::new();
        };
        let mut texts = Vec::new();
        for value in map.values() {
            match value {
                Value::String(s) => texts.push(s.clone()),
                Value::Array(items) => {
                    texts.extend(items.iter().filter_map(|v| v.as_str().map(String::from)))
                }
                _ => {}
            }
        }
        texts
    }
}

/// `text` with every store path in `written` (from
/// [`NixosEval::write_files`]) replaced by its local path.
pub fn localize(text: &str, written: &BTreeMap<String, PathBuf>) -> String {
    let mut out = text.to_string();
    for (store_path, local) in written {
        out = out.replace(store_path.as_str(), &local.to_string_lossy());
    }
    out
}

/// Store paths (`/nix/store/<hash>-<name>`, without what follows a `/`) in
/// `text`, in order.
pub fn store_paths(text: &str) -> Vec<String> {
    const PREFIX: &str = "/nix/store/";
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(PREFIX) {
        let tail = &rest[i..];
        let end = tail[PREFIX.len()..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || "+-._?=".contains(c)))
            .map_or(tail.len(), |e| e + PREFIX.len());
        found.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    found
}

/// Builds `checked` with masgen's library and writes the output tree into a
/// fresh temp dir (removed when dropped).
pub fn build_output(checked: &masgen::Checked) -> Result<tempfile::TempDir, String> {
    let (_, tree) = masgen::build_tree(checked).map_err(|e| format!("build_tree: {e:#}"))?;
    let dir = tempfile::Builder::new()
        .prefix("masgen-nixos-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let out = camino::Utf8Path::from_path(dir.path()).ok_or("non-UTF-8 temp dir")?;
    masgen::write::write_tree(out, &tree, false).map_err(|e| format!("write_tree: {e:#}"))?;
    Ok(dir)
}

/// The `nixosConfigurations` the generated flake in `out_dir` defines.
pub fn configurations(out_dir: &Path) -> Result<Vec<String>, String> {
    let nix = nix_instantiate().ok_or("nix-instantiate is not available")?;
    let flake = out_dir.join("flake.nix");
    // Only the attribute names are forced, so the inputs can be empty.
    let expr = format!(
        "builtins.attrNames ((import {flake}).outputs {{ self = {{ }}; nixpkgs = {{ }}; }}).nixosConfigurations",
        flake = nix_path_literal(&flake)?
    );
    let value = nix.eval_json_expr(&expr)?;
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// The URL of the generated flake's `nixpkgs` input.
pub fn nixpkgs_url(out_dir: &Path) -> Result<String, String> {
    let nix = nix_instantiate().ok_or("nix-instantiate is not available")?;
    let expr = format!(
        "(import {}).inputs.nixpkgs.url",
        nix_path_literal(&out_dir.join("flake.nix"))?
    );
    let value = nix.eval_json_expr(&expr)?;
    value
        .as_str()
        .map(String::from)
        .ok_or_else(|| format!("not a string: {value}"))
}

/// Whether `url` pins a NixOS release branch (`.../nixos-26.05`), which the
/// "old" tree stands for; nixos-unstable and other URLs are the "2026" tree.
pub fn pins_release(url: &str) -> bool {
    let branch = url.rsplit('/').next().unwrap_or(url);
    let Some(version) = branch.strip_prefix("nixos-") else {
        return false;
    };
    let version = version.strip_suffix("-small").unwrap_or(version);
    let bytes = version.as_bytes();
    bytes.len() == 5
        && bytes[2] == b'.'
        && version
            .chars()
            .enumerate()
            .all(|(i, c)| i == 2 || c.is_ascii_digit())
}

fn nix_path_literal(path: &Path) -> Result<String, String> {
    let s = path.to_str().ok_or("non-UTF-8 path")?;
    serde_json::to_string(s)
        .map(|quoted| format!("(/. + {quoted})"))
        .map_err(|e| e.to_string())
}

/// Evaluates `configuration` of the output tree `out_dir` against `tree`.
/// `Err` holds Nix's error (an unknown option, a type error, a missing
/// stand-in package, a mistake in flake.nix).
pub fn evaluate(out_dir: &Path, configuration: &str, tree: &Path) -> Result<NixosEval, String> {
    let nix = nix_instantiate().ok_or("nix-instantiate is not available")?;
    let eval_nix = repo_root().join("tests/nixos/eval.nix");
    let host_dir = host_dir(out_dir)?;
    let output = nix
        .command()
        .args(["--eval", "--strict", "--json"])
        .arg(&eval_nix)
        .arg("--argstr")
        .arg("tree")
        .arg(tree)
        .arg("--argstr")
        .arg("out")
        .arg(out_dir)
        .args(["--argstr", "configuration", configuration])
        .arg("--argstr")
        .arg("hostDir")
        .arg(host_dir.path())
        .output()
        .map_err(|e| format!("cannot run nix-instantiate: {e}"))?;
    let (json, files, stderr) = evaluated(&output, "eval.nix")?;
    Ok(from_json(&json, files, stderr))
}

/// tests/nixos/split-hosts.nix on `tree`: masgen's split-host modules on
/// the host of `role` ("db", "mas" or "synapse"), with the nftables or the
/// iptables firewall. Its JSON and the files its traces name.
pub fn evaluate_split_host(
    tree: &Path,
    role: &str,
    nftables: bool,
) -> Result<(Value, BTreeMap<String, GeneratedFile>), String> {
    let nix = nix_instantiate().ok_or("nix-instantiate is not available")?;
    let output = nix
        .command()
        .args(["--eval", "--strict", "--json"])
        .arg(repo_root().join("tests/nixos/split-hosts.nix"))
        .arg("--argstr")
        .arg("tree")
        .arg(tree)
        .args(["--argstr", "role", role, "--arg", "nftables"])
        .arg(nftables.to_string())
        .output()
        .map_err(|e| format!("cannot run nix-instantiate: {e}"))?;
    let (json, files, _) = evaluated(&output, "split-hosts.nix")?;
    Ok((json, files))
}

/// An evaluation's JSON, the files its traces name and the rest of its
/// stderr; on failure, Nix's error without the traces before it.
fn evaluated(
    output: &std::process::Output,
    what: &str,
) -> Result<(Value, BTreeMap<String, GeneratedFile>, String), String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let (files, stderr) = parse_traces(&stderr);
    if !output.status.success() {
        let error = stderr.find("error:").map_or(&stderr[..], |i| &stderr[i..]);
        return Err(error.trim_end().to_string());
    }
    let json = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("invalid JSON from {what} ({e})"))?;
    Ok((json, files, stderr))
}

/// A directory standing in for a host input that is not a flake
/// (`base_config`): every file flake.nix imports from such an input
/// (`inputs.host-<name>.outPath + "/<file>"`) imports tests/nixos/host.nix.
fn host_dir(out_dir: &Path) -> Result<tempfile::TempDir, String> {
    let flake = std::fs::read_to_string(out_dir.join("flake.nix")).map_err(|e| e.to_string())?;
    let dir = tempfile::Builder::new()
        .prefix("masgen-host-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let host = repo_root().join("tests/nixos/host.nix");
    let import = format!("import {}\n", nix_path_literal(&host)?);
    for part in flake.split(".outPath + \"/").skip(1) {
        let Some(file) = part.split('"').next().filter(|f| !f.contains("..")) else {
            continue;
        };
        let path = dir.path().join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&path, &import).map_err(|e| e.to_string())?;
    }
    Ok(dir)
}

/// Splits `trace: masgen-file {...}` lines off Nix's stderr.
fn parse_traces(stderr: &str) -> (BTreeMap<String, GeneratedFile>, String) {
    let mut files = BTreeMap::new();
    let mut rest = String::new();
    for line in stderr.lines() {
        let Some(json) = line.strip_prefix("trace: masgen-file ") else {
            rest.push_str(line);
            rest.push('\n');
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(json) else {
            rest.push_str(line);
            rest.push('\n');
            continue;
        };
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(String::from);
        let file = GeneratedFile {
            path: s("path").unwrap_or_default(),
            name: s("name").unwrap_or_default(),
            text: s("text"),
            value: v.get("value").cloned(),
            format: s("format"),
            destination: s("destination").unwrap_or_default(),
            executable: v
                .get("executable")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        files.insert(file.path.clone(), file);
    }
    (files, rest)
}

fn from_json(json: &Value, files: BTreeMap<String, GeneratedFile>, stderr: String) -> NixosEval {
    let strings = |k: &str| -> Vec<String> {
        json[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let string_map = |k: &str| -> BTreeMap<String, String> {
        json[k]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(n, v)| Some((n.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let lists = |k: &str| -> BTreeMap<String, Vec<String>> {
        json[k]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(n, v)| {
                        let items = v.as_array().map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(String::from))
                                .collect()
                        });
                        (n.clone(), items.unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let exec = json["exec"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut eval = NixosEval {
        configuration: json["configuration"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        release: json["release"].as_str().unwrap_or_default().to_string(),
        failed_assertions: strings("failedAssertions"),
        warnings: strings("warnings"),
        units: string_map("units"),
        required_by: lists("requiredBy"),
        wanted_by: lists("wantedBy"),
        exec,
        etc: string_map("etc"),
        files,
        synapse_config_path: json["synapseConfigFile"].as_str().map(String::from),
        synapse_settings: None,
        mas_config_path: None,
        mas_settings: None,
        nginx_conf_path: None,
        nginx_conf: None,
        stderr,
    };
    let file = |path: &Option<String>| path.as_deref().and_then(|p| eval.files.get(p)).cloned();
    let synapse = file(&eval.synapse_config_path);
    eval.mas_config_path = named_file(&eval, "matrix-authentication-service", "config.yaml");
    eval.nginx_conf_path = named_file(&eval, "nginx", "nginx.conf");
    let (mas, nginx) = (file(&eval.mas_config_path), file(&eval.nginx_conf_path));
    eval.synapse_settings = synapse.and_then(|f| f.value);
    eval.mas_settings = mas.and_then(|f| f.value);
    eval.nginx_conf = nginx.and_then(|f| f.text);
    eval
}

/// The first generated file whose name ends with `name` (nixpkgs' MAS module
/// writes `config.yaml`, masgen's compat module `<unit>-config.yaml`) that
/// `service`'s exec texts, the scripts they run, or the `/etc` files name.
fn named_file(eval: &NixosEval, service: &str, name: &str) -> Option<String> {
    let mut texts = eval.exec_texts(service);
    texts.extend(eval.etc.values().cloned());
    // One level of scripts: an ExecStartPre may be a script's path only.
    let scripts: Vec<String> = texts
        .iter()
        .flat_map(|t| store_paths(t))
        .filter_map(|p| eval.files.get(&p).and_then(|f| f.text.clone()))
        .collect();
    texts.extend(scripts);
    texts
        .iter()
        .flat_map(|t| store_paths(t))
        .find(|p| eval.files.get(p).is_some_and(|f| f.name.ends_with(name)))
}

/// Builds the fleet of `specs` (spec or fleet files) into a temporary
/// directory; returns it with each configuration's server name.
pub fn build_fleet_output(
    specs: &[PathBuf],
) -> Result<(tempfile::TempDir, BTreeMap<String, String>), String> {
    let (lowered, tree) = lower_fleet(specs)?;
    let dir = tempfile::Builder::new()
        .prefix("masgen-fleet-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let out = camino::Utf8Path::from_path(dir.path()).ok_or("non-UTF-8 temp dir")?;
    masgen::write::write_tree(out, &tree, false).map_err(|e| format!("write_tree: {e:#}"))?;
    let servers = lowered
        .iter()
        .flat_map(|l| {
            l.phases
                .iter()
                .map(|p| (p.configuration.clone(), l.server_name.clone()))
        })
        .collect();
    Ok((dir, servers))
}

/// What each configuration of a fleet runs (a homeserver split across hosts
/// runs part of it on each).
pub fn fleet_roles(specs: &[PathBuf]) -> Result<BTreeMap<String, masgen::model::Roles>, String> {
    let (lowered, _) = lower_fleet(specs)?;
    Ok(lowered
        .iter()
        .flat_map(|l| l.phases.iter().map(|p| (p.configuration.clone(), p.roles)))
        .collect())
}

/// The fleet of `specs`, lowered and built into a tree (not written).
fn lower_fleet(
    specs: &[PathBuf],
) -> Result<(Vec<masgen::lower::Lowered>, masgen::emit::OutputTree), String> {
    let paths: Vec<camino::Utf8PathBuf> = specs
        .iter()
        .map(|p| camino::Utf8PathBuf::from_path_buf(p.clone()).map_err(|p| format!("{p:?}")))
        .collect::<Result<_, _>>()?;
    let files = masgen::fleet::expand(&paths)
        .map_err(|e| e.to_string())?
        .map_err(|r| r.to_string())?;
    let fleet = masgen::fleet::load(&files).map_err(|e| e.to_string())?;
    if !fleet.is_ok() {
        return Err("the fleet does not validate".into());
    }
    masgen::fleet::build_tree(&fleet.checked(), "./out").map_err(|e| format!("{e:#}"))
}

/// Evaluates every node of the flake's `colmena` hive (tests/nixos/colmena.nix).
pub fn evaluate_hive(out_dir: &Path, tree: &Path) -> Result<Value, String> {
    let nix = nix_instantiate().ok_or("nix-instantiate is not available")?;
    let host_dir = host_dir(out_dir)?;
    let output = nix
        .command()
        .args(["--eval", "--strict", "--json"])
        .arg(repo_root().join("tests/nixos/colmena.nix"))
        .arg("--argstr")
        .arg("tree")
        .arg(tree)
        .arg("--argstr")
        .arg("out")
        .arg(out_dir)
        .arg("--argstr")
        .arg("hostDir")
        .arg(host_dir.path())
        .output()
        .map_err(|e| format!("cannot run nix-instantiate: {e}"))?;
    evaluated(&output, "colmena.nix").map(|(json, _, _)| json)
}
