//! `masgen apply`: runs the plan on the host, gate by gate. Before each
//! step it checks the step's gate (held: skipped, so a re-run resumes);
//! after it, the gate decides. Everything goes into a journal on the host
//! (journal.rs). The plan comes from the host's own evidence (its system
//! root) and passes the plan's safety checks, for the steps selected too,
//! so apply never runs a step `masgen plan` would refuse.

mod host;
mod journal;
mod mirror;
mod place;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use crate::model::Homeserver;
use crate::plan::{self, Downtime, Gate, Plan, Step};
use host::{Host, Ran};
use journal::Journal;
pub use journal::{Entry, Event};
use place::Places;

/// Prints a line to stderr, ignoring errors: after a lost connection
/// (SIGHUP) the terminal is gone, and the journal must still get its line.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// Default places on the host.
pub const DEFAULT_SYSTEM: &str = "/run/current-system";
pub const DEFAULT_JOURNAL_DIR: &str = "/var/lib/masgen/journal";

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The output tree the plan's commands name (`./out#…`); local
    /// commands run in the directory that holds it.
    pub output: Utf8PathBuf,
    /// The system root on the host.
    pub system: String,
    pub journal_dir: String,
    /// `user@host` for the host, or for each host of a homeserver split
    /// over hosts: reached over SSH (units, checks, journal); the deploy
    /// tool runs here and deploys to it.
    pub targets: plan::PerHost,
    /// The tool the rebuild steps deploy with, as for `masgen plan --deploy`.
    pub deploy: plan::Deploy,
    /// Colmena's hive (`--config`), when not the output tree's flake.
    pub colmena_config: Option<String>,
    /// Prepended to PATH for the commands (stand-ins in tests).
    pub path_prefix: Option<String>,
    pub yes: bool,
    pub accept_warnings: bool,
    pub until: Option<String>,
    pub only: Option<String>,
    pub dry_run: bool,
    pub rollback: bool,
    pub acknowledged: BTreeSet<String>,
}

/// How a run ended; `code()` is the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed,
    Refused,
    Declined,
    Warnings,
    Interrupted,
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::Failed => 1,
            Outcome::Refused => 2,
            Outcome::Declined => 3,
            Outcome::Warnings => 11,
            Outcome::Interrupted => 130,
        }
    }
}

/// How a gate came out.
enum Verdict {
    Holds,
    Fails(String),
    /// Failed, but only through warnings (syn2mas exit 11).
    WarningsOnly(String),
}

/// Runs the plan for `hs` on the host. Progress goes to stderr; `stop` is
/// raised by the caller's signal handlers.
pub fn apply(hs: &Homeserver, opts: &Options, stop: Arc<AtomicBool>) -> Result<Outcome> {
    let workdir = match opts.output.parent() {
        Some(p) if !p.as_str().is_empty() => p.to_owned(),
        _ => Utf8PathBuf::from("."),
    };
    // A homeserver split over hosts is applied from one machine that
    // reaches them all; its state is spread over Synapse's and MAS's hosts.
    if hs.is_split() && opts.targets.each.is_empty() {
        let each: Vec<String> = hs
            .hosts
            .keys()
            .map(|h| format!("--target-host {h}=USER@HOST"))
            .collect();
        say!("refused: {} is split over the hosts {}; apply runs its steps from a machine that reaches each of them over SSH: {}", hs.server_name, hs.hosts.keys().cloned().collect::<Vec<_>>().join(", "), each.join(" "));
        return Ok(Outcome::Refused);
    }
    let hosts: BTreeMap<String, Host> = hs
        .hosts
        .keys()
        .map(|name| {
            let target = opts.targets.of(name).map(String::from);
            let host = Host::new(
                target,
                opts.path_prefix.clone(),
                workdir.clone(),
                stop.clone(),
            );
            (name.clone(), host)
        })
        .collect();
    let here = Host::new(None, opts.path_prefix.clone(), workdir, stop.clone());
    let popts = plan_options(opts);
    let places = Places {
        hosts: &hosts,
        here: &here,
        plan: &popts,
    };
    let plan = match make_plan(hs, opts, &popts, &places)? {
        Ok(p) => p,
        Err(refusal) => {
            say!("{refusal}");
            return Ok(Outcome::Refused);
        }
    };
    let steps = match select(&plan, opts) {
        Ok(s) => s,
        Err(msg) => {
            say!("refused: {msg}");
            return Ok(Outcome::Refused);
        }
    };
    // The journal and the lock are on Synapse's host: one run at a time
    // for the homeserver, whichever hosts its steps touch.
    let host = places.host(&plan.host)?;
    let journal = Journal::new(host, &opts.journal_dir, &plan.host);
    say!(
        "{} on {}{}: {} → {} ({}), {} of {} steps; journal {}",
        if opts.dry_run {
            "Would apply"
        } else {
            "Applying"
        },
        places.describe(),
        place::deploying_from_here(&popts),
        plan.from,
        plan.to,
        plan.source,
        steps.len(),
        plan.steps.len(),
        journal.path
    );
    let open = journal.unfinished()?;
    if let Some(e) = &open {
        say!(
            "note: step `{}` was started at {} (run {}) and never ended: it was interrupted; its gate is checked again",
            e.step.as_deref().unwrap_or("?"),
            e.at,
            e.run
        );
    }
    if opts.dry_run {
        print_dry_run(&steps, opts, &places);
        return Ok(Outcome::Done);
    }
    let asks: Vec<&str> = steps
        .iter()
        .filter(|s| needs_confirmation(s).is_some())
        .map(|s| s.id.as_str())
        .collect();
    if !asks.is_empty() && !opts.yes && !std::io::stdin().is_terminal() {
        say!("refused: steps {} take Synapse down or cannot be undone, and need a confirmation, but there is no terminal to ask on; pass --yes to confirm them in advance (automation)", asks.join(", "));
        return Ok(Outcome::Refused);
    }
    // One run at a time on a host (the journal's directory is on it).
    let lock_path = Utf8PathBuf::from(format!("{}.lock", journal.path));
    let Some(_lock) = host.lock(&lock_path)? else {
        say!("refused: another `masgen apply` is running on this host (it holds {lock_path}); wait for it and read the journal");
        return Ok(Outcome::Refused);
    };
    start_run(&journal, &plan, &steps, open)?;
    let mut outcome = Outcome::Done;
    for step in &steps {
        if stop.load(Ordering::SeqCst) {
            outcome = Outcome::Interrupted;
            break;
        }
        outcome = run_step(&places, &journal, step, opts, &stop)?;
        if outcome != Outcome::Done {
            break;
        }
    }
    journal.write(
        &Entry::new(&journal.run, Event::RunEnded, None)
            .detail(format!("{outcome:?} (exit {})", outcome.code())),
    )?;
    if outcome == Outcome::Done {
        say!("done: {} step(s) applied or already in place", steps.len());
    }
    Ok(outcome)
}

/// The plan's warnings, the earlier run's unfinished step, and the
/// run's first journal line.
fn start_run(
    journal: &Journal<'_>,
    plan: &Plan,
    steps: &[Step],
    open: Option<Entry>,
) -> Result<()> {
    for w in &plan.warnings {
        say!("warning: {w}");
    }
    if let Some(e) = open {
        let mut note = Entry::new(&journal.run, Event::Interrupted, e.step.as_deref());
        note = note.detail(format!(
            "found by a later run: started at {} by run {} with no end recorded",
            e.at, e.run
        ));
        journal.write(&note)?;
    }
    let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
    journal.write(
        &Entry::new(&journal.run, Event::RunStarted, None).detail(format!(
            "{} → {} ({}); steps: {}",
            plan.from,
            plan.to,
            plan.source,
            ids.join(", ")
        )),
    )?;
    Ok(())
}

/// The plan's options from apply's (the record comes from the host).
fn plan_options(opts: &Options) -> plan::Options {
    plan::Options {
        out_dir: crate::flake_ref(&opts.output),
        rollback: opts.rollback,
        acknowledged: opts.acknowledged.clone(),
        record: plan::Record::default(),
        deploy: opts.deploy,
        targets: opts.targets.clone(),
        colmena_config: opts.colmena_config.clone(),
    }
}

/// The plan from the hosts' system roots (Synapse's host's and MAS's), as
/// `masgen plan --system` makes it.
fn make_plan(
    hs: &Homeserver,
    opts: &Options,
    popts: &plan::Options,
    places: &Places<'_>,
) -> Result<Result<Plan, plan::Refusal>> {
    // Refused before any host is reached: targets that name no host of the
    // spec, or leave one out.
    if let Err(refusal) = popts.targets.check(
        plan::HostFlag::TargetHost,
        hs,
        &hs.hosts.keys().cloned().collect::<Vec<_>>(),
    ) {
        return Ok(Err(refusal));
    }
    let mut mirrors = Vec::new();
    let mut root_of = |name: &str| -> Result<(Utf8PathBuf, Option<String>)> {
        let host = places.host(name)?;
        match host.target() {
            None => Ok((Utf8PathBuf::from(&opts.system), None)),
            Some(t) => {
                let mirror = tempfile::tempdir()?;
                let dir = Utf8Path::from_path(mirror.path())
                    .ok_or_else(|| anyhow::anyhow!("temporary directory is not UTF-8"))?
                    .to_owned();
                mirror::fetch(host, &opts.system, &dir)?;
                mirrors.push(mirror);
                Ok((dir, Some(format!("{t}:{}", opts.system))))
            }
        }
    };
    let synapse = root_of(&hs.synapse.host)?;
    let mas = if hs.mas.host == hs.synapse.host {
        synapse.clone()
    } else {
        root_of(&hs.mas.host)?
    };
    let located = plan::locate(
        None,
        Some(plan::Roots {
            synapse: &synapse.0,
            mas: &mas.0,
        }),
    )?;
    // Say where the roots really are, not where their copies went.
    let mut how = located.how.clone();
    for (root, remote) in [&synapse, &mas] {
        if let Some(remote) = remote {
            how = how.replacen(root.as_str(), remote, 1);
        }
    }
    let popts = plan::Options {
        record: located.record.clone(),
        ..popts.clone()
    };
    Ok(plan::plan(hs, located.state, &how, &popts).and_then(|p| {
        // The selection must be safe on its own, too (e.g. `--only
        // syn2mas-migrate` without a clean dry run on record).
        let steps = select(&p, opts).unwrap_or_default();
        plan::check_safety(hs.mode, &steps, &located.record)?;
        Ok(p)
    }))
}

/// The steps `--only` / `--until` select.
fn select(plan: &Plan, opts: &Options) -> Result<Vec<Step>, String> {
    let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
    let find = |flag: &str, id: &str| {
        ids.iter().position(|i| *i == id).ok_or_else(|| {
            format!(
                "{flag} {id}: the plan from `{}` has no such step; its steps: {}",
                plan.from,
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    ids.join(", ")
                }
            )
        })
    };
    match (&opts.only, &opts.until) {
        (Some(_), Some(_)) => Err("give one of --only and --until".into()),
        (Some(id), None) => Ok(vec![plan.steps[find("--only", id)?].clone()]),
        (None, Some(id)) => Ok(plan.steps[..=find("--until", id)?].to_vec()),
        (None, None) => Ok(plan.steps.clone()),
    }
}

/// Why a step asks before it runs, if it does.
fn needs_confirmation(step: &Step) -> Option<String> {
    let mut why = Vec::new();
    match step.synapse {
        Downtime::Down => why.push("Synapse is down during this step".to_string()),
        Downtime::Restart => why.push("Synapse restarts".to_string()),
        Downtime::None => {}
    }
    if !step.undo.possible {
        why.push(format!("it cannot be undone cleanly ({})", step.undo.how));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

fn print_dry_run(steps: &[Step], opts: &Options, places: &Places<'_>) {
    for (i, s) in steps.iter().enumerate() {
        say!("\n{}. [{}] {}", i + 1, s.id, s.title);
        say!("   skipped if the gate already holds: {}", s.gate.condition);
        for c in &s.gate.check {
            say!(
                "     check{}: {}  ({})",
                places.note(&s.host, &c.command),
                c.command,
                c.expectation()
            );
        }
        if let Some(why) = needs_confirmation(s) {
            say!(
                "   asks first{}: {why}",
                if opts.yes { " (--yes: confirmed)" } else { "" }
            );
        }
        for c in &s.commands {
            say!("   would run{}: {c}", places.note(&s.host, c));
        }
    }
    say!("\ndry run: nothing was run and nothing was written to the journal");
}

/// Runs the checks of a gate.
fn judge(places: &Places<'_>, host: &str, gate: &Gate) -> Result<Verdict> {
    for check in &gate.check {
        let (code, stdout, stderr) = places.of(host, &check.command)?.capture(&check.command)?;
        if let Err(why) = check.judge(code, &stdout) {
            let mut msg = format!("`{}`: {why}", check.command);
            let said = if stdout.trim().is_empty() {
                stderr.trim()
            } else {
                stdout.trim()
            };
            if !said.is_empty() {
                msg.push_str(&format!(
                    " (it said: {})",
                    said.lines().take(5).collect::<Vec<_>>().join(" / ")
                ));
            }
            if let Some(w) = &gate.warnings_only {
                let (code, stdout, _) = places.of(host, &w.command)?.capture(&w.command)?;
                if w.judge(code, &stdout).is_ok() {
                    return Ok(Verdict::WarningsOnly(msg));
                }
            }
            return Ok(Verdict::Fails(msg));
        }
    }
    Ok(Verdict::Holds)
}

/// The script of a step: every command runs (a unit's journal is shown
/// after a failed start), in one shell (they may share variables); it
/// exits with the first failure's status. (`:` keeps a brace group that
/// holds only a comment valid.)
fn script(step: &Step) -> String {
    let mut s = String::from("masgen_rc=0\n");
    for c in &step.commands {
        s.push_str(&format!(
            "{{ :; {c}\n}} || {{ masgen_s=$?; [ \"$masgen_rc\" -ne 0 ] || masgen_rc=$masgen_s; }}\n"
        ));
    }
    s.push_str("exit \"$masgen_rc\"\n");
    s
}

fn ask(question: &str) -> bool {
    let _ = write!(std::io::stderr(), "{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
}

fn run_step(
    places: &Places<'_>,
    journal: &Journal<'_>,
    step: &Step,
    opts: &Options,
    stop: &Arc<AtomicBool>,
) -> Result<Outcome> {
    let run = journal.run.as_str();
    let id = step.id.as_str();
    if step.commands.is_empty() {
        say!("\n[{id}] {}:", step.title);
        for w in &step.warnings {
            say!("  note: {w}");
        }
        journal.write(
            &Entry::new(run, Event::Finished, Some(id)).detail("notes to read; nothing to run"),
        )?;
        return Ok(Outcome::Done);
    }
    let before = judge(places, &step.host, &step.gate)?;
    if stop.load(Ordering::SeqCst) {
        say!("[{id}] interrupted while checking its gate; it did not run");
        return Ok(Outcome::Interrupted);
    }
    if let Verdict::Holds = before {
        say!(
            "[{id}] skipped: its gate already holds ({})",
            step.gate.condition
        );
        journal.write(
            &Entry::new(run, Event::Skipped, Some(id)).detail("the gate held before the step ran"),
        )?;
        return Ok(Outcome::Done);
    }
    say!("\n[{id}] {}", step.title);
    for w in &step.warnings {
        say!("  note: {w}");
    }
    if let Some(why) = needs_confirmation(step) {
        if !opts.yes && !ask(&format!("[{id}] {why}. Run it?")) {
            say!("[{id}] not confirmed: stopped before it; nothing of it ran");
            journal.write(&Entry::new(run, Event::Declined, Some(id)))?;
            return Ok(Outcome::Declined);
        }
    }
    let mut started = Entry::new(run, Event::Started, Some(id));
    started.detail = Some(step.commands.join("\n"));
    journal.write(&started)?;
    let ran = places.of_step(step)?.run(&script(step), stop, "  | ")?;
    if !ran.interrupted {
        let verdict = judge(places, &step.host, &step.gate)?;
        // A signal during the checks (they share masgen's process group)
        // is an interruption too.
        if !stop.load(Ordering::SeqCst) {
            return conclude(journal, step, opts, &ran, verdict);
        }
    }
    journal.write(
        &end(run, id, Event::Interrupted, &ran)
            .detail("stopped by a signal (Ctrl-C, SIGTERM or a lost connection)"),
    )?;
    say!(
        "[{id}] interrupted: the journal says so; the next run checks its gate again\n  undo: {}",
        step.undo.how
    );
    Ok(Outcome::Interrupted)
}

/// The journal line that ends a step that ran.
fn end(run: &str, id: &str, event: Event, ran: &Ran) -> Entry {
    let mut e = Entry::new(run, event, Some(id));
    e.exit_code = ran.code;
    e.duration_ms = Some(ran.duration.as_millis() as u64);
    e.output_tail = Some(ran.tail.clone());
    e
}

/// After a step ran: done, warnings (accepted or not), or failed.
fn conclude(
    journal: &Journal<'_>,
    step: &Step,
    opts: &Options,
    ran: &Ran,
    verdict: Verdict,
) -> Result<Outcome> {
    let (run, id) = (journal.run.as_str(), step.id.as_str());
    let end = |event: Event, ran: &Ran| end(run, id, event, ran);
    match verdict {
        Verdict::Holds if ran.code == Some(0) => {
            journal.write(&end(Event::Finished, ran))?;
            say!(
                "[{id}] done ({:.1} s): {}",
                ran.duration.as_secs_f64(),
                step.gate.condition
            );
            Ok(Outcome::Done)
        }
        Verdict::WarningsOnly(msg) if opts.accept_warnings => {
            journal.write(
                &end(Event::Finished, ran)
                    .detail(format!("warnings accepted (--accept-warnings): {msg}")),
            )?;
            say!("[{id}] done with warnings, accepted with --accept-warnings (read them above)");
            Ok(Outcome::Done)
        }
        Verdict::WarningsOnly(msg) => {
            let e = end(Event::Warnings, ran).detail(msg);
            journal.write(&e)?;
            say!("[{id}] stopped: syn2mas reported warnings (exit 11). Read them:\n{}\n  journal: {}\n  go on only if you accept each: run again with --accept-warnings\n  undo: {}", indent(&ran.tail), e.line(), step.undo.how);
            Ok(Outcome::Warnings)
        }
        Verdict::Holds | Verdict::Fails(_) => {
            let what = match verdict {
                Verdict::Fails(msg) => format!("the gate failed: {msg}"),
                _ => "the gate holds, but the commands failed".to_string(),
            };
            let what = match ran.code {
                Some(0) => what,
                c => format!(
                    "the commands exited {}; {what}",
                    c.map_or("by a signal".into(), |c| c.to_string())
                ),
            };
            let e = end(Event::Failed, ran).detail(what.clone());
            journal.write(&e)?;
            say!(
                "[{id}] FAILED: {what}\n  gate: {}\n  journal: {}\n  undo: {}{}",
                step.gate.condition,
                e.line(),
                if step.undo.possible {
                    ""
                } else {
                    "NOT CLEANLY: "
                },
                step.undo.how
            );
            Ok(Outcome::Failed)
        }
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_with(commands: &[&str]) -> Step {
        Step {
            id: "x".into(),
            host: "h".into(),
            title: "t".into(),
            kind: plan::StepKind::Manual,
            commands: commands.iter().map(|c| c.to_string()).collect(),
            gate: Gate {
                condition: String::new(),
                check: vec![],
                warnings_only: None,
            },
            synapse: Downtime::None,
            undo: plan::Undo {
                possible: true,
                how: String::new(),
            },
            warnings: vec![],
            reaches: plan::HostState::Delegated,
        }
    }

    fn sh(script: &str) -> (i32, String) {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[test]
    fn a_steps_commands_all_run_in_one_shell_and_the_first_failure_counts() {
        let s = step_with(&[
            "v=kept; exit_later() { return 4; }; exit_later",
            "echo \"$v\"",
            "false",
        ]);
        let (code, out) = sh(&script(&s));
        assert_eq!(code, 4);
        assert_eq!(out, "kept\n");
        let (code, _) = sh(&script(&step_with(&["true", "# a comment", "true"])));
        assert_eq!(code, 0);
    }
}
