//! Settings a delegating Synapse refuses to start with (Synapse
//! `synapse/config/mas.py`, `check_config_conflicts`). One table, used by
//! masgen's validation, by lowering (which drops them from the final phase) and
//! by the conformance tests that feed each case to a real Synapse.

use serde_json::Value;

pub mod secrets;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The value is `true`.
    True,
    /// `true` or `"only_for_reauth"` (`password_config.enabled`).
    PasswordLogin,
    /// Any non-null value.
    Present,
    /// A non-empty list.
    NonEmpty,
    /// A config block that is on unless it says `enabled: false`.
    BlockEnabled,
    /// A config block that is off unless `enabled` is truthy (`ldap_config`).
    BlockEnabledExplicitly,
}

#[derive(Debug, Clone, Copy)]
pub struct DelegationConflict {
    /// Dotted path in homeserver.yaml.
    pub setting: &'static str,
    pub trigger: Trigger,
    /// A value that triggers the conflict, as JSON (for tests and docs).
    pub example: &'static str,
    /// Why Synapse refuses it.
    pub reason: &'static str,
}

pub const DELEGATION_CONFLICTS: &[DelegationConflict] = &[
    DelegationConflict {
        setting: "password_config.enabled",
        trigger: Trigger::PasswordLogin,
        example: "true",
        reason: "password login is handled by MAS once Synapse delegates authentication",
    },
    DelegationConflict {
        setting: "enable_registration",
        trigger: Trigger::True,
        example: "true",
        reason: "registration is handled by MAS (`account.password_registration_enabled`)",
    },
    DelegationConflict {
        setting: "user_consent",
        trigger: Trigger::Present,
        example: r#"{"version": "1.0", "template_dir": "/var/lib/matrix-synapse/privacy-templates"}"#,
        reason: "user consent is not supported with MAS (use MAS `branding.tos_uri`)",
    },
    DelegationConflict {
        setting: "oidc_providers",
        trigger: Trigger::NonEmpty,
        example: r#"[{"idp_id": "keycloak", "idp_name": "Keycloak", "issuer": "https://sso.example.com/realms/matrix", "client_id": "synapse", "client_secret_path": "/run/secrets/synapse-oidc-secret", "scopes": ["openid"]}]"#,
        reason: "SSO moves to MAS upstream OAuth2 providers",
    },
    DelegationConflict {
        setting: "cas_config",
        trigger: Trigger::BlockEnabled,
        example: r#"{"server_url": "https://cas.example.com"}"#,
        reason: "SSO (CAS) cannot be enabled when Synapse delegates to MAS",
    },
    DelegationConflict {
        setting: "jwt_config.enabled",
        trigger: Trigger::True,
        example: "true",
        reason: "JWT login cannot be enabled when Synapse delegates to MAS",
    },
    DelegationConflict {
        setting: "password_providers",
        trigger: Trigger::NonEmpty,
        example: r#"[{"module": "synapse.handlers.ui_auth.checkers.DummyAuthChecker", "config": {}}]"#,
        reason: "password providers (shared-secret-auth, rest-auth, LDAP) stop working; MAS authenticates users",
    },
    DelegationConflict {
        // synapse/config/password_auth_providers.py turns a truthy
        // `ldap_config.enabled` into an `ldap_auth_provider.LdapAuthProvider`.
        setting: "ldap_config",
        trigger: Trigger::BlockEnabledExplicitly,
        example: r#"{"enabled": true, "uri": "ldap://ldap.example.com:389", "base": "ou=users,dc=example,dc=com", "attributes": {"uid": "cn", "mail": "mail", "name": "givenName"}}"#,
        reason: "the legacy `ldap_config` block is an LDAP password provider; MAS authenticates users",
    },
    DelegationConflict {
        setting: "enable_registration_captcha",
        trigger: Trigger::True,
        example: "true",
        reason: "registration CAPTCHA moves to MAS `captcha`",
    },
    DelegationConflict {
        setting: "login_via_existing_session.enabled",
        trigger: Trigger::True,
        example: "true",
        reason: "login via an existing session (MSC3882) is replaced by MAS QR login (MSC4108)",
    },
    DelegationConflict {
        setting: "refresh_token_lifetime",
        trigger: Trigger::Present,
        example: r#""24h""#,
        reason: "token lifetimes are managed by MAS",
    },
    DelegationConflict {
        setting: "nonrefreshable_access_token_lifetime",
        trigger: Trigger::Present,
        example: r#""24h""#,
        reason: "token lifetimes are managed by MAS",
    },
    DelegationConflict {
        setting: "session_lifetime",
        trigger: Trigger::Present,
        example: r#""24h""#,
        reason: "session lifetimes are managed by MAS",
    },
    DelegationConflict {
        setting: "enable_3pid_changes",
        trigger: Trigger::True,
        example: "true",
        reason: "3PID changes are handled by MAS (`account.email_change_allowed`)",
    },
];

impl DelegationConflict {
    pub fn triggered_by(&self, value: &Value) -> bool {
        match self.trigger {
            Trigger::True => value == &Value::Bool(true),
            Trigger::PasswordLogin => {
                value == &Value::Bool(true) || value == &Value::String("only_for_reauth".into())
            }
            Trigger::Present => !value.is_null(),
            Trigger::NonEmpty => value.as_array().is_some_and(|a| !a.is_empty()),
            // Synapse turns CAS on for any `cas_config` block without `enabled: false`.
            Trigger::BlockEnabled => {
                value.is_object() && value.get("enabled") != Some(&Value::Bool(false))
            }
            Trigger::BlockEnabledExplicitly => value.get("enabled").is_some_and(truthy),
        }
    }
}

/// Python's truthiness of a YAML value (Synapse tests `if x.get("enabled")`).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python packages of Synapse modules that register password auth callbacks
/// (`register_password_auth_provider_callbacks`): a delegating Synapse refuses
/// to start with them ("Cannot use password auth provider callbacks when OAuth
/// delegation is enabled", synapse/module_api/__init__.py). matrix-synapse-ldap3
/// (`LdapAuthProviderModule`), synapse-token-authenticator, and, by their
/// READMEs, matrix-synapse-shared-secret-auth and the REST password provider.
pub const PASSWORD_AUTH_PACKAGES: &[&str] = &[
    "ldap_auth_provider",
    "shared_secret_authenticator",
    "rest_auth_provider",
    "synapse_token_authenticator",
];

/// The class masgen loads for `[synapse.ldap]` (matrix-synapse-ldap3's
/// module-API form).
pub const LDAP_MODULE: &str = "ldap_auth_provider.LdapAuthProviderModule";

/// Whether a Synapse module (`package.Class`) is a known password provider.
pub fn is_password_auth_module(module: &str) -> bool {
    is_ldap_module(module)
        || PASSWORD_AUTH_PACKAGES.contains(&module.split('.').next().unwrap_or(""))
}

/// matrix-synapse-ldap3, under either of its names (Synapse maps the old
/// `synapse.util.ldap_auth_provider.LdapAuthProvider` to it).
pub fn is_ldap_module(module: &str) -> bool {
    module.starts_with("ldap_auth_provider.")
        || module == "synapse.util.ldap_auth_provider.LdapAuthProvider"
}

/// A place in Synapse settings that turns on password authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordAuthSetting {
    /// Top-level key: `ldap_config`, `password_providers` or `modules`.
    pub key: &'static str,
    /// The list entry, for `password_providers` and `modules`.
    pub index: Option<usize>,
    /// The Python class Synapse loads.
    pub module: String,
}

/// Every password provider a Synapse settings object configures: the legacy
/// `ldap_config`, every `password_providers` entry, and `modules` entries of
/// known password-auth packages.
pub fn password_auth_in(settings: &Value) -> Vec<PasswordAuthSetting> {
    let mut found = Vec::new();
    if let Some(ldap) = settings.get("ldap_config") {
        if ldap.get("enabled").is_some_and(truthy) {
            found.push(PasswordAuthSetting {
                key: "ldap_config",
                index: None,
                module: "ldap_auth_provider.LdapAuthProvider".into(),
            });
        }
    }
    for key in ["password_providers", "modules"] {
        let entries = settings.get(key).and_then(Value::as_array);
        for (i, entry) in entries.into_iter().flatten().enumerate() {
            let module = entry.get("module").and_then(Value::as_str).unwrap_or("");
            if key == "password_providers" || is_password_auth_module(module) {
                found.push(PasswordAuthSetting {
                    key,
                    index: Some(i),
                    module: module.to_string(),
                });
            }
        }
    }
    found
}

/// Looks a dotted path up in a settings object.
pub fn lookup<'a>(settings: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(settings, |v, key| v.get(key))
}

/// The conflicts a Synapse settings object would trigger with delegation on.
pub fn conflicts_in(settings: &Value) -> Vec<&'static DelegationConflict> {
    DELEGATION_CONFLICTS
        .iter()
        .filter(|c| lookup(settings, c.setting).is_some_and(|v| c.triggered_by(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_triggers_its_own_rule() {
        for c in DELEGATION_CONFLICTS {
            let value: Value = serde_json::from_str(c.example).expect(c.setting);
            assert!(c.triggered_by(&value), "{}", c.setting);
        }
    }

    #[test]
    fn finds_password_providers_in_every_form() {
        let settings = serde_json::json!({
            "ldap_config": {"enabled": "yes", "uri": "ldap://x"},
            "password_providers": [{"module": "rest_auth_provider.RestAuthProvider"}],
            "modules": [
                {"module": "my_spam_checker.Checker"},
                {"module": "shared_secret_authenticator.SharedSecretAuthProvider"},
            ],
        });
        let found: Vec<_> = password_auth_in(&settings)
            .into_iter()
            .map(|p| (p.key, p.index))
            .collect();
        assert_eq!(
            found,
            [
                ("ldap_config", None),
                ("password_providers", Some(0)),
                ("modules", Some(1))
            ]
        );
        let off = serde_json::json!({"ldap_config": {"enabled": false}});
        assert!(password_auth_in(&off).is_empty());
        assert!(conflicts_in(&off).is_empty());
    }

    #[test]
    fn finds_nested_conflicts_and_ignores_disabled_ones() {
        let settings = serde_json::json!({
            "password_config": {"enabled": "only_for_reauth"},
            "enable_registration": false,
            "login_via_existing_session": {"enabled": true},
        });
        let found: Vec<_> = conflicts_in(&settings).iter().map(|c| c.setting).collect();
        assert_eq!(
            found,
            [
                "password_config.enabled",
                "login_via_existing_session.enabled"
            ]
        );
    }
}
