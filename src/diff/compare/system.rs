//! A running system (its units and the config files they name) vs each
//! configuration of the new tree.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::emit::OutputTree;
use crate::lower::PASSWORD_CONFIG_PATH;
use crate::rules;
use crate::system::{delegates, merge_shallow, SystemState, MAS_UNIT, NGINX_UNIT, SYNAPSE_UNIT};

use super::super::changeset::*;
use super::super::state::{self, ConfigState};
use super::super::values;
use super::routes::{compare_system_routes, compat_hosts, is_compat, nginx_routes, route_summary};
use super::units::{
    is_config_credential, is_known_unit, is_task_unit, service_unit, task_differences, task_unit,
    NGINX_RESTART, PASSWORD_CONFIG_UNIT, POSTGRES_UNIT,
};
use super::warnings::{phase_warnings, route_warnings, setting_warnings};
use super::{count, empty_change, finish, mark_changed};

/// The system's units and config files vs each configuration of the new tree.
/// `systems`: each host's system, by its name in the spec; a host without
/// one is not compared (a note says so).
pub fn compare_system(
    spec: &str,
    systems: &[(String, SystemState)],
    new: &OutputTree,
) -> Result<Changeset, String> {
    let new_cfgs = state::configurations(new).map_err(|e| format!("the new tree: {e}"))?;
    let mut notes: Vec<String> = systems.iter().flat_map(|(_, s)| s.notes.clone()).collect();
    let mut configurations = Vec::new();
    for n in &new_cfgs {
        let Some((_, system)) = systems.iter().find(|(h, _)| *h == n.host) else {
            notes.push(format!(
                "host `{}` is not compared: give its root with --system {}=ROOT",
                n.host, n.host
            ));
            continue;
        };
        let siblings: Vec<&ConfigState> = new_cfgs.iter().filter(|c| c.host == n.host).collect();
        configurations.push(compare_with_system(system, n, &siblings, &mut notes));
    }
    notes.sort();
    notes.dedup();
    let root = match systems {
        [(_, one)] => one.root.clone(),
        many => many
            .iter()
            .map(|(h, s)| format!("{h}={}", s.root))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let against = Against::System { root };
    Ok(finish(spec, against, configurations, Vec::new(), notes))
}

/// A system's settings that `n` does not set are the host's own (or
/// nixpkgs defaults) and stay, unless another configuration of the same host
/// sets them: then masgen put them there, and switching to `n` removes them.
fn compare_with_system(
    sys: &SystemState,
    n: &ConfigState,
    siblings: &[&ConfigState],
    notes: &mut Vec<String>,
) -> ConfigurationChange {
    let mut change = empty_change(n, Some(format!("the system at {}", sys.root)));
    let mut units = BTreeMap::new();
    let has = |u: &str| sys.units.contains_key(u);

    let synapse = synapse_against(sys, n, siblings, notes, &mut change);
    service_unit(
        &mut units,
        SYNAPSE_UNIT,
        has(SYNAPSE_UNIT),
        n.synapse_enabled(),
        synapse.reasons,
        "restarted",
    );
    service_unit(
        &mut units,
        PASSWORD_CONFIG_UNIT,
        has(PASSWORD_CONFIG_UNIT),
        n.password_config().is_some(),
        vec![],
        "restarted",
    );
    let (mas_reasons, sys_mas) = mas_against(sys, n, siblings, notes, &mut change);
    service_unit(
        &mut units,
        MAS_UNIT,
        has(MAS_UNIT),
        n.mas_enabled(),
        mas_reasons,
        "restarted",
    );
    let (nginx_reasons, compat) = nginx_against(sys, n, siblings, notes, &mut change);
    service_unit(
        &mut units,
        NGINX_UNIT,
        has(NGINX_UNIT),
        n.nginx_enabled(),
        nginx_reasons,
        NGINX_RESTART,
    );
    service_unit(
        &mut units,
        POSTGRES_UNIT,
        has(POSTGRES_UNIT),
        n.postgres_enabled(),
        vec![],
        "restarted",
    );
    tasks_against(sys, n, &mut units);
    change.units = units.into_values().collect();
    change.foreign_units = sys
        .units
        .keys()
        .filter(|u| !is_known_unit(u))
        .cloned()
        .collect();

    let ours_delegate = delegates(&n.synapse_settings());
    if has(SYNAPSE_UNIT) && synapse.delegates != ours_delegate {
        let from = if synapse.delegates {
            "delegating"
        } else {
            "not delegating"
        };
        phase_warnings(
            &mut change,
            synapse.delegates,
            ours_delegate,
            from,
            &n.phase,
            "the system's current configuration",
        );
    }
    if let Some((old_hosts, new_hosts)) = compat {
        route_warnings(&mut change, &old_hosts, &new_hosts);
    }
    change.warnings.extend(synapse.conflicts);
    setting_warnings(&mut change, sys_mas.as_ref(), &n.mas_settings());
    mark_changed(&mut change);
    change
}

/// What the Synapse side of a switch changes.
#[derive(Default)]
struct SynapseSide {
    /// Whether the system's Synapse delegates to MAS today.
    delegates: bool,
    /// Why matrix-synapse.service restarts.
    reasons: Vec<String>,
    /// Settings only the system sets that Synapse refuses once delegating.
    conflicts: Vec<Warning>,
}

/// Synapse: the files its ExecStart names, merged as Synapse merges them.
fn synapse_against(
    sys: &SystemState,
    n: &ConfigState,
    siblings: &[&ConfigState],
    notes: &mut Vec<String>,
    change: &mut ConfigurationChange,
) -> SynapseSide {
    let mut side = SynapseSide::default();
    if !sys.units.contains_key(SYNAPSE_UNIT) {
        return side;
    }
    let files = sys.synapse_config_files();
    let (mut theirs, unreadable) = merge_files(sys, &files, false, notes);
    let password_unreadable = unreadable.iter().any(|f| f == PASSWORD_CONFIG_PATH);
    let mut ours = n.synapse_settings();
    for f in n.synapse_extra_files() {
        if f == PASSWORD_CONFIG_PATH {
            if let Some(pc) = n.password_config() {
                let mut settings = pc.get("settings").cloned().unwrap_or(json!({}));
                if pc.get("pepperFile").is_some_and(|p| !p.is_null()) {
                    settings["pepper"] = json!(values::REDACTED);
                }
                ours["password_config"] = settings;
            }
        } else if let Some(Ok(m)) = sys.files.get(&f) {
            if let Value::Object(o) = &mut ours {
                merge_shallow(o, m.clone());
            }
        } else {
            notes.push(format!(
                "{f} (a Synapse extra config file of `{}`) could not be read: its keys are not compared",
                n.configuration
            ));
        }
    }
    if password_unreadable {
        for v in [&mut theirs, &mut ours] {
            if let Value::Object(m) = v {
                m.remove("password_config");
            }
        }
    }
    values::redact(&mut theirs);
    values::redact(&mut ours);
    side.delegates = delegates(&theirs);
    let unmanaged: Vec<String> = values::only_in(&theirs, &ours, false)
        .into_iter()
        .filter(|k| {
            !siblings.iter().any(|c| {
                values::lookup(&c.synapse_settings(), k).is_some()
                    || (k == "password_config" && c.password_config().is_some())
            })
        })
        .collect();
    if delegates(&ours) {
        let mut only: Map<String, Value> = Map::new();
        for k in &unmanaged {
            if let Some(v) = theirs.get(k) {
                only.insert(k.clone(), v.clone());
            }
        }
        for c in rules::conflicts_in(&Value::Object(only)) {
            side.conflicts.push(Warning {
                code: "delegation_conflict_on_system".into(),
                message: format!(
                    "the system's Synapse config sets `{}`, which masgen does not set: if the host's own configuration sets it, Synapse refuses to start once it delegates to MAS ({})",
                    c.setting, c.reason
                ),
            });
        }
    }
    values::remove_paths(&mut theirs, &unmanaged);
    change
        .unmanaged_settings
        .extend(unmanaged.iter().map(|k| format!("synapse.{k}")));
    change.synapse_settings = values::diff(&theirs, &ours);
    if !change.synapse_settings.is_empty() {
        side.reasons
            .push(count("Synapse settings", change.synapse_settings.len()));
    }
    let sys_extra: Vec<String> = files.iter().skip(1).cloned().collect();
    let our_extra = n.synapse_extra_files();
    if sys_extra != our_extra {
        side.reasons
            .push("extra config files (--config-path)".into());
        change.other_options.push(SettingChange {
            path: "services.matrix-synapse.extraConfigFiles".into(),
            change: Change::Changed,
            old: Some(json!(sys_extra)),
            new: Some(json!(our_extra)),
        });
    }
    side
}

/// MAS: its --config files, deep-merged with lists concatenated. Returns
/// why the unit restarts and the system's MAS settings (unredacted).
fn mas_against(
    sys: &SystemState,
    n: &ConfigState,
    siblings: &[&ConfigState],
    notes: &mut Vec<String>,
    change: &mut ConfigurationChange,
) -> (Vec<String>, Option<Value>) {
    let mut mas_reasons = Vec::new();
    let Some(unit) = sys.units.get(MAS_UNIT) else {
        return (mas_reasons, None);
    };
    let mut theirs = merge_files(sys, &sys.mas_config_files, true, notes).0;
    let sys_mas = theirs.clone();
    let mut ours = n.mas_settings();
    values::redact(&mut theirs);
    values::redact(&mut ours);
    let unmanaged: Vec<String> = values::only_in(&theirs, &ours, true)
        .into_iter()
        .filter(|k| {
            !siblings
                .iter()
                .any(|c| values::lookup(&c.mas_settings(), k).is_some())
        })
        .collect();
    values::remove_paths(&mut theirs, &unmanaged);
    change
        .unmanaged_settings
        .extend(unmanaged.iter().map(|k| format!("mas.{k}")));
    change.mas_settings = values::diff(&theirs, &ours);
    if !change.mas_settings.is_empty() {
        mas_reasons.push(count("MAS settings", change.mas_settings.len()));
    }
    let sys_creds: BTreeMap<String, String> = unit
        .credentials()
        .into_iter()
        .filter(|(k, _)| !is_config_credential(k))
        .collect();
    let our_creds = n.mas_credentials();
    if sys_creds != our_creds {
        mas_reasons.push("credentials (LoadCredential=)".into());
        let c = values::diff(&json!(sys_creds), &json!(our_creds));
        change.other_options.extend(c.into_iter().map(|mut c| {
            c.path = format!(
                "services.matrix-authentication-service.credentials.{}",
                c.path
            );
            c
        }));
    }
    (mas_reasons, Some(sys_mas))
}

/// Hosts with MAS's login route on the system and in `n`.
type CompatHosts = (BTreeSet<String>, BTreeSet<String>);

/// nginx: the routes of the config file its ExecStart names. Returns why the
/// unit restarts and, when both sides have nginx, the login-route hosts.
fn nginx_against(
    sys: &SystemState,
    n: &ConfigState,
    siblings: &[&ConfigState],
    notes: &mut Vec<String>,
    change: &mut ConfigurationChange,
) -> (Vec<String>, Option<CompatHosts>) {
    let mut nginx_reasons = Vec::new();
    let mut compat = None;
    match &nginx_routes(sys) {
        Some(Ok(theirs)) if n.nginx_enabled() => {
            let ours = n.vhosts();
            let (vhosts, routes, unmanaged) = compare_system_routes(theirs, &ours, siblings);
            change.virtual_hosts = vhosts;
            change.routes = routes;
            change.unmanaged_settings.extend(unmanaged);
            if !change.virtual_hosts.is_empty() || !change.routes.is_empty() {
                nginx_reasons.push(route_summary(&change.virtual_hosts, &change.routes));
            }
            let theirs_hosts: BTreeSet<String> = theirs
                .iter()
                .filter(|(_, r)| r.keys().any(|m| is_compat(m)))
                .map(|(k, _)| k.clone())
                .collect();
            compat = Some((theirs_hosts, compat_hosts(&ours)));
        }
        Some(Err(e)) => notes.push(format!(
            "nginx's config could not be read ({e}): its routes are not compared"
        )),
        _ => {}
    }
    (nginx_reasons, compat)
}

/// masgen's tasks, by unit name.
fn tasks_against(
    sys: &SystemState,
    n: &ConfigState,
    units: &mut BTreeMap<(u8, String), UnitChange>,
) {
    let ours = n.tasks();
    let sys_tasks: BTreeSet<String> = sys
        .units
        .keys()
        .filter(|u| is_task_unit(u))
        .map(|u| u.trim_end_matches(".service").to_string())
        .collect();
    let names: BTreeSet<&String> = ours.keys().chain(sys_tasks.iter()).collect();
    for name in names {
        let unit = format!("{name}.service");
        match (sys.units.get(&unit), ours.get(name)) {
            (None, Some(_)) => task_unit(units, unit, Change::Added, vec![]),
            (Some(_), None) => task_unit(units, unit, Change::Removed, vec![]),
            (Some(u), Some(t)) => {
                let reasons = task_differences(u, t);
                if !reasons.is_empty() {
                    task_unit(units, unit, Change::Changed, reasons);
                }
            }
            (None, None) => {}
        }
    }
}

/// Merges the named config files; returns the merged data and the files
/// that could not be read (with a note for each).
fn merge_files(
    sys: &SystemState,
    files: &[String],
    deep: bool,
    notes: &mut Vec<String>,
) -> (Value, Vec<String>) {
    let (merged, unreadable) = sys.merged(files, deep);
    for (f, e) in &unreadable {
        notes.push(format!("{f}: {e}; its keys are not compared"));
    }
    (merged, unreadable.into_iter().map(|(f, _)| f).collect())
}
