//! `[synapse]`: typed keys, legacy OIDC providers, escape hatches, delegation conflicts.

use super::password_auth::check_password_auth;
use super::proxy::public_scheme;
use super::*;

/// `version_text` is `synapse.version`, or the one derived from the pin (pins.rs).
pub(super) fn check_synapse(
    c: &mut Checker,
    spec: &SpecFile,
    place: &placement::Placement,
    mode: Mode,
    version_text: &str,
) -> Synapse {
    let host = place.synapse.as_str();
    let s = &spec.synapse;
    let server_name = &spec.homeserver.server_name;
    let version = check_version(c, spec, version_text);
    let public_hostname = s
        .public_hostname
        .clone()
        .unwrap_or_else(|| format!("matrix.{server_name}"));
    c.hostname("synapse.public_hostname", &public_hostname);
    let (listen_address, port) = check_synapse_listener(c, s);
    let database = check_database(
        c,
        "synapse.database",
        &s.database,
        "matrix-synapse",
        "matrix-synapse",
        mode == Mode::Fresh,
        (place, host),
    );

    check_secret_files(c, s, &version, mode);

    let password_login = check_password_login(c, s, mode);

    let (oidc_providers, legacy_oidc) = check_synapse_sso(c, s);

    let extra_settings = table_to_json(&s.extra_settings);
    let final_extra_settings = table_to_json(&s.final_extra_settings);
    check_synapse_escape_hatch(c, &extra_settings, &final_extra_settings, &version, mode);
    let auth = check_password_auth(c, s, mode, &extra_settings, &final_extra_settings);

    let synapse = Synapse {
        host: host.to_string(),
        version,
        public_hostname,
        public_scheme: public_scheme(&spec.proxy),
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
        password_providers: auth.password_providers,
        ldap: auth.ldap,
        ldap_module: auth.ldap_module,
        modules: auth.modules,
        app_services: check_app_services(c, s),
        extra_settings,
        final_extra_settings,
        extra_config_files: s.extra_config_files.clone(),
    };
    check_synapse_semantics(c, &synapse, mode);
    synapse
}

/// `[synapse.listener]`: where Synapse listens behind nginx.
fn check_synapse_listener(c: &mut Checker, s: &raw::SynapseSpec) -> (String, u16) {
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
    (listen_address, port)
}

/// `synapse.password_login`: Synapse's `password_config.enabled`.
fn check_password_login(c: &mut Checker, s: &raw::SynapseSpec, mode: Mode) -> PasswordLogin {
    match &s.password_login {
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
            // Counted as on, which a fresh install's delegation then refuses.
            c.defaulted();
            PasswordLogin::Enabled
        }
    }
}

/// `[[synapse.app_services]]`: registration files on the host.
fn check_app_services(c: &mut Checker, s: &raw::SynapseSpec) -> Vec<AppService> {
    let apps: Vec<AppService> = s
        .app_services
        .iter()
        .map(|a| AppService {
            name: a.name.clone(),
            registration_file: a.registration_file.clone(),
            encrypted: a.encrypted.unwrap_or(false),
            kind: a.kind.clone(),
        })
        .collect();
    for (i, a) in apps.iter().enumerate() {
        c.abs_path_str(
            &format!("synapse.app_services[{i}].registration_file"),
            &a.registration_file,
        );
    }
    apps
}

/// `synapse.version`: parsed, and the releases masgen must work around.
fn check_version(c: &mut Checker, spec: &SpecFile, version_text: &str) -> SynapseVersion {
    let version = match parse_version(version_text) {
        Some(v) => v,
        None => {
            c.error(
                "synapse.version",
                at("synapse.version"),
                format!("`{version_text}` is not a Synapse version"),
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
    version
}

/// Secret files, and the `*_path` settings the Synapse version must know.
fn check_secret_files(c: &mut Checker, s: &raw::SynapseSpec, version: &SynapseVersion, mode: Mode) {
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
}

/// `oidc_providers`, the legacy `oidc_config`, and `legacy_sso`.
fn check_synapse_sso(
    c: &mut Checker,
    s: &raw::SynapseSpec,
) -> (Vec<SynapseOidc>, Option<SynapseOidc>) {
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

    (oidc_providers, legacy_oidc)
}

pub(super) fn check_synapse_oidc(
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
        extra: check_oidc_extra(c, path, &p.extra),
    }
}

/// A provider's `extra` table: anything Synapse's provider accepts, except
/// what the spec has a key for (a second value would be ambiguous).
fn check_oidc_extra(c: &mut Checker, path: &str, extra: &toml::Table) -> Map<String, Value> {
    let extra = table_to_json(extra);
    let typed = [
        ("idp_id", "idp_id"),
        ("idp_name", "idp_name"),
        ("issuer", "issuer"),
        ("client_id", "client_id"),
        ("client_secret_path", "client_secret_file"),
        ("scopes", "scopes"),
        ("discover", "discover"),
        ("allow_existing_users", "allow_existing_users"),
        ("enabled", "the block itself"),
    ];
    for (k, own) in typed {
        if extra.contains_key(k) {
            c.error(
                "synapse.oidc.extra_typed",
                at(&format!("{path}.extra.{k}")),
                format!("`{k}` has a key of its own in the spec"),
                format!("set `{own}` instead"),
            );
        }
    }
    let ump = extra
        .get("user_mapping_provider")
        .and_then(|u| u.get("config"));
    if let Some(Value::Object(config)) = ump {
        for k in [
            "localpart_template",
            "display_name_template",
            "email_template",
        ] {
            if config.contains_key(k) {
                c.error(
                    "synapse.oidc.extra_typed",
                    at(&format!("{path}.extra.user_mapping_provider.config.{k}")),
                    format!("`{k}` has a key of its own in the spec"),
                    format!("set `{path}.{k}` instead"),
                );
            }
        }
    }
    extra
}

pub(super) fn check_synapse_escape_hatch(
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

pub(super) fn check_synapse_semantics(c: &mut Checker, s: &Synapse, mode: Mode) {
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
    ];
    if mode == Mode::Fresh {
        check_fresh_conflicts(c, s, &explicit_final);
    } else {
        check_migrate_expectations(c, s);
    }
}

/// What stops working, or what syn2mas refuses, when an existing Synapse
/// moves to MAS (password providers: password_auth.rs).
fn check_migrate_expectations(c: &mut Checker, s: &Synapse) {
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

/// A fresh install delegates from the start: anything set here is meant for
/// the delegated configuration, where Synapse refuses it.
fn check_fresh_conflicts(c: &mut Checker, s: &Synapse, explicit_final: &[(&str, bool, &str)]) {
    for &(path, set, setting) in explicit_final {
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
}
