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
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use crate::model::Homeserver;
use crate::plan::{self, Plan, Step};
use host::Host;
use journal::Journal;
pub use journal::{Entry, Event};
use place::Places;
use step::{needs_confirmation, run_step};

/// Prints a line to stderr, ignoring errors: after a lost connection
/// (SIGHUP) the terminal is gone, and the journal must still get its line.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

// After `say!`, which it uses.
mod step;

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
    let hosts = spec_hosts(hs, opts, &workdir, &stop);
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
    run_steps(&places, &journal, &steps, opts, &stop)
}

/// Each host of the spec, reached through its `--target-host` (or here).
fn spec_hosts(
    hs: &Homeserver,
    opts: &Options,
    workdir: &Utf8Path,
    stop: &Arc<AtomicBool>,
) -> BTreeMap<String, Host> {
    hs.hosts
        .keys()
        .map(|name| {
            let target = opts.targets.of(name).map(String::from);
            let host = Host::new(
                target,
                opts.path_prefix.clone(),
                workdir.to_owned(),
                stop.clone(),
            );
            (name.clone(), host)
        })
        .collect()
}

/// The selected steps in order until one does not end done (or the run
/// is stopped), and the run's last journal line.
fn run_steps(
    places: &Places<'_>,
    journal: &Journal<'_>,
    steps: &[Step],
    opts: &Options,
    stop: &Arc<AtomicBool>,
) -> Result<Outcome> {
    let mut outcome = Outcome::Done;
    for step in steps {
        if stop.load(Ordering::SeqCst) {
            outcome = Outcome::Interrupted;
            break;
        }
        outcome = run_step(places, journal, step, opts, stop)?;
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
