//! Spec → model, collecting every error and warning.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::*;
use crate::diag::{Diagnostic, KeyPath};
use crate::rules;
use crate::spec::raw::{self, SpecFile};

const DEFAULT_NIXPKGS: &str = "github:NixOS/nixpkgs/nixos-25.11";
const DEFAULT_HOST: &str = "matrix";

struct Checker {
    diags: Vec<Diagnostic>,
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
            .push(Diagnostic::error(code, path, message).help(help));
    }

    fn warn(
        &mut self,
        code: &'static str,
        path: KeyPath,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.diags
            .push(Diagnostic::warning(code, path, message).help(help));
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
    let mut c = Checker { diags: Vec::new() };

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

    // --- hosts: one homeserver may later span several; today all on one ---
    let mut hosts = BTreeMap::new();
    let host_specs: Vec<(String, raw::HostSpec)> = if spec.hosts.is_empty() {
        vec![(host_name.clone(), raw::HostSpec::default())]
    } else {
        spec.hosts
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    for (name, h) in host_specs {
        if name != host_name {
            c.error(
                "host.split_unsupported",
                at("hosts").key(&name),
                format!("host `{name}` is not the homeserver's host `{host_name}`"),
                "this masgen places Synapse, MAS and PostgreSQL on one host; remove this host or set `homeserver.host` to it",
            );
            continue;
        }
        if h.base_flake.is_none() {
            c.warn(
                "host.no_base_flake",
                at("homeserver.host"),
                format!("host `{name}` has no `base_flake`: its NixOS configurations lack file systems, boot loader and users, so they will not build as they are"),
                format!("add `[hosts.{name}]` with `base_flake = \"path:/etc/nixos\"` (a flake exporting the host's own module)"),
            );
        }
        hosts.insert(
            name.clone(),
            Host {
                name: name.clone(),
                system: h.system.clone().unwrap_or_else(|| "x86_64-linux".into()),
                base_flake: h.base_flake.clone(),
                base_module: h.base_module.clone().unwrap_or_else(|| "default".into()),
            },
        );
    }
    for (path, value) in [
        ("synapse.host", &spec.synapse.host),
        ("mas.host", &spec.mas.host),
    ] {
        if let Some(h) = value {
            if h != &host_name {
                c.error(
                    "host.split_unsupported",
                    at(path),
                    format!("`{h}` differs from the homeserver's host `{host_name}`"),
                    "running Synapse and MAS on different hosts is not supported yet; remove this key",
                );
            }
        }
    }

    let synapse = check_synapse(&mut c, spec, &host_name, mode);
    let mas = check_mas(&mut c, spec, &host_name, mode, &synapse);
    let proxy = check_proxy(&mut c, &spec.proxy);

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

    let backup_dir = spec
        .migration
        .backup_dir
        .clone()
        .unwrap_or_else(|| "/var/backup/masgen".into());
    c.abs_path_str("migration.backup_dir", &backup_dir);

    let model = Homeserver {
        server_name: hs.server_name.clone(),
        mode,
        nixpkgs: spec
            .flake
            .nixpkgs
            .clone()
            .unwrap_or_else(|| DEFAULT_NIXPKGS.into()),
        hosts,
        synapse,
        mas,
        proxy,
        backup_dir,
        users,
    };
    let ok = !c.diags.iter().any(Diagnostic::is_error);
    (ok.then_some(model), c.diags)
}

fn check_database(
    c: &mut Checker,
    prefix: &str,
    d: &raw::DatabaseSpec,
    default_name: &str,
    service_user: &str,
    // Whether NixOS creates it (else it exists already and is the operator's).
    created: bool,
) -> Database {
    let engine = match d.engine.as_deref() {
        None | Some("postgresql") | Some("postgres") | Some("psycopg2") => DbEngine::Postgresql,
        Some("sqlite") | Some("sqlite3") => DbEngine::Sqlite,
        Some(other) => {
            c.error(
                "database.engine",
                at(&format!("{prefix}.engine")),
                format!("unknown database engine `{other}`"),
                "use `postgresql`",
            );
            DbEngine::Postgresql
        }
    };
    let name = d.name.clone().unwrap_or_else(|| default_name.to_string());
    let user = d.user.clone().unwrap_or_else(|| name.clone());
    for (key, v) in [("name", &name), ("user", &user)] {
        if v.is_empty()
            || !v
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            c.error(
                "database.name",
                at(&format!("{prefix}.{key}")),
                format!("`{v}` is not a plain PostgreSQL identifier"),
                "use letters, digits, `-` and `_`",
            );
        }
    }
    let host = d.host.clone().unwrap_or_else(|| "/run/postgresql".into());
    let port = d
        .port
        .map(|p| c.port(&format!("{prefix}.port"), Some(p), 5432));
    // Only the host's own PostgreSQL over its unix socket: TCP logins (even
    // on loopback) need passwords, which masgen does not manage yet.
    let socket = host.starts_with('/');
    let local = d.local.unwrap_or(socket);
    if !local || !socket {
        c.error(
            "database.remote_unsupported",
            at(&format!("{prefix}.host")),
            format!("database host `{host}` is not this host's PostgreSQL socket"),
            "this masgen runs PostgreSQL on the homeserver's host and connects over its unix socket (/run/postgresql) with peer authentication; TCP and remote databases are not supported yet",
        );
    }
    if d.password_file.is_some() {
        c.error(
            "database.password_file",
            at(&format!("{prefix}.password_file")),
            "a database password is not needed: the services log in to the local PostgreSQL by peer authentication",
            "remove `password_file`",
        );
    }
    // Over the unix socket PostgreSQL authenticates by OS user (peer), and
    // the service runs as `service_user`.
    if engine == DbEngine::Postgresql && socket && user != service_user {
        c.error(
            "database.peer_user",
            at(&format!("{prefix}.user")),
            format!("role `{user}` cannot log in over the unix socket: peer authentication maps the service's OS user `{service_user}` to a role of the same name"),
            format!("use `user = \"{service_user}\"`"),
        );
    }
    // nixpkgs' ensureDBOwnership needs the database named like its owner.
    if created && engine == DbEngine::Postgresql && name != user {
        c.error(
            "database.name_user",
            at(&format!("{prefix}.name")),
            format!("database `{name}` must be named like its owner role `{user}`: NixOS creates it with ensureDBOwnership, which requires that"),
            format!("use `name = \"{user}\"`"),
        );
    }
    Database {
        engine,
        name,
        user,
        host,
        port,
        local,
    }
}

fn check_synapse(c: &mut Checker, spec: &SpecFile, host: &str, mode: Mode) -> Synapse {
    let s = &spec.synapse;
    let server_name = &spec.homeserver.server_name;
    let version = match parse_version(&s.version) {
        Some(v) => v,
        None => {
            c.error(
                "synapse.version",
                at("synapse.version"),
                format!("`{}` is not a Synapse version", s.version),
                "write the release line you run, e.g. `1.157` or `1.157.1`",
            );
            SynapseVersion {
                major: 1,
                minor: 157,
                patch: None,
            }
        }
    };
    if !version.has_stable_delegation() {
        c.warn(
            "synapse.version.old",
            at("synapse.version"),
            format!("Synapse {version} predates the stable `matrix_authentication_service` block; masgen emits `experimental_features.msc3861` instead"),
            "current MAS releases require Synapse 1.136 or newer: upgrade Synapse before the final switch",
        );
    }
    if version.major == 1 && version.minor == 142 && version.patch.unwrap_or(0) == 0 {
        let prefix = spec.mas.path_prefix.as_deref().unwrap_or("/auth");
        if prefix != "/" {
            c.error(
                "synapse.version.subpath_bug",
                at("synapse.version"),
                "Synapse 1.142.0 ignores the path of the MAS endpoint (synapse#19184), which breaks a MAS under a path prefix",
                "upgrade to Synapse 1.142.1 or newer, or serve MAS at `/` on its own hostname",
            );
        }
    }
    let public_hostname = s
        .public_hostname
        .clone()
        .unwrap_or_else(|| format!("matrix.{server_name}"));
    c.hostname("synapse.public_hostname", &public_hostname);
    let listen_address = s
        .listener
        .address
        .clone()
        .unwrap_or_else(|| "127.0.0.1".into());
    let port = c.port("synapse.listener.port", s.listener.port, 8008);
    if s.listener.health_port.is_some() {
        c.error(
            "spec.unknown_key",
            at("synapse.listener.health_port"),
            "`health_port` applies to MAS only",
            "remove it",
        );
    }
    let database = check_database(
        c,
        "synapse.database",
        &s.database,
        "matrix-synapse",
        "matrix-synapse",
        mode == Mode::Fresh,
    );

    for (key, v) in [
        ("pepper_file", &s.pepper_file),
        ("macaroon_secret_key_file", &s.macaroon_secret_key_file),
        (
            "registration_shared_secret_file",
            &s.registration_shared_secret_file,
        ),
        ("form_secret_file", &s.form_secret_file),
        ("signing_key_path", &s.signing_key_path),
    ] {
        c.abs_path(&format!("synapse.{key}"), v);
    }
    // Older Synapse ignores unknown keys: a `_path` it does not know would
    // leave the secret unset (and e.g. the macaroon key changing at restart).
    for (key, since, value) in [
        (
            "macaroon_secret_key_file",
            (1, 121),
            &s.macaroon_secret_key_file,
        ),
        ("form_secret_file", (1, 126), &s.form_secret_file),
        (
            "registration_shared_secret_file",
            (1, 67),
            &s.registration_shared_secret_file,
        ),
    ] {
        if value.is_some() && !version.at_least(since.0, since.1) {
            c.error(
                "synapse.version.path_setting",
                at(&format!("synapse.{key}")),
                format!(
                    "Synapse {version} has no `{}` setting (added in {}.{})",
                    key.replace("_file", "_path"),
                    since.0,
                    since.1
                ),
                "upgrade Synapse first, or put the secret in one of `extra_config_files`",
            );
        }
    }
    if mode == Mode::Migrate && !s.extra_config_files.is_empty() {
        c.warn(
            "synapse.extra_config_files.final",
            at("synapse.extra_config_files"),
            "these files are loaded in the final (delegated) configuration too: any setting in them that delegation forbids (oidc_providers, password_config.enabled, password_providers, ...) makes Synapse refuse to start at the final switch",
            "check them before the final switch; keep SSO and password settings in the spec, where masgen drops them from the final phase",
        );
    }
    for (i, f) in s.extra_config_files.iter().enumerate() {
        c.abs_path_str(&format!("synapse.extra_config_files[{i}]"), f);
    }

    let password_login = match &s.password_login {
        // A fresh install delegates from the start; an existing Synapse has
        // Synapse's own default, password login on.
        None if mode == Mode::Fresh => PasswordLogin::Disabled,
        None | Some(toml::Value::Boolean(true)) => PasswordLogin::Enabled,
        Some(toml::Value::Boolean(false)) => PasswordLogin::Disabled,
        Some(toml::Value::String(v)) if v == "only_for_reauth" => PasswordLogin::OnlyForReauth,
        Some(other) => {
            c.error(
                "synapse.password_login",
                at("synapse.password_login"),
                format!("`{other}` is not a password login setting"),
                "use `true`, `false` or `\"only_for_reauth\"`",
            );
            PasswordLogin::Enabled
        }
    };

    let oidc_providers: Vec<SynapseOidc> = s
        .oidc_providers
        .iter()
        .enumerate()
        .map(|(i, p)| check_synapse_oidc(c, &format!("synapse.oidc_providers[{i}]"), p, false))
        .collect();
    let legacy_oidc = s
        .oidc_config
        .as_ref()
        .map(|p| check_synapse_oidc(c, "synapse.oidc_config", p, true));
    let mut seen = BTreeSet::new();
    for (i, p) in oidc_providers.iter().chain(legacy_oidc.iter()).enumerate() {
        if !seen.insert(p.auth_provider.clone()) {
            let path = if i < oidc_providers.len() {
                format!("synapse.oidc_providers[{i}].idp_id")
            } else {
                "synapse.oidc_config".into()
            };
            c.error(
                "synapse.oidc.duplicate",
                at(&path),
                format!("two Synapse providers share the id `{}`", p.auth_provider),
                "give each provider its own `idp_id`",
            );
        }
    }
    for (i, sso) in s.legacy_sso.iter().enumerate() {
        if !["saml2", "cas", "jwt"].contains(&sso.as_str()) {
            c.error(
                "synapse.legacy_sso",
                at(&format!("synapse.legacy_sso[{i}]")),
                format!("unknown login mechanism `{sso}`"),
                "list `saml2`, `cas` or `jwt`",
            );
        }
    }

    let extra_settings = table_to_json(&s.extra_settings);
    let final_extra_settings = table_to_json(&s.final_extra_settings);
    check_synapse_escape_hatch(c, &extra_settings, &final_extra_settings, &version, mode);

    let synapse = Synapse {
        host: host.to_string(),
        version,
        public_hostname,
        listen_address,
        port,
        database,
        pepper_file: s.pepper_file.clone(),
        macaroon_secret_key_file: s.macaroon_secret_key_file.clone(),
        registration_shared_secret_file: s.registration_shared_secret_file.clone(),
        form_secret_file: s.form_secret_file.clone(),
        signing_key_path: s.signing_key_path.clone(),
        password_login,
        enable_registration: s.enable_registration.unwrap_or(false),
        allow_guest_access: s.allow_guest_access.unwrap_or(false),
        enable_3pid_changes: s.enable_3pid_changes.unwrap_or(false),
        login_via_existing_session: s.login_via_existing_session.unwrap_or(false),
        registration_captcha: s.registration_captcha.unwrap_or(false),
        user_consent: s.user_consent.unwrap_or(false),
        session_lifetime: s.session_lifetime.clone(),
        refresh_token_lifetime: s.refresh_token_lifetime.clone(),
        nonrefreshable_access_token_lifetime: s.nonrefreshable_access_token_lifetime.clone(),
        oidc_providers,
        legacy_oidc,
        legacy_sso: s.legacy_sso.clone(),
        password_providers: s
            .password_providers
            .iter()
            .map(|p| PasswordProvider {
                module: p.module.clone(),
                config: Value::Object(table_to_json(&p.config)),
            })
            .collect(),
        ldap: s.ldap.unwrap_or(false),
        modules: s
            .modules
            .iter()
            .map(|m| SynapseModule {
                module: m.module.clone(),
                config: Value::Object(table_to_json(&m.config)),
                password_auth: m.password_auth.unwrap_or(false),
            })
            .collect(),
        app_services: s
            .app_services
            .iter()
            .map(|a| AppService {
                name: a.name.clone(),
                registration_file: a.registration_file.clone(),
                encrypted: a.encrypted.unwrap_or(false),
                kind: a.kind.clone(),
            })
            .collect(),
        extra_settings,
        final_extra_settings,
        extra_config_files: s.extra_config_files.clone(),
    };
    for (i, a) in synapse.app_services.iter().enumerate() {
        c.abs_path_str(
            &format!("synapse.app_services[{i}].registration_file"),
            &a.registration_file,
        );
    }
    check_synapse_semantics(c, &synapse, mode);
    synapse
}

fn check_synapse_oidc(
    c: &mut Checker,
    path: &str,
    p: &raw::SynapseOidcSpec,
    legacy: bool,
) -> SynapseOidc {
    c.url(&format!("{path}.issuer"), &p.issuer);
    c.abs_path(&format!("{path}.client_secret_file"), &p.client_secret_file);
    let auth_provider = match (&p.idp_id, legacy) {
        (_, true) => {
            if p.idp_id.is_some() {
                c.error(
                    "synapse.oidc_config.idp_id",
                    at(&format!("{path}.idp_id")),
                    "the legacy `oidc_config` block always has the id `oidc`",
                    "remove `idp_id`, or move this provider to `oidc_providers`",
                );
            }
            "oidc".to_string()
        }
        (None, false) => "oidc".to_string(),
        (Some(id), false) if id == "oidc" => "oidc".to_string(),
        (Some(id), false) => {
            if id.is_empty()
                || !id
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "._-~".contains(ch))
            {
                c.error(
                    "synapse.oidc.idp_id",
                    at(&format!("{path}.idp_id")),
                    format!("`{id}` is not a valid Synapse idp_id"),
                    "use letters, digits and `._-~`",
                );
            }
            // Synapse prefixes every provider id except `oidc` (synapse/config/oidc.py).
            format!("oidc-{id}")
        }
    };
    SynapseOidc {
        idp_id: if legacy { None } else { p.idp_id.clone() },
        auth_provider,
        idp_name: p.idp_name.clone(),
        issuer: p.issuer.clone(),
        client_id: p.client_id.clone(),
        client_secret_file: p.client_secret_file.clone(),
        scopes: if p.scopes.is_empty() {
            vec!["openid".into(), "profile".into()]
        } else {
            p.scopes.clone()
        },
        discover: p.discover,
        localpart_template: p.localpart_template.clone(),
        display_name_template: p.display_name_template.clone(),
        email_template: p.email_template.clone(),
        allow_existing_users: p.allow_existing_users,
        has_users: p.has_users.unwrap_or(true),
    }
}

fn check_synapse_escape_hatch(
    c: &mut Checker,
    extra: &Map<String, Value>,
    final_extra: &Map<String, Value>,
    version: &SynapseVersion,
    mode: Mode,
) {
    for (name, settings) in [
        ("extra_settings", extra),
        ("final_extra_settings", final_extra),
    ] {
        let mut flat = Vec::new();
        flatten(&[], &Value::Object(settings.clone()), &mut flat);
        for (segments, value) in flat {
            let key_path = segments
                .iter()
                .fold(at(&format!("synapse.{name}")), |p, k| p.key(k));
            let path = segments.join(".");
            let is = |dotted: &str| is_path(&segments, dotted);
            if is("experimental_features.msc3861") && version.at_least(1, 157) {
                c.error(
                    "synapse.msc3861_removed",
                    key_path.clone(),
                    format!("Synapse {version} removed `experimental_features.msc3861`; it refuses to start with it"),
                    "remove it: masgen emits the stable `matrix_authentication_service` block for Synapse 1.136 and newer",
                );
            }
            if is("matrix_authentication_service")
                || is("experimental_features.msc3861") && !version.at_least(1, 157)
            {
                c.error(
                    "synapse.delegation_managed",
                    key_path.clone(),
                    "masgen writes the delegation block itself",
                    "remove it; MAS settings come from the `[mas]` section",
                );
            }
            if is("database") || is("server_name") || is("listeners") {
                c.error("synapse.managed_setting", key_path.clone(), format!("`{path}` is set by masgen from the spec"), "use the `[synapse]` keys (`database`, `listener`, `homeserver.server_name`) instead");
            }
            // In the final phase these make Synapse refuse to start.
            let explicit_final = name == "final_extra_settings" || mode == Mode::Fresh;
            if explicit_final {
                if let Some(conflict) = rules::DELEGATION_CONFLICTS
                    .iter()
                    .find(|r| is(r.setting) && r.triggered_by(&value))
                {
                    c.error(
                        "synapse.delegation_conflict",
                        key_path.clone(),
                        format!(
                            "`{path}` makes a delegating Synapse refuse to start: {}",
                            conflict.reason
                        ),
                        "remove it from the final configuration",
                    );
                }
            }
        }
    }
}

fn check_synapse_semantics(c: &mut Checker, s: &Synapse, mode: Mode) {
    // In a fresh install the only configuration is the delegated one, so
    // anything set here is explicit for the final phase.
    let explicit_final = [
        (
            "synapse.password_login",
            s.password_login != PasswordLogin::Disabled,
            "password_config.enabled",
        ),
        (
            "synapse.enable_registration",
            s.enable_registration,
            "enable_registration",
        ),
        ("synapse.user_consent", s.user_consent, "user_consent"),
        (
            "synapse.registration_captcha",
            s.registration_captcha,
            "enable_registration_captcha",
        ),
        (
            "synapse.login_via_existing_session",
            s.login_via_existing_session,
            "login_via_existing_session.enabled",
        ),
        (
            "synapse.enable_3pid_changes",
            s.enable_3pid_changes,
            "enable_3pid_changes",
        ),
        (
            "synapse.session_lifetime",
            s.session_lifetime.is_some(),
            "session_lifetime",
        ),
        (
            "synapse.refresh_token_lifetime",
            s.refresh_token_lifetime.is_some(),
            "refresh_token_lifetime",
        ),
        (
            "synapse.nonrefreshable_access_token_lifetime",
            s.nonrefreshable_access_token_lifetime.is_some(),
            "nonrefreshable_access_token_lifetime",
        ),
        (
            "synapse.oidc_providers",
            !s.oidc_providers.is_empty(),
            "oidc_providers",
        ),
        (
            "synapse.oidc_config",
            s.legacy_oidc.is_some(),
            "oidc_providers",
        ),
        (
            "synapse.password_providers",
            !s.password_providers.is_empty(),
            "password_providers",
        ),
        ("synapse.ldap", s.ldap, "password_providers"),
    ];
    if mode == Mode::Fresh {
        for (path, set, setting) in explicit_final {
            if set {
                let reason = rules::DELEGATION_CONFLICTS
                    .iter()
                    .find(|r| r.setting == setting)
                    .map(|r| r.reason)
                    .unwrap_or("");
                c.error(
                    "synapse.delegation_conflict",
                    at(path),
                    format!("a fresh install delegates to MAS from the start, and a delegating Synapse refuses `{setting}`: {reason}"),
                    "remove it (configure the MAS side instead), or use `mode = \"migrate\"` for an existing homeserver",
                );
            }
        }
        if !s.legacy_sso.is_empty() {
            c.error("synapse.delegation_conflict", at("synapse.legacy_sso"), "SAML2, CAS and JWT logins cannot be used with MAS", "remove them; connect the identity provider to MAS as an upstream OIDC provider (Dex can bridge SAML/LDAP)");
        }
        return;
    }

    // What stops working once Synapse delegates (the seed's "Expectations").
    if s.password_auth_in_use() {
        let path = if !s.password_providers.is_empty() {
            "synapse.password_providers"
        } else if s.ldap {
            "synapse.ldap"
        } else {
            "synapse.modules"
        };
        c.warn(
            "migrate.password_providers",
            at(path),
            "password providers (shared-secret-auth, rest-auth, LDAP) stop working once Synapse delegates to MAS; they are dropped from the final configuration",
            "bridges: switch to appservice double puppeting; LDAP users: put an OIDC bridge such as Dex in front of LDAP and add it as a MAS upstream provider. `masgen plan` asks for --acknowledge password-providers-stop-working",
        );
    }
    for (i, a) in s.app_services.iter().enumerate() {
        if a.encrypted {
            c.warn(
                "migrate.appservice",
                at(&format!("synapse.app_services[{i}].encrypted")),
                format!("appservice `{}` uses encryption, which under MAS needs MSC4190 device management in the bridge", a.name),
                "check that the bridge supports MSC4190 (Synapse 1.141 and newer need no opt-in), or keep end-to-bridge encryption off",
            );
        }
        if let Some(kind) = a.kind.as_deref() {
            if ["reminder-bot", "postmoogle"].contains(&kind) {
                c.warn(
                    "migrate.appservice_known_issue",
                    at(&format!("synapse.app_services[{i}].kind")),
                    format!("`{kind}` is known to misbehave with MAS (lost state, rescheduled reminders)"),
                    "test it after the switch, or keep it on a homeserver without MAS",
                );
            }
        }
    }

    // Migration: what syn2mas refuses (checks.rs), before anything is built.
    if s.database.engine == DbEngine::Sqlite {
        c.error(
            "migrate.sqlite",
            at("synapse.database.engine"),
            "syn2mas reads only PostgreSQL; this Synapse uses SQLite",
            "port the database to PostgreSQL first with `synapse_port_db`, switch Synapse to it, then migrate to MAS",
        );
    }
    let refusals = [
        ("synapse.allow_guest_access", s.allow_guest_access, "guest access is on; syn2mas refuses to migrate a homeserver that allows guests", "set `allow_guest_access = false` (and restart Synapse) before migrating"),
        ("synapse.enable_3pid_changes", s.enable_3pid_changes, "3PID changes are on; syn2mas refuses them because MAS manages email addresses", "set `enable_3pid_changes = false` before migrating"),
        ("synapse.login_via_existing_session", s.login_via_existing_session, "login via an existing session is on; syn2mas refuses it", "set `login_via_existing_session = false` before migrating"),
        ("synapse.password_login", s.password_login == PasswordLogin::OnlyForReauth, "`password_config.enabled: only_for_reauth` cannot be read by syn2mas (it expects a boolean)", "set `password_login = true` or `false` for the migration"),
    ];
    for (path, bad, message, help) in refusals {
        if bad {
            c.error("migrate.syn2mas_refuses", at(path), message, help);
        }
    }
    if s.enable_registration {
        c.warn("migrate.registration", at("synapse.enable_registration"), "registration is on: syn2mas warns (exit 11) and masgen drops it from the final configuration", "let MAS handle registration with `mas.account.password_registration_enabled`");
    }
    if s.user_consent {
        c.warn(
            "migrate.user_consent",
            at("synapse.user_consent"),
            "user consent does not carry over to MAS and is dropped from the final configuration",
            "point MAS `branding.tos_uri` at your terms instead",
        );
    }
    if s.registration_captcha {
        c.warn("migrate.captcha", at("synapse.registration_captcha"), "the registration CAPTCHA is not ported to MAS and is dropped from the final configuration", "configure MAS `captcha` in `mas.extra_settings` (its secret through a file)");
    }
    for (i, sso) in s.legacy_sso.iter().enumerate() {
        c.warn("migrate.legacy_sso", at(&format!("synapse.legacy_sso[{i}]")), format!("users who log in with {sso} cannot be carried over by syn2mas"), "bridge the identity provider to MAS through OIDC (e.g. Dex) and plan to relink those users");
    }
}

fn check_mas(c: &mut Checker, spec: &SpecFile, host: &str, mode: Mode, synapse: &Synapse) -> Mas {
    let m = &spec.mas;
    let server_name = &spec.homeserver.server_name;
    let hostname = m
        .hostname
        .clone()
        .unwrap_or_else(|| format!("matrix.{server_name}"));
    c.hostname("mas.hostname", &hostname);
    let mut path_prefix = m.path_prefix.clone().unwrap_or_else(|| "/auth".into());
    if !path_prefix.starts_with('/') {
        c.error(
            "mas.path_prefix",
            at("mas.path_prefix"),
            format!("path prefix `{path_prefix}` must start with `/`"),
            "write it like `/auth`, or `/` when MAS has its own hostname",
        );
    } else if path_prefix.len() > 1 {
        path_prefix = path_prefix.trim_end_matches('/').to_string();
        let reserved = ["/_matrix", "/_synapse", "/.well-known"];
        if reserved
            .iter()
            .any(|r| path_prefix == *r || path_prefix.starts_with(&format!("{r}/")))
        {
            c.error(
                "mas.path_prefix",
                at("mas.path_prefix"),
                format!("path prefix `{path_prefix}` collides with Synapse's routes"),
                "use a prefix such as `/auth`",
            );
        }
        if !path_prefix[1..].split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.~".contains(ch))
        }) {
            c.error(
                "mas.path_prefix",
                at("mas.path_prefix"),
                format!("path prefix `{path_prefix}` has characters that need escaping"),
                "use letters, digits and `-_.~` between slashes",
            );
        }
    }
    if path_prefix == "/" && hostname == synapse.public_hostname {
        c.error(
            "mas.path_prefix",
            at("mas.path_prefix"),
            format!("MAS at `/` would take over every path of `{hostname}`, which Synapse serves"),
            "give MAS its own hostname (e.g. `auth.example.com`) or a path prefix such as `/auth`",
        );
    }
    let listen_address = m
        .listener
        .address
        .clone()
        .unwrap_or_else(|| "127.0.0.1".into());
    let port = c.port("mas.listener.port", m.listener.port, 8080);
    let health_port = c.port("mas.listener.health_port", m.listener.health_port, 8081);
    if port == health_port {
        c.error(
            "value.port",
            at("mas.listener.health_port"),
            "MAS's health listener needs its own port",
            "pick a different `health_port`",
        );
    }
    let wildcard = |a: &str| a == "0.0.0.0" || a == "::" || a == "[::]";
    let same_address = synapse.listen_address == listen_address
        || wildcard(&synapse.listen_address)
        || wildcard(&listen_address);
    if same_address && synapse.port == port {
        c.error(
            "value.port",
            at("mas.listener.port"),
            format!("MAS and Synapse would both listen on port {port}"),
            "pick a different port for one of them",
        );
    }
    let database = check_database(
        c,
        "mas.database",
        &m.database,
        "matrix-authentication-service",
        "matrix-authentication-service",
        true,
    );
    if database.engine != DbEngine::Postgresql {
        c.error(
            "mas.database.engine",
            at("mas.database.engine"),
            "MAS supports only PostgreSQL",
            "remove `engine` or set it to `postgresql`",
        );
    }

    let mut required = |path: &str, v: &Option<String>, what: &str| -> String {
        match v {
            Some(v) => {
                c.abs_path_str(path, v);
                v.clone()
            }
            None => {
                c.error(
                    "mas.secret_missing",
                    at(path.rsplit_once('.').map(|x| x.0).unwrap_or(path)),
                    format!("`{path}` is missing: {what}"),
                    format!(
                        "create a root-only file and set `{}`",
                        path.rsplit('.').next().unwrap_or(path)
                    ),
                );
                String::new()
            }
        }
    };
    let encryption_file = required(
        "mas.encryption_file",
        &m.encryption_file,
        "MAS needs a 32-byte hex encryption key that never changes",
    );
    let shared_secret_file = required(
        "mas.shared_secret_file",
        &m.shared_secret_file,
        "MAS and Synapse authenticate each other with a shared secret",
    );

    let mut kids = BTreeSet::new();
    for (i, k) in m.signing_keys.iter().enumerate() {
        c.abs_path_str(&format!("mas.signing_keys[{i}].key_file"), &k.key_file);
        c.abs_path(
            &format!("mas.signing_keys[{i}].password_file"),
            &k.password_file,
        );
        if !kids.insert(k.kid.clone()) {
            c.error(
                "mas.signing_keys.kid",
                at(&format!("mas.signing_keys[{i}].kid")),
                format!("key id `{}` is used twice", k.kid),
                "give every key its own `kid`",
            );
        }
    }
    c.abs_path("mas.keys_dir", &m.keys_dir);
    if m.signing_keys.is_empty() && m.keys_dir.is_none() {
        c.error("mas.signing_keys", at("mas"), "MAS needs at least one signing key (an RSA key at least)", "add `[[mas.signing_keys]]` with `kid` and `key_file` (e.g. from `openssl genrsa 2048`), or `keys_dir`");
    }
    if !m.signing_keys.is_empty() && m.keys_dir.is_some() {
        c.error(
            "mas.signing_keys",
            at("mas.keys_dir"),
            "`keys_dir` and `signing_keys` exclude each other",
            "keep one of them",
        );
    }

    let minimum_complexity = match m.passwords.minimum_complexity {
        None => 3,
        Some(v) if (0..=4).contains(&v) => v as u8,
        Some(v) => {
            c.error(
                "mas.passwords.minimum_complexity",
                at("mas.passwords.minimum_complexity"),
                format!("complexity {v} is out of range"),
                "use a zxcvbn score from 0 to 4",
            );
            3
        }
    };
    if m.passwords.algorithm.is_some() {
        c.error("spec.unknown_key", at("mas.passwords.algorithm"), "password schemes are chosen by masgen (bcrypt + pepper for migrated hashes, then argon2id)", "remove `algorithm`");
    }
    let passwords_enabled = m.passwords.enabled.unwrap_or(true);
    if mode == Mode::Migrate
        && !passwords_enabled
        && synapse.password_login == PasswordLogin::Enabled
    {
        c.warn("mas.passwords.disabled", at("mas.passwords.enabled"), "Synapse users log in with passwords today, but MAS password login is off: they will need an upstream provider", "set `mas.passwords.enabled = true` to keep password logins working");
    }

    let email = match &m.email {
        None => None,
        Some(e) => check_email(c, e),
    };
    if email.is_none() {
        c.warn(
            "mas.email.none",
            at("mas"),
            "no email is configured: MAS cannot verify addresses or recover passwords",
            "add `[mas.email]` with `transport = \"smtp\"`, or accept that password recovery stays off",
        );
    }

    const ACCOUNT_KEYS: &[&str] = &[
        "email_change_allowed",
        "displayname_change_allowed",
        "password_registration_enabled",
        "password_registration_email_required",
        "password_change_allowed",
        "password_recovery_enabled",
        "account_deactivation_allowed",
        "login_with_email_allowed",
        "password_registration_token_required",
    ];
    for key in m.account.keys() {
        if !ACCOUNT_KEYS.contains(&key.as_str()) {
            c.error(
                "spec.unknown_key",
                at("mas.account").key(key),
                format!("unknown MAS account option `{key}`"),
                format!("known options: {}", ACCOUNT_KEYS.join(", ")),
            );
        }
    }
    if m.account.get("password_recovery_enabled") == Some(&true) && email.is_none() {
        c.error(
            "mas.account.recovery_without_email",
            at("mas.account.password_recovery_enabled"),
            "password recovery needs email",
            "configure `[mas.email]` or turn recovery off",
        );
    }

    let trusted_proxies = m
        .trusted_proxies
        .clone()
        .unwrap_or_else(|| vec!["127.0.0.1/8".into(), "::1/128".into()]);

    let providers = check_upstream(c, m, mode, synapse);
    let extra_settings = table_to_json(&m.extra_settings);
    for managed in [
        "http",
        "database",
        "matrix",
        "secrets",
        "passwords",
        "upstream_oauth2",
        "email",
    ] {
        if extra_settings.contains_key(managed) {
            c.error(
                "mas.managed_setting",
                at(&format!("mas.extra_settings.{managed}")),
                format!("MAS `{managed}` is written by masgen from the spec"),
                "use the `[mas]` keys for it",
            );
        }
    }

    Mas {
        host: host.to_string(),
        hostname,
        path_prefix,
        listen_address,
        port,
        health_port,
        database,
        encryption_file,
        shared_secret_file,
        signing_keys: m
            .signing_keys
            .iter()
            .map(|k| SigningKey {
                kid: k.kid.clone(),
                key_file: k.key_file.clone(),
                password_file: k.password_file.clone(),
            })
            .collect(),
        keys_dir: m.keys_dir.clone(),
        passwords_enabled,
        minimum_complexity,
        email,
        account: m.account.clone(),
        trusted_proxies,
        admin_users: m.admin_users.clone(),
        upstream_providers: providers,
        extra_settings,
    }
}

fn check_email(c: &mut Checker, e: &raw::EmailSpec) -> Option<Email> {
    let transport = match e.transport.as_str() {
        "none" => return None,
        "smtp" => {
            let mode = e.mode.clone().unwrap_or_else(|| "starttls".into());
            if !["plain", "tls", "starttls"].contains(&mode.as_str()) {
                c.error(
                    "mas.email.mode",
                    at("mas.email.mode"),
                    format!("unknown SMTP mode `{mode}`"),
                    "use `plain`, `tls` or `starttls`",
                );
            }
            let hostname = e.hostname.clone().unwrap_or_default();
            if hostname.is_empty() {
                c.error(
                    "mas.email.hostname",
                    at("mas.email"),
                    "SMTP needs `hostname`",
                    "set the SMTP relay host name",
                );
            } else {
                c.hostname("mas.email.hostname", &hostname);
            }
            let port = e.port.map(|p| c.port("mas.email.port", Some(p), 587));
            c.abs_path("mas.email.password_file", &e.password_file);
            if e.username.is_some() != e.password_file.is_some() {
                c.error(
                    "mas.email.credentials",
                    at("mas.email"),
                    "SMTP `username` and `password_file` go together",
                    "set both or neither",
                );
            }
            EmailTransport::Smtp {
                mode,
                hostname,
                port,
                username: e.username.clone(),
                password_file: e.password_file.clone(),
            }
        }
        "sendmail" => EmailTransport::Sendmail {
            command: e.command.clone(),
        },
        other => {
            c.error(
                "mas.email.transport",
                at("mas.email.transport"),
                format!("unknown email transport `{other}`"),
                "use `smtp`, `sendmail` or `none`",
            );
            return None;
        }
    };
    let from = e.from.clone().unwrap_or_default();
    if from.is_empty() {
        c.error(
            "mas.email.from",
            at("mas.email"),
            "email needs a `from` address",
            "set e.g. `from = \"Matrix <matrix@example.com>\"`",
        );
    }
    Some(Email {
        transport,
        from,
        reply_to: e.reply_to.clone(),
    })
}

fn check_upstream(
    c: &mut Checker,
    m: &raw::MasSpec,
    mode: Mode,
    synapse: &Synapse,
) -> Vec<UpstreamProvider> {
    let declared: Vec<&SynapseOidc> = synapse
        .oidc_providers
        .iter()
        .chain(synapse.legacy_oidc.iter())
        .collect();
    let mut ids = BTreeSet::new();
    let mut mapped: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, p) in m.upstream_providers.iter().enumerate() {
        let path = format!("mas.upstream_providers[{i}]");
        if !is_ulid(&p.id) {
            c.error(
                "mas.provider.id",
                at(&format!("{path}.id")),
                format!("`{}` is not a ULID", p.id),
                "generate one with `masgen ulid` (26 upper-case Crockford base32 characters) and never change it: MAS links users to it",
            );
        } else if !ids.insert(p.id.clone()) {
            c.error(
                "mas.provider.id_duplicate",
                at(&format!("{path}.id")),
                format!("provider id `{}` is used twice", p.id),
                "every provider needs its own ULID",
            );
        }
        if let Some(idp) = &p.synapse_idp_id {
            if !declared.iter().any(|d| &d.auth_provider == idp) {
                let known: Vec<_> = declared
                    .iter()
                    .map(|d| format!("`{}`", d.auth_provider))
                    .collect();
                c.error(
                    "mas.provider.synapse_idp_id",
                    at(&format!("{path}.synapse_idp_id")),
                    format!("`{idp}` names no Synapse provider in this spec"),
                    if known.is_empty() {
                        "declare the Synapse provider under `[[synapse.oidc_providers]]` (its `idp_id` gets the `oidc-` prefix), or remove `synapse_idp_id`".to_string()
                    } else {
                        format!("use `oidc` for `oidc_config` or `oidc-<idp_id>`; declared: {}", known.join(", "))
                    },
                );
            } else {
                mapped.entry(idp.clone()).or_default().push(i);
            }
        }
        if let Some(issuer) = &p.issuer {
            c.url(&format!("{path}.issuer"), issuer);
        }
        for (key, v) in [
            ("authorization_endpoint", &p.authorization_endpoint),
            ("token_endpoint", &p.token_endpoint),
            ("userinfo_endpoint", &p.userinfo_endpoint),
            ("jwks_uri", &p.jwks_uri),
        ] {
            if let Some(v) = v {
                c.url(&format!("{path}.{key}"), v);
            }
        }
        let discovery_mode = p.discovery_mode.clone();
        if let Some(d) = &discovery_mode {
            if !["oidc", "insecure", "disabled"].contains(&d.as_str()) {
                c.error(
                    "mas.provider.discovery_mode",
                    at(&format!("{path}.discovery_mode")),
                    format!("unknown discovery mode `{d}`"),
                    "use `oidc`, `insecure` or `disabled`",
                );
            }
        }
        if p.issuer.is_none() && discovery_mode.as_deref() != Some("disabled") {
            c.error(
                "mas.provider.issuer",
                at(&path),
                "a provider with discovery needs `issuer`",
                "set `issuer`, or `discovery_mode = \"disabled\"` with explicit endpoints",
            );
        }
        if discovery_mode.as_deref() == Some("disabled") {
            for (key, v) in [
                ("authorization_endpoint", &p.authorization_endpoint),
                ("token_endpoint", &p.token_endpoint),
                ("jwks_uri", &p.jwks_uri),
            ] {
                if v.is_none() {
                    c.error(
                        "mas.provider.endpoints",
                        at(&path),
                        format!("with discovery disabled, `{key}` is required"),
                        format!("set `{key}`"),
                    );
                }
            }
        }
        const AUTH_METHODS: &[&str] = &[
            "none",
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
            "private_key_jwt",
            "sign_in_with_apple",
        ];
        if !AUTH_METHODS.contains(&p.token_endpoint_auth_method.as_str()) {
            c.error(
                "mas.provider.auth_method",
                at(&format!("{path}.token_endpoint_auth_method")),
                format!(
                    "unknown token endpoint auth method `{}`",
                    p.token_endpoint_auth_method
                ),
                format!("use one of {}", AUTH_METHODS.join(", ")),
            );
        }
        let needs_secret = matches!(
            p.token_endpoint_auth_method.as_str(),
            "client_secret_basic" | "client_secret_post" | "client_secret_jwt"
        );
        if needs_secret && p.client_secret_file.is_none() {
            c.error(
                "mas.provider.client_secret",
                at(&path),
                format!("`{}` needs a client secret", p.token_endpoint_auth_method),
                "set `client_secret_file` to a root-only file holding the secret",
            );
        }
        c.abs_path(&format!("{path}.client_secret_file"), &p.client_secret_file);
        if let Some(pkce) = &p.pkce_method {
            if !["auto", "always", "never"].contains(&pkce.as_str()) {
                c.error(
                    "mas.provider.pkce_method",
                    at(&format!("{path}.pkce_method")),
                    format!("unknown PKCE method `{pkce}`"),
                    "use `auto`, `always` or `never`",
                );
            }
        }
        let claims_imports = p
            .claims_imports
            .as_ref()
            .map(|ci| check_claims(c, &format!("{path}.claims_imports"), ci));
        out.push(UpstreamProvider {
            id: p.id.clone(),
            synapse_idp_id: p.synapse_idp_id.clone(),
            issuer: p.issuer.clone(),
            human_name: p.human_name.clone(),
            brand_name: p.brand_name.clone(),
            client_id: p.client_id.clone(),
            client_secret_file: p.client_secret_file.clone(),
            token_endpoint_auth_method: p.token_endpoint_auth_method.clone(),
            token_endpoint_auth_signing_alg: p.token_endpoint_auth_signing_alg.clone(),
            scope: p
                .scope
                .clone()
                .unwrap_or_else(|| "openid profile email".into()),
            discovery_mode,
            pkce_method: p.pkce_method.clone(),
            authorization_endpoint: p.authorization_endpoint.clone(),
            token_endpoint: p.token_endpoint.clone(),
            userinfo_endpoint: p.userinfo_endpoint.clone(),
            jwks_uri: p.jwks_uri.clone(),
            fetch_userinfo: p.fetch_userinfo,
            claims_imports,
        });
    }
    for (idp, users) in &mapped {
        if users.len() > 1 {
            c.error(
                "mas.provider.synapse_idp_id_twice",
                at(&format!(
                    "mas.upstream_providers[{}].synapse_idp_id",
                    users[1]
                )),
                format!("Synapse provider `{idp}` is mapped by more than one MAS provider"),
                "map each Synapse provider to exactly one MAS provider",
            );
        }
    }
    if mode == Mode::Migrate {
        for (i, d) in synapse.oidc_providers.iter().enumerate() {
            if d.has_users && !mapped.contains_key(&d.auth_provider) {
                c.error(
                    "migrate.provider_unmapped",
                    at(&format!("synapse.oidc_providers[{i}]")),
                    format!("Synapse provider `{}` has users but no MAS upstream provider maps it; syn2mas would refuse to migrate", d.auth_provider),
                    format!("add a `[[mas.upstream_providers]]` with `synapse_idp_id = \"{}\"`, or set `has_users = false` if nobody ever logged in with it", d.auth_provider),
                );
            }
        }
        if let Some(d) = &synapse.legacy_oidc {
            if d.has_users && !mapped.contains_key("oidc") {
                c.error("migrate.provider_unmapped", at("synapse.oidc_config"), "the legacy `oidc_config` provider has users but no MAS provider with `synapse_idp_id = \"oidc\"`", "add a `[[mas.upstream_providers]]` with `synapse_idp_id = \"oidc\"`");
            }
        }
    }
    out
}

fn check_claims(c: &mut Checker, path: &str, ci: &raw::ClaimsImportsSpec) -> Value {
    let mut out = Map::new();
    for (name, claim) in [
        ("subject", &ci.subject),
        ("localpart", &ci.localpart),
        ("displayname", &ci.displayname),
        ("email", &ci.email),
    ] {
        let Some(claim) = claim else { continue };
        let mut obj = Map::new();
        if let Some(action) = &claim.action {
            if name == "subject" {
                c.error(
                    "mas.claims.action",
                    at(&format!("{path}.{name}.action")),
                    "the subject claim has no `action`",
                    "remove it; only `template` applies",
                );
            } else if !["ignore", "suggest", "force", "require"].contains(&action.as_str()) {
                c.error(
                    "mas.claims.action",
                    at(&format!("{path}.{name}.action")),
                    format!("unknown claim action `{action}`"),
                    "use `ignore`, `suggest`, `force` or `require`",
                );
            }
            obj.insert("action".into(), Value::String(action.clone()));
        }
        if let Some(t) = &claim.template {
            obj.insert("template".into(), Value::String(t.clone()));
        }
        if let Some(v) = &claim.set_email_verification {
            if name != "email" {
                c.error(
                    "mas.claims.set_email_verification",
                    at(&format!("{path}.{name}.set_email_verification")),
                    "`set_email_verification` applies to the email claim only",
                    "move it to `claims_imports.email`",
                );
            } else if !["import", "always", "never"].contains(&v.as_str()) {
                c.error(
                    "mas.claims.set_email_verification",
                    at(&format!("{path}.{name}.set_email_verification")),
                    format!("unknown value `{v}`"),
                    "use `import`, `always` or `never`",
                );
            }
            obj.insert("set_email_verification".into(), Value::String(v.clone()));
        }
        out.insert(name.into(), Value::Object(obj));
    }
    Value::Object(out)
}

fn check_proxy(c: &mut Checker, p: &raw::ProxySpec) -> Proxy {
    if let Some(kind) = &p.kind {
        if kind != "nginx" {
            c.error(
                "proxy.kind",
                at("proxy.kind"),
                format!("reverse proxy `{kind}` is not supported"),
                "use `nginx`",
            );
        }
    }
    let tls = match p.tls.as_deref() {
        None | Some("acme") => Tls::Acme {
            email: p.acme_email.clone(),
        },
        Some("files") => {
            let cert = p.certificate_file.clone().unwrap_or_default();
            let key = p.certificate_key_file.clone().unwrap_or_default();
            if cert.is_empty() || key.is_empty() {
                c.error(
                    "proxy.tls.files",
                    at("proxy.tls"),
                    "`tls = \"files\"` needs `certificate_file` and `certificate_key_file`",
                    "set both paths",
                );
            } else {
                c.abs_path_str("proxy.certificate_file", &cert);
                c.abs_path_str("proxy.certificate_key_file", &key);
            }
            Tls::Files {
                certificate: cert,
                key,
            }
        }
        Some("none") => Tls::None,
        Some(other) => {
            c.error(
                "proxy.tls",
                at("proxy.tls"),
                format!("unknown TLS choice `{other}`"),
                "use `acme`, `files` or `none`",
            );
            Tls::None
        }
    };
    Proxy {
        tls,
        well_known: p.well_known.unwrap_or(true),
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
