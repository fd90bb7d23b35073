//! Which program reads a secret from which key, and from which file key.
//! One table per consumer, so that the literal-secret help names a key the
//! consumer really reads, and a `*_file` / `*_path` key that the consumer
//! would ignore is refused instead of silently dropping the secret.
//!
//! Sources: Synapse 1.163.2 (`synapse/config/*.py`), MAS v1.22.0
//! (`crates/config/src/sections/*.rs`, and `docs/config.schema.json` at
//! commit 682b8d2), masgen's own spec (`src/spec/raw.rs`).

use crate::diag::{Key, KeyPath};

/// Who reads the setting a spec path ends up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// masgen's own typed spec keys.
    Masgen,
    /// homeserver.yaml, through `synapse.extra_settings` / `final_extra_settings`.
    Synapse,
    /// MAS's config, through `mas.extra_settings`.
    Mas,
    /// A Synapse module's own `config` block: only the module knows its keys.
    Module,
}

/// A secret setting and the key that names a file holding it instead.
#[derive(Debug, Clone, Copy)]
pub struct FileForm {
    pub consumer: Consumer,
    /// The table the secret sits in, relative to the consumer's config:
    /// dotted names, `[]` for any element of a list; `""` is the top level.
    pub table: &'static str,
    pub secret: &'static str,
    /// The key naming a file with the secret; `None`: the consumer reads the
    /// secret only inline.
    pub file: Option<&'static str>,
    /// Where the consumer reads it.
    pub source: &'static str,
}

const fn form(
    consumer: Consumer,
    table: &'static str,
    secret: &'static str,
    file: Option<&'static str>,
    source: &'static str,
) -> FileForm {
    FileForm {
        consumer,
        table,
        secret,
        file,
        source,
    }
}

use Consumer::{Mas, Masgen, Synapse};

#[rustfmt::skip]
pub const FILE_FORMS: &[FileForm] = &[
    // Synapse 1.163.2: each `*_path` is read with `read_file` next to its
    // inline key, and both at once is a ConfigError.
    form(Synapse, "", "macaroon_secret_key", Some("macaroon_secret_key_path"), "synapse/config/key.py"),
    form(Synapse, "", "form_secret", Some("form_secret_path"), "synapse/config/key.py"),
    form(Synapse, "", "registration_shared_secret", Some("registration_shared_secret_path"), "synapse/config/registration.py"),
    form(Synapse, "", "worker_replication_secret", Some("worker_replication_secret_path"), "synapse/config/workers.py"),
    form(Synapse, "", "turn_shared_secret", Some("turn_shared_secret_path"), "synapse/config/voip.py"),
    form(Synapse, "", "recaptcha_private_key", Some("recaptcha_private_key_path"), "synapse/config/captcha.py"),
    form(Synapse, "oidc_providers[]", "client_secret", Some("client_secret_path"), "synapse/config/oidc.py (_parse_oidc_config_dict)"),
    form(Synapse, "oidc_config", "client_secret", Some("client_secret_path"), "synapse/config/oidc.py (_parse_oidc_config_dict)"),
    form(Synapse, "redis", "password", Some("password_path"), "synapse/config/redis.py"),
    form(Synapse, "matrix_authentication_service", "secret", Some("secret_path"), "synapse/config/mas.py"),
    // Synapse before 1.157 (masgen's MSC3861 form; 1.135.2 `synapse/config/experimental.py`).
    form(Synapse, "experimental_features.msc3861", "client_secret", Some("client_secret_path"), "synapse/config/experimental.py (1.135.2)"),
    form(Synapse, "experimental_features.msc3861", "admin_token", Some("admin_token_path"), "synapse/config/experimental.py (1.135.2)"),
    // Synapse hands the legacy `ldap_config` block to matrix-synapse-ldap3 as
    // its config (synapse/config/password_auth_providers.py), which reads
    // `bind_password_file` (ldap_auth_provider.py, 0.4.0, `parse_config`).
    form(Synapse, "ldap_config", "bind_password", Some("bind_password_file"), "ldap_auth_provider.py (matrix-synapse-ldap3 0.4.0)"),
    // Read only inline: `email_config.get("smtp_pass")` and the like.
    form(Synapse, "email", "smtp_pass", None, "synapse/config/emailconfig.py"),
    form(Synapse, "", "turn_password", None, "synapse/config/voip.py"),
    form(Synapse, "password_config", "pepper", None, "synapse/config/auth.py"),
    form(Synapse, "jwt_config", "secret", None, "synapse/config/jwt.py"),
    form(Synapse, "database.args", "password", None, "synapse/config/database.py (args go to the driver)"),
    // MAS v1.22.0: `*_file` next to the inline key (one of the two).
    form(Mas, "secrets", "encryption", Some("encryption_file"), "crates/config/src/sections/secrets.rs"),
    form(Mas, "secrets.keys[]", "key", Some("key_file"), "crates/config/src/sections/secrets.rs"),
    form(Mas, "secrets.keys[]", "password", Some("password_file"), "crates/config/src/sections/secrets.rs"),
    form(Mas, "matrix", "secret", Some("secret_file"), "crates/config/src/sections/matrix.rs"),
    form(Mas, "passwords.schemes[]", "secret", Some("secret_file"), "crates/config/src/sections/passwords.rs"),
    form(Mas, "email", "password", Some("password_file"), "crates/config/src/sections/email.rs"),
    form(Mas, "database", "password", Some("password_file"), "crates/config/src/sections/database.rs"),
    form(Mas, "clients[]", "client_secret", Some("client_secret_file"), "crates/config/src/sections/clients.rs"),
    form(Mas, "upstream_oauth2.providers[]", "client_secret", Some("client_secret_file"), "crates/config/src/sections/upstream_oauth2.rs"),
    form(Mas, "upstream_oauth2.providers[].sign_in_with_apple", "private_key", Some("private_key_file"), "crates/config/src/sections/upstream_oauth2.rs"),
    form(Mas, "http.listeners[].tls", "key", Some("key_file"), "crates/config/src/sections/http.rs"),
    form(Mas, "http.listeners[].tls", "password", Some("password_file"), "crates/config/src/sections/http.rs"),
    form(Mas, "captcha", "secret_key", None, "crates/config/src/sections/captcha.rs"),
    // masgen's spec (src/spec/raw.rs); a test checks that each file key parses.
    form(Masgen, "synapse", "pepper", Some("pepper_file"), "src/spec/raw.rs"),
    form(Masgen, "synapse", "macaroon_secret_key", Some("macaroon_secret_key_file"), "src/spec/raw.rs"),
    form(Masgen, "synapse", "registration_shared_secret", Some("registration_shared_secret_file"), "src/spec/raw.rs"),
    form(Masgen, "synapse", "form_secret", Some("form_secret_file"), "src/spec/raw.rs"),
    form(Masgen, "synapse.database", "password", Some("password_file"), "src/spec/raw.rs"),
    form(Masgen, "synapse.oidc_providers[]", "client_secret", Some("client_secret_file"), "src/spec/raw.rs"),
    form(Masgen, "synapse.oidc_config", "client_secret", Some("client_secret_file"), "src/spec/raw.rs"),
    form(Masgen, "mas", "encryption", Some("encryption_file"), "src/spec/raw.rs"),
    form(Masgen, "mas", "shared_secret", Some("shared_secret_file"), "src/spec/raw.rs"),
    form(Masgen, "mas.database", "password", Some("password_file"), "src/spec/raw.rs"),
    form(Masgen, "mas.signing_keys[]", "key", Some("key_file"), "src/spec/raw.rs"),
    form(Masgen, "mas.signing_keys[]", "password", Some("password_file"), "src/spec/raw.rs"),
    form(Masgen, "mas.email", "password", Some("password_file"), "src/spec/raw.rs"),
    form(Masgen, "mas.upstream_providers[]", "client_secret", Some("client_secret_file"), "src/spec/raw.rs"),
    form(Masgen, "users[]", "password", Some("password_file"), "src/spec/raw.rs"),
];

/// Every key ending in `_path`/`_file` that Synapse's config code reads, in
/// any table: the quoted names in Synapse 1.163.2 `synapse/config/*.py`,
/// plus `admin_token_path` (MSC3861, 1.135.2). `tests/secret_forms.rs`
/// checks each against the installed sources.
#[rustfmt::skip]
pub const SYNAPSE_FILE_KEYS: &[&str] = &[
    "account_renewed_html_path", "admin_token_path", "backup_media_store_path", "ca_file", "ca_path",
    "certificate_file", "client_secret_path", "config_path", "database_path", "form_secret_path",
    "invalid_token_html_path", "key_file", "key_server_signing_keys_path", "log_file",
    "macaroon_secret_key_path", "media_store_path", "password_path", "pid_file", "private_key_file",
    "recaptcha_private_key_path", "recaptcha_public_key_path", "registration_shared_secret_path",
    "secret_path", "signing_key_path", "ssh_priv_key_path", "ssh_pub_key_path",
    "tls_certificate_path", "tls_private_key_path", "turn_shared_secret_path", "worker_pid_file",
    "worker_replication_secret_path",
];

/// Every key ending in `_path`/`_file` in MAS v1.22.0's config schema
/// (`docs/config.schema.json`); `tests/secret_forms.rs` compares.
#[rustfmt::skip]
pub const MAS_FILE_KEYS: &[&str] = &[
    "certificate_file", "client_secret_file", "encryption_file", "key_file", "password_file",
    "private_key_file", "secret_file", "ssl_ca_file", "ssl_certificate_file", "ssl_key_file",
    "translations_path",
];

/// Where a spec value ends up: its consumer, and the path of the table
/// holding it in that consumer's config (see [`FileForm::table`]).
pub fn locate(path: &KeyPath) -> (Consumer, String) {
    let names = |keys: &[Key]| -> Vec<String> {
        keys.iter()
            .map(|k| match k {
                Key::Name(n) => n.clone(),
                Key::Index(_) => "[]".into(),
            })
            .collect()
    };
    let all = names(&path.0);
    let parent = &all[..all.len().saturating_sub(1)];
    let (consumer, table) = match parent {
        [s, hatch, rest @ ..]
            if s == "synapse" && (hatch == "extra_settings" || hatch == "final_extra_settings") =>
        {
            (Synapse, rest)
        }
        [m, hatch, rest @ ..] if m == "mas" && hatch == "extra_settings" => (Mas, rest),
        _ => (Masgen, parent),
    };
    // A module's `config` (typed `password_providers`/`modules`, or the same
    // lists in homeserver.yaml) belongs to the module.
    const MODULE_LISTS: &[&str] = &["password_providers", "modules", "media_storage_providers"];
    let in_module = table
        .windows(3)
        .any(|w| MODULE_LISTS.contains(&w[0].as_str()) && w[1] == "[]" && w[2] == "config");
    if in_module && consumer != Mas {
        return (Consumer::Module, String::new());
    }
    let mut out = String::new();
    for part in table {
        if part == "[]" {
            out.push_str("[]");
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    (consumer, out)
}

/// The table entry for a secret key, if the consumer has one.
pub fn form_for(consumer: Consumer, table: &str, secret: &str) -> Option<&'static FileForm> {
    FILE_FORMS
        .iter()
        .find(|f| f.consumer == consumer && f.table == table && f.secret == secret)
}

/// The entry whose file key this is, if any.
pub fn form_of_file_key(consumer: Consumer, table: &str, file: &str) -> Option<&'static FileForm> {
    FILE_FORMS
        .iter()
        .find(|f| f.consumer == consumer && f.table == table && f.file == Some(file))
}

fn dotted(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_string()
    } else {
        format!("{table}.{key}")
    }
}

/// What to write instead of a literal secret `key` at `path`: a file key
/// its consumer really reads, or where else the secret can go.
pub fn literal_secret_help(path: &KeyPath, key: &str) -> String {
    let (consumer, table) = locate(path);
    let form = form_for(consumer, &table, key);
    match (consumer, form.and_then(|f| f.file.map(|file| (f, file)))) {
        (Masgen, Some((_, file))) => format!(
            "put the secret in a root-only file outside the Nix store (e.g. /run/secrets/...) and set `{file} = \"/path/to/file\"` instead"
        ),
        (Synapse | Mas, Some((f, file))) => format!(
            "put the secret in a root-only file outside the Nix store and set `{file} = \"/path/to/file\"` instead: {} reads `{}` ({})",
            name(consumer),
            dotted(&table, file),
            f.source
        ),
        (Synapse, None) => format!(
            "{}: write it in a root-only YAML file outside the Nix store and list that file in `synapse.extra_config_files`",
            match form {
                Some(f) => format!("Synapse reads `{}` only inline ({})", dotted(&table, key), f.source),
                None => format!("masgen knows no file form of `{}` in Synapse", dotted(&table, key)),
            }
        ),
        (Mas, None) => format!(
            "{}, and masgen cannot pass MAS a secret outside the Nix store: leave it out, or use a setting with a `*_file` form",
            match form {
                Some(f) => format!("MAS reads `{}` only inline ({})", dotted(&table, key), f.source),
                None => format!("masgen knows no file form of `{}` in MAS", dotted(&table, key)),
            }
        ),
        (Masgen, None) => "secrets go in files outside the Nix store: use the matching `*_file` key (docs/guide.md lists them)".into(),
        (Consumer::Module, _) => "a module reads its own config: use the module's file form if it has one (synapse-ldap3: `bind_password_file`), or move the module's settings into a root-only YAML file listed in `synapse.extra_config_files`".into(),
    }
}

fn name(consumer: Consumer) -> &'static str {
    match consumer {
        Synapse => "Synapse",
        Mas => "MAS",
        Masgen => "masgen",
        Consumer::Module => "the module",
    }
}

/// Checks a `*_file` / `*_path` key in an escape hatch: `Err((code,
/// message, help))` when the consumer does not read that key, so what it
/// names would silently be missing (a secret, a certificate, …).
pub fn check_file_key(
    path: &KeyPath,
    key: &str,
    is_secret: impl Fn(&str) -> bool,
) -> Result<(), (&'static str, String, String)> {
    let Some(stem) = key
        .strip_suffix("_file")
        .or_else(|| key.strip_suffix("_path"))
    else {
        return Ok(());
    };
    let (consumer, table) = locate(path);
    let (names, file_suffix) = match consumer {
        Synapse => (SYNAPSE_FILE_KEYS, "_path"),
        Mas => (MAS_FILE_KEYS, "_file"),
        Masgen | Consumer::Module => return Ok(()),
    };
    if form_of_file_key(consumer, &table, key).is_some() {
        return Ok(());
    }
    let ignored = format!(
        "{} does not read `{}`: the key would be ignored",
        name(consumer),
        dotted(&table, key)
    );
    if is_secret(stem) {
        return Err((
            "secret.file_key_ignored",
            format!("{ignored} and `{}` left unset", dotted(&table, stem)),
            literal_secret_help(&path_with_last(path, stem), stem),
        ));
    }
    if names.contains(&key) {
        return Ok(());
    }
    let other = format!("{stem}{file_suffix}");
    let help = if names.contains(&other.as_str()) {
        format!("{} reads `{other}`", name(consumer))
    } else {
        format!(
            "check the name against {}'s configuration reference; no {} setting has this name",
            name(consumer),
            name(consumer)
        )
    };
    Err(("extra.file_key_ignored", ignored, help))
}

fn path_with_last(path: &KeyPath, last: &str) -> KeyPath {
    let mut keys = path.0.clone();
    keys.pop();
    keys.push(Key::Name(last.to_string()));
    KeyPath(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_paths_map_to_their_consumer() {
        let p = |s| locate(&KeyPath::parse(s));
        assert_eq!(
            p("synapse.extra_settings.email.smtp_pass"),
            (Synapse, "email".into())
        );
        assert_eq!(
            p("synapse.final_extra_settings.macaroon_secret_key"),
            (Synapse, "".into())
        );
        assert_eq!(
            p("synapse.extra_settings.oidc_providers[2].client_secret"),
            (Synapse, "oidc_providers[]".into())
        );
        assert_eq!(
            p("mas.extra_settings.upstream_oauth2.providers[0].client_secret"),
            (Mas, "upstream_oauth2.providers[]".into())
        );
        assert_eq!(
            p("mas.upstream_providers[0].client_secret"),
            (Masgen, "mas.upstream_providers[]".into())
        );
        assert_eq!(
            p("synapse.password_providers[0].config.bind_password").0,
            Consumer::Module
        );
        assert_eq!(
            p("synapse.extra_settings.password_providers[0].config.bind_password").0,
            Consumer::Module
        );
        assert_eq!(
            p("synapse.extra_settings.media_storage_providers[0].config.secret_access_key").0,
            Consumer::Module
        );
        assert_eq!(
            p("synapse.extra_settings.experimental_features.msc3861.client_secret"),
            (Synapse, "experimental_features.msc3861".into())
        );
    }

    #[test]
    fn every_secret_has_one_entry_per_place() {
        for (i, a) in FILE_FORMS.iter().enumerate() {
            for b in &FILE_FORMS[..i] {
                assert!(
                    (a.consumer, a.table, a.secret) != (b.consumer, b.table, b.secret),
                    "{} twice",
                    a.secret
                );
            }
        }
    }
}
