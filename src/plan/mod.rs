//! Stage 6: the ordered activation steps that take a host from where it is
//! to where the spec says, one gated step at a time. Reads, never writes.

mod render;
mod state;
mod steps;

use std::collections::BTreeSet;

use serde::Serialize;

pub use render::{render_json, render_markdown, render_text};
pub use state::{detect, HostState, StateSource, MIGRATED_STAMP};

use crate::model::Homeserver;

/// Version of the `plan.json` format (docs/plan.md).
pub const PLAN_SCHEMA_VERSION: u32 = 1;

/// Risks a plan refuses until the operator acknowledges them by name.
pub const ACK_PASSWORD_PROVIDERS: &str = "password-providers-stop-working";
pub const ACK_ROLLBACK: &str = "rollback-breaks-mas-sessions";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    Rebuild,
    RunUnit,
    Check,
    Manual,
}

/// Whether Synapse serves users during a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Downtime {
    /// Synapse keeps serving.
    None,
    /// Synapse restarts (seconds).
    Restart,
    /// Synapse is stopped for the whole step.
    Down,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gate {
    /// What must hold before going on.
    pub condition: String,
    /// Commands that show whether it holds.
    pub check: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Undo {
    pub possible: bool,
    pub how: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub id: String,
    pub host: String,
    pub title: String,
    pub kind: StepKind,
    pub commands: Vec<String>,
    pub gate: Gate,
    pub synapse: Downtime,
    pub undo: Undo,
    pub warnings: Vec<String>,
    /// The host's state once the step's gate holds.
    pub reaches: HostState,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub schema_version: u32,
    pub server_name: String,
    pub host: String,
    pub from: HostState,
    pub source: String,
    pub to: HostState,
    pub rollback: bool,
    pub steps: Vec<Step>,
    /// Ids of the first and last steps during which Synapse is down.
    pub downtime: Option<(String, String)>,
    /// Warnings of the spec that apply to the whole plan.
    pub warnings: Vec<String>,
}

/// Why masgen will not produce a plan, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub code: &'static str,
    pub reason: String,
    pub help: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused [{}]: {}\n  help: {}",
            self.code, self.reason, self.help
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// How commands name the output flake (`./out` in `./out#matrix`).
    pub out_dir: String,
    pub rollback: bool,
    pub acknowledged: BTreeSet<String>,
}

/// Plans the steps from `from` to the spec's target (or back, with `rollback`).
pub fn plan(
    hs: &Homeserver,
    from: HostState,
    source: &str,
    opts: &Options,
) -> Result<Plan, Refusal> {
    let host = hs
        .hosts
        .keys()
        .next()
        .cloned()
        .unwrap_or_else(|| "matrix".into());
    let (to, steps) = if opts.rollback {
        steps::rollback(hs, &host, from, opts)?
    } else {
        steps::forward(hs, &host, from, opts)?
    };
    check_safety(&steps)?;
    let down: Vec<&Step> = steps
        .iter()
        .filter(|s| s.synapse == Downtime::Down)
        .collect();
    let downtime = match (down.first(), down.last()) {
        (Some(a), Some(b)) => Some((a.id.clone(), b.id.clone())),
        _ => None,
    };
    Ok(Plan {
        schema_version: PLAN_SCHEMA_VERSION,
        server_name: hs.server_name.clone(),
        host,
        from,
        source: source.to_string(),
        to,
        rollback: opts.rollback,
        steps,
        downtime,
        warnings: steps::spec_warnings(hs),
    })
}

/// Invariants every plan must keep, whatever produced it: a real migration
/// only after a clean dry run, never twice, never a final switch before it,
/// and one contiguous stretch of downtime.
pub fn check_safety(steps: &[Step]) -> Result<(), Refusal> {
    let pos = |id: &str| steps.iter().position(|s| s.id == id);
    if let Some(migrate) = pos(steps::MIGRATE) {
        match pos(steps::DRY_RUN) {
            Some(dry) if dry < migrate => {}
            _ => {
                return Err(Refusal {
                    code: "plan.migrate_without_dry_run",
                    reason: "the plan runs `syn2mas migrate` without a clean `syn2mas migrate --dry-run` before it".into(),
                    help: "run the dry run first (it shows the errors a real run would hit and how long it takes)".into(),
                })
            }
        }
        if steps.iter().filter(|s| s.id == steps::MIGRATE).count() > 1 {
            return Err(Refusal {
                code: "plan.second_syn2mas",
                reason:
                    "the plan runs syn2mas twice; the second run meets a non-empty MAS database"
                        .into(),
                help: "drop and recreate the MAS database before a second migration".into(),
            });
        }
    }
    if let Some(final_switch) = pos(steps::SWITCH_FINAL) {
        if steps.iter().any(|s| s.id == steps::MIGRATE) && pos(steps::MIGRATE) > Some(final_switch)
        {
            return Err(Refusal {
                code: "plan.final_before_syn2mas",
                reason:
                    "the plan switches Synapse to delegation before syn2mas has copied the users"
                        .into(),
                help: "run `syn2mas migrate` from the prepare configuration first".into(),
            });
        }
    }
    let down: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.synapse == Downtime::Down)
        .map(|(i, _)| i)
        .collect();
    if let (Some(first), Some(last)) = (down.first(), down.last()) {
        if last - first + 1 != down.len() {
            return Err(Refusal {
                code: "plan.downtime_split",
                reason: "Synapse would go down more than once".into(),
                help: "internal error: report it".into(),
            });
        }
    }
    Ok(())
}
