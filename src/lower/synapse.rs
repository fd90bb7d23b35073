//! Synapse's homeserver.yaml for each phase.

use serde_json::{json, Map, Value};

use super::{
    merge, remove_path, Dropped, PasswordConfigOut, Phase, SynapseOut, PASSWORD_CONFIG_PATH,
};
use crate::model::{DbEngine, Homeserver, PasswordLogin, Synapse, SynapseOidc};
use crate::rules;

/// One function per group of homeserver.yaml settings; maps keep insertion
/// order, so the order of the calls is the order in the rendered file.
pub(super) fn lower(hs: &Homeserver, phase: Phase) -> (SynapseOut, Vec<Dropped>) {
    let s = &hs.synapse;
    let delegated = phase == Phase::Final;
    let mut m = Map::new();
    m.insert("server_name".into(), json!(hs.server_name));
    m.insert("public_baseurl".into(), json!(s.public_baseurl()));
    m.insert("listeners".into(), listeners(s));
    m.insert("database".into(), database(hs));
    secret_paths(s, &mut m);
    app_services_and_modules(s, delegated, &mut m);
    todays_settings(s, &mut m);
    let mut password_config = password_config(s, delegated, &mut m);

    merge(&mut m, &s.extra_settings);
    if let Some(pc) = &mut password_config {
        join_extra_password_config(pc, &mut m);
    }
    let mut dropped = Vec::new();
    if delegated {
        drop_for_delegation(hs, &mut m, &mut dropped);
        delegation(hs, &mut m);
    }

    let extras = extras(s, delegated);

    let mut extra_config_files = s.extra_config_files.clone();
    // Over TCP: the database section with its password, written at boot
    // (masgen.synapse.databasePassword). nixpkgs' evaluation lists it before
    // the password config (tests/conformance_nixpkgs.rs).
    if hs.synapse.database.password_file.is_some() {
        extra_config_files.push(super::tasks::SYNAPSE_DATABASE_PATH.to_string());
    }
    if password_config.is_some() {
        extra_config_files.push(PASSWORD_CONFIG_PATH.to_string());
    }
    (
        SynapseOut {
            settings: Value::Object(m),
            extra_config_files,
            password_config,
            extras,
        },
        dropped,
    )
}

/// `listeners`: one plain-HTTP listener behind the proxy, for clients and
/// federation.
fn listeners(s: &Synapse) -> Value {
    json!([{
        "port": s.port,
        "bind_addresses": [s.listen_address],
        "type": "http",
        "tls": false,
        "x_forwarded": true,
        "resources": [{"names": ["client", "federation"], "compress": false}],
    }])
}

/// The `*_path` settings: Synapse reads each secret from its file.
fn secret_paths(s: &Synapse, m: &mut Map<String, Value>) {
    for (key, file) in [
        ("macaroon_secret_key_path", &s.macaroon_secret_key_file),
        (
            "registration_shared_secret_path",
            &s.registration_shared_secret_file,
        ),
        ("form_secret_path", &s.form_secret_file),
        ("signing_key_path", &s.signing_key_path),
    ] {
        if let Some(file) = file {
            m.insert(key.into(), json!(file));
        }
    }
}

/// `app_service_config_files` and `modules`; the LDAP module only until
/// Synapse delegates (password login moves to MAS).
fn app_services_and_modules(s: &Synapse, delegated: bool, m: &mut Map<String, Value>) {
    if !s.app_services.is_empty() {
        m.insert(
            "app_service_config_files".into(),
            json!(s
                .app_services
                .iter()
                .map(|a| a.registration_file.clone())
                .collect::<Vec<_>>()),
        );
    }
    let mut modules: Vec<Value> = s
        .modules
        .iter()
        .map(|x| json!({"module": x.module, "config": x.config}))
        .collect();
    if let (Some(config), false) = (&s.ldap_module, delegated) {
        modules.push(json!({"module": rules::LDAP_MODULE, "config": config}));
    }
    if !modules.is_empty() {
        m.insert("modules".into(), Value::Array(modules));
    }
}

/// `password_config` until Synapse delegates: in homeserver.yaml, or with a
/// pepper file in the runtime file masgen writes at boot (returned).
fn password_config(
    s: &Synapse,
    delegated: bool,
    m: &mut Map<String, Value>,
) -> Option<PasswordConfigOut> {
    if delegated {
        return None;
    }
    let password_enabled = match s.password_login {
        PasswordLogin::Enabled => json!(true),
        PasswordLogin::Disabled => json!(false),
        PasswordLogin::OnlyForReauth => json!("only_for_reauth"),
    };
    match &s.pepper_file {
        // Synapse merges extra config files key by key at the top level,
        // so the whole password_config block goes into the runtime file.
        Some(pepper) => Some(PasswordConfigOut {
            settings: json!({"enabled": password_enabled}),
            pepper_file: pepper.clone(),
        }),
        None => {
            m.insert(
                "password_config".into(),
                json!({"enabled": password_enabled}),
            );
            None
        }
    }
}

/// With a pepper file the block lives in the runtime file, which Synapse
/// merges over homeserver.yaml key by key: an extra `password_config`
/// would be replaced, so it joins the runtime block instead.
fn join_extra_password_config(pc: &mut PasswordConfigOut, m: &mut Map<String, Value>) {
    if let Some(Value::Object(extra)) = m.remove("password_config") {
        if let Value::Object(settings) = &mut pc.settings {
            for (k, v) in extra {
                settings.entry(k).or_insert(v);
            }
        }
    }
}

/// nixpkgs' `services.matrix-synapse.extras` for a phase.
fn extras(s: &Synapse, delegated: bool) -> Vec<String> {
    let mut extras = Vec::new();
    if s.database.engine == DbEngine::Postgresql {
        extras.push("postgres".to_string());
    }
    if !delegated && (!s.oidc_providers.is_empty() || s.legacy_oidc.is_some()) {
        extras.push("oidc".into());
    }
    // Before 1.136 delegation goes through MSC3861, which needs authlib:
    // nixpkgs brings it with the `oidc` extra.
    if delegated && !s.version.has_stable_delegation() {
        extras.push("oidc".into());
    }
    if !delegated && s.ldap {
        extras.push("matrix-synapse-ldap3".into());
    }
    extras.sort();
    extras
}

/// What the existing Synapse does today; the final phase drops what
/// delegation forbids (rules::DELEGATION_CONFLICTS).
fn todays_settings(s: &Synapse, m: &mut Map<String, Value>) {
    m.insert("enable_registration".into(), json!(s.enable_registration));
    m.insert("allow_guest_access".into(), json!(s.allow_guest_access));
    if s.enable_3pid_changes {
        m.insert("enable_3pid_changes".into(), json!(true));
    }
    if s.login_via_existing_session {
        m.insert(
            "login_via_existing_session".into(),
            json!({"enabled": true}),
        );
    }
    if s.registration_captcha {
        m.insert("enable_registration_captcha".into(), json!(true));
    }
    for (key, v) in [
        ("session_lifetime", &s.session_lifetime),
        ("refresh_token_lifetime", &s.refresh_token_lifetime),
        (
            "nonrefreshable_access_token_lifetime",
            &s.nonrefreshable_access_token_lifetime,
        ),
    ] {
        if let Some(v) = v {
            m.insert(key.into(), json!(v));
        }
    }
    if !s.oidc_providers.is_empty() {
        m.insert(
            "oidc_providers".into(),
            json!(s
                .oidc_providers
                .iter()
                .map(oidc_provider)
                .collect::<Vec<_>>()),
        );
    }
    if let Some(legacy) = &s.legacy_oidc {
        let mut block = oidc_provider(legacy);
        if let Some(o) = block.as_object_mut() {
            o.insert("enabled".into(), json!(true));
        }
        m.insert("oidc_config".into(), block);
    }
    if !s.password_providers.is_empty() {
        m.insert(
            "password_providers".into(),
            json!(s
                .password_providers
                .iter()
                .map(|p| json!({"module": p.module, "config": p.config}))
                .collect::<Vec<_>>()),
        );
    }
}

/// The final phase: what a delegating Synapse refuses goes, each with a note.
fn drop_for_delegation(hs: &Homeserver, m: &mut Map<String, Value>, dropped: &mut Vec<Dropped>) {
    let s = &hs.synapse;
    if s.ldap_module.is_some() {
        dropped.push(Dropped {
            setting: format!("modules: {} (synapse.ldap)", rules::LDAP_MODULE),
            reason: "password authentication moves to MAS".into(),
        });
    }
    drop_password_modules(m, s, dropped);
    merge(m, &s.final_extra_settings);
    for conflict in rules::DELEGATION_CONFLICTS {
        let value = rules::lookup(&Value::Object(m.clone()), conflict.setting).cloned();
        if let Some(value) = value {
            remove_path(m, conflict.setting);
            if conflict.triggered_by(&value) {
                dropped.push(Dropped {
                    setting: conflict.setting.to_string(),
                    reason: conflict.reason.to_string(),
                });
            }
        }
    }
    for (key, reason) in [
        (
            "oidc_config",
            "the legacy OIDC provider moves to a MAS upstream provider",
        ),
        ("saml2_config", "SAML2 cannot be used with MAS"),
        ("cas_config", "CAS cannot be used with MAS"),
        ("jwt_config", "JWT login cannot be used with MAS"),
        (
            "allow_guest_access",
            "guest access is not supported with MAS",
        ),
    ] {
        if let Some(v) = m.remove(key) {
            if v != json!(false) {
                dropped.push(Dropped {
                    setting: key.to_string(),
                    reason: reason.to_string(),
                });
            }
        }
    }
    if m.remove("registration_shared_secret_path").is_some() {
        dropped.push(Dropped {
            setting: "registration_shared_secret_path".into(),
            reason: "Synapse's shared-secret registration endpoint is gone once MAS handles accounts; register users with the masgen-register-* tasks".into(),
        });
    }
    m.insert("enable_registration".into(), json!(false));
}

/// Password-auth modules (typed with `password_auth`, or of a known package,
/// e.g. from `extra_settings`): a delegating Synapse refuses to start with them.
fn drop_password_modules(m: &mut Map<String, Value>, s: &Synapse, dropped: &mut Vec<Dropped>) {
    let Some(Value::Array(modules)) = m.get_mut("modules") else {
        return;
    };
    modules.retain(|x| {
        let module = x.get("module").and_then(Value::as_str).unwrap_or("");
        let typed = s
            .modules
            .iter()
            .any(|t| t.password_auth && t.module == module);
        let keep = !typed && !rules::is_password_auth_module(module);
        if !keep {
            dropped.push(Dropped {
                setting: format!("modules: {module}"),
                reason: "password authentication moves to MAS".into(),
            });
        }
        keep
    });
    if modules.is_empty() {
        m.remove("modules");
    }
}

fn database(hs: &Homeserver) -> Value {
    let d = &hs.synapse.database;
    match d.engine {
        DbEngine::Sqlite => {
            json!({"name": "sqlite3", "args": {"database": "/var/lib/matrix-synapse/homeserver.db"}})
        }
        DbEngine::Postgresql => {
            let mut args = Map::new();
            args.insert("user".into(), json!(d.user));
            args.insert("database".into(), json!(d.name));
            // Without `host`, nixpkgs knows the database is local and orders
            // Synapse after PostgreSQL; libpq's default socket is /run/postgresql.
            if d.host != "/run/postgresql" {
                args.insert("host".into(), json!(d.host));
            }
            if let Some(port) = d.port {
                args.insert("port".into(), json!(port));
            }
            // libpq's own name; the password comes at run time
            // (masgen.synapse.databasePassword).
            if let Some(mode) = &d.ssl_mode {
                args.insert("sslmode".into(), json!(mode));
            }
            args.insert("cp_min".into(), json!(5));
            args.insert("cp_max".into(), json!(10));
            json!({"name": "psycopg2", "args": args})
        }
    }
}

fn oidc_provider(p: &SynapseOidc) -> Value {
    let mut o = Map::new();
    if let Some(id) = &p.idp_id {
        o.insert("idp_id".into(), json!(id));
    }
    if let Some(name) = &p.idp_name {
        o.insert("idp_name".into(), json!(name));
    }
    o.insert("issuer".into(), json!(p.issuer));
    o.insert("client_id".into(), json!(p.client_id));
    if let Some(f) = &p.client_secret_file {
        o.insert("client_secret_path".into(), json!(f));
    }
    o.insert("scopes".into(), json!(p.scopes));
    if let Some(d) = p.discover {
        o.insert("discover".into(), json!(d));
    }
    if let Some(a) = p.allow_existing_users {
        o.insert("allow_existing_users".into(), json!(a));
    }
    let mut mapping = Map::new();
    for (key, v) in [
        ("localpart_template", &p.localpart_template),
        ("display_name_template", &p.display_name_template),
        ("email_template", &p.email_template),
    ] {
        if let Some(v) = v {
            mapping.insert(key.into(), json!(v));
        }
    }
    if !mapping.is_empty() {
        o.insert("user_mapping_provider".into(), json!({"config": mapping}));
    }
    // What the spec has no key for, as the running Synapse had it.
    merge(&mut o, &p.extra);
    Value::Object(o)
}

/// The block that makes Synapse delegate authentication to MAS.
fn delegation(hs: &Homeserver, m: &mut Map<String, Value>) {
    let s = &hs.synapse;
    if s.version.has_stable_delegation() {
        m.insert(
            "matrix_authentication_service".into(),
            json!({
                "enabled": true,
                "endpoint": hs.mas.internal_endpoint(),
                "secret_path": hs.mas.shared_secret_file,
            }),
        );
    } else {
        // Before 1.136: MSC3861, with MAS's shared secret as the admin token
        // and Synapse registered as a MAS client.
        let msc3861 = json!({
            "enabled": true,
            "issuer": hs.mas.public_base(),
            "client_id": super::mas::SYNAPSE_CLIENT_ID,
            "client_auth_method": "client_secret_basic",
            "client_secret_path": hs.mas.shared_secret_file,
            "admin_token_path": hs.mas.shared_secret_file,
            "introspection_endpoint": format!("{}oauth2/introspect", hs.mas.internal_endpoint()),
            "account_management_url": format!("{}account", hs.mas.public_base()),
        });
        let features = m
            .entry("experimental_features")
            .or_insert_with(|| json!({}));
        if let Some(f) = features.as_object_mut() {
            f.insert("msc3861".into(), msc3861);
        }
    }
}
