//! The pure comparison: old tree (or system) + new tree → [`Changeset`].
//! Nothing here reads the disk or runs a program.
//!
//! Which units change, and what `switch-to-configuration` does to them, is
//! derived from what feeds each unit (see docs/diff.md, "How switching is
//! predicted", for the NixOS rules and where they were checked).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};
use similar::TextDiff;

use crate::emit::{OutputTree, MANIFEST};
use crate::lower::PASSWORD_CONFIG_PATH;
use crate::rules;
use crate::system::{
    delegates, merge_shallow, SystemState, Unit, MAS_UNIT, NGINX_UNIT, SYNAPSE_UNIT,
};

use super::changeset::*;
use super::nginx;
use super::state::{self, ConfigState, Vhost};
use super::values;

pub const POSTGRES_UNIT: &str = "postgresql.service";
pub use crate::lower::tasks::PASSWORD_CONFIG_UNIT;

/// Old output tree vs new output tree.
pub fn compare_trees(
    spec: &str,
    against: Against,
    old: &OutputTree,
    new: &OutputTree,
) -> Result<Changeset, String> {
    let old_cfgs = state::configurations(old).map_err(|e| format!("the old tree: {e}"))?;
    let new_cfgs = state::configurations(new).map_err(|e| format!("the new tree: {e}"))?;
    // A new configuration compared with another phase of the same host shows
    // its files against that phase's files (`hosts/h/prepare/…` →
    // `hosts/h/final/…`) rather than as whole new files.
    let mut counterparts = BTreeMap::new();
    for n in &new_cfgs {
        if let Some(b) = baseline(&old_cfgs, n).filter(|b| b.phase != n.phase) {
            for top in ["hosts", "render"] {
                counterparts.insert(
                    format!("{top}/{}/{}/", n.host, n.phase),
                    format!("{top}/{}/{}/", b.host, b.phase),
                );
            }
        }
    }
    let files = file_changes(old, new, &counterparts);

    let mut notes = Vec::new();
    if files
        .iter()
        .any(|f| f.path.starts_with("masgen/modules/") && !old.is_empty())
    {
        notes.push(
            "masgen's NixOS modules (masgen/modules) changed: the units they define (masgen tasks, \
             masgen-synapse-password-config.service, PostgreSQL access for syn2mas) may change \
             beyond what is listed here; read their diffs"
                .to_string(),
        );
    }

    let mut used = BTreeSet::new();
    let mut configurations = Vec::new();
    for n in &new_cfgs {
        let base = baseline(&old_cfgs, n);
        if let Some(b) = base {
            used.insert(b.configuration.clone());
        }
        configurations.push(compare_config(base, n));
    }
    for o in &old_cfgs {
        if used.contains(&o.configuration) {
            continue;
        }
        configurations.push(ConfigurationChange {
            status: Status::Removed,
            warnings: vec![Warning {
                code: "configuration_removed".into(),
                message: format!(
                    "configuration `{}` is no longer built; a host still running it keeps running it until you switch it to another configuration",
                    o.configuration
                ),
            }],
            ..empty_change(o, None)
        });
    }
    configurations.sort_by(|a, b| {
        (&a.host, state::phase_rank(&a.phase)).cmp(&(&b.host, state::phase_rank(&b.phase)))
    });
    Ok(finish(spec, against, configurations, files, notes))
}

/// The system's units and config files vs each configuration of the new tree.
pub fn compare_system(
    spec: &str,
    system: &SystemState,
    new: &OutputTree,
) -> Result<Changeset, String> {
    let new_cfgs = state::configurations(new).map_err(|e| format!("the new tree: {e}"))?;
    let mut notes = system.notes.clone();
    let mut configurations = Vec::new();
    for n in &new_cfgs {
        let siblings: Vec<&ConfigState> = new_cfgs.iter().filter(|c| c.host == n.host).collect();
        configurations.push(compare_with_system(system, n, &siblings, &mut notes));
    }
    notes.sort();
    notes.dedup();
    let against = Against::System {
        root: system.root.clone(),
    };
    Ok(finish(spec, against, configurations, Vec::new(), notes))
}

fn finish(
    spec: &str,
    against: Against,
    configurations: Vec<ConfigurationChange>,
    files: Vec<FileChange>,
    notes: Vec<String>,
) -> Changeset {
    let changed = !files.is_empty() || configurations.iter().any(|c| c.is_changed());
    Changeset {
        schema_version: SCHEMA_VERSION,
        spec: spec.to_string(),
        against,
        changed,
        configurations,
        files,
        notes,
    }
}

/// The old configuration a new one is compared with: the one of the same
/// name, else one of the same host (the phase before it, if there is one).
fn baseline<'a>(old: &'a [ConfigState], n: &ConfigState) -> Option<&'a ConfigState> {
    if let Some(same) = old.iter().find(|o| o.configuration == n.configuration) {
        return Some(same);
    }
    let rank = state::phase_rank(&n.phase);
    let same_host: Vec<&ConfigState> = old.iter().filter(|o| o.host == n.host).collect();
    same_host
        .iter()
        .filter(|o| state::phase_rank(&o.phase) < rank)
        .max_by_key(|o| state::phase_rank(&o.phase))
        .or_else(|| same_host.first())
        .copied()
}

fn empty_change(c: &ConfigState, baseline: Option<String>) -> ConfigurationChange {
    ConfigurationChange {
        host: c.host.clone(),
        configuration: c.configuration.clone(),
        phase: c.phase.clone(),
        baseline,
        status: Status::Unchanged,
        units: Vec::new(),
        synapse_settings: Vec::new(),
        mas_settings: Vec::new(),
        virtual_hosts: Vec::new(),
        routes: Vec::new(),
        other_options: Vec::new(),
        unmanaged_settings: Vec::new(),
        foreign_units: Vec::new(),
        phase_change: None,
        warnings: Vec::new(),
    }
}

// ------------------------------------------------------------------ files

/// Files that differ; `counterparts` maps a new directory prefix to the old
/// one its added files are compared with.
fn file_changes(
    old: &OutputTree,
    new: &OutputTree,
    counterparts: &BTreeMap<String, String>,
) -> Vec<FileChange> {
    let paths: BTreeSet<_> = old.keys().chain(new.keys()).collect();
    let mut out = Vec::new();
    for path in paths {
        if path.as_str() == MANIFEST {
            continue;
        }
        let (mut o, n) = (old.get(path), new.get(path));
        if o == n {
            continue;
        }
        let change = match (o, n) {
            (None, _) => Change::Added,
            (_, None) => Change::Removed,
            _ => Change::Changed,
        };
        let mut old_path = path.to_string();
        let mut compared_with = None;
        if o.is_none() {
            for (new_prefix, old_prefix) in counterparts {
                if let Some(rest) = path.as_str().strip_prefix(new_prefix.as_str()) {
                    let candidate = format!("{old_prefix}{rest}");
                    if let Some(text) = old.get(camino::Utf8Path::new(&candidate)) {
                        o = Some(text);
                        old_path = candidate.clone();
                        compared_with = Some(candidate);
                    }
                }
            }
        }
        let a = if o.is_some() {
            format!("a/{old_path}")
        } else {
            "/dev/null".into()
        };
        let b = if n.is_some() {
            format!("b/{path}")
        } else {
            "/dev/null".into()
        };
        let (os, ns) = (
            o.map(String::as_str).unwrap_or(""),
            n.map(String::as_str).unwrap_or(""),
        );
        let diff = TextDiff::from_lines(os, ns)
            .unified_diff()
            .context_radius(3)
            .header(&a, &b)
            .to_string();
        out.push(FileChange {
            path: path.to_string(),
            change,
            compared_with,
            diff,
        });
    }
    out
}

// ------------------------------------------------------- tree vs tree

/// The parts of a host module that are not compared key by key elsewhere.
fn options_view(c: &ConfigState) -> Value {
    let mut m = c.module.clone();
    values::remove_paths(
        &mut m,
        &[
            "services.matrix-synapse.settings".into(),
            "services.matrix-authentication-service.settings".into(),
            "services.nginx.virtualHosts".into(),
            "masgen.tasks".into(),
        ],
    );
    m
}

/// Whether one of `changes` is at, under or above one of `prefixes`.
/// Why a service restarts: its settings that changed (counted), then each
/// option group (by prefix) that changed, with its label.
fn unit_reasons(
    (settings_label, changed_settings): (&str, usize),
    opts: &[SettingChange],
    groups: &[(&str, &str)],
) -> Vec<String> {
    let mut reasons = Vec::new();
    if changed_settings > 0 {
        reasons.push(count(settings_label, changed_settings));
    }
    for (prefix, label) in groups {
        if touches(opts, &[prefix]) {
            reasons.push(label.to_string());
        }
    }
    reasons
}

fn touches(changes: &[SettingChange], prefixes: &[&str]) -> bool {
    let within = |a: &str, b: &str| {
        a == b || a.starts_with(&format!("{b}.")) || a.starts_with(&format!("{b}["))
    };
    changes.iter().any(|c| {
        prefixes
            .iter()
            .any(|p| within(&c.path, p) || within(p, &c.path))
    })
}

fn compare_config(old: Option<&ConfigState>, n: &ConfigState) -> ConfigurationChange {
    let Some(o) = old else {
        let mut change = empty_change(n, None);
        change.status = Status::Added;
        change.units = units_of_new(n);
        return change;
    };
    let mut change = empty_change(n, Some(o.configuration.clone()));
    change.synapse_settings = values::diff(&o.synapse_settings(), &n.synapse_settings());
    change.mas_settings = values::diff(&o.mas_settings(), &n.mas_settings());
    change.other_options = values::diff(&options_view(o), &options_view(n));
    let (vhosts, routes) = compare_vhosts(&o.vhosts(), &n.vhosts());
    change.virtual_hosts = vhosts;
    change.routes = routes;

    let opts = &change.other_options;
    let mut units = BTreeMap::new();

    // Synapse and the unit that writes its password_config file.
    let reasons = unit_reasons(
        ("Synapse settings", change.synapse_settings.len()),
        opts,
        &[
            (
                "services.matrix-synapse.extraConfigFiles",
                "services.matrix-synapse.extraConfigFiles",
            ),
            (
                "services.matrix-synapse.extras",
                "services.matrix-synapse.extras (Python packages)",
            ),
            (
                "masgen.synapse.passwordConfig",
                "password_config (masgen.synapse.passwordConfig)",
            ),
        ],
    );
    service_unit(
        &mut units,
        SYNAPSE_UNIT,
        o.synapse_enabled(),
        n.synapse_enabled(),
        reasons,
        "restarted",
    );
    service_unit(
        &mut units,
        PASSWORD_CONFIG_UNIT,
        o.password_config().is_some(),
        n.password_config().is_some(),
        if touches(opts, &["masgen.synapse.passwordConfig"]) {
            vec!["masgen.synapse.passwordConfig".into()]
        } else {
            vec![]
        },
        "restarted; matrix-synapse.service requires it and restarts too",
    );

    // MAS.
    let reasons = unit_reasons(
        ("MAS settings", change.mas_settings.len()),
        opts,
        &[
            (
                "services.matrix-authentication-service.credentials",
                "credentials (LoadCredential=)",
            ),
            (
                "services.matrix-authentication-service.extraConfigFiles",
                "services.matrix-authentication-service.extraConfigFiles",
            ),
            (
                "services.matrix-authentication-service.createDatabase",
                "createDatabase (ordering after postgresql.service)",
            ),
        ],
    );
    service_unit(
        &mut units,
        MAS_UNIT,
        o.mas_enabled(),
        n.mas_enabled(),
        reasons,
        "restarted",
    );

    // nginx.
    let mut reasons = Vec::new();
    if !change.virtual_hosts.is_empty() || !change.routes.is_empty() {
        reasons.push(route_summary(&change.virtual_hosts, &change.routes));
    }
    let nginx_opts: Vec<&SettingChange> = opts
        .iter()
        .filter(|c| c.path.starts_with("services.nginx.") && c.path != "services.nginx.enable")
        .collect();
    if !nginx_opts.is_empty() {
        reasons.push("services.nginx options".into());
    }
    service_unit(
        &mut units,
        NGINX_UNIT,
        o.nginx_enabled(),
        n.nginx_enabled(),
        reasons,
        NGINX_RESTART,
    );
    acme_units(&mut units, &o.acme_hosts(), &n.acme_hosts());

    // PostgreSQL.
    postgres_unit(&mut units, o, n, opts);

    // masgen's tasks.
    let (ot, nt) = (o.tasks(), n.tasks());
    for name in ot.keys().chain(nt.keys()).collect::<BTreeSet<_>>() {
        let unit = format!("{name}.service");
        match (ot.get(name), nt.get(name)) {
            (None, Some(_)) => task_unit(&mut units, unit, Change::Added, vec![]),
            (Some(_), None) => task_unit(&mut units, unit, Change::Removed, vec![]),
            (Some(a), Some(b)) if a != b => {
                let reasons = values::diff(a, b)
                    .iter()
                    .map(|c| {
                        c.path
                            .split(['.', '['])
                            .next()
                            .unwrap_or_default()
                            .to_string()
                    })
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                task_unit(&mut units, unit, Change::Changed, reasons);
            }
            _ => {}
        }
    }
    change.units = units.into_values().collect();

    // What a reviewer must not miss.
    let (od, nd) = (
        delegates(&o.synapse_settings()),
        delegates(&n.synapse_settings()),
    );
    let rollback_to = format!("`{}`", o.configuration);
    phase_warnings(&mut change, od, nd, &o.phase, &n.phase, &rollback_to);
    route_warnings(
        &mut change,
        &compat_hosts(&o.vhosts()),
        &compat_hosts(&n.vhosts()),
    );
    setting_warnings(&mut change, Some(&o.mas_settings()), &n.mas_settings());

    if !(change.units.is_empty()
        && change.synapse_settings.is_empty()
        && change.mas_settings.is_empty()
        && change.virtual_hosts.is_empty()
        && change.routes.is_empty()
        && change.other_options.is_empty())
    {
        change.status = Status::Changed;
    }
    change
}

fn count(what: &str, n: usize) -> String {
    if n == 1 {
        format!("{what} (1 change)")
    } else {
        format!("{what} ({n} changes)")
    }
}

/// nginx on NixOS: `services.nginx.enableReload` defaults to false, so the
/// unit's ExecStart names the store config and changes with it; the unit
/// sets `stopIfChanged = false`, so it is restarted in place.
pub const NGINX_RESTART: &str =
    "restarted (reloaded instead if the host sets services.nginx.enableReload)";

fn unit_key(unit: &str) -> (u8, String) {
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
fn service_unit(
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
fn task_unit(
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

fn acme_units(units: &mut BTreeMap<(u8, String), UnitChange>, old: &[String], new: &[String]) {
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
fn postgres_unit(
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
fn units_of_new(n: &ConfigState) -> Vec<UnitChange> {
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

// ------------------------------------------------------------- nginx

fn compare_vhosts(
    old: &BTreeMap<String, Vhost>,
    new: &BTreeMap<String, Vhost>,
) -> (Vec<VhostChange>, Vec<RouteChange>) {
    let mut vhosts = Vec::new();
    let mut routes = Vec::new();
    let empty = Vhost {
        options: Map::new(),
        locations: BTreeMap::new(),
    };
    for name in old.keys().chain(new.keys()).collect::<BTreeSet<_>>() {
        let (o, n) = (old.get(name), new.get(name));
        match (o, n) {
            (None, Some(v)) => vhosts.push(VhostChange {
                server_name: name.clone(),
                change: Change::Added,
                reasons: describe_options(&v.options),
            }),
            (Some(_), None) => vhosts.push(VhostChange {
                server_name: name.clone(),
                change: Change::Removed,
                reasons: vec![],
            }),
            (Some(a), Some(b)) if a.options != b.options => {
                let reasons = values::diff(
                    &Value::Object(a.options.clone()),
                    &Value::Object(b.options.clone()),
                )
                .iter()
                .map(|c| {
                    format!(
                        "{}: {} → {}",
                        c.path,
                        values::show(c.old.as_ref()),
                        values::show(c.new.as_ref())
                    )
                })
                .collect();
                vhosts.push(VhostChange {
                    server_name: name.clone(),
                    change: Change::Changed,
                    reasons,
                });
            }
            _ => {}
        }
        let (ol, nl) = (
            &o.unwrap_or(&empty).locations,
            &n.unwrap_or(&empty).locations,
        );
        for matcher in ol.keys().chain(nl.keys()).collect::<BTreeSet<_>>() {
            let (a, b) = (ol.get(matcher), nl.get(matcher));
            let change = match (a, b) {
                (None, Some(_)) => Change::Added,
                (Some(_), None) => Change::Removed,
                (Some(x), Some(y)) if x != y => Change::Changed,
                _ => continue,
            };
            routes.push(RouteChange {
                server_name: name.clone(),
                matcher: matcher.clone(),
                change,
                old: a.cloned(),
                new: b.cloned(),
                compat: is_compat(matcher),
            });
        }
    }
    (vhosts, routes)
}

fn describe_options(options: &Map<String, Value>) -> Vec<String> {
    options
        .iter()
        .map(|(k, v)| format!("{k}: {}", values::show(Some(v))))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// MAS's login compatibility route (`~ ^/_matrix/client/(.*)/(login|logout|refresh)`).
pub fn is_compat(matcher: &str) -> bool {
    matcher.contains("login|logout|refresh")
}

fn route_summary(vhosts: &[VhostChange], routes: &[RouteChange]) -> String {
    let r = |c: Change| routes.iter().filter(|x| x.change == c).count();
    let v = |c: Change| vhosts.iter().filter(|x| x.change == c).count();
    let mut parts = Vec::new();
    for (one, many, k) in [
        (
            "virtual host added",
            "virtual hosts added",
            v(Change::Added),
        ),
        (
            "virtual host removed",
            "virtual hosts removed",
            v(Change::Removed),
        ),
        (
            "virtual host changed",
            "virtual hosts changed",
            v(Change::Changed),
        ),
        ("route added", "routes added", r(Change::Added)),
        ("route removed", "routes removed", r(Change::Removed)),
        ("route changed", "routes changed", r(Change::Changed)),
    ] {
        if k > 0 {
            parts.push(format!("{k} {}", if k == 1 { one } else { many }));
        }
    }
    format!("nginx: {}", parts.join(", "))
}

// ----------------------------------------------------------- warnings

fn phase_warnings(
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

/// Hosts with MAS's login compatibility route.
fn compat_hosts(vhosts: &BTreeMap<String, Vhost>) -> BTreeSet<String> {
    vhosts
        .iter()
        .filter(|(_, v)| v.locations.keys().any(|m| is_compat(m)))
        .map(|(k, _)| k.clone())
        .collect()
}

fn route_warnings(
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
fn provider_ids(mas: &Value) -> BTreeSet<String> {
    mas.pointer("/upstream_oauth2/providers")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("id").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn setting_warnings(change: &mut ConfigurationChange, old_mas: Option<&Value>, new_mas: &Value) {
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

// ------------------------------------------------------ system vs tree

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

    // Synapse: the files its ExecStart names, merged as Synapse merges them.
    let mut sys_delegates = false;
    let mut syn_reasons = Vec::new();
    let mut conflict_warnings = Vec::new();
    if sys.units.contains_key(SYNAPSE_UNIT) {
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
        sys_delegates = delegates(&theirs);
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
                conflict_warnings.push(Warning {
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
            syn_reasons.push(count("Synapse settings", change.synapse_settings.len()));
        }
        let sys_extra: Vec<String> = files.iter().skip(1).cloned().collect();
        let our_extra = n.synapse_extra_files();
        if sys_extra != our_extra {
            syn_reasons.push("extra config files (--config-path)".into());
            change.other_options.push(SettingChange {
                path: "services.matrix-synapse.extraConfigFiles".into(),
                change: Change::Changed,
                old: Some(json!(sys_extra)),
                new: Some(json!(our_extra)),
            });
        }
    }
    service_unit(
        &mut units,
        SYNAPSE_UNIT,
        has(SYNAPSE_UNIT),
        n.synapse_enabled(),
        syn_reasons,
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

    // MAS: its --config files, deep-merged with lists concatenated.
    let mut mas_reasons = Vec::new();
    let mut sys_mas = None;
    if let Some(unit) = sys.units.get(MAS_UNIT) {
        let mut theirs = merge_files(sys, &sys.mas_config_files, true, notes).0;
        sys_mas = Some(theirs.clone());
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
    }
    service_unit(
        &mut units,
        MAS_UNIT,
        has(MAS_UNIT),
        n.mas_enabled(),
        mas_reasons,
        "restarted",
    );
    // nginx: the routes of the config file its ExecStart names.
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

    // masgen's tasks, by unit name.
    let ours = n.tasks();
    let sys_tasks: BTreeSet<String> = sys
        .units
        .keys()
        .filter(|u| is_task_unit(u))
        .map(|u| u.trim_end_matches(".service").to_string())
        .collect();
    let names: BTreeSet<&String> = ours.keys().chain(sys_tasks.iter()).collect();
    let mas_creds = n.mas_credentials();
    for name in names {
        let unit = format!("{name}.service");
        match (sys.units.get(&unit), ours.get(name)) {
            (None, Some(_)) => task_unit(&mut units, unit, Change::Added, vec![]),
            (Some(_), None) => task_unit(&mut units, unit, Change::Removed, vec![]),
            (Some(u), Some(t)) => {
                let reasons = task_differences(u, t, &mas_creds);
                if !reasons.is_empty() {
                    task_unit(&mut units, unit, Change::Changed, reasons);
                }
            }
            (None, None) => {}
        }
    }
    change.units = units.into_values().collect();
    change.foreign_units = sys
        .units
        .keys()
        .filter(|u| !is_known_unit(u))
        .cloned()
        .collect();

    let ours_delegate = delegates(&n.synapse_settings());
    if has(SYNAPSE_UNIT) && sys_delegates != ours_delegate {
        let from = if sys_delegates {
            "delegating"
        } else {
            "not delegating"
        };
        phase_warnings(
            &mut change,
            sys_delegates,
            ours_delegate,
            from,
            &n.phase,
            "the system's current configuration",
        );
    }
    if let Some((old_hosts, new_hosts)) = compat {
        route_warnings(&mut change, &old_hosts, &new_hosts);
    }
    change.warnings.extend(conflict_warnings);
    setting_warnings(&mut change, sys_mas.as_ref(), &n.mas_settings());
    if !(change.units.is_empty()
        && change.synapse_settings.is_empty()
        && change.mas_settings.is_empty()
        && change.virtual_hosts.is_empty()
        && change.routes.is_empty()
        && change.other_options.is_empty())
    {
        change.status = Status::Changed;
    }
    change
}

/// The system's nginx routes vs a configuration's virtual hosts. Virtual
/// hosts and locations only the system has are removed when another
/// configuration of the host defines them (masgen put them there), and
/// reported as unmanaged otherwise.
fn compare_system_routes(
    theirs: &BTreeMap<String, nginx::Routes>,
    ours: &BTreeMap<String, Vhost>,
    siblings: &[&ConfigState],
) -> (Vec<VhostChange>, Vec<RouteChange>, Vec<String>) {
    let sibling_vhosts: Vec<BTreeMap<String, Vhost>> =
        siblings.iter().map(|c| c.vhosts()).collect();
    let masgen_has = |host: &str, matcher: Option<&str>| {
        sibling_vhosts.iter().any(|v| match (v.get(host), matcher) {
            (Some(_), None) => true,
            (Some(h), Some(m)) => h.locations.contains_key(m),
            (None, _) => false,
        })
    };
    let mut vhosts = Vec::new();
    let mut routes = Vec::new();
    let mut unmanaged = Vec::new();
    let empty = nginx::Routes::new();
    for name in theirs.keys().chain(ours.keys()).collect::<BTreeSet<_>>() {
        let (t, o) = (theirs.get(name), ours.get(name));
        match (t, o) {
            (Some(_), None) if !masgen_has(name, None) => {
                unmanaged.push(format!("nginx.virtualHosts.{name}"));
                continue;
            }
            (Some(_), None) => vhosts.push(VhostChange {
                server_name: name.clone(),
                change: Change::Removed,
                reasons: vec![],
            }),
            (None, Some(v)) => vhosts.push(VhostChange {
                server_name: name.clone(),
                change: Change::Added,
                reasons: describe_options(&v.options),
            }),
            _ => {}
        }
        let old = t.unwrap_or(&empty);
        let new: nginx::Routes = o
            .map(|v| {
                v.locations
                    .iter()
                    .map(|(k, r)| (k.clone(), nginx::normalize(r)))
                    .collect()
            })
            .unwrap_or_default();
        for matcher in old.keys().chain(new.keys()).collect::<BTreeSet<_>>() {
            let (a, b) = (old.get(matcher), new.get(matcher));
            let change = match (a, b) {
                (None, Some(_)) => Change::Added,
                (Some(_), None) if o.is_some() && !masgen_has(name, Some(matcher)) => {
                    unmanaged.push(format!("nginx.virtualHosts.{name}.locations.{matcher:?}"));
                    continue;
                }
                (Some(_), None) => Change::Removed,
                (Some(x), Some(y)) if x != y => Change::Changed,
                _ => continue,
            };
            routes.push(RouteChange {
                server_name: name.clone(),
                matcher: matcher.clone(),
                change,
                old: a.cloned(),
                new: b.cloned(),
                compat: is_compat(matcher),
            });
        }
    }
    (vhosts, routes, unmanaged)
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

/// The routes of the system's nginx config, or why there are none to compare;
/// `None` without nginx.service.
fn nginx_routes(sys: &SystemState) -> Option<Result<BTreeMap<String, nginx::Routes>, String>> {
    sys.nginx_config.as_ref().map(|config| {
        let (conf, text) = config.as_ref().map_err(String::clone)?;
        nginx::routes(text).map_err(|e| format!("{conf}: {e}"))
    })
}

/// `config-<n>`: the nixpkgs MAS module's credential for an extra config file.
fn is_config_credential(name: &str) -> bool {
    name.strip_prefix("config-")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

pub fn is_task_unit(unit: &str) -> bool {
    unit.starts_with("masgen-") && unit.ends_with(".service") && unit != PASSWORD_CONFIG_UNIT
}

fn is_known_unit(unit: &str) -> bool {
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
fn task_differences(
    unit: &Unit,
    task: &Value,
    mas_creds: &BTreeMap<String, String>,
) -> Vec<String> {
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
    let mut creds: BTreeMap<String, String> = BTreeMap::new();
    if command.iter().any(|w| w == "@mas-config@") {
        creds.extend(mas_creds.clone());
    }
    if let Some(m) = task.get("credentials").and_then(Value::as_object) {
        for (k, v) in m {
            creds.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
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
