//! `masgen apply` deploying the way `masgen plan` prints it: `--deploy
//! colmena`, nixos-rebuild run here with `--target-host`, and one
//! homeserver of a fleet (`--homeserver`). The host is the STAND-INS of
//! tests/fixtures/apply (tests/apply.rs, docs/testing.md), with a
//! `colmena` stand-in that records its call and deploys the node through
//! the nixos-rebuild stand-in's switch, and an `ssh` stand-in that records
//! every line it runs "there".

mod apply_support;
mod support;

use std::fs;
use std::process::Command;

use apply_support::{bin, Rig};
use masgen::plan::HostState;

const TARGET: &str = "root@matrix.example.net";

/// The calls the stand-ins recorded that start with `tool`.
fn calls_of(rig: &Rig, tool: &str) -> Vec<String> {
    rig.calls()
        .lines()
        .filter(|l| l.starts_with(tool))
        .map(String::from)
        .collect()
}

/// What the ssh stand-in ran "there" (one `sh -c '…'` each), but the
/// journal's reads and writes (a journal line names a step's commands).
fn ran_there(rig: &Rig) -> Vec<String> {
    let text = fs::read_to_string(rig.state.join("ssh-lines")).unwrap();
    let mut runs: Vec<String> = Vec::new();
    for line in text.lines() {
        match runs.last_mut() {
            Some(run) if !line.starts_with("sh -c '") => {
                run.push('\n');
                run.push_str(line);
            }
            _ => runs.push(line.to_string()),
        }
    }
    runs.retain(|r| !r.contains(".jsonl"));
    runs
}

/// The rebuild steps' commands of `masgen plan` for the rig's spec.
fn planned_rebuilds(rig: &Rig, args: &[&str]) -> Vec<String> {
    let out = Command::new(bin())
        .args([
            "plan",
            "spec.toml",
            "--from",
            "synapse-only",
            "--format",
            "json",
        ])
        .args(args)
        .current_dir(&rig.work)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "rebuild")
        .flat_map(|s| s["commands"].as_array().unwrap().clone())
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn colmena_deploys_the_rebuild_steps_as_the_plan_prints_them() {
    let rig = Rig::new();
    let (code, err) = rig.apply(&["--yes", "--deploy", "colmena"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(rig.host_state(), HostState::Delegated, "{err}");
    // The build step's gate is the same build: it held before the step,
    // so the step was skipped after one build.
    assert_eq!(
        calls_of(&rig, "colmena"),
        [
            "colmena apply --config ./out/flake.nix --on matrix-prepare switch",
            "colmena build --config ./out/flake.nix --on matrix",
            "colmena apply --config ./out/flake.nix --on matrix switch",
        ],
        "{err}"
    );
    assert!(
        calls_of(&rig, "nixos-rebuild").is_empty(),
        "{}",
        rig.calls()
    );
    // Exactly the commands `masgen plan --deploy colmena` prints.
    let planned = planned_rebuilds(&rig, &["--deploy", "colmena"]);
    assert_eq!(
        planned,
        [
            "colmena apply --config ./out/flake.nix --on matrix-prepare switch",
            "colmena build --config ./out/flake.nix --on matrix",
            "colmena apply --config ./out/flake.nix --on matrix switch",
        ]
    );
    assert!(err.contains("(deploying with colmena from here)"), "{err}");
}

/// `--target-host`: the host's units, checks and journal over SSH; the
/// flake stays here, where nixos-rebuild builds and activates over SSH
/// itself. The host has no copy of `out/`.
#[test]
fn target_host_runs_nixos_rebuild_here_and_the_rest_there() {
    let rig = Rig::new();
    let remote_home = rig._tmp.path().join("remote-home");
    fs::create_dir_all(&remote_home).unwrap();
    let journal = rig._tmp.path().join("remote-journal");
    let out = rig
        .command(&[
            "--yes",
            "--target-host",
            TARGET,
            "--journal",
            journal.to_str().unwrap(),
        ])
        .env("SHIM_REMOTE_HOME", &remote_home)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(rig.host_state(), HostState::Delegated, "{err}");
    let expected = [
        format!("nixos-rebuild switch --flake ./out#matrix-prepare --target-host {TARGET}"),
        "nixos-rebuild build --flake ./out#matrix".to_string(),
        format!("nixos-rebuild switch --flake ./out#matrix --target-host {TARGET}"),
    ];
    assert_eq!(calls_of(&rig, "nixos-rebuild"), expected, "{err}");
    assert_eq!(planned_rebuilds(&rig, &["--target-host", TARGET]), expected);
    // The build's link is here, where its gate looked for it.
    assert!(rig.work.join("result").exists());
    assert!(!remote_home.join("result").exists());
    let there = ran_there(&rig);
    assert!(
        there
            .iter()
            .any(|r| r.contains("systemctl start masgen-syn2mas-migrate.service")),
        "{there:?}"
    );
    assert!(
        !there
            .iter()
            .any(|r| r.contains("nixos-rebuild") || r.contains("./result")),
        "{there:?}"
    );
    // The journal is on the host.
    let text = fs::read_to_string(journal.join("matrix.jsonl")).unwrap();
    assert!(text.contains(r#""event":"finished","step":"switch-final""#));
    assert!(
        err.contains(&format!("nixos-rebuild --target-host {TARGET}")),
        "{err}"
    );
}

/// With Colmena and `--target-host`, Colmena runs here (its node deploys to
/// the host) and the units and checks run there; the dry run says which.
#[test]
fn colmena_with_a_target_host() {
    let rig = Rig::new();
    let args = [
        "--yes",
        "--deploy",
        "colmena",
        "--target-host",
        TARGET,
        "--journal",
    ];
    let journal = rig._tmp.path().join("remote-journal");
    let mut all: Vec<&str> = args.to_vec();
    all.push(journal.to_str().unwrap());
    let (code, err) = rig.apply(&[&all[..], &["--dry-run"]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "   would run (here): colmena apply --config ./out/flake.nix --on matrix-prepare switch"
        ),
        "{err}"
    );
    assert!(
        err.contains("   would run: systemctl start masgen-syn2mas-check.service"),
        "{err}"
    );
    let (code, err) = rig.apply(&all);
    assert_eq!(code, 0, "{err}");
    assert_eq!(rig.host_state(), HostState::Delegated);
    assert_eq!(calls_of(&rig, "colmena").len(), 3, "{}", rig.calls());
    let there = ran_there(&rig);
    assert!(!there.iter().any(|r| r.contains("colmena")), "{there:?}");
    assert!(
        there.iter().any(|r| r.contains("systemctl is-active")),
        "{there:?}"
    );
}

/// A fleet's tree: `--homeserver` names the homeserver to apply; without it
/// several homeservers are refused, naming them.
#[test]
fn a_fleet_applies_the_homeserver_named() {
    let rig = Rig::new();
    let other = support::repo_root().join("examples/fleet/example-org.toml");
    fs::copy(other, rig.work.join("example-org.toml")).unwrap();
    let apply = |args: &[&str]| rig.apply(&[&["example-org.toml"], args].concat());
    // out/ holds the tree of spec.toml alone: not the fleet's.
    let (code, err) = apply(&["--homeserver", "example.com", "--yes"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is not what `masgen build spec.toml example-org.toml -o out` writes"),
        "{err}"
    );
    let built = Command::new(bin())
        .args(["build", "spec.toml", "example-org.toml", "-o", "out"])
        .current_dir(&rig.work)
        .output()
        .unwrap();
    assert!(built.status.success());
    let (code, err) = apply(&["--yes"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("the fleet has 2 homeservers (example.com, example.org); name the one to act on with --homeserver NAME"),
        "{err}"
    );
    let (code, err) = apply(&["--homeserver", "example.xyz", "--yes"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--homeserver example.xyz: no homeserver of that server name or spec file stem; the fleet has: example.com, example.org"),
        "{err}"
    );
    assert_eq!(rig.host_state(), HostState::SynapseOnly);
    assert!(rig.calls().is_empty(), "{}", rig.calls());
    // By file stem: the spec of example.com is spec.toml.
    let (code, err) = apply(&["--homeserver", "spec", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(rig.host_state(), HostState::Delegated, "{err}");
    assert_eq!(
        calls_of(&rig, "nixos-rebuild switch"),
        [
            "nixos-rebuild switch --flake ./out#matrix-prepare",
            "nixos-rebuild switch --flake ./out#matrix",
        ]
    );
    assert!(!rig.calls().contains("matrix-org"), "{}", rig.calls());
}

/// One spec: `--homeserver` must name its homeserver.
#[test]
fn one_spec_and_another_homeserver_is_refused() {
    let rig = Rig::new();
    let (code, err) = rig.apply(&["--homeserver", "example.org", "--dry-run"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "--homeserver example.org: the spec's homeserver is `example.com` (file stem `spec`)"
        ),
        "{err}"
    );
    let (code, err) = rig.apply(&["--homeserver", "example.com", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
}

/// `masgen plan` of a fleet: `--homeserver` is `--only`; `--target-host`
/// names one host, so it needs one homeserver, whose nixos-rebuild
/// switches it changes (Colmena's node names its host itself).
#[test]
fn plan_of_a_fleet_with_target_host_and_homeserver() {
    let dir = support::repo_root().join("examples/fleet");
    let plan = |args: &[&str]| {
        let out = Command::new(bin())
            .args(["plan", "fleet.toml", "--format", "json"])
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = plan(&["--target-host", "root@192.0.2.7"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--target-host names the hosts of one homeserver: with several homeservers, add --only NAME"),
        "{err}"
    );
    let (code, out, err) = plan(&[
        "--homeserver",
        "example-com",
        "--from",
        "synapse-only",
        "--target-host",
        "root@192.0.2.7",
    ]);
    assert_eq!(code, 0, "{err}");
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(value["server_name"], "example.com");
    let rebuilds: Vec<&str> = value["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "rebuild")
        .map(|s| s["commands"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        rebuilds,
        [
            "nixos-rebuild switch --flake ./out#matrix-com-prepare --target-host root@192.0.2.7",
            "nixos-rebuild build --flake ./out#matrix-com",
            "nixos-rebuild switch --flake ./out#matrix-com --target-host root@192.0.2.7",
        ]
    );
    let (code, out, err) = plan(&[
        "--homeserver",
        "example.com",
        "--from",
        "synapse-only",
        "--target-host",
        "root@192.0.2.7",
        "--deploy",
        "colmena",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("--target-host"), "{out}");
    assert!(
        out.contains("colmena apply --config ./out/flake.nix --on matrix-com switch"),
        "{out}"
    );
}

/// `--colmena-config`: Colmena's hive is another flake (one with
/// `colmenaHive`, for Colmena >= 0.5); the commands name it, and apply runs
/// them here as well.
#[test]
fn colmena_config_names_the_hive() {
    let rig = Rig::new();
    let hive = [
        "--deploy",
        "colmena",
        "--colmena-config",
        "deploy/flake.nix",
    ];
    assert_eq!(
        planned_rebuilds(&rig, &hive),
        [
            "colmena apply --config deploy/flake.nix --on matrix-prepare switch",
            "colmena build --config deploy/flake.nix --on matrix",
            "colmena apply --config deploy/flake.nix --on matrix switch",
        ]
    );
    let quoted = planned_rebuilds(
        &rig,
        &[
            "--deploy",
            "colmena",
            "--colmena-config",
            "my hive/flake.nix",
        ],
    );
    assert_eq!(
        quoted[0],
        "colmena apply --config 'my hive/flake.nix' --on matrix-prepare switch"
    );
    let args = [&hive[..], &["--target-host", TARGET, "--dry-run"]].concat();
    let (code, err) = rig.apply(&args);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("   would run (here): colmena build --config deploy/flake.nix --on matrix"),
        "{err}"
    );
    let (code, err) = rig.apply(&["--colmena-config", "deploy/flake.nix", "--dry-run"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("it goes with --deploy colmena"), "{err}");
}
