//! The plan, apply and rollback of a homeserver split over hosts
//! (`examples/fleet/example-net.toml`: Synapse and nginx on matrix-net, MAS
//! on auth-net, PostgreSQL on db-net): each step on its host, the state read
//! from Synapse's and MAS's hosts' system roots, a target for each host, and
//! the way back. `masgen apply` runs against the STAND-INS of tests/apply.rs
//! (tests/fixtures/apply), one login directory, system root and unit state
//! per host behind the `ssh` stand-in.

mod apply_support;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use support::example_text;

const SPLIT: &str = "fleet/example-net.toml";
const HOSTS: [&str; 3] = ["matrix-net", "auth-net", "db-net"];

/// A directory with the split example as `spec.toml`, its backups under
/// the directory, built into `out/`.
fn build() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    // The backup stand-in writes there: never the machine's own directory.
    let text = support::check::set(
        &example_text(SPLIT),
        "migration.backup_dir",
        backup.display().to_string().into(),
    );
    assert!(text.contains(&backup.display().to_string()));
    support::check::built_in(dir, &text)
}

fn masgen(dir: &Path, args: &[&str]) -> Output {
    support::check::masgen()
        .args(args)
        .arg("spec.toml")
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `masgen plan … --format json`: its steps as (id, host, downtime).
fn plan(dir: &Path, args: &[&str]) -> (Value, Vec<(String, String, String)>) {
    let mut all = vec!["plan", "--format", "json"];
    all.extend(args);
    let run = masgen(dir, &all);
    assert!(run.status.success(), "{}", stderr(&run));
    let plan: Value = serde_json::from_slice(&run.stdout).unwrap();
    let steps = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_str().unwrap().to_string();
            (f("id"), f("host"), f("synapse"))
        })
        .collect();
    (plan, steps)
}

fn ids(steps: &[(String, String, String)]) -> Vec<&str> {
    steps.iter().map(|s| s.0.as_str()).collect()
}

/// Every step from the first `down` to the last is down.
fn one_stretch_of_downtime(steps: &[(String, String, String)]) -> (String, String) {
    let down: Vec<usize> = (0..steps.len()).filter(|i| steps[*i].2 == "down").collect();
    assert_eq!(
        down,
        (down[0]..=*down.last().unwrap()).collect::<Vec<_>>(),
        "{steps:?}"
    );
    (
        steps[down[0]].0.clone(),
        steps[*down.last().unwrap()].0.clone(),
    )
}

/// Where the migration is on each host, as system roots: Synapse's host
/// runs the configuration of `synapse_phase` (its rendered homeserver.yaml),
/// MAS's host has MAS's unit when `mas` and the stamps `stamps`; `stray`
/// stamps lie on Synapse's host, where no task of a split homeserver runs.
struct Roots {
    synapse: PathBuf,
    mas: PathBuf,
}

fn roots(dir: &Path, synapse_phase: &str, mas: bool, stamps: &[&str], stray: &[&str]) -> Roots {
    let synapse = dir.join("hosts/matrix-net/root");
    let mas_root = dir.join("hosts/auth-net/root");
    for (root, unit) in [
        (&synapse, "matrix-synapse.service"),
        (&mas_root, "matrix-authentication-service.service"),
    ] {
        let units = root.join("etc/systemd/system");
        fs::create_dir_all(&units).unwrap();
        let _ = fs::remove_dir_all(root.join("var/lib/masgen"));
        fs::create_dir_all(root.join("var/lib/masgen")).unwrap();
        fs::create_dir_all(root.join("nix/store")).unwrap();
        let _ = fs::remove_file(units.join(unit));
    }
    let yaml = dir.join(format!(
        "out/render/matrix-net/{synapse_phase}/homeserver.yaml"
    ));
    fs::copy(yaml, synapse.join("nix/store/bbb-homeserver.yaml")).unwrap();
    fs::write(
        synapse.join("etc/systemd/system/matrix-synapse.service"),
        "[Service]\nExecStart=/nix/store/ccc-synapse/bin/synapse_homeserver --config-path /nix/store/bbb-homeserver.yaml\n",
    )
    .unwrap();
    if mas {
        fs::write(
            mas_root.join("etc/systemd/system/matrix-authentication-service.service"),
            "[Service]\nExecStart=/nix/store/eee-mas/bin/mas-cli server\n",
        )
        .unwrap();
    }
    for (root, names) in [(&mas_root, stamps), (&synapse, stray)] {
        for n in names {
            fs::write(root.join("var/lib/masgen").join(n), "").unwrap();
        }
    }
    Roots {
        synapse,
        mas: mas_root,
    }
}

impl Roots {
    fn args(&self) -> Vec<String> {
        vec![
            "--system".into(),
            format!("matrix-net={}", self.synapse.display()),
            "--system".into(),
            format!("auth-net={}", self.mas.display()),
        ]
    }
}

fn with<'a>(args: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    args.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

/// The plan runs each step on its host: PostgreSQL's first, MAS's before
/// Synapse's, one stretch of downtime.
#[test]
fn the_plan_crosses_hosts_in_order() {
    let dir = build();
    let (plan, steps) = plan(dir.path(), &["--from", "synapse-only"]);
    let at = |id: &str| {
        steps
            .iter()
            .position(|s| s.0 == id)
            .unwrap_or_else(|| panic!("{id}: {steps:?}"))
    };
    let host = |id: &str| steps[at(id)].1.clone();
    assert!(at("switch-prepare-db-net") < at("switch-prepare-auth-net"));
    assert!(at("switch-prepare-auth-net") < at("switch-prepare-matrix-net"));
    assert_eq!(host("syn2mas-migrate"), "auth-net");
    assert_eq!(host("syn2mas-dry-run"), "auth-net");
    assert_eq!(host("backup"), "db-net");
    assert_eq!(host("stop-services"), "matrix-net");
    assert_eq!(host("stop-mas"), "auth-net");
    assert_eq!(host("switch-final"), "matrix-net");
    assert_eq!(host("mas-doctor"), "auth-net");
    assert!(at("stop-mas") < at("syn2mas-migrate"));
    assert!(at("syn2mas-migrate") < at("switch-final-auth-net"));
    assert!(at("switch-final-auth-net") < at("switch-final"));
    assert_eq!(
        one_stretch_of_downtime(&steps),
        ("stop-services".into(), "switch-final".into())
    );
    // The rebuild commands name each host's own configuration.
    let cmd = |id: &str| {
        plan["steps"][at(id)]["commands"][0]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(cmd("switch-prepare-db-net").ends_with("#db-net-prepare"));
    assert!(cmd("switch-final-auth-net").ends_with("#auth-net"));
}

/// `--target-host NAME=USER@HOST` for each host: every rebuild deploys to
/// its own host from here; one bare target, a host left out or a name
/// that is no host is refused.
#[test]
fn each_host_has_its_own_target() {
    let dir = build();
    let targets: Vec<String> = HOSTS
        .iter()
        .flat_map(|h| {
            [
                "--target-host".to_string(),
                format!("{h}=root@{h}.example.net"),
            ]
        })
        .collect();
    let (plan, _) = plan(dir.path(), &with(&targets, &["--from", "synapse-only"]));
    let mut rebuilds = 0;
    for step in plan["steps"].as_array().unwrap() {
        let host = step["host"].as_str().unwrap();
        for c in step["commands"].as_array().unwrap() {
            let c = c.as_str().unwrap();
            if c.starts_with("nixos-rebuild switch") {
                rebuilds += 1;
                assert!(
                    c.ends_with(&format!(" --target-host root@{host}.example.net")),
                    "{c}"
                );
            }
        }
    }
    // Phase 1 and the final configuration on each of the three hosts.
    assert_eq!(rebuilds, 6, "{plan}");

    let refused = |args: &[&str], code: &str, says: &str| {
        let mut all = vec!["plan", "--from", "synapse-only"];
        all.extend(args);
        let run = masgen(dir.path(), &all);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", stderr(&run));
        let err = stderr(&run);
        assert!(err.contains(code) && err.contains(says), "{args:?}: {err}");
    };
    refused(
        &["--target-host", "root@matrix-net"],
        "plan.target_host_split",
        "--target-host db-net=USER@HOST --target-host auth-net=USER@HOST --target-host matrix-net=USER@HOST",
    );
    refused(
        &[
            "--target-host",
            "matrix-net=root@a",
            "--target-host",
            "auth-net=root@b",
        ],
        "plan.target_host_missing",
        "but not db-net",
    );
    refused(
        &[
            "--target-host",
            "matrix-net=root@a",
            "--target-host",
            "auth-net=root@b",
            "--target-host",
            "db-net=root@c",
            "--target-host",
            "mail-net=root@d",
        ],
        "plan.target_host_unknown",
        "`mail-net` is not a host of example.net",
    );
    let mixed = masgen(
        dir.path(),
        &[
            "plan",
            "--from",
            "synapse-only",
            "--target-host",
            "root@a",
            "--target-host",
            "db-net=root@c",
        ],
    );
    assert_ne!(mixed.status.code(), Some(0));
    assert!(stderr(&mixed).contains("not both"), "{}", stderr(&mixed));
}

/// The state of a split homeserver is read from two roots: Synapse's host
/// says whether it runs and delegates, MAS's host whether MAS is installed
/// and which syn2mas runs left their stamps there.
#[test]
fn the_state_comes_from_synapse_and_mas_hosts() {
    let dir = build();
    // (Synapse's phase, MAS's unit, MAS's host's stamps, Synapse's host's
    // stamps, the state)
    type Case<'a> = (&'a str, bool, &'a [&'a str], &'a [&'a str], &'a str);
    let cases: [Case; 5] = [
        ("prepare", false, &[], &[], "synapse-only"),
        (
            "prepare",
            true,
            &["syn2mas-dry-run.done"],
            &[],
            "mas-prepared",
        ),
        (
            "prepare",
            true,
            &["syn2mas-dry-run.done", "syn2mas-migrate.done"],
            &[],
            "migrated",
        ),
        // A stamp on Synapse's host is not MAS's host's: no task left it.
        (
            "prepare",
            true,
            &[],
            &["syn2mas-migrate.done"],
            "mas-prepared",
        ),
        ("final", true, &["syn2mas-migrate.done"], &[], "delegated"),
    ];
    for (phase, mas, stamps, stray, expected) in cases {
        let r = roots(dir.path(), phase, mas, stamps, stray);
        let (plan, _) = plan(
            dir.path(),
            &with(
                &r.args(),
                &[
                    "--rollback",
                    "--acknowledge",
                    "rollback-breaks-mas-sessions",
                ],
            ),
        );
        assert_eq!(
            plan["from"], expected,
            "{phase} {mas} {stamps:?} {stray:?}: {}",
            plan["source"]
        );
        assert!(
            plan["source"].as_str().unwrap().contains("(MAS's host)"),
            "{}",
            plan["source"]
        );
    }
    // One root, or a root of only one of the two hosts, is refused.
    let r = roots(dir.path(), "prepare", false, &[], &[]);
    let one = masgen(
        dir.path(),
        &["plan", "--system", r.synapse.to_str().unwrap()],
    );
    assert_eq!(one.status.code(), Some(2));
    assert!(
        stderr(&one).contains("plan.system_split"),
        "{}",
        stderr(&one)
    );
    assert!(
        stderr(&one).contains("--system matrix-net=ROOT --system auth-net=ROOT"),
        "{}",
        stderr(&one)
    );
    let half = format!("matrix-net={}", r.synapse.display());
    let missing = masgen(dir.path(), &["plan", "--system", &half]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("plan.system_missing"),
        "{}",
        stderr(&missing)
    );
    let unknown = masgen(
        dir.path(),
        &["plan", "--system", &half, "--system", "mars=/x"],
    );
    assert!(
        stderr(&unknown).contains("plan.system_unknown"),
        "{}",
        stderr(&unknown)
    );
    // The evidence beats a claim, on a split homeserver too.
    let r = roots(dir.path(), "prepare", false, &[], &[]);
    let args = r.args();
    let ahead = masgen(
        dir.path(),
        &[&["plan", "--from", "migrated"], &with(&args, &[])[..]].concat(),
    );
    assert_eq!(ahead.status.code(), Some(2));
    assert!(
        stderr(&ahead).contains("plan.claim_ahead_of_system"),
        "{}",
        stderr(&ahead)
    );
}

/// The way back across hosts ends at Synapse's own logins: Synapse and MAS
/// stopped on their hosts, Synapse's host back on phase 1 (the downtime
/// ends there), MAS's host on its generation before MAS, MAS's database
/// emptied on PostgreSQL's host and the stamps removed on MAS's.
#[test]
fn the_rollback_crosses_hosts() {
    let dir = build();
    let refused = masgen(dir.path(), &["plan", "--rollback", "--from", "delegated"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("plan.rollback_delegated"));
    let ack = [
        "--rollback",
        "--acknowledge",
        "rollback-breaks-mas-sessions",
    ];
    let (json, steps) = plan(dir.path(), &[&ack[..], &["--from", "delegated"]].concat());
    let placed: Vec<(&str, &str)> = steps.iter().map(|s| (s.0.as_str(), s.1.as_str())).collect();
    assert_eq!(
        placed,
        [
            ("rollback-stop", "matrix-net"),
            ("rollback-stop-mas", "auth-net"),
            ("rollback-switch-synapse-only", "matrix-net"),
            ("rollback-remove-mas", "auth-net"),
            ("rollback-empty-mas", "db-net"),
            ("rollback-remove-stamps", "auth-net"),
        ]
    );
    assert_eq!(json["to"], "synapse-only");
    assert_eq!(
        one_stretch_of_downtime(&steps),
        (
            "rollback-stop".into(),
            "rollback-switch-synapse-only".into()
        )
    );
    let commands = |id: &str| -> Vec<String> {
        let s = json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap();
        s["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        commands("rollback-switch-synapse-only")[0],
        "nixos-rebuild switch --flake ./out#matrix-net-prepare"
    );
    assert!(commands("rollback-empty-mas")[0].contains("pg_dump"));
    assert!(commands("rollback-remove-stamps")[0].starts_with("rm -f /var/lib/masgen/"));
    // Migrated: Synapse is down for syn2mas already; MAS-prepared: only
    // MAS's host goes back, Synapse keeps serving.
    let (_, steps) = plan(dir.path(), &["--rollback", "--from", "migrated"]);
    assert_eq!(ids(&steps)[0], "rollback-switch-synapse-only");
    let (_, steps) = plan(dir.path(), &["--rollback", "--from", "mas-prepared"]);
    assert_eq!(
        ids(&steps),
        [
            "rollback-remove-mas",
            "rollback-empty-mas",
            "rollback-remove-stamps"
        ]
    );
    assert!(steps.iter().all(|s| s.2 == "none"), "{steps:?}");
}

/// A rig of three hosts behind the `ssh` stand-in: `hosts/<name>/` is the
/// login directory of `root@<name>` with its `root` and `state`.
struct Rig {
    dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Rig {
        let dir = build();
        for h in HOSTS {
            for d in [
                "root/etc/systemd/system",
                "root/var/lib/masgen",
                "state/active",
                "state/units",
            ] {
                fs::create_dir_all(dir.path().join("hosts").join(format!("root@{h}")).join(d))
                    .unwrap();
            }
        }
        fs::create_dir_all(dir.path().join("state")).unwrap();
        Rig { dir }
    }

    fn host(&self, h: &str) -> PathBuf {
        self.dir.path().join("hosts").join(format!("root@{h}"))
    }

    /// Each host in migration phase 1 with a clean dry run on record.
    fn prepared(&self) {
        let out = self.dir.path().join("out/render");
        for h in HOSTS {
            let units = self.host(h).join("root/etc/systemd/system");
            // (Synapse's host runs no task unit of its own.)
            let rendered = fs::read_dir(out.join(h).join("prepare/units"));
            for f in rendered.into_iter().flatten() {
                let f = f.unwrap().path();
                fs::copy(&f, units.join(f.file_name().unwrap())).unwrap();
            }
        }
        let synapse = self.host("matrix-net").join("root");
        fs::create_dir_all(synapse.join("nix/store")).unwrap();
        fs::copy(
            out.join("matrix-net/prepare/homeserver.yaml"),
            synapse.join("nix/store/bbb-homeserver.yaml"),
        )
        .unwrap();
        fs::write(
            synapse.join("etc/systemd/system/matrix-synapse.service"),
            "[Service]\nExecStart=/nix/store/ccc-synapse/bin/synapse_homeserver --config-path /nix/store/bbb-homeserver.yaml\n",
        )
        .unwrap();
        let mas = self.host("auth-net").join("root");
        fs::write(
            mas.join("etc/systemd/system/matrix-authentication-service.service"),
            "[Service]\nExecStart=/nix/store/eee-mas/bin/mas-cli server\n",
        )
        .unwrap();
        fs::write(mas.join("var/lib/masgen/syn2mas-dry-run.done"), "").unwrap();
    }

    fn apply(&self, args: &[&str]) -> (i32, String) {
        let mut all: Vec<String> = vec![
            "apply".into(),
            "spec.toml".into(),
            "-o".into(),
            "out".into(),
        ];
        for h in HOSTS {
            all.push("--target-host".into());
            all.push(format!("{h}=root@{h}"));
        }
        // Relative: each host's login directory holds its own `root`.
        all.extend(["--system", "root", "--journal", "journal"].map(String::from));
        all.extend(args.iter().map(|a| a.to_string()));
        let out = std::process::Command::new(apply_support::bin())
            .args(&all)
            .current_dir(self.dir.path())
            .env("MASGEN_APPLY_PATH", apply_support::shims())
            .env("SHIM_STATE", self.dir.path().join("state"))
            .env("SHIM_ROOT", self.dir.path().join("no-root"))
            .env("SHIM_REMOTE_HOME", self.dir.path().join("hosts"))
            .env_remove("MASGEN_MAS_CLI")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), stderr(&out))
    }
}

/// apply of a split homeserver runs from one machine with a target for each
/// host: it reads the state from Synapse's and MAS's hosts, runs each step
/// on its host (the backup on PostgreSQL's) and keeps the journal on
/// Synapse's host. Without targets it refuses before reaching any host.
#[test]
fn apply_reaches_each_host() {
    let rig = Rig::new();
    rig.prepared();
    let bare = support::check::masgen()
        .args(["apply", "spec.toml", "-o", "out", "--yes"])
        .current_dir(rig.dir.path())
        .output()
        .unwrap();
    assert_eq!(bare.status.code(), Some(2));
    assert!(
        stderr(&bare).contains("--target-host matrix-net=USER@HOST"),
        "{}",
        stderr(&bare)
    );

    let (code, err) = rig.apply(&["--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "matrix-net (root@matrix-net), auth-net (root@auth-net), db-net (root@db-net)"
        ) || err.contains(
            "auth-net (root@auth-net), db-net (root@db-net), matrix-net (root@matrix-net)"
        ),
        "{err}"
    );
    assert!(err.contains("mas-prepared"), "{err}");
    assert!(
        err.contains("root@matrix-net:root (Synapse's host) and root@auth-net:root (MAS's host)"),
        "{err}"
    );
    assert!(
        err.contains("would run (here): nixos-rebuild build --flake ./out#db-net"),
        "{err}"
    );

    // The backup, on PostgreSQL's host: its unit runs there, its dump lands
    // in the spec's backup directory, the journal is on Synapse's host.
    let (code, err) = rig.apply(&["--yes", "--only", "backup"]);
    assert_eq!(code, 0, "{err}");
    let ran = |h: &str| {
        rig.host(h)
            .join("state/units/masgen-backup.service")
            .exists()
    };
    assert!(
        ran("db-net") && !ran("matrix-net") && !ran("auth-net"),
        "{err}"
    );
    let dumps = fs::read_dir(rig.dir.path().join("backup")).map_or(0, |d| d.count());
    assert_eq!(dumps, 1, "{err}");
    let journal =
        fs::read_to_string(rig.host("matrix-net").join("journal/matrix-net.jsonl")).unwrap();
    assert!(
        journal.contains(r#""event":"finished","step":"backup""#),
        "{journal}"
    );
    let targets = fs::read_to_string(rig.dir.path().join("state/ssh-targets")).unwrap();
    for h in HOSTS {
        assert!(
            targets.lines().any(|l| l == format!("ssh root@{h}")),
            "{h}: {targets}"
        );
    }
}

/// `masgen diff --system` compares each host's configurations with that
/// host's own root: Synapse's unit is on matrix-net's, MAS's on auth-net's;
/// a host without a root is not compared (a note says so), and one bare
/// root for the split homeserver is refused.
#[test]
fn diff_compares_each_host_with_its_own_root() {
    let dir = build();
    let r = roots(dir.path(), "prepare", true, &[], &[]);
    let args = r.args();
    let run = masgen(
        dir.path(),
        &[&["diff", "--format", "json"], &with(&args, &[])[..]].concat(),
    );
    assert!(
        run.status.code() == Some(0) || run.status.code() == Some(1),
        "{}",
        stderr(&run)
    );
    let diff: Value = serde_json::from_slice(&run.stdout).unwrap();
    let unit = |cfg: &str, unit: &str| -> Option<String> {
        let c = diff["configurations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["configuration"] == cfg)?;
        let u = c["units"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["unit"] == unit)?;
        Some(u["change"].as_str().unwrap().to_string())
    };
    // Present on its own host's root: not added there.
    assert_ne!(
        unit("matrix-net-prepare", "matrix-synapse.service").as_deref(),
        Some("added"),
        "{diff}"
    );
    assert_ne!(
        unit("auth-net-prepare", "matrix-authentication-service.service").as_deref(),
        Some("added"),
        "{diff}"
    );
    let hosts: Vec<&str> = diff["configurations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["host"].as_str().unwrap())
        .collect();
    assert!(!hosts.contains(&"db-net"), "{hosts:?}");
    assert!(
        diff["notes"]
            .to_string()
            .contains("host `db-net` is not compared"),
        "{}",
        diff["notes"]
    );
    let bare = masgen(
        dir.path(),
        &["diff", "--system", r.synapse.to_str().unwrap()],
    );
    assert_eq!(bare.status.code(), Some(2));
    assert!(
        stderr(&bare).contains("plan.system_split"),
        "{}",
        stderr(&bare)
    );
}
