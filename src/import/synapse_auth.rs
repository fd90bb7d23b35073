//! Synapse's authentication-related blocks for `import synapse`: password
//! providers and modules (which stop working under MAS), legacy SSO, email.

use serde_json::{Map, Value};

use super::writer::{put, to_toml};
use super::{contains_secret, Ctx, SECRETS_DIR};

pub(super) fn password_providers(ctx: &mut Ctx, v: &Value, file: &str) {
    for (i, p) in v.as_array().into_iter().flatten().enumerate() {
        let key = format!("password_providers[{i}]");
        let module = p.get("module").and_then(Value::as_str).unwrap_or("");
        let config = p
            .get("config")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        if contains_secret(&config) {
            ctx.human(file, &key, &format!("`{module}` holds a secret inline: not copied; it stops working under MAS anyway ({REPLACE_ADVICE}); add it to the spec by hand with the secret in a file if phase 1 needs it"));
            continue;
        }
        let t = ctx.spec.push("synapse.password_providers");
        put(t, "module", module, &format!("{file}: {key}.module"));
        if let Some(c) = to_toml(&config) {
            put(t, "config", c, &format!("{file}: {key}.config"));
        }
        ctx.human(
            file,
            &key,
            &format!("mapped to synapse.password_providers; {REPLACE_ADVICE}"),
        );
    }
}

/// What MDAD's MAS guide says about password providers (seed:
/// docs/configuring-playbook-matrix-authentication-service.md, Expectations).
pub const REPLACE_ADVICE: &str = "password providers stop working when MAS takes over logins: disable them; bridges that used shared-secret-auth for double-puppeting should use Appservice Double Puppet instead, LDAP and REST logins must move to an upstream identity provider of MAS";

/// Modules that implement password authentication.
fn password_module(module: &str) -> bool {
    [
        "ldap_auth_provider",
        "shared_secret_authenticator",
        "rest_auth_provider",
    ]
    .iter()
    .any(|m| module.starts_with(m))
}

pub(super) fn modules(ctx: &mut Ctx, v: &Value, file: &str) {
    for (i, p) in v.as_array().into_iter().flatten().enumerate() {
        let key = format!("modules[{i}]");
        let module = p.get("module").and_then(Value::as_str).unwrap_or("");
        let mut config = p
            .get("config")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        // matrix-synapse-ldap3 reads the bind password from a file too.
        if module.starts_with("ldap_auth_provider") {
            if let Some(c) = config.as_object_mut() {
                if c.remove("bind_password").is_some() {
                    let path = format!("{SECRETS_DIR}/synapse-ldap-bind-password");
                    c.insert("bind_password_file".into(), Value::String(path.clone()));
                    ctx.secret_file(
                        &path,
                        &format!("the value of `{key}.config.bind_password` in {file}"),
                    );
                    ctx.mapped(
                        file,
                        &format!("{key}.config.bind_password"),
                        &["synapse.modules[].config.bind_password_file"],
                        &format!("a secret: not copied; create {path}"),
                    );
                }
            }
        }
        if contains_secret(&config) {
            ctx.human(file, &key, &format!("module `{module}` holds a secret inline that has no file setting masgen knows: not copied; add the module to the spec by hand"));
            continue;
        }
        let password_auth = password_module(module);
        let t = ctx.spec.push("synapse.modules");
        put(t, "module", module, &format!("{file}: {key}.module"));
        if let Some(c) = to_toml(&config) {
            put(t, "config", c, &format!("{file}: {key}.config"));
        }
        if password_auth {
            put(
                t,
                "password_auth",
                true,
                "a password provider: dropped from the final phase",
            );
            ctx.human(
                file,
                &key,
                &format!("mapped to synapse.modules; {REPLACE_ADVICE}"),
            );
        } else {
            ctx.mapped(
                file,
                &key,
                &["synapse.modules"],
                "check whether it works with MAS",
            );
        }
    }
}

pub(super) fn legacy_sso(ctx: &mut Ctx, key: &str, v: &Value, file: &str) {
    let on = match key {
        "jwt_config" => v.get("enabled").and_then(Value::as_bool) == Some(true),
        _ => v.get("enabled").and_then(Value::as_bool) != Some(false),
    };
    if !on {
        ctx.dropped(file, key, "disabled");
        return;
    }
    let mech = key.trim_end_matches("_config");
    let t = ctx.spec.table("synapse");
    let arr = t
        .entry("legacy_sso")
        .or_insert_with(|| toml_edit::value(toml_edit::Array::new()))
        .as_array_mut()
        .expect("an array");
    arr.push(mech);
    ctx.human(file, key, &format!("{mech} logins cannot move to MAS (syn2mas cannot carry their users); listed in synapse.legacy_sso; carry the block by hand (e.g. in synapse.extra_settings) if phase 1 must keep it"));
}

/// Synapse's `email` block → MAS's email settings (MAS sends its own mail:
/// verification, recovery).
pub(super) fn email(ctx: &mut Ctx, v: &Value, file: &str) {
    let Some(host) = v.get("smtp_host").and_then(Value::as_str) else {
        return;
    };
    let t = ctx.spec.table("mas.email");
    let from = |k: &str| format!("{file}: email.{k}");
    put(t, "transport", "smtp", &from("smtp_host"));
    put(t, "hostname", host, &from("smtp_host"));
    if let Some(p) = v.get("smtp_port").and_then(Value::as_i64) {
        put(t, "port", p, &from("smtp_port"));
    }
    if let Some(f) = v.get("notif_from").and_then(Value::as_str) {
        put(t, "from", f, &from("notif_from"));
    }
    let tls = v.get("force_tls").and_then(Value::as_bool) == Some(true);
    let starttls = v.get("require_transport_security").and_then(Value::as_bool) == Some(true);
    let mode = if tls {
        "tls"
    } else if starttls {
        "starttls"
    } else {
        "plain"
    };
    put(
        t,
        "mode",
        mode,
        &from("force_tls / require_transport_security"),
    );
    if let Some(u) = v.get("smtp_user").and_then(Value::as_str) {
        put(t, "username", u, &from("smtp_user"));
    }
    if v.get("smtp_pass").is_some() {
        let path = format!("{SECRETS_DIR}/mas-smtp-password");
        put(
            t,
            "password_file",
            path.as_str(),
            &format!("{} (a secret: not copied)", from("smtp_pass")),
        );
        ctx.secret_file(&path, &format!("the value of `email.smtp_pass` in {file}"));
    }
    ctx.mapped(
        file,
        "email.smtp_*",
        &["mas.email"],
        "MAS sends its own mail with the same server",
    );
}
