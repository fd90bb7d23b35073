//! `[mas]`: secrets, signing keys, listeners, email.

use super::proxy::public_scheme;
use super::upstream::check_upstream;
use super::*;

pub(super) fn check_mas(
    c: &mut Checker,
    spec: &SpecFile,
    place: &placement::Placement,
    mode: Mode,
    synapse: &Synapse,
) -> Mas {
    let host = place.mas.as_str();
    let m = &spec.mas;
    let server_name = &spec.homeserver.server_name;
    let (hostname, path_prefix) = check_mas_location(c, m, server_name, synapse);
    let (listen_address, port, health_port) = check_mas_listener(c, m, synapse);
    let database = check_database(
        c,
        "mas.database",
        &m.database,
        "matrix-authentication-service",
        "matrix-authentication-service",
        true,
        (place, host),
    );
    if database.engine != DbEngine::Postgresql {
        c.error(
            "mas.database.engine",
            at("mas.database.engine"),
            "MAS supports only PostgreSQL",
            "remove `engine` or set it to `postgresql`",
        );
    }

    let (encryption_file, shared_secret_file) = check_mas_secrets(c, m);
    let (generate_encryption, generated) = super::generate::check_generated(c, m);

    let (passwords_enabled, minimum_complexity) = check_mas_passwords(c, m, mode, synapse);

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

    check_mas_account(c, m, email.is_some());

    let trusted_proxies = m
        .trusted_proxies
        .clone()
        .unwrap_or_else(|| vec!["127.0.0.1/8".into(), "::1/128".into()]);

    let providers = check_upstream(c, m, mode, synapse);
    let extra_settings = check_mas_extra(c, m);

    Mas {
        host: host.to_string(),
        hostname,
        public_scheme: public_scheme(&spec.proxy),
        path_prefix,
        listen_address,
        port,
        health_port,
        database,
        encryption_file,
        generate_encryption,
        shared_secret_file,
        signing_keys: m
            .signing_keys
            .iter()
            .zip(generated)
            .map(|(k, generate)| SigningKey {
                kid: k.kid.clone(),
                key_file: k.key_file.clone(),
                password_file: k.password_file.clone(),
                generate,
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

/// `mas.hostname` and `mas.path_prefix`: where clients reach MAS.
fn check_mas_location(
    c: &mut Checker,
    m: &raw::MasSpec,
    server_name: &str,
    synapse: &Synapse,
) -> (String, String) {
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
    (hostname, path_prefix)
}

/// `[mas.listener]`: MAS's own ports, apart from Synapse's.
fn check_mas_listener(c: &mut Checker, m: &raw::MasSpec, synapse: &Synapse) -> (String, u16, u16) {
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
    (listen_address, port, health_port)
}

/// MAS's secret files and signing keys.
fn check_mas_secrets(c: &mut Checker, m: &raw::MasSpec) -> (String, String) {
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

    (encryption_file, shared_secret_file)
}

/// `[mas.passwords]`.
fn check_mas_passwords(
    c: &mut Checker,
    m: &raw::MasSpec,
    mode: Mode,
    synapse: &Synapse,
) -> (bool, u8) {
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

    (passwords_enabled, minimum_complexity)
}

/// `[mas.account]`: MAS's own account options.
fn check_mas_account(c: &mut Checker, m: &raw::MasSpec, has_email: bool) {
    for key in m.account.keys() {
        if !raw::MAS_ACCOUNT_KEYS.contains(&key.as_str()) {
            c.error(
                "spec.unknown_key",
                at("mas.account").key(key),
                format!("unknown MAS account option `{key}`"),
                format!("known options: {}", raw::MAS_ACCOUNT_KEYS.join(", ")),
            );
        }
    }
    if m.account.get("password_recovery_enabled") == Some(&true) && !has_email {
        c.error(
            "mas.account.recovery_without_email",
            at("mas.account.password_recovery_enabled"),
            "password recovery needs email",
            "configure `[mas.email]` or turn recovery off",
        );
    }
}

/// `mas.extra_settings`: anything but the sections masgen writes.
fn check_mas_extra(c: &mut Checker, m: &raw::MasSpec) -> Map<String, Value> {
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

    extra_settings
}

pub(super) fn check_email(c: &mut Checker, e: &raw::EmailSpec) -> Option<Email> {
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
