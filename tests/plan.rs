//! `masgen plan`: every state × mode transition, every refusal, and state
//! detection from system roots laid out from masgen's own output.

mod support;

use std::collections::BTreeSet;
use std::fs;

use camino::{Utf8Path, Utf8PathBuf};
use masgen::plan::{self, check_safety, Downtime, HostState, Options, StateSource};

/// The spec at `path` (relative to the repository), validated under that name.
fn checked(path: &str) -> masgen::Checked {
    support::checked(path, &fs::read_to_string(path).unwrap())
}

fn opts(rollback: bool, acks: &[&str]) -> Options {
    Options {
        out_dir: "out".into(),
        rollback,
        acknowledged: acks.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
    }
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

#[test]
fn every_state_and_mode_transition() {
    let mut all = String::new();
    for spec in ["examples/fresh.toml", "examples/migrate-local.toml"] {
        let c = checked(spec);
        for state in HostState::ALL {
            for rollback in [false, true] {
                let result = plan::plan(&c.homeserver, state, "test", &opts(rollback, &[]));
                all.push_str(&format!(
                    "== {spec} from {state}{}\n",
                    if rollback { " (rollback)" } else { "" }
                ));
                all.push_str(&outline(&result));
                if let Ok(p) = &result {
                    check_safety(&p.steps).expect("every produced plan keeps the invariants");
                }
            }
        }
    }
    insta::assert_snapshot!("transitions", all);
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
    let from_prepared = plan::plan(
        &c.homeserver,
        HostState::MasPrepared,
        "t",
        &opts(false, &[]),
    )
    .unwrap();
    assert_eq!(from_prepared.steps[0].id, "syn2mas-check");
    let from_migrated =
        plan::plan(&c.homeserver, HostState::Migrated, "t", &opts(false, &[])).unwrap();
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
    let ok = plan::plan(
        &migrate.homeserver,
        HostState::Delegated,
        "t",
        &opts(true, &[plan::ACK_ROLLBACK]),
    )
    .unwrap();
    assert_eq!(ok.to, HostState::MasPrepared);
    assert!(ok
        .steps
        .iter()
        .any(|s| s.commands.iter().any(|c| c.contains("out#matrix-prepare"))));

    let text = fs::read_to_string("examples/migrate-local.toml").unwrap()
        + "\n[[synapse.password_providers]]\nmodule = \"shared_secret_authenticator.SharedSecretAuthProvider\"\n";
    let with_providers = support::checked("providers.toml", &text);
    let r = refusal(&with_providers, HostState::SynapseOnly, opts(false, &[]));
    assert_eq!(r.code, "plan.password_providers");
    assert!(r.help.contains(plan::ACK_PASSWORD_PROVIDERS));
    let acked = plan::plan(
        &with_providers.homeserver,
        HostState::SynapseOnly,
        "t",
        &opts(false, &[plan::ACK_PASSWORD_PROVIDERS]),
    )
    .unwrap();
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

#[test]
fn safety_invariants_reject_unsafe_step_lists() {
    let c = checked("examples/migrate-local.toml");
    let good = plan::plan(
        &c.homeserver,
        HostState::SynapseOnly,
        "t",
        &opts(false, &[]),
    )
    .unwrap()
    .steps;
    assert!(check_safety(&good).is_ok());

    let mut no_dry_run = good.clone();
    no_dry_run.retain(|s| s.id != "syn2mas-dry-run");
    assert_eq!(
        check_safety(&no_dry_run).unwrap_err().code,
        "plan.migrate_without_dry_run"
    );

    let mut dry_run_after = good.clone();
    let dry = pos(&dry_run_after, "syn2mas-dry-run");
    let step = dry_run_after.remove(dry);
    dry_run_after.push(step);
    assert_eq!(
        check_safety(&dry_run_after).unwrap_err().code,
        "plan.migrate_without_dry_run"
    );

    let mut twice = good.clone();
    let migrate = twice[pos(&twice, "syn2mas-migrate")].clone();
    let at = pos(&twice, "syn2mas-migrate");
    twice.insert(at, migrate);
    assert_eq!(
        check_safety(&twice).unwrap_err().code,
        "plan.second_syn2mas"
    );

    let mut final_first = good.clone();
    let sw = pos(&final_first, "switch-final");
    let step = final_first.remove(sw);
    let at = pos(&final_first, "stop-services");
    final_first.insert(at, step);
    assert_eq!(
        check_safety(&final_first).unwrap_err().code,
        "plan.final_before_syn2mas"
    );

    let mut split = good.clone();
    let at = pos(&split, "syn2mas-migrate");
    let mut up = split[0].clone();
    up.id = "something-in-between".into();
    up.synapse = Downtime::None;
    split.insert(at, up);
    assert_eq!(
        check_safety(&split).unwrap_err().code,
        "plan.downtime_split"
    );
}

/// Lays out a system root the way NixOS does, from masgen's own renders.
fn system_root(
    dir: &Utf8Path,
    tree: &masgen::emit::OutputTree,
    phase: Option<&str>,
    mas: bool,
    stamp: bool,
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
    if stamp {
        let stamps = dir.join("var/lib/masgen");
        fs::create_dir_all(&stamps).unwrap();
        fs::write(stamps.join(plan::MIGRATED_STAMP), "").unwrap();
    }
}

#[test]
fn state_is_detected_from_system_roots_built_from_our_output() {
    let c = checked("examples/migrate-local.toml");
    let (_, tree) = masgen::build_tree(&c).unwrap();
    let cases = [
        (None, false, false, HostState::Fresh),
        (Some("prepare"), false, false, HostState::SynapseOnly),
        (Some("prepare"), true, false, HostState::MasPrepared),
        (Some("prepare"), true, true, HostState::Migrated),
        (Some("final"), true, false, HostState::Delegated),
    ];
    for (phase, mas, stamp, expected) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap().to_owned();
        system_root(&root, &tree, phase, mas, stamp);
        let (state, how) = plan::detect(&StateSource::System(&root)).unwrap();
        assert_eq!(state, expected, "{phase:?} mas={mas} stamp={stamp}: {how}");
        assert!(how.starts_with("system root"), "{how}");
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
fn cli_plan_formats_and_errors() {
    let run = |args: &[&str]| {
        let out = assert_cmd::Command::cargo_bin("masgen")
            .unwrap()
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, stdout, _) = run(&[
        "plan",
        "examples/migrate-local.toml",
        "--from",
        "synapse-only",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(0));
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["steps"][0]["id"], "switch-prepare");
    assert_eq!(json["steps"][0]["kind"], "rebuild");

    let (code, stdout, _) = run(&[
        "plan",
        "examples/migrate-local.toml",
        "--from",
        "synapse-only",
        "--format",
        "markdown",
    ]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("| 1 | Install MAS idle beside Synapse"));
    let (code, stdout, _) = run(&[
        "plan",
        "examples/migrate-local.toml",
        "--from",
        "mas-prepared",
    ]);
    assert_eq!(code, Some(0));
    assert!(!stdout.contains('\x1b'), "no colour when not a TTY");
    assert!(stdout.starts_with("Activation plan for example.com"));

    let (code, _, stderr) = run(&["plan", "examples/migrate-local.toml"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--from"), "{stderr}");
    let (code, _, stderr) = run(&["plan", "examples/migrate-local.toml", "--from", "sideways"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("unknown state `sideways`"), "{stderr}");
    let (code, _, stderr) = run(&[
        "plan",
        "examples/migrate-local.toml",
        "--from",
        "delegated",
        "--rollback",
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("plan.rollback_delegated"), "{stderr}");
    let (code, _, stderr) = run(&[
        "plan",
        "examples/migrate-local.toml",
        "--from",
        "delegated",
        "--acknowledge",
        "yolo",
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("unknown acknowledgement"), "{stderr}");
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
