//! The pure comparison: old tree (or system) + new tree → [`Changeset`].
//! Nothing here reads the disk or runs a program.
//!
//! Which units change, and what `switch-to-configuration` does to them, is
//! derived from what feeds each unit (see docs/diff.md, "How switching is
//! predicted", for the NixOS rules and where they were checked). Split along
//! what a reviewer reads: this file compares two trees, [`system`] a tree
//! with a running system, [`units`] says what a switch does to each unit,
//! [`routes`] compares nginx, [`warnings`] says what must not be missed.

mod routes;
mod system;
mod units;
mod warnings;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;
use similar::TextDiff;

use crate::emit::{OutputTree, MANIFEST, MODULES_DIR};
use crate::system::{delegates, MAS_UNIT, NGINX_UNIT, SYNAPSE_UNIT};

use super::changeset::*;
use super::state::{self, ConfigState};
use super::values;
use routes::{compare_vhosts, compat_hosts, route_summary};
pub use system::compare_system;
use units::{
    acme_units, postgres_unit, service_unit, task_unit, touches, units_of_new, NGINX_RESTART,
    PASSWORD_CONFIG_UNIT,
};
use warnings::{phase_warnings, route_warnings, setting_warnings};

/// Old output tree vs new output tree.
pub fn compare_trees(
    spec: &str,
    against: Against,
    old: &OutputTree,
    new: &OutputTree,
) -> Result<Changeset, String> {
    // Names first: a configuration whose files are the same in both trees
    // is unchanged without parsing it (a fleet's diff touches a few).
    let old_cfgs = state::headers(old);
    let new_cfgs = state::headers(new);
    let baselines = Baselines::new(&old_cfgs);
    let bases: Vec<Option<&ConfigState>> = new_cfgs.iter().map(|n| baselines.of(n)).collect();
    // A new configuration compared with another phase of the same host shows
    // its files against that phase's files (`hosts/h/prepare/…` →
    // `hosts/h/final/…`) rather than as whole new files.
    let mut counterparts = BTreeMap::new();
    for (n, b) in new_cfgs.iter().zip(&bases) {
        if let Some(b) = b.filter(|b| b.phase != n.phase) {
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
        .any(|f| f.path.starts_with(MODULES_DIR) && !old.is_empty())
    {
        notes.push(
            "masgen's NixOS modules (masgen/modules) changed: the units they define (masgen tasks, \
             masgen-synapse-password-config.service, PostgreSQL access for syn2mas) may change \
             beyond what is listed here; read their diffs"
                .to_string(),
        );
    }

    // What each configuration needs, then the comparisons on every core
    // (each parses its two configurations, and drops them once compared).
    let mut used = BTreeSet::new();
    let jobs: Vec<Job<'_>> = new_cfgs
        .iter()
        .zip(&bases)
        .map(|(n, b)| match b {
            None => Job::Added(n),
            Some(o) => {
                used.insert(o.configuration.as_str());
                // A configuration's data is its directory's files (imports
                // stay under it, `nixdata`) read without their comments, and
                // one compared with itself is unchanged: an equal directory
                // is unchanged whatever else changed (what masgen's own
                // modules may change is the note above).
                if o.configuration == n.configuration && same_dir(old, new, &n.dir()) {
                    Job::Same(n)
                } else {
                    Job::Changed(o, n)
                }
            }
        })
        .collect();
    let done = crate::par::map(&jobs, 8, |job| job.run(old, new));
    let mut configurations = done.into_iter().collect::<Result<Vec<_>, _>>()?;
    for o in &old_cfgs {
        if used.contains(o.configuration.as_str()) {
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

/// Whether the files under `dir` are the same code in both trees: the
/// same bytes, or Nix differing in comments only (a new masgen's headers).
fn same_dir(old: &OutputTree, new: &OutputTree, dir: &str) -> bool {
    let (mut a, mut b) = (under(old, dir), under(new, dir));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some((p, x)), Some((q, y)))
                if p == q
                    && (x == y
                        || (p.extension() == Some("nix")
                            && crate::nix::same_but_comments(x, y))) => {}
            _ => return false,
        }
    }
}

/// The files of `tree` under `dir` (a prefix ending in `/`), in order.
fn under<'a>(
    tree: &'a OutputTree,
    dir: &'a str,
) -> impl Iterator<Item = (&'a camino::Utf8PathBuf, &'a String)> {
    tree.range::<camino::Utf8Path, _>((
        std::ops::Bound::Included(camino::Utf8Path::new(dir)),
        std::ops::Bound::Unbounded,
    ))
    .take_while(move |(p, _)| p.as_str().starts_with(dir))
}

pub(super) fn finish(
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
struct Baselines<'a> {
    by_name: HashMap<&'a str, &'a ConfigState>,
    /// Each host's old configurations, in order.
    by_host: HashMap<&'a str, Vec<&'a ConfigState>>,
}

impl<'a> Baselines<'a> {
    fn new(old: &'a [ConfigState]) -> Self {
        let mut by_name = HashMap::new();
        let mut by_host: HashMap<&str, Vec<&ConfigState>> = HashMap::new();
        for o in old {
            by_name.entry(o.configuration.as_str()).or_insert(o);
            by_host.entry(o.host.as_str()).or_default().push(o);
        }
        Baselines { by_name, by_host }
    }

    fn of(&self, n: &ConfigState) -> Option<&'a ConfigState> {
        if let Some(same) = self.by_name.get(n.configuration.as_str()) {
            return Some(same);
        }
        let rank = state::phase_rank(&n.phase);
        let same_host = self.by_host.get(n.host.as_str())?;
        same_host
            .iter()
            .filter(|o| state::phase_rank(&o.phase) < rank)
            .max_by_key(|o| state::phase_rank(&o.phase))
            .or_else(|| same_host.first())
            .copied()
    }
}

/// What comparing one new configuration takes.
enum Job<'a> {
    /// No old configuration to compare it with.
    Added(&'a ConfigState),
    /// Its own old self, with the same files.
    Same(&'a ConfigState),
    /// The old configuration and the new.
    Changed(&'a ConfigState, &'a ConfigState),
}

impl Job<'_> {
    fn run(&self, old: &OutputTree, new: &OutputTree) -> Result<ConfigurationChange, String> {
        let load = |c: &ConfigState, tree: &OutputTree, side: &str| {
            let mut c = c.clone();
            c.load(tree).map_err(|e| format!("the {side} tree: {e}"))?;
            Ok::<_, String>(c)
        };
        Ok(match *self {
            Job::Added(n) => compare_config(None, &load(n, new, "new")?),
            Job::Same(n) => empty_change(n, Some(n.configuration.clone())),
            Job::Changed(o, n) => {
                let o = load(o, old, "old")?;
                compare_config(Some(&o), &load(n, new, "new")?)
            }
        })
    }
}

pub(super) fn empty_change(c: &ConfigState, baseline: Option<String>) -> ConfigurationChange {
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

    let mut units = service_changes(o, n, &change);
    task_changes(&mut units, &o.tasks(), &n.tasks());
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

    mark_changed(&mut change);
    change
}

/// The long-running services of two configurations of a host: what a
/// switch from `o` to `n` does to each, and why.
fn service_changes(
    o: &ConfigState,
    n: &ConfigState,
    change: &ConfigurationChange,
) -> BTreeMap<(u8, String), UnitChange> {
    let mut units = BTreeMap::new();
    synapse_units(&mut units, o, n, change);
    mas_unit(&mut units, o, n, change);
    nginx_units(&mut units, o, n, change);
    postgres_unit(&mut units, o, n, &change.other_options);
    units
}

/// Options besides the settings that restart Synapse, and how to name them.
const SYNAPSE_RESTARTS: [(&str, &str); 3] = [
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
];

/// Options besides the settings that restart MAS, and how to name them.
const MAS_RESTARTS: [(&str, &str); 3] = [
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
];

/// Synapse, and the unit that writes its password_config file.
fn synapse_units(
    units: &mut BTreeMap<(u8, String), UnitChange>,
    o: &ConfigState,
    n: &ConfigState,
    change: &ConfigurationChange,
) {
    let opts = &change.other_options;
    let reasons = unit_reasons(
        ("Synapse settings", change.synapse_settings.len()),
        opts,
        &SYNAPSE_RESTARTS,
    );
    service_unit(
        units,
        SYNAPSE_UNIT,
        o.synapse_enabled(),
        n.synapse_enabled(),
        reasons,
        "restarted",
    );
    service_unit(
        units,
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
}

/// MAS.
fn mas_unit(
    units: &mut BTreeMap<(u8, String), UnitChange>,
    o: &ConfigState,
    n: &ConfigState,
    change: &ConfigurationChange,
) {
    let opts = &change.other_options;
    let reasons = unit_reasons(
        ("MAS settings", change.mas_settings.len()),
        opts,
        &MAS_RESTARTS,
    );
    service_unit(
        units,
        MAS_UNIT,
        o.mas_enabled(),
        n.mas_enabled(),
        reasons,
        "restarted",
    );
}

/// nginx, and the ACME units of its certificates.
fn nginx_units(
    units: &mut BTreeMap<(u8, String), UnitChange>,
    o: &ConfigState,
    n: &ConfigState,
    change: &ConfigurationChange,
) {
    let opts = &change.other_options;
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
        units,
        NGINX_UNIT,
        o.nginx_enabled(),
        n.nginx_enabled(),
        reasons,
        NGINX_RESTART,
    );
    acme_units(units, &o.acme_hosts(), &n.acme_hosts());
}

/// masgen's tasks: added, removed, or changed in which of their fields.
fn task_changes(
    units: &mut BTreeMap<(u8, String), UnitChange>,
    ot: &BTreeMap<String, Value>,
    nt: &BTreeMap<String, Value>,
) {
    for name in ot.keys().chain(nt.keys()).collect::<BTreeSet<_>>() {
        let unit = format!("{name}.service");
        match (ot.get(name), nt.get(name)) {
            (None, Some(_)) => task_unit(units, unit, Change::Added, vec![]),
            (Some(_), None) => task_unit(units, unit, Change::Removed, vec![]),
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
                task_unit(units, unit, Change::Changed, reasons);
            }
            _ => {}
        }
    }
}

/// A configuration with any difference is `Changed`.
pub(super) fn mark_changed(change: &mut ConfigurationChange) {
    if !(change.units.is_empty()
        && change.synapse_settings.is_empty()
        && change.mas_settings.is_empty()
        && change.virtual_hosts.is_empty()
        && change.routes.is_empty()
        && change.other_options.is_empty())
    {
        change.status = Status::Changed;
    }
}

pub(super) fn count(what: &str, n: usize) -> String {
    if n == 1 {
        format!("{what} (1 change)")
    } else {
        format!("{what} ({n} changes)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration's directory is the same code when its files differ
    /// in comments only (a new masgen version's headers), not otherwise.
    #[test]
    fn a_directory_differing_in_comments_only_is_the_same() {
        let tree = |default: &str, yaml: &str| -> OutputTree {
            [
                ("hosts/h/final/default.nix", default),
                ("hosts/h/final/x.yaml", yaml),
                ("hosts/i/final/default.nix", "{ b = 2; }"),
            ]
            .into_iter()
            .map(|(p, t)| (p.into(), t.to_string()))
            .collect()
        };
        let old = tree("# masgen 0.1\n{ a = \"#1\"; }\n", "# v1\na: 1\n");
        let dir = "hosts/h/final/";
        let same_code = tree("# masgen 0.2\n{ a = \"#1\"; }\n", "# v1\na: 1\n");
        assert!(same_dir(&old, &same_code, dir));
        for other in [
            tree("# masgen 0.2\n{ a = \"#2\"; }\n", "# v1\na: 1\n"),
            // Only Nix is read without comments.
            tree("# masgen 0.1\n{ a = \"#1\"; }\n", "# v2\na: 1\n"),
        ] {
            assert!(!same_dir(&old, &other, dir));
        }
        let mut more = old.clone();
        more.insert("hosts/h/final/y.nix".into(), "1".into());
        assert!(!same_dir(&old, &more, dir) && !same_dir(&more, &old, dir));
        assert!(same_dir(&old, &more, "hosts/i/final/"));
    }

    /// `compare_trees` skips a configuration whose files did not change:
    /// that is sound only if comparing one with itself finds nothing.
    #[test]
    fn a_configuration_compared_with_itself_is_unchanged() {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut seen = 0;
        for name in [
            "fresh",
            "migrate-local",
            "migrate-keycloak",
            "mas-own-host",
            "fleet/example-net",
        ] {
            let path = format!("{root}/examples/{name}.toml");
            let text = std::fs::read_to_string(&path).unwrap();
            let checked = crate::check_source(crate::spec::Source::new(&path, &text))
                .unwrap_or_else(|_| panic!("{name} validates"));
            let (_, tree) = crate::build_tree(&checked).unwrap();
            for c in state::configurations(&tree).unwrap() {
                let same = compare_config(Some(&c), &c);
                assert_eq!(
                    format!("{same:?}"),
                    format!("{:?}", empty_change(&c, Some(c.configuration.clone()))),
                    "{name}: {}",
                    c.configuration
                );
                seen += 1;
            }
        }
        assert!(seen >= 10, "{seen}");
    }
}
