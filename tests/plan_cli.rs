//! `masgen plan` through the binary: formats, exit codes, and where the host
//! is when `--from`, `--against` and `--system` are given together.

use std::fs;
use std::path::Path;

const SPEC: &str = "examples/migrate-local.toml";

/// Runs masgen; returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
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
}

/// A hand-made system root: Synapse (delegating or not), MAS, and the stamps
/// masgen's tasks leave (`var/lib/masgen/<name>`).
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new(synapse: Option<bool>, mas: bool, stamps: &[&str]) -> Root {
        let dir = tempfile::tempdir().unwrap();
        let units = dir.path().join("etc/systemd/system");
        fs::create_dir_all(&units).unwrap();
        fs::write(
            units.join("sshd.service"),
            "[Service]\nExecStart=/nix/store/a-openssh/bin/sshd -D\n",
        )
        .unwrap();
        if let Some(delegates) = synapse {
            let store = dir.path().join("nix/store");
            fs::create_dir_all(&store).unwrap();
            fs::write(
                store.join("b-homeserver.yaml"),
                format!("server_name: example.com\nmatrix_authentication_service:\n  enabled: {delegates}\n"),
            )
            .unwrap();
            fs::write(
                units.join("matrix-synapse.service"),
                "[Service]\nExecStart=/nix/store/c-synapse/bin/synapse_homeserver --config-path /nix/store/b-homeserver.yaml\n",
            )
            .unwrap();
        }
        if mas {
            fs::write(
                units.join("matrix-authentication-service.service"),
                "[Service]\nExecStart=/nix/store/e-mas/bin/mas-cli server\n",
            )
            .unwrap();
        }
        let stamp_dir = dir.path().join("var/lib/masgen");
        fs::create_dir_all(&stamp_dir).unwrap();
        for s in stamps {
            fs::write(stamp_dir.join(s), "").unwrap();
        }
        Root { dir }
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }
}

const MIGRATED: &str = "syn2mas-migrate.done";
const DRY_RUN: &str = "syn2mas-dry-run.done";

fn synapse_only() -> Root {
    Root::new(Some(false), false, &[])
}
fn mas_prepared() -> Root {
    Root::new(Some(false), true, &[])
}
fn migrated() -> Root {
    Root::new(Some(false), true, &[DRY_RUN, MIGRATED])
}
fn delegated() -> Root {
    Root::new(Some(true), true, &[DRY_RUN, MIGRATED])
}

fn plan_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["plan", SPEC, "--format", "json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run(&all);
    assert_eq!(code, Some(0), "{args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn step_ids(plan: &serde_json::Value) -> Vec<String> {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// `masgen plan` with `args` must fail with exit 2 and say `expected`.
fn refused(args: &[&str], expected: &str) -> String {
    let mut all = vec!["plan", SPEC];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run(&all);
    assert_eq!(code, Some(2), "{args:?} must fail: {stdout}{stderr}");
    assert!(stdout.is_empty(), "{args:?}: no plan on stdout: {stdout}");
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
    stderr
}

#[test]
fn formats_and_usage_errors() {
    let json = plan_json(&["--from", "synapse-only"]);
    assert_eq!(json["schema_version"], 2);
    assert_eq!(json["steps"][0]["id"], "switch-prepare");
    assert_eq!(json["steps"][0]["kind"], "rebuild");
    // Gates are commands with the result they must have.
    let check = &json["steps"][0]["gate"]["check"][0];
    assert_eq!(
        check["command"],
        "systemctl is-active matrix-synapse.service matrix-authentication-service.service"
    );
    assert_eq!(check["exit"], "zero");
    let dry_run = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "syn2mas-dry-run")
        .unwrap();
    assert_eq!(
        dry_run["gate"]["warnings_only"]["stdout_has"][0],
        "ExecMainStatus=11"
    );

    let (code, stdout, _) = run(&[
        "plan",
        SPEC,
        "--from",
        "synapse-only",
        "--format",
        "markdown",
    ]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("| 1 | Install MAS idle beside Synapse"));
    let (code, stdout, _) = run(&["plan", SPEC, "--from", "mas-prepared"]);
    assert_eq!(code, Some(0));
    assert!(!stdout.contains('\x1b'), "no colour when not a TTY");
    assert!(stdout.starts_with("Activation plan for example.com"));

    refused(&[], "--from");
    refused(&["--from", "sideways"], "unknown state `sideways`");
    refused(
        &["--from", "delegated", "--rollback"],
        "plan.rollback_delegated",
    );
    refused(
        &["--from", "delegated", "--acknowledge", "yolo"],
        "unknown acknowledgement",
    );
}

#[test]
fn system_root_alone_decides() {
    let cases = [
        (synapse_only(), "synapse-only", "switch-prepare"),
        (mas_prepared(), "mas-prepared", "syn2mas-check"),
        (migrated(), "migrated", "switch-final"),
        (delegated(), "delegated", "switch-final"),
    ];
    for (root, state, first) in cases {
        let json = plan_json(&["--system", root.path()]);
        assert_eq!(json["from"], state);
        assert_eq!(json["steps"][0]["id"], first, "{state}");
        let source = json["source"].as_str().unwrap();
        assert!(source.starts_with("system root "), "{source}");
    }
}

#[test]
fn a_missing_system_root_is_an_error_even_with_from() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-root");
    let missing = missing.to_str().unwrap();
    let err = refused(&["--system", missing], "no-such-root");
    assert!(err.contains("no such directory"), "{err}");
    refused(
        &["--from", "synapse-only", "--system", missing],
        "no such directory",
    );
    // A directory that is not a system root is no better.
    refused(
        &[
            "--from",
            "synapse-only",
            "--system",
            tmp.path().to_str().unwrap(),
        ],
        "etc/systemd/system",
    );
}

#[test]
fn from_and_against_together_are_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    refused(
        &[
            "--from",
            "synapse-only",
            "--against",
            tmp.path().to_str().unwrap(),
        ],
        "--from and --against",
    );
}

#[test]
fn a_previous_tree_is_a_claim_the_system_can_refute() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let out = out.to_str().unwrap();
    let (code, _, stderr) = run(&["build", "examples/fresh.toml", "-o", out]);
    assert_eq!(code, Some(0), "{stderr}");
    // The tree's only configuration delegates; a host without Synapse has not got there.
    let bare = Root::new(None, false, &[]);
    let (code, _, stderr) = run(&[
        "plan",
        "examples/fresh.toml",
        "--against",
        out,
        "--system",
        bare.path(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("plan.claim_ahead_of_system"), "{stderr}");
    let (code, stdout, stderr) = run(&["plan", "examples/fresh.toml", "--against", out]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("a claim, not checked against the host"),
        "{stdout}"
    );
}

#[test]
fn a_claim_the_system_confirms_is_accepted() {
    let root = mas_prepared();
    let json = plan_json(&["--from", "mas-prepared", "--system", root.path()]);
    assert_eq!(json["from"], "mas-prepared");
    let source = json["source"].as_str().unwrap();
    assert!(
        source.contains("--from mas-prepared")
            && source.contains(", confirmed by ")
            && source.contains("system root"),
        "{source}"
    );
}

#[test]
fn a_claim_behind_the_system_needs_the_acknowledgement_and_the_plan_says_it_repeats() {
    let root = mas_prepared();
    let err = refused(
        &["--from", "synapse-only", "--system", root.path()],
        "plan.claim_behind_system",
    );
    assert!(err.contains("mas-prepared"), "{err}");
    assert!(err.contains("plan-repeats-done-steps"), "{err}");

    let json = plan_json(&[
        "--from",
        "synapse-only",
        "--system",
        root.path(),
        "--acknowledge",
        "plan-repeats-done-steps",
    ]);
    assert_eq!(json["from"], "synapse-only");
    let source = json["source"].as_str().unwrap();
    assert!(source.contains(", against "), "{source}");
    let warnings = json["warnings"].to_string();
    assert!(warnings.contains("repeat"), "{warnings}");
    let first = &json["steps"][0];
    assert_eq!(first["id"], "switch-prepare");
    assert!(first["warnings"].to_string().contains("repeats"), "{first}");
    // Steps a plan from the system's own state has too are not marked.
    let check = &json["steps"][1];
    assert_eq!(check["id"], "syn2mas-check");
    assert!(
        !check["warnings"].to_string().contains("repeats"),
        "{check}"
    );
}

#[test]
fn a_claim_ahead_of_the_system_is_refused_whatever_is_acknowledged() {
    for (claim, root) in [
        ("migrated", mas_prepared()),
        ("delegated", migrated()),
        ("mas-prepared", synapse_only()),
    ] {
        let err = refused(
            &[
                "--from",
                claim,
                "--system",
                root.path(),
                "--acknowledge",
                "plan-repeats-done-steps",
            ],
            "plan.claim_ahead_of_system",
        );
        assert!(err.contains(claim), "{err}");
    }
}

#[test]
fn a_second_syn2mas_migrate_is_refused_whatever_is_acknowledged() {
    for claim in ["synapse-only", "mas-prepared"] {
        refused(
            &["--from", claim, "--system", migrated().path()],
            "plan.claim_behind_system",
        );
        let err = refused(
            &[
                "--from",
                claim,
                "--system",
                migrated().path(),
                "--acknowledge",
                "plan-repeats-done-steps",
            ],
            "plan.second_syn2mas",
        );
        assert!(err.contains(MIGRATED), "names the stamp: {err}");
    }
    // Repeating the final switch after a migration is fine.
    let json = plan_json(&[
        "--from",
        "migrated",
        "--system",
        delegated().path(),
        "--acknowledge",
        "plan-repeats-done-steps",
    ]);
    assert_eq!(json["steps"][0]["id"], "switch-final");
}

#[test]
fn a_host_rolled_back_by_hand_is_not_migrated_twice() {
    // Synapse back on its own logins, but the migration's stamp is still there.
    let root = Root::new(Some(false), false, &[DRY_RUN, MIGRATED]);
    let err = refused(&["--system", root.path()], "plan.second_syn2mas");
    assert!(err.contains("--rollback"), "{err}");
    let json = plan_json(&["--system", root.path(), "--rollback"]);
    assert_eq!(step_ids(&json), ["rollback-empty-mas"]);
    assert_eq!(json["to"], "synapse-only");
}

#[test]
fn a_final_switch_needs_evidence_that_syn2mas_ran() {
    // A claim alone is no evidence.
    for claim in ["migrated", "delegated"] {
        let err = refused(&["--from", claim], "plan.final_before_syn2mas");
        assert!(err.contains("--system"), "says how to show it: {err}");
    }
    // MAS installed, no stamp: the system shows mas-prepared, so the plan
    // migrates first.
    let json = plan_json(&["--system", mas_prepared().path()]);
    assert!(step_ids(&json).contains(&"syn2mas-migrate".to_string()));
    // The stamp is the evidence.
    let json = plan_json(&["--from", "migrated", "--system", migrated().path()]);
    assert_eq!(step_ids(&json)[0], "switch-final");
}

#[test]
fn fresh_spec_over_a_running_synapse_is_refused_whatever_is_claimed() {
    let (code, _, stderr) = run(&[
        "plan",
        "examples/fresh.toml",
        "--from",
        "fresh",
        "--system",
        synapse_only().path(),
        "--acknowledge",
        "plan-repeats-done-steps",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("plan.fresh_over_existing"), "{stderr}");
}

#[test]
fn rollback_reads_the_system_too() {
    // A claim below delegation does not dodge the rollback acknowledgement:
    // a rollback starts where the system is.
    let err = refused(
        &[
            "--from",
            "mas-prepared",
            "--system",
            delegated().path(),
            "--acknowledge",
            "plan-repeats-done-steps",
            "--rollback",
        ],
        "plan.claim_behind_system",
    );
    assert!(!err.contains("pass --acknowledge"), "{err}");
    refused(
        &["--system", delegated().path(), "--rollback"],
        "plan.rollback_delegated",
    );
    let json = plan_json(&[
        "--system",
        delegated().path(),
        "--rollback",
        "--acknowledge",
        "rollback-breaks-mas-sessions",
    ]);
    assert_eq!(json["from"], "delegated");
    assert_eq!(json["to"], "synapse-only", "all the way back");
}

#[test]
fn the_handmade_fixture_is_a_host_without_masgen() {
    let root = Path::new("tests/fixtures/system-handmade");
    let json = plan_json(&["--system", root.to_str().unwrap()]);
    assert_eq!(json["from"], "synapse-only");
}
