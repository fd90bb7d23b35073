//! One step of `masgen apply`: its gate checked before (held: skipped),
//! a confirmation when it takes Synapse down or cannot be undone, its
//! commands in one shell where they run, its gate checked after, and the
//! journal lines that record it.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;

use super::host::Ran;
use super::journal::Journal;
use super::place::Places;
use super::{Entry, Event, Options, Outcome};
use crate::plan::{Downtime, Gate, Step};

/// How a gate came out.
enum Verdict {
    Holds,
    Fails(String),
    /// Failed, but only through warnings (syn2mas exit 11).
    WarningsOnly(String),
}

/// Why a step asks before it runs, if it does.
pub(super) fn needs_confirmation(step: &Step) -> Option<String> {
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

pub(super) fn run_step(
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
            kind: crate::plan::StepKind::Manual,
            commands: commands.iter().map(|c| c.to_string()).collect(),
            gate: Gate {
                condition: String::new(),
                check: vec![],
                warnings_only: None,
            },
            synapse: Downtime::None,
            undo: crate::plan::Undo {
                possible: true,
                how: String::new(),
            },
            warnings: vec![],
            reaches: crate::plan::HostState::Delegated,
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
