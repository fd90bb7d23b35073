//! `masgen import mdad inventory/host_vars/<host>/vars.yml`: a
//! matrix-docker-ansible-deploy inventory into a spec.
//!
//! Variable names: MDAD @ c0681e4 (`roles/custom/matrix-synapse/defaults/main.yml`,
//! `roles/custom/matrix-authentication-service/defaults/main.yml`,
//! `group_vars/matrix_servers`) and its MAS guide
//! (`docs/configuring-playbook-matrix-authentication-service.md`). Values
//! holding Jinja2 expressions are reported, never evaluated; a value that is
//! one `{% raw %}…{% endraw %}` block is the literal inside.

use camino::Utf8Path;
use serde_json::{Map, Value};

use super::oidc::{import_provider, Origin};
use super::synapse::REPLACE_ADVICE;
use super::writer::{finish, put, to_toml};
use super::{Ctx, Imported, SECRETS_DIR};

/// Whether a string holds a Jinja2 expression or statement (outside `raw`).
pub fn is_jinja(s: &str) -> bool {
    let outside: String = strip_raw(s);
    outside.contains("{{") || outside.contains("{%") || outside.contains("{#")
}

/// Whether a value holds a Jinja2 expression anywhere.
pub fn jinja_inside(v: &Value) -> bool {
    match v {
        Value::String(s) => is_jinja(s),
        Value::Array(a) => a.iter().any(jinja_inside),
        Value::Object(m) => m.values().any(jinja_inside),
        _ => false,
    }
}

/// The text outside `{% raw %}…{% endraw %}` blocks.
fn strip_raw(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("{% raw %}") {
        out.push_str(&rest[..i]);
        match rest[i..].find("{% endraw %}") {
            Some(j) => rest = &rest[i + j + "{% endraw %}".len()..],
            None => return format!("{out}{{%"),
        }
    }
    out.push_str(rest);
    out
}

/// The literal text of a value: `raw` blocks unwrapped.
pub fn unraw(s: &str) -> String {
    s.replace("{% raw %}", "").replace("{% endraw %}", "")
}

/// MDAD's Synapse version at c0681e4 (`matrix_synapse_version`).
const MDAD_SYNAPSE_DEFAULT: &str = "1.159.0";

pub fn import(vars: &Utf8Path, spec_name: &str) -> anyhow::Result<Imported> {
    let data = super::read_yaml(vars)?;
    let f = vars.as_str();
    let mut ctx = Ctx::new("mdad", vec![f.to_string()]);
    let literal = |k: &str| -> Option<String> {
        match data.get(k)? {
            Value::String(s) if is_jinja(s) => None,
            Value::String(s) => Some(unraw(s)),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let implementation =
        literal("matrix_homeserver_implementation").unwrap_or_else(|| "synapse".into());
    if implementation != "synapse" {
        anyhow::bail!("{f}: matrix_homeserver_implementation is `{implementation}`: only Synapse can delegate its logins to MAS (MDAD's MAS guide, Prerequisites); masgen imports Synapse inventories only");
    }
    let Some(domain) = literal("matrix_domain") else {
        anyhow::bail!("{f}: matrix_domain is missing or a Jinja2 expression; masgen needs the literal server name");
    };
    let from = format!("{f}: matrix_domain");
    put(
        ctx.spec.table("homeserver"),
        "server_name",
        domain.as_str(),
        &from,
    );
    ctx.mapped(f, "matrix_domain", &["homeserver.server_name"], "");
    if data.contains_key("matrix_homeserver_implementation") {
        ctx.mapped(
            f,
            "matrix_homeserver_implementation",
            &["homeserver.implementation"],
            "synapse",
        );
    }
    let version = literal("matrix_synapse_version");
    let syn = ctx.spec.table("synapse");
    match version {
        Some(v) => put(
            syn,
            "version",
            v.trim_start_matches('v'),
            &format!("{f}: matrix_synapse_version"),
        ),
        None => {
            put(
                syn,
                "version",
                MDAD_SYNAPSE_DEFAULT,
                "ASSUMED: MDAD's default at c0681e4",
            );
            ctx.human(f, "matrix_synapse_version", &format!("not set: the playbook's default applies (v{MDAD_SYNAPSE_DEFAULT} at MDAD c0681e4); set synapse.version to what runs"));
        }
    }
    // Every variable, in file order, gets a report line.
    for (key, v) in &data {
        if [
            "matrix_domain",
            "matrix_homeserver_implementation",
            "matrix_synapse_version",
        ]
        .contains(&key.as_str())
        {
            continue;
        }
        match v {
            Value::String(s) if is_jinja(s) && !is_secret_var(key) => ctx.human(f, key, "a Jinja2 expression: not evaluated; work out its value and put it into the spec yourself"),
            _ => map_var(&mut ctx, f, &domain, key, v, &data)?,
        }
    }
    defaults(&mut ctx, f, &domain, &data);
    finish(ctx, spec_name)
}

/// What the playbook's defaults give where the inventory is silent, and the
/// database's move from MDAD's container to the host.
fn defaults(ctx: &mut Ctx, f: &str, domain: &str, data: &Map<String, Value>) {
    if !data.contains_key("matrix_server_fqn_matrix") {
        let host = format!("matrix.{domain}");
        put(
            ctx.spec.table("synapse"),
            "public_hostname",
            host,
            "MDAD's default matrix_server_fqn_matrix",
        );
    }
    let db = ctx.spec.table("synapse.database");
    if db.get("name").is_none() {
        put(
            db,
            "name",
            "synapse",
            "MDAD's default matrix_synapse_database_database",
        );
    }
    put(
        db,
        "user",
        "matrix-synapse",
        "peer authentication: the service's OS user",
    );
    ctx.human(f, "matrix_synapse_database_*", "MDAD runs Synapse's database in its own postgres container (TCP, password); masgen uses the NixOS host's PostgreSQL over its socket: dump the database and restore it on the host, owned by `matrix-synapse`, before phase 1");
    if !ctx.spec.table("mas").contains_key("email") {
        return;
    }
    let e = ctx.spec.table("mas.email");
    if e.get("from").is_none() {
        let from = format!("matrix@matrix.{domain}");
        put(
            e,
            "from",
            from.as_str(),
            "ASSUMED: MDAD's default exim_relay_sender_address (matrix@<matrix_server_fqn_matrix>)",
        );
        let why = format!("no literal sender address in the inventory: the spec assumes {from}");
        ctx.human(f, "mas.email.from", &why);
    }
    let e = ctx.spec.table("mas.email");
    if e.get("transport").is_none() {
        let t = if e.contains_key("hostname") {
            "smtp"
        } else {
            "none"
        };
        put(
            e,
            "transport",
            t,
            "exim-relay does not move to the NixOS host: MAS talks to the relay host itself",
        );
    }
}

fn is_secret_var(key: &str) -> bool {
    [
        "_secret",
        "_password",
        "_pepper",
        "_secret_key",
        "_encryption",
        "_pass",
    ]
    .iter()
    .any(|s| key.ends_with(s))
}

/// Variables holding a secret: `(variable, spec table, spec key, file name)`.
const SECRET_VARS: &[(&str, &str, &str, &str)] = &[
    (
        "matrix_synapse_password_config_pepper",
        "synapse",
        "pepper_file",
        "synapse-pepper",
    ),
    (
        "matrix_synapse_macaroon_secret_key",
        "synapse",
        "macaroon_secret_key_file",
        "synapse-macaroon-secret-key",
    ),
    (
        "matrix_synapse_registration_shared_secret",
        "synapse",
        "registration_shared_secret_file",
        "synapse-registration-shared-secret",
    ),
    (
        "matrix_synapse_form_secret",
        "synapse",
        "form_secret_file",
        "synapse-form-secret",
    ),
    (
        "matrix_authentication_service_config_secrets_encryption",
        "mas",
        "encryption_file",
        "mas-encryption",
    ),
];

/// Variables with a spec key of their own: `(variable, spec key)`.
const PLAIN_VARS: &[(&str, &str)] = &[
    ("matrix_server_fqn_matrix", "synapse.public_hostname"),
    (
        "matrix_synapse_password_config_enabled",
        "synapse.password_login",
    ),
    (
        "matrix_synapse_enable_registration",
        "synapse.enable_registration",
    ),
    (
        "matrix_synapse_allow_guest_access",
        "synapse.allow_guest_access",
    ),
    (
        "matrix_synapse_enable_registration_captcha",
        "synapse.registration_captcha",
    ),
    ("matrix_synapse_database_database", "synapse.database.name"),
    ("matrix_authentication_service_hostname", "mas.hostname"),
    (
        "matrix_authentication_service_path_prefix",
        "mas.path_prefix",
    ),
];

/// Maps one variable; every variable gets a report line.
fn map_var(
    ctx: &mut Ctx,
    f: &str,
    domain: &str,
    key: &str,
    v: &Value,
    data: &Map<String, Value>,
) -> anyhow::Result<()> {
    if let Some((_, table, spec_key, name)) = SECRET_VARS.iter().find(|s| s.0 == key) {
        secret(ctx, f, key, v, table, spec_key, name);
    } else if let Some((_, spec)) = PLAIN_VARS.iter().find(|s| s.0 == key) {
        let (table, spec_key) = spec.rsplit_once('.').expect("a dotted key");
        if let Some(t) = to_toml(&unraw_all(v)) {
            put(ctx.spec.table(table), spec_key, t, &format!("{f}: {key}"));
        }
        ctx.mapped(f, key, &[spec], "");
    } else if key == "matrix_homeserver_generic_secret_key" {
        ctx.human(f, key, "a secret (not copied) MDAD derives others from (group_vars/matrix_servers, e.g. matrix_synapse_database_password): masgen does not need it, but secrets derived from it that you keep (macaroon key, ...) must be written to their files");
    } else if key.starts_with("matrix_synapse_") {
        synapse_var(ctx, f, domain, key, v, data)?;
    } else if key.starts_with("matrix_authentication_service_") && !key.contains("_config_email_") {
        mas_var(ctx, f, key, v, data);
    } else if key.starts_with("matrix_authentication_service_config_email_")
        || key.starts_with("exim_relay_")
    {
        email(ctx, f, key, v);
    } else {
        ctx.human(
            f,
            key,
            "a playbook variable masgen does not map: check whether the NixOS host needs it",
        );
    }
    Ok(())
}

/// A secret variable → a file reference; the report says what to put there.
fn secret(ctx: &mut Ctx, f: &str, key: &str, v: &Value, table: &str, spec_key: &str, name: &str) {
    let path = format!("{SECRETS_DIR}/{name}");
    let comment = format!("{f}: {key} (a secret: not copied)");
    put(ctx.spec.table(table), spec_key, path.as_str(), &comment);
    let content = match v.as_str() {
        Some(s) if is_jinja(s) => {
            format!("what the Jinja2 expression `{s}` of `{key}` in {f} gives (not evaluated)")
        }
        _ => format!("the value of `{key}` in {f}"),
    };
    ctx.secret_file(&path, &content);
    let why = format!("a secret: not copied; create {path}");
    ctx.mapped(f, key, &[&format!("{table}.{spec_key}")], &why);
}

fn synapse_var(
    ctx: &mut Ctx,
    f: &str,
    domain: &str,
    key: &str,
    v: &Value,
    data: &Map<String, Value>,
) -> anyhow::Result<()> {
    match key {
        "matrix_synapse_oidc_enabled" => ctx.mapped(f, key, &[], "the providers are imported when it is true"),
        "matrix_synapse_oidc_providers" => oidc_providers(ctx, f, domain, key, v, data),
        "matrix_synapse_configuration_extension_yaml" => extension(ctx, f, domain, key, v)?,
        k if k.starts_with("matrix_synapse_database_") => ctx.dropped(f, key, "the container's connection settings: the NixOS host connects over the socket with peer authentication (a password is not copied)"),
        k if k.starts_with("matrix_synapse_ext_password_provider_") => {
            if k.ends_with("_enabled") && v == &Value::Bool(true) {
                ctx.human(f, key, REPLACE_ADVICE);
                if k.contains("ldap") {
                    ctx.spec.table("synapse").insert("ldap", toml_edit::value(true));
                }
            } else {
                ctx.dropped(f, key, "a password provider setting: password providers do not move to MAS (not copied)");
            }
        }
        k if k.starts_with("matrix_synapse_email_") => ctx.human(f, key, "Synapse's own email settings (MDAD sends through exim-relay): add an `email` block for the relay host to synapse.extra_settings (its smtp_pass in an extra config file) if Synapse must keep sending mail"),
        _ => ctx.human(f, key, "a playbook variable masgen does not map: check whether the NixOS host needs it"),
    }
    Ok(())
}

fn oidc_providers(
    ctx: &mut Ctx,
    f: &str,
    domain: &str,
    key: &str,
    v: &Value,
    data: &Map<String, Value>,
) {
    if data.get("matrix_synapse_oidc_enabled") != Some(&Value::Bool(true)) {
        ctx.dropped(
            f,
            key,
            "matrix_synapse_oidc_enabled is not true: Synapse does not use them",
        );
        return;
    }
    // Providers the inventory maps to MAS itself get no second MAS provider.
    let mapped_by_mas: Vec<String> = data
        .get("matrix_authentication_service_config_upstream_oauth2_providers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            p.get("synapse_idp_id")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .chain(provider_mapping(data).into_iter().map(|(idp, _)| idp))
        .collect();
    for (i, p) in v.as_array().into_iter().flatten().enumerate() {
        let Some(p) = p.as_object() else { continue };
        let idp = match p.get("idp_id").and_then(Value::as_str) {
            Some(id) if id != "oidc" => format!("oidc-{id}"),
            _ => "oidc".into(),
        };
        let o = Origin {
            file: f,
            path: format!("{key}[{i}]"),
            legacy: false,
            jinja: true,
            with_mas: !mapped_by_mas.contains(&idp),
        };
        import_provider(ctx, domain, p, &o);
    }
}

/// `matrix_synapse_configuration_extension_yaml`: Synapse settings in a YAML
/// string, read like a homeserver.yaml of their own.
fn extension(ctx: &mut Ctx, f: &str, domain: &str, key: &str, v: &Value) -> anyhow::Result<()> {
    let Some(text) = v.as_str() else {
        ctx.human(f, key, "not a YAML string: check it by hand");
        return Ok(());
    };
    let label = format!("{f}: {key}");
    let settings = super::parse_yaml(&label, text)?;
    for (k, val) in &settings {
        super::synapse::top_level(ctx, domain, k, val, &label)?;
    }
    ctx.mapped(f, key, &[], "its Synapse settings are listed one by one");
    Ok(())
}

fn mas_var(ctx: &mut Ctx, f: &str, key: &str, v: &Value, data: &Map<String, Value>) {
    match key {
        "matrix_authentication_service_enabled" => {
            let why = if v == &Value::Bool(true) { "the spec always describes MAS" } else { "MAS is off in the inventory: the spec adds it" };
            ctx.mapped(f, key, &["mas"], why);
        }
        "matrix_authentication_service_migration_in_progress" => {
            let why = if v == &Value::Bool(true) { "phase 1 (`-prepare`) of the migrate spec" } else { "not true: the spec is a migration anyway (phase 1, then delegation)" };
            ctx.mapped(f, key, &["homeserver.mode"], why);
        }
        "matrix_authentication_service_config_upstream_oauth2_providers" => mas_providers(ctx, f, key, v, data),
        "matrix_authentication_service_syn2mas_process_extra_arguments" => {
            let n = provider_mapping(data).len();
            ctx.mapped(f, key, &["mas.upstream_providers[].synapse_idp_id"], &format!("{n} --upstreamProviderMapping argument(s) became synapse_idp_id; other arguments are not carried"));
        }
        "matrix_authentication_service_syn2mas_command_extra_options"
        | "matrix_authentication_service_syn2mas_subcommand_extra_options" => {
            ctx.human(f, key, "extra `mas-cli syn2mas` options: masgen's syn2mas tasks run with their own fixed options; check whether the migration needs these (mapping providers is `synapse_idp_id` now)");
        }
        "matrix_authentication_service_syn2mas_dry_run" | "matrix_authentication_service_syn2mas_migrate_dry_run" => {
            ctx.dropped(f, key, "masgen's plan runs a syn2mas dry run before the migration");
        }
        _ => ctx.human(f, key, "a MAS variable masgen does not map: carry it through mas.extra_settings by hand if the NixOS host needs it"),
    }
}

/// `--upstreamProviderMapping oidc-x:ULID` arguments of the old syn2mas
/// (MDAD's older guide): Synapse id → MAS provider id.
fn provider_mapping(data: &Map<String, Value>) -> Vec<(String, String)> {
    let args = data
        .get("matrix_authentication_service_syn2mas_process_extra_arguments")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let words: Vec<String> = args
        .iter()
        .filter_map(Value::as_str)
        .flat_map(|a| a.split_whitespace().map(String::from).collect::<Vec<_>>())
        .collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let value = match w.strip_prefix("--upstreamProviderMapping") {
            Some("") => words.get(i + 1).cloned(),
            Some(rest) => rest.strip_prefix('=').map(String::from),
            None => None,
        };
        if let Some((idp, id)) = value.as_deref().and_then(|v| v.split_once(':')) {
            out.push((idp.to_string(), id.to_string()));
        }
    }
    out
}

/// MAS upstream providers as the inventory declares them.
fn mas_providers(ctx: &mut Ctx, f: &str, key: &str, v: &Value, data: &Map<String, Value>) {
    let mapping = provider_mapping(data);
    for (i, p) in v.as_array().into_iter().flatten().enumerate() {
        let Some(p) = p.as_object() else { continue };
        let path = format!("{key}[{i}]");
        let mut t = toml_edit::Table::new();
        for (k, val) in p {
            let from = format!("{f}: {path}.{k}");
            let jinja = jinja_inside(val);
            match k.as_str() {
                "client_secret" => {
                    let path_s = format!("{SECRETS_DIR}/mas-upstream-{i}-client-secret");
                    put(&mut t, "client_secret_file", path_s.as_str(), &format!("{from} (a secret: not copied)"));
                    let content = if jinja { format!("what the Jinja2 expression `{}` of `{path}.client_secret` in {f} gives (not evaluated)", val.as_str().unwrap_or("")) } else { format!("the value of `{path}.client_secret` in {f}") };
                    ctx.secret_file(&path_s, &content);
                    ctx.mapped(f, &format!("{path}.client_secret"), &["mas.upstream_providers[].client_secret_file"], &format!("a secret: not copied; create {path_s}"));
                }
                _ if jinja => ctx.human(f, &format!("{path}.{k}"), "a Jinja2 expression: not evaluated"),
                "synapse_idp_id" if val.is_null() => ctx.dropped(f, &format!("{path}.{k}"), "null"),
                "id" | "synapse_idp_id" | "issuer" | "human_name" | "brand_name" | "client_id" | "token_endpoint_auth_method" | "token_endpoint_auth_signing_alg" | "scope" | "discovery_mode" | "pkce_method" | "authorization_endpoint" | "token_endpoint" | "userinfo_endpoint" | "jwks_uri" | "fetch_userinfo" | "claims_imports" => {
                    if let Some(x) = to_toml(&unraw_all(val)) {
                        put(&mut t, k, x, &from);
                    }
                    ctx.mapped(f, &format!("{path}.{k}"), &[&format!("mas.upstream_providers[].{k}")], "");
                }
                _ => ctx.human(f, &format!("{path}.{k}"), "the spec cannot carry this MAS provider setting yet: add it through mas.extra_settings by hand"),
            }
        }
        let id = p.get("id").and_then(Value::as_str).unwrap_or("");
        if p.get("synapse_idp_id").map_or(true, Value::is_null) {
            if let Some((idp, _)) = mapping.iter().find(|(_, m)| m == id) {
                put(
                    &mut t,
                    "synapse_idp_id",
                    idp.as_str(),
                    &format!("{f}: --upstreamProviderMapping {idp}:{id}"),
                );
            }
        }
        *ctx.spec.push("mas.upstream_providers") = t;
    }
}

pub(super) fn unraw_all(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(unraw(s)),
        Value::Array(a) => Value::Array(a.iter().map(unraw_all).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), unraw_all(v))).collect())
        }
        other => other.clone(),
    }
}

/// MAS's email settings (or exim-relay's, which both Synapse and MAS use in MDAD).
fn email(ctx: &mut Ctx, f: &str, key: &str, v: &Value) {
    let from = format!("{f}: {key}");
    let suffix = key
        .trim_start_matches("matrix_authentication_service_config_email_")
        .trim_start_matches("exim_relay_");
    let spec_key = match suffix {
        "transport" => "transport",
        "hostname" | "relay_host_name" => "hostname",
        "port" | "relay_host_port" => "port",
        "username" | "relay_auth_username" => "username",
        "mode" => "mode",
        "from" | "sender_address" => "from",
        "reply_to" => "reply_to",
        "password" | "relay_auth_password" => {
            let path = format!("{SECRETS_DIR}/mas-smtp-password");
            put(
                ctx.spec.table("mas.email"),
                "password_file",
                path.as_str(),
                &format!("{from} (a secret: not copied)"),
            );
            ctx.secret_file(&path, &format!("the value of `{key}` in {f}"));
            ctx.mapped(
                f,
                key,
                &["mas.email.password_file"],
                &format!("a secret: not copied; create {path}"),
            );
            return;
        }
        "relay_use" => {
            if v == &Value::Bool(true) {
                put(ctx.spec.table("mas.email"), "transport", "smtp", &from);
            }
            ctx.mapped(
                f,
                key,
                &["mas.email.transport"],
                "MAS talks to the relay host directly (no exim-relay on the NixOS host)",
            );
            return;
        }
        _ => {
            ctx.human(f, key, "an email setting the spec cannot carry");
            return;
        }
    };
    let val = match (spec_key, v) {
        ("transport", Value::String(s)) if s == "blackhole" => Value::String("none".into()),
        _ => v.clone(),
    };
    if let Some(t) = to_toml(&val) {
        put(ctx.spec.table("mas.email"), spec_key, t, &from);
    }
    ctx.mapped(f, key, &[&format!("mas.email.{spec_key}")], "");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_blocks_are_literals_and_expressions_are_not() {
        assert!(!is_jinja("{% raw %}{{ user.name }}{% endraw %}"));
        assert_eq!(
            unraw("{% raw %}{{ user.name }}{% endraw %}"),
            "{{ user.name }}"
        );
        assert!(is_jinja("{{ vault_secret }}"));
        assert!(is_jinja("matrix.{{ matrix_domain }}"));
        assert!(!is_jinja("plain"));
    }

    #[test]
    fn finds_expressions_nested_in_lists_and_maps() {
        let raw = serde_json::json!({"a": [{"t": "{% raw %}{{ user.x }}{% endraw %}"}]});
        assert!(!jinja_inside(&raw));
        let expr = serde_json::json!({"a": [{"t": "{{ user.x }}"}]});
        assert!(jinja_inside(&expr));
    }
}
