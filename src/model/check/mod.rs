//! Spec → model, collecting every error and warning.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::*;
use crate::diag::{Diagnostic, KeyPath};
use crate::rules;
use crate::spec::raw::{self, SpecFile};

mod database;
mod generate;
mod host;
mod mas;
mod password_auth;
mod pins;
mod placement;
mod proxy;
mod synapse;
mod upstream;

use database::check_database;
use mas::check_mas;
use proxy::check_proxy;
use synapse::check_synapse;

const DEFAULT_HOST: &str = "matrix";

struct Checker {
    diags: Vec<Diagnostic>,
    /// Indexes of errors after which the checker went on with a default in
    /// place of the bad value: other diagnostics at the same path were
    /// computed from that default and follow from the error.
    fallbacks: Vec<usize>,
}

fn at(path: &str) -> KeyPath {
    KeyPath::parse(path)
}

impl Checker {
    fn error(
        &mut self,
        code: &'static str,
        path: KeyPath,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.diags
            .push(Diagnostic::error(code, path, message).help(help.into()));
    }

    fn warn(
        &mut self,
        code: &'static str,
        path: KeyPath,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.diags
            .push(Diagnostic::warning(code, path, message).help(help.into()));
    }

    /// Marks the last error as one after which checking goes on with a
    /// default in place of the bad value: what else is reported at the same
    /// path follows from it, and is printed after it.
    fn defaulted(&mut self) {
        if let Some(last) = self.diags.len().checked_sub(1) {
            self.fallbacks.push(last);
        }
    }

    fn hostname(&mut self, path: &str, value: &str) {
        if !is_hostname(value) {
            self.error(
                "value.hostname",
                at(path),
                format!("`{value}` is not a valid DNS host name"),
                "use letters, digits and hyphens in dot-separated labels, e.g. `matrix.example.com`",
            );
        }
    }

    fn url(&mut self, path: &str, value: &str) {
        if !is_url(value) {
            self.error(
                "value.url",
                at(path),
                format!("`{value}` is not an http(s) URL"),
                "write a full URL such as `https://sso.example.com/realms/matrix`",
            );
        }
    }

    fn port(&mut self, path: &str, value: Option<i64>, default: u16) -> u16 {
        match value {
            None => default,
            Some(p) if (1..=65535).contains(&p) => p as u16,
            Some(p) => {
                self.error(
                    "value.port",
                    at(path),
                    format!("port {p} is out of range"),
                    "use a TCP port between 1 and 65535",
                );
                self.defaulted();
                default
            }
        }
    }

    fn abs_path(&mut self, path: &str, value: &Option<String>) {
        if let Some(v) = value {
            self.abs_path_str(path, v);
        }
    }

    fn abs_path_str(&mut self, path: &str, value: &str) {
        if !value.starts_with('/') || value.contains('\n') {
            self.error(
                "value.path",
                at(path),
                format!("`{value}` is not an absolute path"),
                "secret and data files are referred to by absolute paths on the host, e.g. `/run/secrets/mas-encryption`",
            );
        } else if value.starts_with("/nix/store") {
            self.error(
                "secret.in_store",
                at(path),
                format!("`{value}` is in the Nix store, which is world-readable"),
                "keep secret files outside the store (agenix, sops-nix or a root-only directory)",
            );
        }
    }
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host_port = rest.split('/').next().unwrap_or("");
            let host = host_port
                .rsplit_once(':')
                .map(|(h, p)| {
                    if p.chars().all(|c| c.is_ascii_digit()) {
                        h
                    } else {
                        host_port
                    }
                })
                .unwrap_or(host_port);
            is_hostname(host) && !s.chars().any(|c| c.is_whitespace())
        }
        None => false,
    }
}

fn is_ulid(s: &str) -> bool {
    s.len() == 26
        && s.chars()
            .all(|c| "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(c))
        && ulid::Ulid::from_string(s).is_ok()
}

fn parse_version(s: &str) -> Option<SynapseVersion> {
    let s = s.trim().trim_start_matches('v');
    let mut parts = s.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = match parts.next() {
        Some(p) => Some(p.parse().ok()?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(SynapseVersion {
        major,
        minor,
        patch,
    })
}

fn table_to_json(table: &toml::Table) -> Map<String, Value> {
    match serde_json::to_value(table) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// Flattens nested objects into dotted paths (lists are leaves).
/// Every nested key of an object as its path of key names (lists are leaves).
/// Names are kept apart: a key may itself contain a dot.
fn flatten(prefix: &[String], value: &Value, out: &mut Vec<(Vec<String>, Value)>) {
    if let Value::Object(map) = value {
        for (k, v) in map {
            let mut path = prefix.to_vec();
            path.push(k.clone());
            out.push((path.clone(), v.clone()));
            flatten(&path, v, out);
        }
    }
}

fn is_path(segments: &[String], dotted: &str) -> bool {
    segments.iter().map(String::as_str).eq(dotted.split('.'))
}

/// Validates a parsed spec. Returns the model when there is no error, and
/// every diagnostic (warnings included) either way.
pub fn validate(spec: &SpecFile) -> (Option<Homeserver>, Vec<Diagnostic>) {
    let mut c = Checker {
        diags: Vec::new(),
        fallbacks: Vec::new(),
    };

    let (mode, host_name, hosts) = check_homeserver(&mut c, spec);
    let place = placement::place(&mut c, spec, &host_name, &hosts);

    let pin = pins::check_pin(&mut c, spec);
    let mut synapse = check_synapse(&mut c, spec, &place, mode, &pin.synapse_version);
    let mut mas = check_mas(&mut c, spec, &place, mode, &synapse);
    let proxy = check_proxy(&mut c, &spec.proxy, &place.proxy);
    placement::finish(&mut c, spec, &hosts, mode, &mut synapse, &mut mas, &proxy);

    // Both databases must differ: MAS needs its own blank database.
    if mas.database.name == synapse.database.name {
        c.error(
            "mas.database.shared",
            at("mas.database.name"),
            format!(
                "MAS and Synapse would share the database `{}`",
                mas.database.name
            ),
            "MAS needs its own empty database, e.g. `matrix-authentication-service`",
        );
    }

    let users = check_users(&mut c, spec);

    let backup_dir = spec
        .migration
        .backup_dir
        .clone()
        .unwrap_or_else(|| "/var/backup/masgen".into());
    c.abs_path_str("migration.backup_dir", &backup_dir);

    let model = Homeserver {
        server_name: spec.homeserver.server_name.clone(),
        mode,
        nixpkgs: pin.url,
        hosts,
        synapse,
        mas,
        proxy,
        backup_dir,
        users,
    };
    link_causes(&mut c.diags, &c.fallbacks);
    let ok = !c.diags.iter().any(Diagnostic::is_error);
    (ok.then_some(model), c.diags)
}

/// `[homeserver]`, `[hosts]` and the `host` keys: mode and placement.
fn check_homeserver(c: &mut Checker, spec: &SpecFile) -> (Mode, String, BTreeMap<String, Host>) {
    // --- homeserver ---
    let hs = &spec.homeserver;
    c.hostname("homeserver.server_name", &hs.server_name);
    let mode = match hs.mode.as_str() {
        "fresh" => Mode::Fresh,
        "migrate" => Mode::Migrate,
        other => {
            c.error(
                "homeserver.mode",
                at("homeserver.mode"),
                format!("unknown mode `{other}`"),
                "use `fresh` for a new homeserver without users, or `migrate` for an existing Synapse with users",
            );
            Mode::Fresh
        }
    };
    if let Some(imp) = &hs.implementation {
        if imp != "synapse" {
            c.error(
                "homeserver.implementation",
                at("homeserver.implementation"),
                format!("MAS does not support the `{imp}` homeserver; only Synapse can delegate authentication to MAS"),
                "set `implementation = \"synapse\"` (Dendrite and Conduit cannot use MAS)",
            );
        }
    }
    let host_name = hs.host.clone().unwrap_or_else(|| DEFAULT_HOST.to_string());
    if !crate::nix::is_bare_ident(&host_name) || host_name.contains('\'') {
        c.error(
            "homeserver.host",
            at("homeserver.host"),
            format!("`{host_name}` cannot be a NixOS configuration name"),
            "use letters, digits, `-` and `_`, starting with a letter",
        );
    }

    // The hosts of the spec (or the one default host); which service runs
    // where is read by placement.rs.
    let mut hosts = BTreeMap::new();
    let host_specs: Vec<(String, raw::HostSpec)> = if spec.hosts.is_empty() {
        vec![(host_name.clone(), raw::HostSpec::default())]
    } else {
        spec.hosts
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    if !spec.hosts.is_empty() && !spec.hosts.contains_key(&host_name) {
        c.error(
            "host.unknown",
            if hs.host.is_some() {
                at("homeserver.host")
            } else {
                at("homeserver")
            },
            format!("the homeserver's host `{host_name}` has no `[hosts.{host_name}]` table"),
            "set `homeserver.host` to one of the `[hosts]` tables, or add that table",
        );
    }
    for (name, h) in host_specs {
        if name != host_name && !crate::nix::is_bare_ident(&name) {
            c.error(
                "homeserver.host",
                at("hosts").key(&name),
                format!("`{name}` cannot be a NixOS configuration name"),
                "use letters, digits, `-` and `_`, starting with a letter",
            );
        }
        // Point at the host's own table when the spec has one: that is
        // where `base_flake` goes (not at `[homeserver]`).
        let about = if spec.hosts.contains_key(&name) {
            at("hosts").key(&name)
        } else if hs.host.is_some() {
            at("homeserver.host")
        } else {
            at("homeserver")
        };
        let base_config = host::check_host_base(c, &name, &h, about);
        hosts.insert(
            name.clone(),
            Host {
                name: name.clone(),
                system: h.system.clone().unwrap_or_else(|| "x86_64-linux".into()),
                base_flake: h.base_flake.clone(),
                base_module: h.base_module.clone().unwrap_or_else(|| "default".into()),
                base_config,
                address: h.address.clone(),
            },
        );
    }
    (mode, host_name, hosts)
}

/// `[[users]]`: accounts masgen registers.
fn check_users(c: &mut Checker, spec: &SpecFile) -> Vec<User> {
    let mut users = Vec::new();
    let mut seen_users = BTreeSet::new();
    for (i, u) in spec.users.iter().enumerate() {
        let path = format!("users[{i}]");
        if u.localpart.is_empty()
            || !u
                .localpart
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._=-/+".contains(ch))
        {
            c.error(
                "user.localpart",
                at(&format!("{path}.localpart")),
                format!("`{}` is not a valid Matrix localpart", u.localpart),
                "use lower-case letters, digits and `._=-/+`",
            );
        }
        if !seen_users.insert(u.localpart.clone()) {
            c.error(
                "user.duplicate",
                at(&format!("{path}.localpart")),
                format!("user `{}` is declared twice", u.localpart),
                "declare each user once",
            );
        }
        c.abs_path(&format!("{path}.password_file"), &u.password_file);
        let bot = match u.kind.as_deref() {
            None | Some("person") => false,
            Some("bot") => true,
            Some(other) => {
                c.error(
                    "user.kind",
                    at(&format!("{path}.kind")),
                    format!("unknown user kind `{other}`"),
                    "use `bot` or `person`",
                );
                false
            }
        };
        let task = crate::lower::tasks::register_user_task(&u.localpart);
        if let Some(other) = spec.users[..i].iter().find(|o| {
            o.localpart != u.localpart
                && crate::lower::tasks::register_user_task(&o.localpart) == task
        }) {
            c.error(
                "user.task_name",
                at(&format!("{path}.localpart")),
                format!(
                    "users `{}` and `{}` would share the unit `{task}.service`",
                    other.localpart, u.localpart
                ),
                "rename one of them (unit names keep only letters, digits, `-` and `_`)",
            );
        }
        users.push(User {
            localpart: u.localpart.clone(),
            admin: u.admin.unwrap_or(false),
            bot,
            password_file: u.password_file.clone(),
        });
    }
    users
}

/// (consequence, cause): when both codes are reported, the first follows
/// from the second and is printed right after it, wherever each is in the
/// file. A MAS provider whose `synapse_idp_id` names no Synapse provider
/// leaves that Synapse provider unmapped: fixing the former fixes both.
const CAUSES: &[(&str, &str)] = &[("migrate.provider_unmapped", "mas.provider.synapse_idp_id")];

fn link_causes(diags: &mut [Diagnostic], fallbacks: &[usize]) {
    let path_of = |d: &Diagnostic| match &d.location {
        crate::diag::Location::Path(p) => Some(p.clone()),
        crate::diag::Location::Span(_) => None,
    };
    for &(consequence, cause) in CAUSES {
        let Some(at) = diags.iter().find(|d| d.code == cause).and_then(path_of) else {
            continue;
        };
        for d in diags
            .iter_mut()
            .filter(|d| d.code == consequence && d.cause.is_none())
        {
            d.cause = Some(at.clone());
        }
    }
    for &i in fallbacks {
        let Some(at) = path_of(&diags[i]) else {
            continue;
        };
        for (j, d) in diags.iter_mut().enumerate() {
            if j != i && d.cause.is_none() && path_of(d).as_ref() == Some(&at) {
                d.cause = Some(at.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_and_urls() {
        assert!(is_hostname("matrix.example.com"));
        assert!(!is_hostname("-bad.example.com"));
        assert!(!is_hostname("a..b"));
        assert!(is_url("https://sso.example.com:8443/realms/x"));
        assert!(!is_url("sso.example.com"));
        assert!(!is_url("https://exa mple.com"));
        // A good host does not make the rest of the URL good.
        assert!(!is_url("https://sso.example.com/realms/a b"));
    }

    #[test]
    fn ulids_must_be_canonical() {
        assert!(is_ulid("01H8PKNWKKRPCBW4YGH1RWV279"));
        assert!(!is_ulid("01h8pknwkkrpcbw4ygh1rwv279"));
        assert!(!is_ulid("01H8PKNWKKRPCBW4YGH1RWV27"));
        assert!(!is_ulid("01H8PKNWKKRPCBW4YGH1RWV27U"));
    }

    #[test]
    fn versions() {
        let v = parse_version("1.135.2").unwrap();
        assert!(!v.has_stable_delegation());
        assert!(parse_version("1.136").unwrap().has_stable_delegation());
        assert!(parse_version("one").is_none());
    }
}
