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
        }
    }
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
