//! Synapse password providers, wherever the spec writes them: `[synapse.ldap]`,
//! `[[synapse.password_providers]]`, password-auth `[[synapse.modules]]`, and
//! the same settings in `extra_settings` / `final_extra_settings`. Phase 1
//! keeps them working; a delegating Synapse refuses to start with any of them
//! (synapse/config/mas.py for `password_providers`/`ldap_config`,
//! synapse/module_api/__init__.py for modules), so the final phase drops them
//! (src/lower/synapse.rs) and a setting meant for the final phase is an error.

use super::*;
use crate::rules::{is_ldap_module, is_password_auth_module, password_auth_in};

pub(super) struct PasswordAuth {
    /// The LDAP plugin must be installed in phase 1.
    pub ldap: bool,
    /// `[synapse.ldap]` as matrix-synapse-ldap3's config.
    pub ldap_module: Option<Value>,
    pub password_providers: Vec<PasswordProvider>,
    pub modules: Vec<SynapseModule>,
}

pub(super) fn check_password_auth(
    c: &mut Checker,
    s: &raw::SynapseSpec,
    mode: Mode,
    extra: &Map<String, Value>,
    final_extra: &Map<String, Value>,
) -> PasswordAuth {
    let (ldap_flag, ldap_module) = check_ldap(c, &s.ldap);
    let password_providers: Vec<PasswordProvider> = s
        .password_providers
        .iter()
        .map(|p| PasswordProvider {
            module: p.module.clone(),
            config: Value::Object(table_to_json(&p.config)),
        })
        .collect();
    let modules: Vec<SynapseModule> = s
        .modules
        .iter()
        .map(|m| SynapseModule {
            module: m.module.clone(),
            config: Value::Object(table_to_json(&m.config)),
            // A known package registers password auth whatever the flag says.
            password_auth: m.password_auth.unwrap_or(false) || is_password_auth_module(&m.module),
        })
        .collect();
    let in_extra = password_auth_in(&Value::Object(extra.clone()));
    check_escape_hatches(c, mode, &in_extra, final_extra);
    if mode == Mode::Fresh {
        check_fresh_typed(c, ldap_flag || ldap_module.is_some(), &modules);
    }
    if mode == Mode::Migrate {
        let typed = if !password_providers.is_empty() {
            Some("synapse.password_providers")
        } else if ldap_flag || ldap_module.is_some() {
            Some("synapse.ldap")
        } else if modules.iter().any(|m| m.password_auth) {
            Some("synapse.modules")
        } else {
            None
        };
        if let Some(path) = typed {
            c.warn(
                "migrate.password_providers",
                at(path),
                "password providers (shared-secret-auth, rest-auth, LDAP) stop working once Synapse delegates to MAS; they are dropped from the final configuration",
                "bridges: switch to appservice double puppeting; LDAP users: put an OIDC bridge such as Dex in front of LDAP and add it as a MAS upstream provider. `masgen plan` asks for --acknowledge password-providers-stop-working",
            );
        }
    }

    let typed_ldap = password_providers
        .iter()
        .map(|p| &p.module)
        .chain(modules.iter().map(|m| &m.module))
        .any(|m| is_ldap_module(m));
    let extra_ldap = in_extra.iter().any(|p| is_ldap_module(&p.module));
    if mode == Mode::Migrate && ldap_flag && ldap_module.is_none() && !typed_ldap && !extra_ldap {
        c.warn(
            "synapse.ldap.unconfigured",
            at("synapse.ldap"),
            "`ldap = true` installs the LDAP plugin, but no LDAP provider is configured in the spec: if its settings sit in one of `extra_config_files`, the final phase loads them too and Synapse refuses to start",
            "write the settings as `[synapse.ldap]` (uri, base, attributes, bind_dn, bind_password_file): masgen keeps them in phase 1 and drops them from the final phase",
        );
    }
    PasswordAuth {
        ldap: ldap_flag || ldap_module.is_some() || typed_ldap || extra_ldap,
        ldap_module,
        password_providers,
        modules,
    }
}

/// A fresh install's only configuration delegates: typed LDAP and password
/// modules cannot work there (`password_providers` are refused with the other
/// typed conflicts, synapse.rs).
fn check_fresh_typed(c: &mut Checker, ldap: bool, modules: &[SynapseModule]) {
    let help = "remove it; users log in through MAS (an LDAP directory via an upstream OIDC bridge such as Dex)";
    if ldap {
        c.error(
            "synapse.delegation_conflict",
            at("synapse.ldap"),
            "a fresh install delegates to MAS from the start, and a delegating Synapse refuses password providers such as LDAP",
            help,
        );
    }
    for (i, m) in modules.iter().enumerate() {
        if m.password_auth {
            c.error(
                "synapse.delegation_conflict",
                at(&format!("synapse.modules[{i}]")),
                format!("a fresh install delegates to MAS from the start, and a delegating Synapse refuses to start with the password-auth module `{}`", m.module),
                help,
            );
        }
    }
}

/// `synapse.ldap`: `true` (the plugin only, as before) or the provider's
/// settings (matrix-synapse-ldap3 `parse_config`).
fn check_ldap(c: &mut Checker, ldap: &Option<toml::Value>) -> (bool, Option<Value>) {
    let table = match ldap {
        None => return (false, None),
        Some(toml::Value::Boolean(b)) => return (*b, None),
        Some(toml::Value::Table(t)) => t,
        Some(other) => {
            c.error(
                "synapse.ldap",
                at("synapse.ldap"),
                format!("`{other}` is not an LDAP setting"),
                "write `[synapse.ldap]` with `uri`, `base` and `attributes`",
            );
            return (false, None);
        }
    };
    let mut config = table_to_json(table);
    for key in ["uri", "base", "attributes"] {
        if !config.contains_key(key) {
            c.error(
                "synapse.ldap",
                at("synapse.ldap"),
                format!("`[synapse.ldap]` needs `{key}` (matrix-synapse-ldap3 refuses to load without it)"),
                format!("set `{key}`, e.g. uri = \"ldap://ldap.example.com:389\", base = \"ou=users,dc=example,dc=com\", attributes = {{ uid = \"uid\", mail = \"mail\", name = \"cn\" }}"),
            );
        }
    }
    if let Some(attributes) = config.get("attributes") {
        for key in ["uid", "mail", "name"] {
            if attributes.get(key).is_none() {
                c.error(
                    "synapse.ldap",
                    at("synapse.ldap.attributes"),
                    format!("`attributes` needs `{key}` (matrix-synapse-ldap3 refuses to load without it)"),
                    "set `uid`, `mail` and `name` to the LDAP attributes holding them",
                );
            }
        }
    }
    if config.contains_key("bind_dn") && !config.contains_key("bind_password_file") {
        c.error(
            "synapse.ldap",
            at("synapse.ldap.bind_dn"),
            "`bind_dn` needs `bind_password_file`",
            "put the bind password in a root-only file readable by matrix-synapse and set `bind_password_file`",
        );
    }
    if let Some(Value::String(f)) = config.get("bind_password_file") {
        let f = f.clone();
        c.abs_path_str("synapse.ldap.bind_password_file", &f);
    }
    if config.get("enabled") == Some(&Value::Bool(false)) {
        c.error(
            "synapse.ldap",
            at("synapse.ldap.enabled"),
            "`enabled = false` would load the LDAP module and ignore it",
            "remove `[synapse.ldap]` to turn LDAP off",
        );
    }
    config.insert("enabled".into(), Value::Bool(true));
    (true, Some(Value::Object(config)))
}

/// Password providers in the escape hatches. `password_providers` and
/// `ldap_config` meant for the final phase are refused by the delegation
/// conflict table already (synapse.rs); `modules` are Synapse's to refuse at
/// start, not its config loader's, so they are looked for here.
fn check_escape_hatches(
    c: &mut Checker,
    mode: Mode,
    in_extra: &[rules::PasswordAuthSetting],
    final_extra: &Map<String, Value>,
) {
    let path = |table: &str, p: &rules::PasswordAuthSetting| {
        let base = at(&format!("synapse.{table}")).key(p.key);
        match p.index {
            Some(i) => base.index(i),
            None => base,
        }
    };
    for p in in_extra {
        if mode == Mode::Fresh {
            if p.key == "modules" {
                c.error(
                    "synapse.delegation_conflict",
                    path("extra_settings", p),
                    format!("a fresh install delegates to MAS from the start, and a delegating Synapse refuses to start with the password-auth module `{}`", p.module),
                    "remove it; users log in through MAS (an LDAP directory via an upstream OIDC bridge such as Dex)",
                );
            }
            continue;
        }
        c.warn(
            "migrate.password_providers",
            path("extra_settings", p),
            format!("`{}` is a password provider (`{}`): phase 1 keeps it, the final configuration drops it, and its users cannot log in through it once Synapse delegates to MAS", p.key, p.module),
            "LDAP users: put an OIDC bridge such as Dex in front of LDAP and add it as a MAS upstream provider; bridges: use appservice double puppeting. `masgen plan` asks for --acknowledge password-providers-stop-working",
        );
    }
    for p in password_auth_in(&Value::Object(final_extra.clone())) {
        if p.key == "modules" {
            c.error(
                "synapse.delegation_conflict",
                path("final_extra_settings", &p),
                format!("a delegating Synapse refuses to start with the password-auth module `{}` (\"Cannot use password auth provider callbacks when OAuth delegation is enabled\")", p.module),
                "remove it from the final configuration",
            );
        }
    }
}
