//! `masgen apply` end to end on this machine, against a host made of
//! STAND-INS (tests/fixtures/apply, first on PATH through MASGEN_APPLY_PATH):
//! `nixos-rebuild` (lays out the system root from masgen's own renders and
//! starts the services), `systemctl` (unit state in files; runs the tasks'
//! effects: stamps, a backup dump), `journalctl`, `curl` (Synapse behind
//! nginx: auth_metadata 200 only once delegating), `mas-cli` (syn2mas: exit
//! 0, or 11 with a warning), `masgen-backup` and `masgen-register-user`
//! (the task scripts) and `ssh` (runs the remote line locally). The
//! systemctl stand-in runs masgen's rendered task units' command lines. No
//! real Synapse or MAS runs here, PostgreSQL only for the backup through the
//! real backup script (the last test); state detection reads the real
//! rendered homeserver.yaml of each phase, and the plan and its safety
//! checks are masgen's own.

mod apply_support;
mod support;

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apply_support::{bin, injection, Rig, STEPS};
use masgen::plan::HostState;

/// `MASGEN_MAS_CLI` names the mas-cli the shims link; without it the
/// stand-in is used (and said to be).
#[test]
fn mas_cli_is_the_one_masgen_mas_cli_names() {
    use std::os::unix::fs::PermissionsExt;
    let standin = apply_support::mas_cli_from(None);
    assert!(standin.ends_with("tests/fixtures/apply/mas-standin"));
    assert_eq!(apply_support::mas_cli_from(Some("".into())), standin);
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("mas-cli");
    fs::write(&real, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(apply_support::mas_cli_from(Some(real.clone().into())), real);
    let linked = fs::read_link(apply_support::shims().join("mas-cli")).unwrap();
    assert_eq!(linked, apply_support::mas_cli());
}

#[test]
fn a_full_migration_in_one_command() {
    let rig = Rig::new();
    assert_eq!(rig.host_state(), HostState::SynapseOnly);
    let (code, err) = rig.apply(&["--yes"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(rig.host_state(), HostState::Delegated, "{err}");
    let ran: Vec<String> = rig.finished();
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
    let done: Vec<String> = rig.finished();
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

/// Over SSH, one run at a time too: a run holding the lock on the host
/// (here a `flock` holding the journal's lock file) refuses a second, and
/// the lock is released with the run that held it.
#[test]
fn over_ssh_one_run_at_a_time() {
    let rig = Rig::new();
    let remote_journal = rig._tmp.path().join("remote-journal");
    fs::create_dir_all(&remote_journal).unwrap();
    let lock = remote_journal.join("matrix.jsonl.lock");
    let args = [
        "--yes",
        "--target-host",
        "root@matrix.example.net",
        "--journal",
        remote_journal.to_str().unwrap(),
    ];
    // `-o`: the flock process itself holds the lock, not the sleep it runs.
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    // Wait until the holder has it.
    let t = Instant::now();
    while Command::new("flock")
        .args(["-n", lock.to_str().unwrap(), "true"])
        .status()
        .unwrap()
        .success()
    {
        assert!(t.elapsed() < Duration::from_secs(10), "flock never held");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, err) = rig.apply(&args);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("another `masgen apply` is running"), "{err}");
    assert_eq!(rig.host_state(), HostState::SynapseOnly);
    holder.kill().unwrap();
    holder.wait().unwrap();
    let (code, err) = rig.apply(&args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(rig.host_state(), HostState::Delegated);
    // The run released its lock when it ended.
    assert!(Command::new("flock")
        .args(["-n", lock.to_str().unwrap(), "true"])
        .status()
        .unwrap()
        .success());
}

/// A gate check that hangs is stopped by a signal too, and the step does
/// not run.
#[test]
fn a_hanging_gate_check_is_interrupted() {
    let rig = Rig::new();
    let check = "systemctl show -p Result -p ExecMainStatus -p ExecMainExitTimestampMonotonic masgen-backup.service";
    fs::write(rig.state.join("hang"), check).unwrap();
    let child = rig
        .command(&["--yes"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !rig.state.join("hanging").exists() {
        assert!(t.elapsed() < Duration::from_secs(60), "the check never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the check was stopped"
    );
    assert!(
        err.contains("[backup] interrupted while checking its gate"),
        "{err}"
    );
    assert!(
        !rig.events().iter().any(|(s, _)| s == "backup"),
        "{:?}",
        rig.events()
    );
    assert!(!rig.calls().contains("systemctl start masgen-backup"));
}

/// The backup step through the REAL modules/scripts/backup.sh and a real
/// PostgreSQL (pg_dump through a wrapper that points it at the throwaway
/// cluster), from the rendered unit's command line: the gate finds a real
/// custom-format dump. Needs root and PostgreSQL (a SKIP otherwise, a
/// failure in CI).
#[test]
fn the_backup_step_dumps_a_real_database() {
    // Without a pepper the unit names no runtime config file to copy.
    let rig = Rig::with_spec(|s| {
        s.lines()
            .filter(|l| !l.starts_with("pepper_file"))
            .collect::<Vec<_>>()
            .join("\n")
    });
    let why = "the backup step against PostgreSQL";
    if !support::require_root(why) || support::require_tool("runuser", why).is_none() {
        return;
    }
    let Some(pg) = support::PgCluster::start() else {
        return;
    };
    pg.superuser_sql("CREATE DATABASE \"matrix-synapse\"")
        .unwrap();
    pg.superuser_sql_in(
        "matrix-synapse",
        "CREATE TABLE users (name text); INSERT INTO users VALUES ('@alice:example.com')",
    )
    .unwrap();
    // pg_dump runs as `postgres` (runuser): its wrapper must be reachable.
    let real = pg.backup_tools();
    let out = rig
        .command(&["--yes", "--until", "backup"])
        .env(
            "MASGEN_APPLY_PATH",
            format!(
                "{}:{}",
                real.path().display(),
                apply_support::shims().display()
            ),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}\n{}", pg.log());
    assert_eq!(
        rig.events().last().unwrap(),
        &("backup".into(), "finished".into())
    );
    let backup_dir = rig._tmp.path().join("backup");
    let dump = fs::read_dir(&backup_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "dump"))
        .expect("a dump");
    assert!(
        fs::read(&dump).unwrap().starts_with(b"PGDMP"),
        "custom format"
    );
    let list = Command::new(pg.bin_dir().join("pg_restore"))
        .arg("--list")
        .arg(&dump)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("TABLE public users"), "{list}");
}
