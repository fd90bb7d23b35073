//! What a reviewer must not miss: delegation starting or stopping, logins
//! moving between Synapse and MAS, identities that must never change.

use std::collections::BTreeSet;

use serde_json::Value;

use super::super::changeset::*;
use super::super::values;

pub(super) fn phase_warnings(
    change: &mut ConfigurationChange,
    old_delegates: bool,
    new_delegates: bool,
    old_phase: &str,
    new_phase: &str,
    old_name: &str,
) {
    if old_delegates == new_delegates {
        return;
    }
    let (from, to) = if old_phase != new_phase {
        (old_phase.to_string(), new_phase.to_string())
    } else if new_delegates {
        ("not delegating".to_string(), "delegating".to_string())
    } else {
        ("delegating".to_string(), "not delegating".to_string())
    };
    if new_delegates {
        change.phase_change = Some(PhaseChange {
            from,
            to,
            direction: PhaseDirection::Delegate,
        });
        change.warnings.push(Warning {
            code: "delegation_one_way".into(),
            message: format!(
                "Synapse starts delegating authentication to MAS: logins, registrations and sessions \
                 become MAS's. This is one-way once users log in through MAS: sessions created through \
                 MAS break if you roll back to {old_name}. Run the migration steps first (`masgen plan`)."
            ),
        });
    } else {
        change.phase_change = Some(PhaseChange {
            from,
            to,
            direction: PhaseDirection::Rollback,
        });
        change.warnings.push(Warning {
            code: "rollback_breaks_mas_sessions".into(),
            message:
                "Synapse stops delegating authentication to MAS: every session created through \
                      MAS stops working, and users who registered in MAS cannot log in to Synapse."
                    .into(),
        });
    }
}

pub(super) fn route_warnings(
    change: &mut ConfigurationChange,
    old_hosts: &BTreeSet<String>,
    new_hosts: &BTreeSet<String>,
) {
    let mut warnings = Vec::new();
    let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
    if old_hosts.is_empty() && !new_hosts.is_empty() {
        for r in change
            .routes
            .iter()
            .filter(|r| r.compat && r.change == Change::Added)
        {
            warnings.push(Warning {
                code: "logins_move_to_mas".into(),
                message: format!(
                    "logins now go to MAS: `{}` on {} is sent to {}",
                    r.matcher,
                    r.server_name,
                    r.new
                        .as_ref()
                        .map(RouteTarget::describe)
                        .unwrap_or_default()
                ),
            });
        }
    } else if !old_hosts.is_empty() && new_hosts.is_empty() {
        for r in change
            .routes
            .iter()
            .filter(|r| r.compat && r.change == Change::Removed)
        {
            warnings.push(Warning {
                code: "logins_move_to_synapse".into(),
                message: format!(
                    "logins go back to Synapse: `{}` on {} no longer reaches MAS",
                    r.matcher, r.server_name
                ),
            });
        }
    } else if old_hosts != new_hosts {
        warnings.push(Warning {
            code: "login_route_moves".into(),
            message: format!(
                "MAS's login route moves: it was served on {}, now on {}",
                list(old_hosts),
                list(new_hosts)
            ),
        });
    }
    for r in change
        .routes
        .iter()
        .filter(|r| r.compat && r.change == Change::Changed)
    {
        warnings.push(Warning {
            code: "login_route_changes".into(),
            message: format!(
                "the login route `{}` on {} changes: {} → {}",
                r.matcher,
                r.server_name,
                r.old
                    .as_ref()
                    .map(RouteTarget::describe)
                    .unwrap_or_default(),
                r.new
                    .as_ref()
                    .map(RouteTarget::describe)
                    .unwrap_or_default()
            ),
        });
    }
    change.warnings.extend(warnings);
}

/// Upstream OAuth2 provider ids in MAS settings.
pub(super) fn provider_ids(mas: &Value) -> BTreeSet<String> {
    mas.pointer("/upstream_oauth2/providers")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("id").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn setting_warnings(
    change: &mut ConfigurationChange,
    old_mas: Option<&Value>,
    new_mas: &Value,
) {
    let mut warnings = Vec::new();
    for c in &change.synapse_settings {
        if c.path == "server_name" && c.change == Change::Changed {
            warnings.push(Warning {
                code: "server_name_changes".into(),
                message: format!(
                    "Synapse's server_name changes ({} → {}): an existing Synapse database cannot change its server name",
                    values::show(c.old.as_ref()),
                    values::show(c.new.as_ref())
                ),
            });
        }
    }
    let new_ids = provider_ids(new_mas);
    for c in &change.mas_settings {
        if c.path == "http.public_base" && c.change == Change::Changed {
            let mut message = format!(
                "MAS's public URL changes ({} → {}): clients find it again through .well-known and Synapse's auth_metadata",
                values::show(c.old.as_ref()),
                values::show(c.new.as_ref())
            );
            if !new_ids.is_empty() {
                message.push_str(
                    "; register the new redirect URIs (<public_base>upstream/callback/<id>) at every upstream provider",
                );
            }
            warnings.push(Warning {
                code: "mas_public_base_changes".into(),
                message,
            });
        }
    }
    if let Some(old_mas) = old_mas {
        let old_ids = provider_ids(old_mas);
        let base = new_mas
            .pointer("/http/public_base")
            .and_then(Value::as_str)
            .unwrap_or("<public_base>");
        for id in new_ids.difference(&old_ids) {
            warnings.push(Warning {
                code: "upstream_provider_added".into(),
                message: format!(
                    "MAS gains the upstream provider {id}: register the redirect URI {base}upstream/callback/{id} at the provider"
                ),
            });
        }
        for id in old_ids.difference(&new_ids) {
            warnings.push(Warning {
                code: "upstream_provider_removed".into(),
                message: format!(
                    "MAS loses the upstream provider {id}: it stays in MAS's database (with its users' links) until `mas-cli config sync --prune`; an id, once used, must never change"
                ),
            });
        }
    }
    change.warnings.extend(warnings);
}
