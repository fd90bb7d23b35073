//! `masgen plan`: every state × mode transition, every refusal, the safety
//! invariants against hand-made unsafe step lists and system records, and
//! state detection from system roots laid out from masgen's own output.
//! The command line is in tests/plan_cli.rs.

mod support;

use std::collections::BTreeSet;
use std::fs;

use camino::{Utf8Path, Utf8PathBuf};
use masgen::model::Mode;
use masgen::plan::{self, Downtime, HostState, Options, Record, StateSource};

/// The spec at `path` (relative to the repository), validated under that name.
fn checked(path: &str) -> masgen::Checked {
    support::checked(path, &fs::read_to_string(path).unwrap())
}

fn opts(rollback: bool, acks: &[&str]) -> Options {
    Options {
        out_dir: "out".into(),
        rollback,
        acknowledged: acks.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        record: Record::default(),
        deploy: Default::default(),
        targets: Default::default(),
        colmena_config: None,
    }
}

/// The plan for `c` from `from`, which must not be refused.
fn planned(c: &masgen::Checked, from: HostState, o: &Options) -> plan::Plan {
    plan::plan(&c.homeserver, from, "t", o).expect("a plan, not a refusal")
}

/// One line per step: what a reviewer checks first.
fn outline(result: &Result<plan::Plan, plan::Refusal>) -> String {
    match result {
        Err(r) => format!("REFUSED {}: {}\n", r.code, r.reason),
        Ok(p) => {
            let mut s = format!("{} -> {} ({} steps)\n", p.from, p.to, p.steps.len());
            for step in &p.steps {
                s.push_str(&format!(
                    "{:<24} {:<9} {:<8} undo={:<5} {}\n",
                    step.id,
                    format!("{:?}", step.kind),
                    format!("{:?}", step.synapse),
                    step.undo.possible,
                    step.commands.first().map(String::as_str).unwrap_or("-")
                ));
            }
            s
        }
    }
}

/// Each state once as a bare claim (`--from`, nothing on record) and once
/// as a system root shows it, with the stamps a host there has.
#[test]
fn every_state_and_mode_transition() {
    let mut all = String::new();
    for spec in ["examples/fresh.toml", "examples/migrate-local.toml"] {
        let c = checked(spec);
        for state in HostState::ALL {
            for shown in [false, true] {
                for rollback in [false, true] {
                    let mut o = opts(rollback, &[]);
                    if shown {
                        let done =
                            state >= HostState::Migrated && c.homeserver.mode == Mode::Migrate;
                        o.record = record(state, done, done);
                    }
                    let result = plan::plan(&c.homeserver, state, "test", &o);
                    all.push_str(&format!(
                        "== {spec} from {state}{}{}\n",
                        if shown {
                            " (shown by the system)"
                        } else {
                            " (claimed)"
                        },
                        if rollback { " (rollback)" } else { "" }
                    ));
                    all.push_str(&outline(&result));
                }
            }
        }
    }
    insta::assert_snapshot!("transitions", all);
}

/// Every step of `p` in full: its host, title, commands and gate checks.
fn in_full(result: &Result<plan::Plan, plan::Refusal>) -> String {
    let Ok(p) = result else {
        return outline(result);
    };
    let mut s = format!("{} -> {} ({} steps)\n", p.from, p.to, p.steps.len());
    for step in &p.steps {
        s.push_str(&format!(
            "[{}] on {}: {} ({:?}, Synapse {:?}, undo={})\n",
            step.id, step.host, step.title, step.kind, step.synapse, step.undo.possible
        ));
        for c in &step.commands {
            s.push_str(&format!("  $ {c}\n"));
        }
        for c in &step.gate.check {
            s.push_str(&format!("  check: {} => {}\n", c.command, c.expectation()));
        }
    }
    s.push_str(&format!("downtime: {:?}\n", p.downtime));
    s
}

/// The split example (`examples/fleet/example-net.toml`) from each state,
/// forward and back (acknowledged): every step's host, commands and gate
/// (which units each host's switch must leave active, the build of each
/// host's final configuration, the stops on their hosts).
#[test]
fn every_transition_of_a_split_homeserver() {
    let c = checked("examples/fleet/example-net.toml");
    let mut all = String::new();
    for state in HostState::ALL {
        for rollback in [false, true] {
            let o = opts(rollback, &[plan::ACK_ROLLBACK]);
            let result = plan::plan(&c.homeserver, state, "test", &o);
            all.push_str(&format!(
                "== from {state}{}\n",
                if rollback { " (rollback)" } else { "" }
            ));
            all.push_str(&in_full(&result));
        }
    }
    insta::assert_snapshot!("split_transitions", all);
}

/// Split with MAS beside Synapse (only PostgreSQL elsewhere): one final
/// switch of their host, and the way back of a host with both.
#[test]
fn a_split_with_mas_beside_synapse() {
    let text = fs::read_to_string("examples/fleet/example-net.toml").unwrap();
    let mut doc: toml::Table = toml::from_str(&text).unwrap();
    doc["hosts"].as_table_mut().unwrap().remove("auth-net");
    doc["mas"]["host"] = "matrix-net".into();
    let c = support::checked("beside.toml", &toml::to_string(&doc).unwrap());
    let ids = |p: &plan::Plan| -> Vec<(String, String)> {
        p.steps
            .iter()
            .map(|s| (s.id.clone(), s.host.clone()))
            .collect()
    };
    let p = planned(&c, HostState::SynapseOnly, &opts(false, &[]));
    let forward = ids(&p);
    let finals: Vec<&(String, String)> = forward
        .iter()
        .filter(|(id, _)| id.starts_with("switch-final"))
        .collect();
    assert_eq!(
        finals,
        [
            &("switch-final".to_string(), "matrix-net".to_string()),
            &("switch-final-db-net".to_string(), "db-net".to_string())
        ],
        "{forward:?}"
    );
    let mut unique = forward.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), forward.len(), "{forward:?}");
    let back = planned(&c, HostState::Delegated, &opts(true, &[plan::ACK_ROLLBACK]));
    let on = |id: &str, host: &str| (id.to_string(), host.to_string());
    assert_eq!(
        ids(&back),
        [
            on("rollback-stop", "matrix-net"),
            on("rollback-switch-synapse-only", "matrix-net"),
            on("rollback-empty-mas", "db-net"),
            on("rollback-remove-stamps", "matrix-net"),
        ]
    );
}

/// The example split homeserver's spec, edited as a TOML table.
fn split_spec(edit: impl Fn(&mut toml::Table)) -> masgen::Checked {
    let text = fs::read_to_string("examples/fleet/example-net.toml").unwrap();
    let mut doc: toml::Table = toml::from_str(&text).unwrap();
    edit(&mut doc);
    support::checked("split.toml", &toml::to_string(&doc).unwrap())
}

fn phase_one_order(c: &masgen::Checked) -> Vec<(String, Vec<String>)> {
    let p = planned(c, HostState::SynapseOnly, &opts(false, &[]));
    p.steps
        .iter()
        .filter(|s| s.id.starts_with("switch-prepare-"))
        .map(|s| {
            let checks = s.gate.check.iter().map(|c| c.command.clone()).collect();
            (s.host.clone(), checks)
        })
        .collect()
}

/// Four hosts, named so that alphabetical order is wrong: PostgreSQL's
/// host first, then MAS's, then Synapse's, the proxy's own host last.
#[test]
fn split_hosts_switch_in_dependency_order() {
    let c = split_spec(|doc| {
        let hosts = doc["hosts"].as_table_mut().unwrap();
        let auth = hosts.remove("auth-net").unwrap();
        hosts.insert("zauth-net".into(), auth);
        let mut edge = toml::Table::new();
        edge.insert("address".into(), "10.20.0.5".into());
        hosts.insert("edge-net".into(), edge.into());
        doc["mas"]["host"] = "zauth-net".into();
        let proxy = doc["proxy"].as_table_mut().unwrap();
        proxy.insert("host".into(), "edge-net".into());
    });
    let order: Vec<String> = phase_one_order(&c).into_iter().map(|(h, _)| h).collect();
    assert_eq!(order, ["db-net", "zauth-net", "matrix-net", "edge-net"]);
}

/// Wherever PostgreSQL runs with logins from other hosts, phase 1's gate
/// checks that masgen set the roles' passwords: on a host of its own, and
/// on MAS's host when PostgreSQL runs beside MAS.
#[test]
fn phase_one_checks_the_passwords_where_postgres_takes_logins() {
    let passwords = "masgen-postgres-passwords.service";
    let has = |checks: &[String]| checks.iter().any(|c| c.contains(passwords));
    for (host, checks) in phase_one_order(&split_spec(|_| {})) {
        assert_eq!(has(&checks), host == "db-net", "{host}: {checks:?}");
    }
    let beside_mas = split_spec(|doc| {
        doc["hosts"].as_table_mut().unwrap().remove("db-net");
        doc["synapse"]["database"]["host"] = "auth-net".into();
        let mas_db = doc["mas"]["database"].as_table_mut().unwrap();
        mas_db.insert("host".into(), "auth-net".into());
        mas_db.remove("password_file");
        mas_db.remove("ssl_mode");
    });
    for (host, checks) in phase_one_order(&beside_mas) {
        assert_eq!(has(&checks), host == "auth-net", "{host}: {checks:?}");
    }
}

#[test]
fn migration_order_and_downtime_are_what_the_operator_needs() {
    let c = checked("examples/migrate-local.toml");
    let p = plan::plan(
        &c.homeserver,
        HostState::SynapseOnly,
        "test",
        &opts(false, &[]),
    )
    .unwrap();
    let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "switch-prepare",
            "syn2mas-check",
            "syn2mas-dry-run",
            "backup",
            "build-final",
            "stop-services",
            "syn2mas-migrate",
            "switch-final",
            "mas-doctor",
            "register-bot.reminders",
            "follow-ups"
        ]
    );
    assert_eq!(
        p.downtime,
        Some(("stop-services".into(), "switch-final".into()))
    );
    let down: Vec<&str> = p
        .steps
        .iter()
        .filter(|s| s.synapse == Downtime::Down)
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(down, ["stop-services", "syn2mas-migrate", "switch-final"]);
    let first = &p.steps[0];
    assert_eq!(
        first.commands,
        ["nixos-rebuild switch --flake out#matrix-prepare"]
    );
    let build = p.steps.iter().find(|s| s.id == "build-final").unwrap();
    assert_eq!(build.commands, ["nixos-rebuild build --flake out#matrix"]);
    let switch = p.steps.iter().find(|s| s.id == "switch-final").unwrap();
    assert!(
        !switch.undo.possible,
        "the final switch cannot be undone cleanly"
    );
    let migrate = p.steps.iter().find(|s| s.id == "syn2mas-migrate").unwrap();
    assert!(migrate.undo.possible && migrate.undo.how.contains("never writes to Synapse"));
    for s in &p.steps {
        if s.id.starts_with("syn2mas") {
            assert!(
                s.gate.condition.contains("11") && s.gate.condition.contains("10"),
                "{}: exit codes in gate",
                s.id
            );
        }
    }
}

#[test]
fn partial_runs_start_at_the_first_unfinished_step() {
    let c = checked("examples/migrate-local.toml");
    let from_prepared = planned(&c, HostState::MasPrepared, &opts(false, &[]));
    assert_eq!(from_prepared.steps[0].id, "syn2mas-check");
    // Past the migration, the system's stamp is what lets the plan go on.
    let mut on_record = opts(false, &[]);
    on_record.record = record(HostState::Migrated, true, true);
    let from_migrated = planned(&c, HostState::Migrated, &on_record);
    assert_eq!(from_migrated.steps[0].id, "switch-final");
    assert!(
        from_migrated
            .steps
            .iter()
            .all(|s| !s.id.starts_with("syn2mas")),
        "never a second syn2mas"
    );
}

fn refusal(spec: &masgen::Checked, from: HostState, o: Options) -> plan::Refusal {
    plan::plan(&spec.homeserver, from, "t", &o).expect_err("must refuse")
}

#[test]
fn refusals_name_the_risk_and_the_way_out() {
    let fresh = checked("examples/fresh.toml");
    let migrate = checked("examples/migrate-local.toml");
    assert_eq!(
        refusal(&fresh, HostState::SynapseOnly, opts(false, &[])).code,
        "plan.fresh_over_existing"
    );
    assert_eq!(
        refusal(&migrate, HostState::Fresh, opts(false, &[])).code,
        "plan.migrate_without_synapse"
    );
    assert_eq!(
        refusal(&fresh, HostState::Delegated, opts(true, &[])).code,
        "plan.rollback_fresh"
    );

    let r = refusal(&migrate, HostState::Delegated, opts(true, &[]));
    assert_eq!(r.code, "plan.rollback_delegated");
    assert!(r.help.contains(plan::ACK_ROLLBACK));
    let ok = planned(
        &migrate,
        HostState::Delegated,
        &opts(true, &[plan::ACK_ROLLBACK]),
    );
    assert_eq!(ok.to, HostState::SynapseOnly);
    assert!(ok
        .steps
        .iter()
        .any(|s| s.warnings.iter().any(|w| w.contains("out#matrix-prepare"))));

    let text = fs::read_to_string("examples/migrate-local.toml").unwrap()
        + "\n[[synapse.password_providers]]\nmodule = \"shared_secret_authenticator.SharedSecretAuthProvider\"\n";
    let with_providers = support::checked("providers.toml", &text);
    let r = refusal(&with_providers, HostState::SynapseOnly, opts(false, &[]));
    assert_eq!(r.code, "plan.password_providers");
    assert!(r.help.contains(plan::ACK_PASSWORD_PROVIDERS));
    let acked = planned(
        &with_providers,
        HostState::SynapseOnly,
        &opts(false, &[plan::ACK_PASSWORD_PROVIDERS]),
    );
    assert!(acked
        .warnings
        .iter()
        .any(|w| w.contains("password providers")));
}

/// Where the step `id` is in a plan.
fn pos(steps: &[plan::Step], id: &str) -> usize {
    steps
        .iter()
        .position(|s| s.id == id)
        .unwrap_or_else(|| panic!("no step {id}"))
}

/// The invariants of a migration plan, with nothing on record.
fn check(steps: &[plan::Step]) -> Result<(), plan::Refusal> {
    plan::check_safety(Mode::Migrate, steps, &Record::default())
}

/// What a system root at `state` shows, with the given stamps.
fn record(state: HostState, dry_run_clean: bool, migrated: bool) -> Record {
    Record {
        system: Some((state, format!("test root at {state}"))),
        migrated,
        dry_run_clean,
    }
}

/// A system that shows the claimed state is no repeat; a rollback from
/// `synapse-only` empties MAS when either stamp is on record.
#[test]
fn the_record_decides_repeats_and_leftovers() {
    let c = checked("examples/migrate-local.toml");
    let mut o = opts(false, &[]);
    o.record = record(HostState::MasPrepared, true, false);
    let p = planned(&c, HostState::MasPrepared, &o);
    assert!(
        p.warnings.iter().all(|w| !w.contains("as claimed")),
        "{:?}",
        p.warnings
    );
    assert!(p
        .steps
        .iter()
        .all(|s| s.warnings.iter().all(|w| !w.contains("repeats"))));
    for (dry_run, migrated) in [(true, false), (false, true)] {
        let mut o = opts(true, &[]);
        o.record = record(HostState::SynapseOnly, dry_run, migrated);
        let p = planned(&c, HostState::SynapseOnly, &o);
        let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            ["rollback-empty-mas"],
            "dry run {dry_run}, migrated {migrated}"
        );
    }
    // Accounts made in MAS have no Synapse password only after delegating.
    for (from, warned) in [
        (HostState::Delegated, true),
        (HostState::MasPrepared, false),
        (HostState::Migrated, false),
    ] {
        for spec in [
            "examples/migrate-local.toml",
            "examples/fleet/example-net.toml",
        ] {
            let c = checked(spec);
            let p = planned(&c, from, &opts(true, &[plan::ACK_ROLLBACK]));
            let said = p.steps.iter().any(|s| {
                s.warnings
                    .iter()
                    .any(|w| w.contains("have no Synapse password"))
            });
            assert_eq!(said, warned, "{spec} from {from}");
        }
    }
}

#[test]
fn safety_invariants_reject_unsafe_step_lists() {
    let c = checked("examples/migrate-local.toml");
    let good = planned(&c, HostState::SynapseOnly, &opts(false, &[])).steps;
    assert!(check(&good).is_ok());

    let mut no_dry_run = good.clone();
    no_dry_run.retain(|s| s.id != "syn2mas-dry-run");
    assert_eq!(
        check(&no_dry_run).unwrap_err().code,
        "plan.migrate_without_dry_run"
    );

    let mut dry_run_after = good.clone();
    let dry = pos(&dry_run_after, "syn2mas-dry-run");
    let step = dry_run_after.remove(dry);
    dry_run_after.push(step);
    assert_eq!(
        check(&dry_run_after).unwrap_err().code,
        "plan.migrate_without_dry_run"
    );

    let mut twice = good.clone();
    let migrate = twice[pos(&twice, "syn2mas-migrate")].clone();
    let at = pos(&twice, "syn2mas-migrate");
    twice.insert(at, migrate);
    assert_eq!(check(&twice).unwrap_err().code, "plan.second_syn2mas");

    let mut final_first = good.clone();
    let sw = pos(&final_first, "switch-final");
    let step = final_first.remove(sw);
    let at = pos(&final_first, "stop-services");
    final_first.insert(at, step);
    assert_eq!(
        check(&final_first).unwrap_err().code,
        "plan.final_before_syn2mas"
    );

    let mut split = good.clone();
    let at = pos(&split, "syn2mas-migrate");
    let mut up = split[0].clone();
    up.id = "something-in-between".into();
    up.synapse = Downtime::None;
    split.insert(at, up);
    assert_eq!(check(&split).unwrap_err().code, "plan.downtime_split");
}

#[test]
fn safety_invariants_weigh_what_the_system_shows() {
    let c = checked("examples/migrate-local.toml");
    let good = planned(&c, HostState::SynapseOnly, &opts(false, &[])).steps;
    let safety = |steps: &[plan::Step], r: &Record| plan::check_safety(Mode::Migrate, steps, r);

    // A clean dry run on record stands in for one in the plan; nothing else does.
    let mut no_dry_run = good.clone();
    no_dry_run.retain(|s| s.id != "syn2mas-dry-run");
    let shown = HostState::MasPrepared;
    assert!(safety(&no_dry_run, &record(shown, true, false)).is_ok());
    let r = safety(&no_dry_run, &record(shown, false, false)).unwrap_err();
    assert_eq!(r.code, "plan.migrate_without_dry_run");
    assert!(r.reason.contains(plan::DRY_RUN_STAMP), "{}", r.reason);

    // The system shows a migration done, or a Synapse that delegates: no second one.
    for r in [
        record(HostState::Migrated, true, true),
        record(HostState::Delegated, false, false),
    ] {
        assert_eq!(
            safety(&good, &r).unwrap_err().code,
            "plan.second_syn2mas",
            "{r:?}"
        );
    }

    // A final switch with no syn2mas step needs the system to show one ran.
    let tail: Vec<plan::Step> = good
        .iter()
        .skip(pos(&good, "switch-final"))
        .cloned()
        .collect();
    let r = safety(&tail, &Record::default()).unwrap_err();
    assert_eq!(r.code, "plan.final_before_syn2mas");
    assert!(r.reason.contains("no system root"), "{}", r.reason);
    let r = safety(&tail, &record(HostState::MasPrepared, true, false)).unwrap_err();
    assert_eq!(r.code, "plan.final_before_syn2mas");
    assert!(r.reason.contains(plan::MIGRATED_STAMP), "{}", r.reason);
    assert!(safety(&tail, &record(HostState::Migrated, true, true)).is_ok());
    assert!(safety(&tail, &record(HostState::Delegated, false, false)).is_ok());
    // A fresh install has no syn2mas to wait for.
    assert!(plan::check_safety(Mode::Fresh, &tail, &Record::default()).is_ok());
}

#[test]
fn claims_are_weighed_against_the_system_record() {
    let c = checked("examples/migrate-local.toml");
    let with = |from: HostState, shown: Record, acks: &[&str]| {
        let mut o = opts(false, acks);
        o.record = shown;
        plan::plan(&c.homeserver, from, "t", &o)
    };
    let code = |r: Result<plan::Plan, plan::Refusal>| r.unwrap_err().code;
    let migrated = record(HostState::Migrated, true, true);
    assert_eq!(
        code(with(
            HostState::Delegated,
            migrated.clone(),
            &[plan::ACK_REPEAT]
        )),
        "plan.claim_ahead_of_system"
    );
    assert_eq!(
        code(with(HostState::MasPrepared, migrated.clone(), &[])),
        "plan.claim_behind_system"
    );
    assert_eq!(
        code(with(
            HostState::MasPrepared,
            migrated.clone(),
            &[plan::ACK_REPEAT]
        )),
        "plan.second_syn2mas"
    );
    // A host that runs Synapse is never fresh, acknowledged or not.
    let r = with(
        HostState::Fresh,
        record(HostState::SynapseOnly, false, false),
        &[plan::ACK_REPEAT],
    )
    .unwrap_err();
    assert_eq!(r.code, "plan.claim_behind_system");
    assert!(!r.help.contains(plan::ACK_REPEAT), "{}", r.help);

    let repeated = with(
        HostState::SynapseOnly,
        record(HostState::MasPrepared, false, false),
        &[plan::ACK_REPEAT],
    )
    .unwrap();
    let marked: Vec<&str> = repeated
        .steps
        .iter()
        .filter(|s| s.warnings.iter().any(|w| w.contains("repeats")))
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(marked, ["switch-prepare"]);
    assert!(repeated.warnings[0].contains(plan::ACK_REPEAT));
}

#[test]
fn every_rollback_ends_with_synapse_serving_logins_itself() {
    let c = checked("examples/migrate-local.toml");
    for from in [
        HostState::MasPrepared,
        HostState::Migrated,
        HostState::Delegated,
    ] {
        let p = planned(&c, from, &opts(true, &[plan::ACK_ROLLBACK]));
        assert_eq!(
            p.to,
            HostState::SynapseOnly,
            "from {from}: all the way back"
        );
        let switch = &p.steps[pos(&p.steps, "rollback-switch-synapse-only")];
        assert_eq!(switch.reaches, HostState::SynapseOnly);
        assert!(
            switch
                .commands
                .iter()
                .any(|c| c.contains("matrix-authentication-service.service")),
            "picks the generation without MAS: {:?}",
            switch.commands
        );
        assert!(switch
            .commands
            .contains(&"systemctl start matrix-synapse.service".to_string()));
        let checks: Vec<&str> = switch
            .gate
            .check
            .iter()
            .map(|c| c.command.as_str())
            .collect();
        let checks = checks.join("\n");
        assert!(
            checks.contains("/_matrix/client/v1/auth_metadata"),
            "{checks}"
        );
        assert!(checks.contains("/_matrix/client/v3/login"), "{checks}");
        // Synapse is back before MAS's data is dumped: downtime ends at the switch.
        let (_, last_down) = p.downtime.clone().unwrap_or_default();
        if from != HostState::MasPrepared {
            assert_eq!(last_down, "rollback-switch-synapse-only", "from {from}");
        }
        let empty = p.steps.last().unwrap();
        assert_eq!(empty.id, "rollback-empty-mas");
        let cmds = empty.commands.join("\n");
        assert!(
            cmds.contains("pg_dump") && cmds.contains("dropdb"),
            "{cmds}"
        );
        for stamp in [plan::MIGRATED_STAMP, plan::DRY_RUN_STAMP] {
            assert!(cmds.contains(stamp), "removes {stamp}: {cmds}");
        }
    }
}

/// Lays out a system root the way NixOS does, from masgen's own renders.
fn system_root(
    dir: &Utf8Path,
    tree: &masgen::emit::OutputTree,
    phase: Option<&str>,
    mas: bool,
    stamps: &[&str],
) {
    let units = dir.join("etc/systemd/system");
    fs::create_dir_all(&units).unwrap();
    fs::write(
        units.join("sshd.service"),
        "[Service]\nExecStart=/nix/store/aaa-openssh/bin/sshd -D\n",
    )
    .unwrap();
    let Some(phase) = phase else { return };
    let store = dir.join("nix/store");
    fs::create_dir_all(&store).unwrap();
    let hs_yaml = &tree[&Utf8PathBuf::from(format!("render/matrix/{phase}/homeserver.yaml"))];
    fs::write(store.join("bbb-homeserver.yaml"), hs_yaml).unwrap();
    fs::write(
        units.join("matrix-synapse.service"),
        "[Service]\nExecStart=/nix/store/ccc-synapse/bin/synapse_homeserver --config-path /nix/store/bbb-homeserver.yaml --config-path /run/masgen-synapse/password-config.yaml --keys-directory /var/lib/matrix-synapse\n",
    )
    .unwrap();
    if mas {
        let mas_yaml = &tree[&Utf8PathBuf::from(format!("render/matrix/{phase}/mas-config.yaml"))];
        fs::write(store.join("ddd-config.yaml"), mas_yaml).unwrap();
        fs::write(
            units.join("matrix-authentication-service.service"),
            "[Service]\nExecStart=/nix/store/eee-mas/bin/mas-cli server --config /run/matrix-authentication-service/config.yaml\n",
        )
        .unwrap();
    }
    let stamp_dir = dir.join("var/lib/masgen");
    fs::create_dir_all(&stamp_dir).unwrap();
    for s in stamps {
        fs::write(stamp_dir.join(s), "").unwrap();
    }
}

#[test]
fn state_is_detected_from_system_roots_built_from_our_output() {
    let c = checked("examples/migrate-local.toml");
    let (_, tree) = masgen::build_tree(&c).unwrap();
    let dry = plan::DRY_RUN_STAMP;
    let done = plan::MIGRATED_STAMP;
    let cases: [(Option<&str>, bool, &[&str], HostState); 6] = [
        (None, false, &[], HostState::Fresh),
        (Some("prepare"), false, &[], HostState::SynapseOnly),
        (Some("prepare"), true, &[], HostState::MasPrepared),
        (Some("prepare"), true, &[dry], HostState::MasPrepared),
        (Some("prepare"), true, &[dry, done], HostState::Migrated),
        (Some("final"), true, &[], HostState::Delegated),
    ];
    for (phase, mas, stamps, expected) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap().to_owned();
        system_root(&root, &tree, phase, mas, stamps);
        let located = plan::locate(None, Some(plan::Roots::one(&root))).unwrap();
        let how = &located.how;
        assert_eq!(
            located.state, expected,
            "{phase:?} mas={mas} {stamps:?}: {how}"
        );
        assert!(how.starts_with("system root"), "{how}");
        let r = &located.record;
        assert_eq!(r.shown(), Some(expected));
        assert_eq!(r.dry_run_clean, stamps.contains(&dry), "{how}");
        assert_eq!(r.migrated, stamps.contains(&done), "{how}");
        let (state, _) = plan::detect(&StateSource::System(&root)).unwrap();
        assert_eq!(state, expected);
    }
}

#[test]
fn state_from_a_previous_output_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Utf8Path::from_path(tmp.path()).unwrap().join("out");
    // No tree yet: say so rather than guess.
    assert!(plan::detect(&StateSource::Manifest(&out)).is_err());
    let fresh = checked("examples/fresh.toml");
    let (_, tree) = masgen::build_tree(&fresh).unwrap();
    masgen::write::write_tree(&out, &tree, false).unwrap();
    let (state, how) = plan::detect(&StateSource::Manifest(&out)).unwrap();
    assert_eq!(state, HostState::Delegated, "{how}");
    // A two-phase tree cannot say how far the host got.
    let out2 = Utf8Path::from_path(tmp.path()).unwrap().join("out2");
    let (_, tree) = masgen::build_tree(&checked("examples/migrate-local.toml")).unwrap();
    masgen::write::write_tree(&out2, &tree, false).unwrap();
    let err = plan::detect(&StateSource::Manifest(&out2))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--from") && err.contains("--system"), "{err}");
}

#[test]
fn build_writes_the_plan_beside_the_flake() {
    let (_, tree) = masgen::build_tree(&checked("examples/migrate-local.toml")).unwrap();
    let md = &tree[&Utf8PathBuf::from("PLAN.md")];
    assert!(md.contains("nixos-rebuild switch --flake ./out#matrix-prepare"));
    let json: serde_json::Value =
        serde_json::from_str(&tree[&Utf8PathBuf::from("plan.json")]).unwrap();
    assert_eq!(json["from"], "synapse-only");
    assert_eq!(json["to"], "delegated");
}

/// The rollback's generation finder, run by `sh` against a profile
/// directory laid out like /nix/var/nix/profiles: it picks the newest
/// generation without MAS's unit, comparing generation numbers as numbers.
#[test]
fn rollback_finds_the_newest_generation_without_mas() {
    let c = checked("examples/migrate-local.toml");
    let p = planned(&c, HostState::MasPrepared, &opts(true, &[]));
    let find = &p.steps[pos(&p.steps, "rollback-switch-synapse-only")].commands[0];
    let run = |with_mas: &[u32], without: &[u32]| {
        // Dashes in the parent path must not confuse it.
        let tmp = tempfile::Builder::new()
            .prefix("masgen-plan-")
            .tempdir()
            .unwrap();
        let profiles = tmp.path().join("nix-profiles");
        for (n, mas) in with_mas
            .iter()
            .map(|n| (n, true))
            .chain(without.iter().map(|n| (n, false)))
        {
            let units = profiles.join(format!("system-{n}-link/etc/systemd/system"));
            fs::create_dir_all(&units).unwrap();
            fs::write(units.join("matrix-synapse.service"), "").unwrap();
            if mas {
                fs::write(units.join("matrix-authentication-service.service"), "").unwrap();
            }
        }
        let script = find.replace("/nix/var/nix/profiles", profiles.to_str().unwrap())
            + "\necho \"GEN=$gen\"";
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("GEN="))
            .unwrap()
            .to_string()
    };
    assert_eq!(run(&[9, 10, 11], &[2, 8]), "8");
    assert_eq!(run(&[3], &[1, 2, 4]), "4", "a later generation without MAS");
    assert_eq!(run(&[1, 2], &[]), "", "none left");
}

/// Every gate with a command to run is machine-checkable: each check says
/// what its result must be, and syn2mas gates say when only warnings failed.
#[test]
fn every_gate_is_a_command_with_an_expected_result() {
    let acks = [plan::ACK_ROLLBACK, plan::ACK_PASSWORD_PROVIDERS];
    for spec in ["examples/fresh.toml", "examples/migrate-local.toml"] {
        let c = checked(spec);
        for state in HostState::ALL {
            for rollback in [false, true] {
                let mut o = opts(rollback, &acks);
                o.record = record(
                    state,
                    state >= HostState::MasPrepared,
                    state == HostState::Migrated,
                );
                let Ok(p) = plan::plan(&c.homeserver, state, "test", &o) else {
                    continue;
                };
                for s in &p.steps {
                    if s.commands.is_empty() {
                        assert!(s.gate.check.is_empty(), "{}: a note has no gate", s.id);
                        continue;
                    }
                    assert!(!s.gate.check.is_empty(), "{}: no check", s.id);
                    for check in &s.gate.check {
                        assert!(!check.expectation().is_empty(), "{}: {check:?}", s.id);
                    }
                    let syn2mas = s.id.starts_with("syn2mas-");
                    assert_eq!(s.gate.warnings_only.is_some(), syn2mas, "{}", s.id);
                }
            }
        }
    }
}

#[test]
fn a_check_judges_exit_status_and_whole_lines() {
    let c = plan::Check {
        command: "systemctl show x".into(),
        exit: plan::Exit::Zero,
        stdout_has: vec!["Result=success".into()],
        stdout_lacks: vec!["ExecMainExitTimestampMonotonic=0".into()],
    };
    assert!(c
        .judge(
            Some(0),
            "Result=success\nExecMainExitTimestampMonotonic=12\n"
        )
        .is_ok());
    let never_ran = c.judge(
        Some(0),
        "Result=success\nExecMainExitTimestampMonotonic=0\n",
    );
    assert!(never_ran
        .unwrap_err()
        .contains("ExecMainExitTimestampMonotonic=0"));
    assert!(
        c.judge(Some(0), "Result=successful\n").is_err(),
        "whole lines only"
    );
    assert!(c
        .judge(Some(1), "Result=success\n")
        .unwrap_err()
        .contains("exit status 1"));
    assert!(c.judge(None, "Result=success\n").is_err());
}

/// Every form of Synapse password authentication stops a migration plan
/// until acknowledged: legacy providers, `[synapse.ldap]`, a module that
/// checks passwords, a password module in `extra_settings`.
#[test]
fn every_form_of_password_auth_is_refused() {
    let base = fs::read_to_string("examples/migrate-local.toml").unwrap();
    let ldap = "uri = \"ldap://ldap.example.net:389\"\nbase = \"ou=users,dc=example,dc=net\"\n\
                attributes = { uid = \"uid\", mail = \"mail\", name = \"cn\" }\n";
    let forms = [
        (
            "password_providers",
            "\n[[synapse.password_providers]]\nmodule = \"shared_secret_authenticator.SharedSecretAuthProvider\"\n".to_string(),
        ),
        ("[synapse.ldap]", format!("\n[synapse.ldap]\n{ldap}")),
        (
            "a module with password_auth",
            "\n[[synapse.modules]]\nmodule = \"my_auth.PasswordChecker\"\npassword_auth = true\n".to_string(),
        ),
        (
            "extra_settings.ldap_config",
            format!("\n[synapse.extra_settings.ldap_config]\nenabled = true\n{ldap}"),
        ),
    ];
    for (form, extra) in &forms {
        let spec = support::checked("providers.toml", &(base.clone() + extra));
        assert!(spec.homeserver.synapse.password_auth_in_use(), "{form}");
        let r = refusal(&spec, HostState::SynapseOnly, opts(false, &[]));
        assert_eq!(r.code, "plan.password_providers", "{form}");
    }
    // Without any, the plan goes ahead.
    let plain = support::checked("plain.toml", &base);
    assert!(!plain.homeserver.synapse.password_auth_in_use());
    plan::plan(
        &plain.homeserver,
        HostState::SynapseOnly,
        "t",
        &opts(false, &[]),
    )
    .expect("no password providers: no refusal");
    // Once syn2mas has run, Synapse is down: the refusal came before it, and
    // the plan finishes the switch rather than leave the server stopped.
    let spec = support::checked("providers.toml", &(base.clone() + &forms[0].1));
    let mut o = opts(false, &[]);
    o.record = record(HostState::Migrated, true, true);
    let p = planned(&spec, HostState::Migrated, &o);
    assert_eq!(p.steps[0].id, "switch-final");
    assert_eq!(
        refusal(&spec, HostState::MasPrepared, opts(false, &[])).code,
        "plan.password_providers"
    );
}

/// Users of SAML2, CAS or JWT logins are named in a migration's plan.
#[test]
fn legacy_sso_users_are_warned_about() {
    let base = fs::read_to_string("examples/migrate-local.toml").unwrap();
    let text = base.replace("[synapse]\n", "[synapse]\nlegacy_sso = [\"cas\"]\n");
    assert_ne!(text, base);
    let spec = support::checked("cas.toml", &text);
    let p = planned(&spec, HostState::SynapseOnly, &opts(false, &[]));
    assert!(
        p.warnings
            .iter()
            .any(|w| w == "users of cas cannot be carried over by syn2mas"),
        "{:?}",
        p.warnings
    );
}
