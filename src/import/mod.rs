//! `masgen import`: read what a host runs today (a NixOS system root, Synapse
//! config files, a matrix-docker-ansible-deploy inventory) and write the first
//! `migrate`-mode spec, with a report of every input key.
//!
//! One file per source (`synapse`, `mdad`, `nixos`); `oidc` turns Synapse's
//! legacy providers into spec providers and MAS upstream providers; `writer`
//! builds the spec (with comments saying where each value came from) and the
//! report. Secrets found inline are never copied: the spec gets a file
//! reference and the report says which file to create from which key.

pub mod mdad;
pub mod nixos;
mod oidc;
pub mod synapse;
mod synapse_auth;
mod synapse_net;
mod writer;

use serde::Serialize;
use serde_json::{Map, Value};

pub use writer::{render_json, render_text, SpecOut};

/// What an import produces: the spec text and the report.
#[derive(Debug)]
pub struct Imported {
    pub spec: String,
    pub report: Report,
}

/// Every input key and what became of it.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// `synapse`, `mdad` or `nixos`.
    pub source: String,
    /// The files read, in order.
    pub files: Vec<String>,
    pub items: Vec<Item>,
    /// Files the operator must create before building (never their values).
    pub secret_files: Vec<SecretFile>,
    /// What the final (delegated) configuration drops from what runs today.
    pub final_drops: Vec<FinalDrop>,
    /// `masgen check`'s warnings on the written spec.
    pub check_warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub file: String,
    pub key: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub why: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Mapped,
    Dropped,
    NeedsHuman,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecretFile {
    pub path: String,
    /// What to put in it, e.g. "the value of `password_config.pepper` in homeserver.yaml".
    pub content: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FinalDrop {
    pub setting: String,
    pub reason: String,
}

/// The spec and report under construction.
pub struct Ctx {
    pub spec: SpecOut,
    pub report: Report,
}

impl Ctx {
    pub fn new(source: &str, files: Vec<String>) -> Ctx {
        Ctx {
            spec: SpecOut::new(),
            report: Report {
                source: source.into(),
                files,
                ..Default::default()
            },
        }
    }

    pub(super) fn item(&mut self, file: &str, key: &str, status: Status, to: &[String], why: &str) {
        self.report.items.push(Item {
            file: file.into(),
            key: key.into(),
            status,
            to: to.to_vec(),
            why: why.into(),
        });
    }

    pub fn mapped(&mut self, file: &str, key: &str, to: &[&str], why: &str) {
        let to: Vec<String> = to.iter().map(|s| s.to_string()).collect();
        self.item(file, key, Status::Mapped, &to, why);
    }

    pub fn dropped(&mut self, file: &str, key: &str, why: &str) {
        self.item(file, key, Status::Dropped, &[], why);
    }

    pub fn human(&mut self, file: &str, key: &str, why: &str) {
        self.item(file, key, Status::NeedsHuman, &[], why);
    }

    /// Records a secret file to create; the same path is listed once.
    pub fn secret_file(&mut self, path: &str, content: &str) {
        if !self.report.secret_files.iter().any(|s| s.path == path) {
            self.report.secret_files.push(SecretFile {
                path: path.into(),
                content: content.into(),
            });
        }
    }
}

/// Where imported secret files are expected (the NixOS convention of
/// agenix / sops-nix); the operator may move them and edit the spec.
pub const SECRETS_DIR: &str = "/run/secrets";

/// Whether a value holds a literal secret anywhere (by key name).
pub fn contains_secret(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| {
            (crate::spec::is_secret_key(k) && matches!(v, Value::String(_) | Value::Number(_)))
                || contains_secret(v)
        }),
        Value::Array(a) => a.iter().any(contains_secret),
        _ => false,
    }
}

/// Parses a YAML file into data: anchors, aliases and merge keys (`<<`)
/// resolved; errors name `file:line:column`.
pub fn parse_yaml(file: &str, text: &str) -> anyhow::Result<Map<String, Value>> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    let mut value: serde_norway::Value = serde_norway::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("{}:{}", l.line(), l.column()))
            .unwrap_or_else(|| "1:1".into());
        anyhow::anyhow!("{file}:{at}: not valid YAML: {e}; fix the file and import again")
    })?;
    value
        .apply_merge()
        .map_err(|e| anyhow::anyhow!("{file}: a YAML merge key (`<<`) cannot be applied: {e}"))?;
    let json: Value = serde_json::to_value(&value).map_err(|e| {
        anyhow::anyhow!("{file}: cannot be read as configuration data: {e} (keys must be strings)")
    })?;
    match json {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        _ => anyhow::bail!("{file}:1:1: expected a mapping of settings at the top level"),
    }
}

/// Reads and parses a YAML file.
pub fn read_yaml(path: &camino::Utf8Path) -> anyhow::Result<Map<String, Value>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))?;
    parse_yaml(path.as_str(), &text)
}

/// A ULID derived from what identifies a provider, so re-importing gives the
/// same id: SHA-256 of the parts, 80 bits of it after a fixed timestamp
/// (2024-01-01T00:00:00Z, before any import).
pub fn derived_ulid(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let random = u128::from_be_bytes(bytes) & ((1u128 << 80) - 1);
    ulid::Ulid::from_parts(1_704_067_200_000, random).to_string()
}

/// A short rendering of a JSON value for reports (never used for secrets).
pub fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ulids_are_stable_valid_and_distinct() {
        let a = derived_ulid(&["example.org", "oidc-keycloak", "https://sso/"]);
        assert_eq!(
            a,
            derived_ulid(&["example.org", "oidc-keycloak", "https://sso/"])
        );
        assert_ne!(
            a,
            derived_ulid(&["example.org", "oidc-github", "https://sso/"])
        );
        assert_eq!(a.len(), 26);
        assert!(a.parse::<ulid::Ulid>().is_ok());
    }

    #[test]
    fn yaml_errors_name_line_and_column() {
        let err = parse_yaml("hs.yaml", "server_name: a\nfoo: [1, 2\nbar: 3\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("hs.yaml:"), "{text}");
        assert!(text.contains("hs.yaml:3:"), "{text}");
    }

    #[test]
    fn yaml_merge_keys_and_anchors_resolve() {
        let m = parse_yaml(
            "hs.yaml",
            "base: &b {issuer: x, client_id: c}\nover:\n  <<: *b\n  client_id: d\n",
        )
        .unwrap();
        assert_eq!(m["over"]["issuer"], "x");
        assert_eq!(m["over"]["client_id"], "d");
        assert!(m["over"].get("<<").is_none());
    }
}
