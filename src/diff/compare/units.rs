//! What a switch does to each unit: started, stopped, restarted, or left
//! alone (masgen's oneshot tasks never run on a switch).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::system::{Unit, MAS_UNIT, NGINX_UNIT, SYNAPSE_UNIT};

use super::super::changeset::*;
use super::super::state::{self, ConfigState};
pub use crate::lower::tasks::PASSWORD_CONFIG_UNIT;

pub const POSTGRES_UNIT: &str = "postgresql.service";

/// nginx on NixOS: `services.nginx.enableReload` defaults to false, so the
/// unit's ExecStart names the store config and changes with it; the unit
/// sets `stopIfChanged = false`, so it is restarted in place.
pub const NGINX_RESTART: &str =
    "restarted (reloaded instead if the host sets services.nginx.enableReload)";

/// Whether one of `changes` is at, under or above one of `prefixes`.
pub(super) fn touches(changes: &[SettingChange], prefixes: &[&str]) -> bool {
    let within = |a: &str, b: &str| {
        a == b || a.starts_with(&format!("{b}.")) || a.starts_with(&format!("{b}["))
    };
    changes.iter().any(|c| {
        prefixes
            .iter()
            .any(|p| within(&c.path, p) || within(p, &c.path))
    })
}

pub(super) fn unit_key(unit: &str) -> (u8, String) {
    let rank = if unit.starts_with("acme-") {
        1
    } else if unit.starts_with("masgen-") && unit != PASSWORD_CONFIG_UNIT {
        2
    } else {
        0
    };
    (rank, unit.to_string())
}

/// A long-running service: wanted by a target, restarted when it changes.
pub(super) fn service_unit(
    units: &mut BTreeMap<(u8, String), UnitChange>,
    unit: &str,
    before: bool,
    after: bool,
    reasons: Vec<String>,
    changed_summary: &str,
) {
    let reasons = if before == after { reasons } else { Vec::new() };
    let (change, action, summary) = match (before, after) {
        (false, true) => (
            Change::Added,
            Action::Start,
            if unit == PASSWORD_CONFIG_UNIT {
                "added (started: matrix-synapse.service requires it)".to_string()
            } else {
                "added (started)".to_string()
            },
        ),
        (true, false) => (Change::Removed, Action::Stop, "removed (stopped)".into()),
        (true, true) if !reasons.is_empty() => (
            Change::Changed,
            Action::Restart,
            changed_summary.to_string(),
        ),
        _ => return,
    };
    units.insert(
        unit_key(unit),
        UnitChange {
            unit: unit.to_string(),
            change,
            action,
            summary,
            reasons,
        },
    );
}

/// masgen's oneshot tasks: not wanted by any target, `restartIfChanged` and
/// `stopIfChanged` off (modules/tasks.nix), so a switch never runs them.
pub(super) fn task_unit(
    units: &mut BTreeMap<(u8, String), UnitChange>,
    unit: String,
    change: Change,
    reasons: Vec<String>,
) {
    let summary = match change {
        Change::Added => "added (not started)",
        Change::Removed => "removed (not running; a run in progress is stopped)",
        Change::Changed => "changed (not running)",
    };
    units.insert(
        unit_key(&unit),
        UnitChange {
            unit,
            change,
            action: Action::None,
            summary: summary.into(),
            reasons,
        },
    );
}

pub(super) fn acme_units(
    units: &mut BTreeMap<(u8, String), UnitChange>,
    old: &[String],
    new: &[String],
) {
    for host in old.iter().chain(new.iter()).collect::<BTreeSet<_>>() {
        let unit = format!("acme-{host}.service");
        let (change, action, summary) = match (old.contains(host), new.contains(host)) {
            (false, true) => (
                Change::Added,
                Action::Start,
                format!("added (started: obtains a certificate for {host})"),
            ),
            (true, false) => (
                Change::Removed,
                Action::Stop,
                "removed (stopped; the certificate stays in /var/lib/acme)".to_string(),
            ),
            _ => continue,
        };
        units.insert(
            unit_key(&unit),
            UnitChange {
                unit,
                change,
                action,
                summary,
                reasons: vec![],
            },
        );
    }
}

/// `ensureDatabases`/`ensureUsers` run in `postgresql-setup.service`, which is
/// rerun; the server itself restarts only when its config (pg_hba.conf,
/// pg_ident.conf, initdb arguments) changes.
pub(super) fn postgres_unit(
    units: &mut BTreeMap<(u8, String), UnitChange>,
    o: &ConfigState,
    n: &ConfigState,
    opts: &[SettingChange],
) {
    let (before, after) = (o.postgres_enabled(), n.postgres_enabled());
    if before != after {
        service_unit(units, POSTGRES_UNIT, before, after, vec![], "restarted");
        return;
    }
    if !after {
        return;
    }
    let mut restart = Vec::new();
    if touches(opts, &["masgen.syn2masAccess"]) {
        restart.push("pg_hba.conf / pg_ident.conf (masgen.syn2masAccess)".to_string());
    }
    for c in opts {
        let p = c.path.as_str();
        if p.starts_with("services.postgresql.")
            && !p.starts_with("services.postgresql.ensure")
            && p != "services.postgresql.enable"
        {
            restart.push(p.to_string());
        }
    }
    restart.sort();
    restart.dedup();
    let ensure = touches(
        opts,
        &[
            "services.postgresql.ensureDatabases",
            "services.postgresql.ensureUsers",
            "services.matrix-authentication-service.createDatabase",
        ],
    );
    if !restart.is_empty() {
        service_unit(units, POSTGRES_UNIT, true, true, restart, "restarted");
    } else if ensure {
        units.insert(
            unit_key(POSTGRES_UNIT),
            UnitChange {
                unit: POSTGRES_UNIT.into(),
                change: Change::Changed,
                action: Action::None,
                summary: "restart not needed, ensure-step reruns".into(),
                reasons: vec![
                    "ensureDatabases / ensureUsers (rerun by postgresql-setup.service)".into(),
                ],
            },
        );
    }
}

/// Every unit of a configuration that has no baseline.
pub(super) fn units_of_new(n: &ConfigState) -> Vec<UnitChange> {
    let mut units = BTreeMap::new();
    for (unit, on) in [
        (SYNAPSE_UNIT, n.synapse_enabled()),
        (PASSWORD_CONFIG_UNIT, n.password_config().is_some()),
        (MAS_UNIT, n.mas_enabled()),
        (NGINX_UNIT, n.nginx_enabled()),
        (POSTGRES_UNIT, n.postgres_enabled()),
    ] {
        service_unit(&mut units, unit, false, on, vec![], "");
    }
    acme_units(&mut units, &[], &n.acme_hosts());
    for name in n.tasks().keys() {
        task_unit(&mut units, format!("{name}.service"), Change::Added, vec![]);
    }
    units.into_values().collect()
}

/// `config-<n>`: the nixpkgs MAS module's credential for an extra config file.
pub(super) fn is_config_credential(name: &str) -> bool {
    name.strip_prefix("config-")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

pub(super) fn is_task_unit(unit: &str) -> bool {
    unit.starts_with("masgen-") && unit.ends_with(".service") && unit != PASSWORD_CONFIG_UNIT
}

pub(super) fn is_known_unit(unit: &str) -> bool {
    matches!(
        unit,
        SYNAPSE_UNIT
            | MAS_UNIT
            | NGINX_UNIT
            | POSTGRES_UNIT
            | "postgresql-setup.service"
            | "nginx-config-reload.service"
    ) || unit.starts_with("masgen-")
        || unit.starts_with("acme-")
}

/// How a system's task unit differs from masgen's task: description,
/// conflicts, the command's literal arguments (store paths and masgen's
/// `@tool@` placeholders left out) and credentials.
pub(super) fn task_differences(unit: &Unit, task: &Value) -> Vec<String> {
    let mut reasons = Vec::new();
    let description = task
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let sys_description = unit
        .value("Unit", "Description")
        .unwrap_or_default()
        .replace("%%", "%");
    if sys_description != description {
        reasons.push("description".to_string());
    }
    let conflicts: BTreeSet<String> = state::strings(task.get("conflicts").unwrap_or(&Value::Null))
        .into_iter()
        .collect();
    let sys_conflicts: BTreeSet<String> = unit.list("Unit", "Conflicts").into_iter().collect();
    if conflicts != sys_conflicts {
        reasons.push("conflicts".into());
    }
    let command = state::strings(task.get("command").unwrap_or(&Value::Null));
    let literal: Vec<&String> = command
        .iter()
        .filter(|w| !(w.len() > 2 && w.starts_with('@') && w.ends_with('@')) || *w == "@CONFIG@")
        .collect();
    let sys_words = unit.exec_start();
    let mut sys_literal: Vec<&String> = Vec::new();
    let mut skip_next = false;
    for w in &sys_words {
        if skip_next {
            skip_next = false;
            continue;
        }
        if w == "--synapse-config" {
            skip_next = true;
            continue;
        }
        if w.starts_with("/nix/store/")
            || w.starts_with("/run/current-system/")
            || w.starts_with("%d/")
        {
            continue;
        }
        sys_literal.push(w);
    }
    if literal != sys_literal {
        reasons.push("command".into());
    }
    // The task as the module makes it (ConfigState::tasks), MAS's
    // credentials included.
    let creds: BTreeMap<String, String> = task
        .get("credentials")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let sys_creds: BTreeMap<String, String> = unit
        .credentials()
        .into_iter()
        .filter(|(k, _)| {
            // Added by modules/tasks.nix for the Synapse and MAS extra config
            // files (`synapse-config-<i>` in older reference renders).
            !k.starts_with("masgen-synapse-config-")
                && !k.starts_with("synapse-config-")
                && !k.starts_with("masgen-mas-extra-config-")
        })
        .collect();
    if creds != sys_creds {
        reasons.push("credentials".into());
    }
    reasons
}
