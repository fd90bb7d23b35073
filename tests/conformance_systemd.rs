//! Conformance: every systemd unit masgen renders for its tasks
//! (`render/<host>/<phase>/units/*.service` of `masgen::build_tree`, i.e.
//! `masgen::emit::render_unit`) passes `systemd-analyze verify`, for every
//! example spec and every phase.
//!
//! `systemd-analyze verify` needs no running systemd (PID 1 here is not
//! systemd): it loads the unit files named on the command line, looking
//! first in their own directory, then in the host's unit paths. It exits 0
//! on *unknown keys* (it only warns), so a unit passes here only when it
//! exits 0 AND prints nothing at all.
//!
//! The substitutions (store paths → stand-ins, stub dependency units) are
//! tests/support/units.rs's, described there. On a host without PostgreSQL
//! (the split example's MAS host) `postgresql.service` gets no stub: no
//! unit there may need it.

mod support;

use std::fs;
use std::path::PathBuf;

use support::units::*;
use support::*;

#[test]
fn every_rendered_unit_passes_systemd_analyze_verify() {
    let Some(tool) = require_tool("systemd-analyze", "verifying rendered systemd units") else {
        return;
    };
    // A host without PostgreSQL (a split homeserver's MAS host) has no
    // postgresql.service, and systemd refuses a start job that Requires= a
    // unit it cannot find ("Unit postgresql.service not found"): there the
    // name is changed, since this machine has a postgresql.service of its
    // own that verify would find, and gets no stub.
    const ABSENT: &str = "masgen-test-absent-postgresql.service";
    let mut count = 0;
    for (name, checked) in checked_examples_and_split() {
        let (lowered, tree) = masgen::build_tree(&checked).expect("build_tree");
        for phase in &lowered.phases {
            let what = format!("{name} {} {}", phase.host, phase.phase.name());
            let here = |t: &str| match phase.roles.postgres {
                true => t.to_string(),
                false => t.replace("postgresql.service", ABSENT),
            };
            let prefix = format!("render/{}/{}/units/", phase.host, phase.phase.name());
            let units: Vec<(String, String)> = tree
                .iter()
                .filter_map(|(p, t)| {
                    p.as_str()
                        .strip_prefix(&prefix)
                        .map(|n| (n.to_string(), t.clone()))
                })
                .collect();
            assert_eq!(
                units.len(),
                phase.tasks.len(),
                "{what}: one rendered unit per task"
            );
            let mut dir = UnitDir::new();
            let paths: Vec<(String, PathBuf)> = units
                .iter()
                .map(|(n, t)| (n.clone(), dir.add(n, &here(t))))
                .collect();
            dir.stub_dependencies();
            let _ = fs::remove_file(dir.path().join(ABSENT));
            for (unit, path) in paths {
                if let Err(e) = verify(&tool, &path) {
                    panic!(
                        "{what}: systemd-analyze verify {unit}: {e}\n--- unit ---\n{}",
                        fs::read_to_string(&path).unwrap()
                    );
                }
                count += 1;
            }
            eprintln!("ok: systemd-analyze verify passes every unit of {what}");
        }
    }
    assert!(count > 0, "no units verified");
}

/// The same units straight from `render_unit`, to make sure the files in
/// the tree are what `render_unit` makes (the tree adds only a header).
#[test]
fn tree_units_are_render_unit_output() {
    for (name, checked) in checked_examples() {
        let (lowered, tree) = masgen::build_tree(&checked).expect("build_tree");
        for phase in &lowered.phases {
            for (task_name, task) in &phase.tasks {
                let rel = format!(
                    "render/{}/{}/units/{task_name}.service",
                    phase.host,
                    phase.phase.name()
                );
                let file = tree
                    .get(&camino::Utf8PathBuf::from(&rel))
                    .unwrap_or_else(|| panic!("{name}: no {rel}"));
                let unit = masgen::emit::render_unit(task_name, task, phase);
                assert!(
                    file.ends_with(&unit),
                    "{name}: {rel} is not render_unit's output"
                );
            }
        }
    }
}

/// The check is live: broken units fail it. One unit (migrate-local's first
/// task) is the base of every mutation: this tests the checker, not the
/// units, which `every_rendered_unit_passes_systemd_analyze_verify` checks
/// for every example.
#[test]
fn verify_rejects_broken_units() {
    let Some(tool) = require_tool("systemd-analyze", "verifying rendered systemd units") else {
        return;
    };
    let checked = checked_examples()
        .into_iter()
        .find(|(n, _)| n == "migrate-local.toml")
        .expect("migrate-local example")
        .1;
    let lowered = masgen::lower::lower(&checked.homeserver);
    let phase = &lowered.phases[0];
    let (task_name, task) = phase.tasks.iter().next().expect("a task");
    let good = masgen::emit::render_unit(task_name, task, phase);

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "typo'd key",
            good.replacen("Type=oneshot", "Tpye=oneshot", 1),
            "Unknown key",
        ),
        (
            "relative ExecStart",
            good.replacen("ExecStart=/", "ExecStart=", 1),
            "executable",
        ),
        (
            "missing executable",
            good.replacen(
                "ExecStart=/run/current-system/sw/bin/",
                "ExecStart=/nonexistent/",
                1,
            ),
            "not executable",
        ),
        (
            "unknown section",
            good.replacen("[Service]", "[Servcie]", 1),
            "Unknown section",
        ),
        (
            "missing dependency",
            good.replacen("Requires=", "Requires=masgen-no-such-unit.service ", 1)
                .replacen("After=", "After=masgen-no-such-unit.service ", 1),
            "not found",
        ),
    ];
    // The unbroken unit passes in the same setup (control).
    let mut dir = UnitDir::new();
    let control = dir.add(&format!("{task_name}.service"), &good);
    dir.stub_dependencies();
    verify(&tool, &control).unwrap_or_else(|e| panic!("control unit fails: {e}\n{good}"));

    for (what, text, expect) in cases {
        assert_ne!(text, good, "{what}: the mutation did not apply");
        let mut dir = UnitDir::new();
        let p = dir.add(&format!("{task_name}.service"), &text);
        dir.stub_dependencies();
        // The unknown dependency must stay unknown.
        let _ = fs::remove_file(dir.path().join("masgen-no-such-unit.service"));
        match verify(&tool, &p) {
            Ok(()) => panic!("{what}: systemd-analyze verify accepts it:\n{text}"),
            Err(e) => assert!(
                e.contains(expect),
                "{what}: expected `{expect}` in the verify output:\n{e}"
            ),
        }
    }
}

/// systemd.unit(5), Conflicts=: "this setting does not imply an ordering
/// dependency … to ensure that the conflicting unit is stopped before the
/// other unit is started, an After= or Before= dependency must be declared."
/// Without one, `systemctl start masgen-syn2mas-migrate` may run syn2mas
/// while Synapse (or MAS) is still shutting down — the very thing the
/// Conflicts= is there to prevent.
#[test]
fn conflicting_units_are_ordered() {
    for (name, checked) in checked_examples() {
        let lowered = masgen::lower::lower(&checked.homeserver);
        for phase in &lowered.phases {
            for (task_name, task) in &phase.tasks {
                let unit = masgen::emit::render_unit(task_name, task, phase);
                let list = |key: &str| -> Vec<String> {
                    unit.lines()
                        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
                        .flat_map(|v| v.split_whitespace().map(str::to_string))
                        .collect()
                };
                let ordered: Vec<String> = [list("After"), list("Before")].concat();
                for c in list("Conflicts") {
                    assert!(
                        ordered.contains(&c),
                        "{name} {}: {task_name} conflicts with {c} but is not ordered against it:\n{unit}",
                        phase.phase.name()
                    );
                }
            }
        }
    }
}
