//! `masgen apply` end to end on this machine, against a host made of
//! STAND-INS (tests/fixtures/apply, first on PATH through MASGEN_APPLY_PATH):
//! `nixos-rebuild` (lays out the system root from masgen's own renders and
//! starts the services), `systemctl` (unit state in files; runs the tasks'
//! effects: stamps, a backup dump), `journalctl`, `curl` (Synapse behind
//! nginx: auth_metadata 200 only once delegating), `mas-cli` (syn2mas: exit
//! 0, or 11 with a warning), `masgen-backup` and `masgen-register-user`
//! (the task scripts) and `ssh` (runs the remote line locally). The
//! systemctl stand-in runs masgen's rendered task units' command lines. No
//! real Synapse, PostgreSQL or MAS runs here; state detection reads the real
//! rendered homeserver.yaml of each phase, and the plan and its safety
//! checks are masgen's own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use camino::Utf8Path;
use masgen::plan::{self, HostState};
use serde_json::Value;

struct Rig {
    _tmp: tempfile::TempDir,
    /// Holds out/ (commands run here).
    work: PathBuf,
    root: PathBuf,
    state: PathBuf,
    journal: PathBuf,
}

const STEPS: [&str; 11] = [
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
    "follow-ups",
];

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("masgen")
}

fn shims() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/apply")
}

impl Rig {
    /// A host running Synapse on its own logins (`synapse-only`), and out/
    /// built from the migration example with its backups in the rig.
    fn new() -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().to_path_buf();
        let work = t.join("work");
        let (root, state, journal) = (t.join("root"), t.join("state"), t.join("journal"));
        for d in [&work, &root, &state, &state.join("fail-once")] {
            fs::create_dir_all(d).unwrap();
        }
        let spec = fs::read_to_string("examples/migrate-local.toml")
            .unwrap()
            .replace(
                "\"/var/backup/masgen\"",
                &format!("\"{}\"", t.join("backup").display()),
            );
        fs::write(work.join("spec.toml"), spec).unwrap();
        let built = Command::new(bin())
            .args(["build", "spec.toml", "-o", "out"])
            .current_dir(&work)
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let rig = Rig {
            _tmp: tmp,
            work,
            root,
            state,
            journal,
        };
        // Synapse-only: the prepare phase's Synapse config (no delegation), no MAS.
        let units = rig.root.join("etc/systemd/system");
        fs::create_dir_all(&units).unwrap();
        fs::create_dir_all(rig.root.join("nix/store")).unwrap();
        fs::copy(
            rig.work.join("out/render/matrix/prepare/homeserver.yaml"),
            rig.root.join("nix/store/bbb-homeserver.yaml"),
        )
        .unwrap();
        fs::write(units.join("matrix-synapse.service"), "[Service]\nExecStart=/nix/store/ccc-synapse/bin/synapse_homeserver --config-path /nix/store/bbb-homeserver.yaml\n").unwrap();
        fs::create_dir_all(rig.state.join("active")).unwrap();
        fs::write(rig.state.join("active/matrix-synapse.service"), "").unwrap();
        rig
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("apply")
            .arg("spec.toml")
            .args(["-o", "out"])
            .args(args)
            .current_dir(&self.work)
            .env("MASGEN_APPLY_PATH", shims())
            .env("MASGEN_APPLY_SYSTEM", &self.root)
            .env("MASGEN_APPLY_JOURNAL", &self.journal)
            .env("SHIM_STATE", &self.state)
            .env("SHIM_ROOT", &self.root)
            .env("SHIM_REMOTE_HOME", &self.work)
            .env_remove("MASGEN_MAS_CLI")
            .stdin(Stdio::null());
        c
    }

    fn apply(&self, args: &[&str]) -> (i32, String) {
        let out: Output = self.command(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code().unwrap_or(-1), err)
    }

    fn journal(&self) -> Vec<Value> {
        let text = fs::read_to_string(self.journal.join("matrix.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// `(step, event)` of every step line, in order.
    fn events(&self) -> Vec<(String, String)> {
        self.journal()
            .iter()
            .filter(|e| e.get("step").is_some())
            .map(|e| {
                (
                    e["step"].as_str().unwrap().into(),
                    e["event"].as_str().unwrap().into(),
                )
            })
            .collect()
    }

    fn calls(&self) -> String {
        fs::read_to_string(self.state.join("calls")).unwrap_or_default()
    }

    fn host_state(&self) -> HostState {
        plan::locate(None, Some(Utf8Path::from_path(&self.root).unwrap()))
            .unwrap()
            .state
    }

    /// The first call made of `prefix` (and maybe more words) fails.
    fn fail_once(&self, prefix: &str) {
        let n = fs::read_dir(self.state.join("fail-once")).unwrap().count();
        fs::write(self.state.join(format!("fail-once/{n}")), prefix).unwrap();
    }
}

/// The command a stand-in sees for a step (what a failure is injected on).
fn injection(step: &str) -> &'static str {
    match step {
        "switch-prepare" => "nixos-rebuild switch --flake ./out#matrix-prepare",
        "syn2mas-check" => "systemctl start masgen-syn2mas-check.service",
        "syn2mas-dry-run" => "systemctl start masgen-syn2mas-dry-run.service",
        "backup" => "systemctl start masgen-backup.service",
        "build-final" => "nixos-rebuild build",
        "stop-services" => "systemctl stop",
        "syn2mas-migrate" => "systemctl start masgen-syn2mas-migrate.service",
        "switch-final" => "nixos-rebuild switch --flake ./out#matrix",
        "mas-doctor" => "systemctl start masgen-mas-doctor.service",
        "register-bot.reminders" => "systemctl start masgen-register-bot-reminders.service",
        other => panic!("no injection for {other}"),
    }
}

#[test]
fn a_full_migration_in_one_command() {
    let rig = Rig::new();
    assert_eq!(rig.host_state(), HostState::SynapseOnly);
    let (code, err) = rig.apply(&["--yes"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(rig.host_state(), HostState::Delegated, "{err}");
    let ran: Vec<String> = rig
        .events()
        .into_iter()
        .filter(|(_, e)| e == "finished")
        .map(|(s, _)| s)
        .collect();
    assert_eq!(ran, STEPS, "{err}");
    // Every step but the notes was "started" before it ended.
    let events = rig.events();
    for s in &STEPS[..10] {
        let started = events
            .iter()
            .position(|e| e == &(s.to_string(), "started".into()));
        let finished = events
            .iter()
            .position(|e| e == &(s.to_string(), "finished".into()));
        assert!(started.unwrap() < finished.unwrap(), "{s}: {events:?}");
    }
    let calls = rig.calls();
    let lines: Vec<&str> = calls.lines().collect();
    // (start, end) of each call, in the plan's order; syn2mas gets the
    // arguments of the rendered unit's ExecStart.
    let order = [
        ("nixos-rebuild switch --flake ./out#matrix-prepare", ""),
        ("mas-cli syn2mas @CONFIG@ --synapse-config", " check"),
        (
            "mas-cli syn2mas @CONFIG@ --synapse-config",
            " migrate --dry-run",
        ),
        ("masgen-backup matrix-synapse ", ".yaml"),
        ("nixos-rebuild build --flake ./out#matrix", ""),
        (
            "systemctl stop matrix-synapse.service matrix-authentication-service.service",
            "",
        ),
        ("mas-cli syn2mas @CONFIG@ --synapse-config", "-0 migrate"),
        ("nixos-rebuild switch --flake ./out#matrix", "#matrix"),
        ("mas-cli doctor @CONFIG@", ""),
        ("masgen-register-user mas-cli @CONFIG@ bot.reminders", ""),
    ];
    let pos: Vec<usize> = order
        .iter()
        .map(|(a, b)| {
            lines
                .iter()
                .position(|l| l.starts_with(a) && l.ends_with(b))
                .unwrap_or_else(|| panic!("no `{a}…{b}` in\n{calls}"))
        })
        .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "order: {calls}");
    assert!(rig
        .root
        .join("var/lib/masgen/syn2mas-migrate.done")
        .exists());
    // Finished lines carry the exit code, timings and the output's tail.
    let backup = rig
        .journal()
        .into_iter()
        .find(|e| e["step"] == "backup" && e["event"] == "finished")
        .unwrap();
    assert_eq!(backup["exit_code"], 0);
    assert!(backup["duration_ms"].is_u64());
    assert!(
        backup["output_tail"]
            .as_str()
            .unwrap()
            .contains("/backup/matrix-synapse-"),
        "{backup}"
    );

    // A second run finds every gate holding (the host is delegated now:
    // the plan from there is the final switch onwards) and runs nothing.
    let before = rig.calls();
    let (code, err) = rig.apply(&["--yes"]);
    assert_eq!(code, 0, "{err}");
    let new_calls = &rig.calls()[before.len()..];
    assert!(
        !new_calls.contains("nixos-rebuild")
            && !new_calls.contains("systemctl start masgen-mas-doctor"),
        "{new_calls}"
    );
    assert!(
        err.contains("[switch-final] skipped: its gate already holds"),
        "{err}"
    );

    // The rollback from here goes through the same refusals as `masgen plan`.
    let (code, err) = rig.apply(&["--rollback", "--dry-run"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("plan.rollback_delegated"), "{err}");
    let (code, err) = rig.apply(&[
        "--rollback",
        "--acknowledge",
        "rollback-breaks-mas-sessions",
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("[rollback-switch-synapse-only]"), "{err}");
}

/// A failure injected at each step: apply stops there (exit 1) with the
/// undo and the journal line; the next run skips the steps before it
/// (their gates hold) and finishes.
#[test]
fn resumes_after_a_failure_at_every_step() {
    for (n, step) in STEPS[..10].iter().enumerate() {
        let rig = Rig::new();
        rig.fail_once(injection(step));
        let (code, err) = rig.apply(&["--yes"]);
        assert_eq!(code, 1, "{step}: {err}");
        assert!(err.contains(&format!("[{step}] FAILED")), "{step}: {err}");
        assert!(err.contains("  undo: "), "{step}: {err}");
        assert!(err.contains("  journal: {"), "{step}: {err}");
        let events = rig.events();
        assert_eq!(
            events.last().unwrap(),
            &(step.to_string(), "failed".to_string()),
            "{step}"
        );
        let failed = rig
            .journal()
            .into_iter()
            .rev()
            .find(|e| e["event"] == "failed")
            .unwrap();
        assert!(
            failed["detail"].as_str().unwrap().contains("exited 1"),
            "{failed}"
        );
        // Nothing after it ran.
        for later in &STEPS[n + 1..10] {
            assert!(
                !events.iter().any(|(s, _)| s == later),
                "{step}: {later} ran: {events:?}"
            );
        }

        let mark = rig.journal().len();
        let (code, err) = rig.apply(&["--yes"]);
        assert_eq!(code, 0, "{step}, second run: {err}");
        assert_eq!(rig.host_state(), HostState::Delegated, "{step}: {err}");
        let second: Vec<(String, String)> = rig.journal()[mark..]
            .iter()
            .filter(|e| e.get("step").is_some())
            .map(|e| {
                (
                    e["step"].as_str().unwrap().into(),
                    e["event"].as_str().unwrap().into(),
                )
            })
            .collect();
        let first_run = second.iter().find(|(_, e)| e != "skipped").unwrap();
        assert_eq!(
            first_run,
            &(step.to_string(), "started".to_string()),
            "{step}: resumes there: {second:?}"
        );
        // Steps before it are skipped (their gates hold) or, for the ones a
        // plan from the new state has no more, absent.
        for earlier in &STEPS[..n] {
            assert!(
                !second.iter().any(|(s, e)| s == earlier && e != "skipped"),
                "{step}: {earlier} ran again: {second:?}"
            );
        }
    }
}

#[test]
fn syn2mas_warnings_stop_unless_accepted() {
    let rig = Rig::new();
    fs::write(rig.state.join("syn2mas-warnings"), "").unwrap();
    let (code, err) = rig.apply(&["--yes"]);
    assert_eq!(code, 11, "{err}");
    assert!(
        err.contains("[syn2mas-check] stopped: syn2mas reported warnings"),
        "{err}"
    );
    assert!(
        err.contains("2 users have unverified email addresses"),
        "shows them: {err}"
    );
    assert!(err.contains("--accept-warnings"), "{err}");
    assert_eq!(
        rig.events().last().unwrap(),
        &("syn2mas-check".into(), "warnings".into())
    );
    assert!(
        !rig.calls().contains(" migrate --dry-run\n"),
        "stopped at the check"
    );

    let (code, err) = rig.apply(&["--yes", "--accept-warnings"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(rig.host_state(), HostState::Delegated);
    let accepted = rig
        .journal()
        .into_iter()
        .filter(|e| {
            e["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("warnings accepted"))
        })
        .count();
    // check, dry run and migrate each warned.
    assert_eq!(accepted, 3, "{err}");
}

#[test]
fn refusals_come_before_anything_runs() {
    let rig = Rig::new();
    // No terminal and no --yes: refused, naming the steps that would ask.
    let (code, err) = rig.apply(&[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no terminal") && err.contains("stop-services") && err.contains("--yes"),
        "{err}"
    );
    // The plan's own safety: a real migration only after a clean dry run.
    let (code, err) = rig.apply(&["--yes", "--only", "syn2mas-migrate"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("plan.migrate_without_dry_run"), "{err}");
    // A step the plan from here does not have.
    let (code, err) = rig.apply(&["--yes", "--only", "rollback-empty-mas"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("has no such step") && err.contains("switch-prepare"),
        "{err}"
    );
    // A stale out/: build first.
    fs::write(rig.work.join("out/PLAN.md"), "edited").unwrap();
    let (code, err) = rig.apply(&["--yes"]);
    assert_eq!(code, 2);
    assert!(err.contains("build it first"), "{err}");
    assert!(rig.calls().is_empty(), "nothing ran: {}", rig.calls());
    assert!(rig.journal().is_empty());

    // A spec that says fresh over a host running Synapse: the plan refuses.
    let rig = Rig::new();
    let fresh = fs::read_to_string("examples/fresh.toml").unwrap();
    fs::write(rig.work.join("spec.toml"), fresh).unwrap();
    fs::remove_dir_all(rig.work.join("out")).unwrap();
    let built = Command::new(bin())
        .args(["build", "spec.toml", "-o", "out"])
        .current_dir(&rig.work)
        .output()
        .unwrap();
    assert!(built.status.success());
    let (code, err) = rig.apply(&["--yes"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("plan.fresh_over_existing"), "{err}");
    assert!(rig.calls().is_empty());
}

#[test]
fn dry_run_until_and_only() {
    let rig = Rig::new();
    let (code, err) = rig.apply(&["--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("would run: nixos-rebuild switch --flake ./out#matrix-prepare"),
        "{err}"
    );
    assert!(err.contains("asks first: Synapse is down"), "{err}");
    assert!(
        rig.calls().is_empty() && rig.journal().is_empty(),
        "dry run ran nothing"
    );

    let (code, err) = rig.apply(&["--yes", "--until", "backup"]);
    assert_eq!(code, 0, "{err}");
    let done: Vec<String> = rig
        .events()
        .into_iter()
        .filter(|(_, e)| e == "finished")
        .map(|(s, _)| s)
        .collect();
    assert_eq!(done, STEPS[..4], "{err}");
    assert_eq!(rig.host_state(), HostState::MasPrepared);
    assert!(rig
        .root
        .join("var/lib/masgen/syn2mas-dry-run.done")
        .exists());

    let (code, err) = rig.apply(&["--yes", "--only", "build-final"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        rig.events().last().unwrap(),
        &("build-final".into(), "finished".into())
    );
    assert!(!rig.calls().contains("systemctl stop"), "{}", rig.calls());
    // --only a step whose gate holds: skipped.
    let (code, err) = rig.apply(&["--yes", "--only", "backup"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        rig.events().last().unwrap(),
        &("backup".into(), "skipped".into())
    );
}

/// Runs `masgen apply` under `script` (a pseudo-terminal), typing `answer`.
fn on_a_tty(rig: &Rig, args: &str, answer: &str) -> (i32, String) {
    let c = rig.command(&[]);
    let cmdline = format!("{} apply spec.toml -o out {args}", bin().display());
    let lines_before = rig.journal().len();
    let mut child = Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .envs(
            c.get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .current_dir(&rig.work)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        // Wait for the prompt before typing, as a person would: the run's
        // first journal line is written just before the steps begin.
        let t = Instant::now();
        while rig.journal().len() == lines_before && t.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        stdin.write_all(answer.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn confirmation_on_a_terminal() {
    let rig = Rig::new();
    let (code, out) = on_a_tty(&rig, "--only switch-prepare", "n\n");
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("[switch-prepare] Synapse restarts. Run it? [y/N]"),
        "{out}"
    );
    assert!(out.contains("not confirmed"), "{out}");
    assert!(
        !rig.calls().contains("nixos-rebuild"),
        "declined: {}",
        rig.calls()
    );
    assert_eq!(
        rig.events().last().unwrap(),
        &("switch-prepare".into(), "declined".into())
    );

    let (code, out) = on_a_tty(&rig, "--only switch-prepare", "y\n");
    assert_eq!(code, 0, "{out}");
    assert!(rig
        .calls()
        .contains("nixos-rebuild switch --flake ./out#matrix-prepare"));
    assert_eq!(rig.host_state(), HostState::MasPrepared);
}

/// Starts `apply --yes`, sends SIGNAL while the backup runs, and checks
/// that it stopped the step, journalled it and exited 130.
fn interrupt_the_backup(rig: &Rig, signal: &str) {
    fs::write(
        rig.state.join("hang"),
        "systemctl start masgen-backup.service",
    )
    .unwrap();
    let child = rig
        .command(&["--yes"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !rig.state.join("hanging").exists() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the backup never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    if signal == "INT" {
        // Meanwhile, a second run on the same host is refused.
        let (code, err) = rig.apply(&["--yes"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("another `masgen apply` is running"), "{err}");
    }
    Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "SIG{signal}: {err}");
    assert!(err.contains("[backup] interrupted"), "SIG{signal}: {err}");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "SIG{signal}: the step's process group was stopped"
    );
    assert_eq!(
        rig.events().last().unwrap(),
        &("backup".into(), "interrupted".into()),
        "SIG{signal}"
    );
}

#[test]
fn an_interrupted_step_is_journalled_and_rechecked() {
    // SIGTERM (a shutdown) and SIGHUP (a lost connection) count as Ctrl-C.
    for signal in ["TERM", "HUP"] {
        let rig = Rig::new();
        interrupt_the_backup(&rig, signal);
    }
    let rig = Rig::new();
    interrupt_the_backup(&rig, "INT");

    // A run cut off harder (a lost connection, kill -9) leaves `started`
    // without an end: the next run says so and re-checks the gate.
    let journal = rig.journal.join("matrix.jsonl");
    let mut text = fs::read_to_string(&journal).unwrap();
    text.push_str(
        r#"{"at":"2026-01-01T00:00:00.000Z","run":"LOST","event":"started","step":"backup"}"#,
    );
    text.push('\n');
    fs::write(&journal, text).unwrap();
    fs::remove_file(rig.state.join("hang")).unwrap();
    let (code, err) = rig.apply(&["--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "step `backup` was started at 2026-01-01T00:00:00.000Z (run LOST) and never ended"
        ),
        "{err}"
    );
    let entries = rig.journal();
    assert!(entries.iter().any(|e| e["event"] == "interrupted"
        && e["detail"].as_str().is_some_and(|d| d.contains("run LOST"))));
    assert_eq!(rig.host_state(), HostState::Delegated);
}

#[test]
fn over_ssh_with_the_journal_on_the_host() {
    let rig = Rig::new();
    let remote_journal = rig._tmp.path().join("remote-journal");
    let (code, err) = rig.apply(&[
        "--yes",
        "--target-host",
        "root@matrix.example.net",
        "--journal",
        remote_journal.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("on root@matrix.example.net"), "{err}");
    assert_eq!(rig.host_state(), HostState::Delegated);
    let targets = fs::read_to_string(rig.state.join("ssh-targets")).unwrap();
    assert!(
        targets.lines().all(|l| l == "ssh root@matrix.example.net"),
        "{targets}"
    );
    let text = fs::read_to_string(remote_journal.join("matrix.jsonl")).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains(r#""event":"finished","step":"syn2mas-migrate""#)),
        "{text}"
    );
}
