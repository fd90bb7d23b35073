//! What every plan is checked against, whatever produced it and whatever
//! flags were given: the claim against the system's evidence, and the
//! invariants of the step list.

use super::steps;
use super::{HostState, Options, Refusal, Step, ACK_REPEAT, ACK_ROLLBACK, MIGRATED_STAMP};
use crate::lower::tasks::DRY_RUN_STAMP;
use crate::model::Mode;

/// A claimed state (`--from`, `--against`) against what the system root
/// shows: a claim may not skip what the system does not show done; a claim
/// behind the system repeats steps, only when acknowledged, and never for
/// a rollback or a claim of `fresh`.
pub(super) fn check_state(mode: Mode, from: HostState, opts: &Options) -> Result<(), Refusal> {
    let Some((shown, how)) = &opts.record.system else {
        return Ok(());
    };
    let shown = *shown;
    let runs_synapse = shown > HostState::Fresh;
    // (A rollback of a fresh install is refused on its own.)
    if mode == Mode::Fresh && !opts.rollback && runs_synapse && shown < HostState::Delegated {
        return Err(Refusal {
            code: "plan.fresh_over_existing",
            reason: format!("the host runs Synapse (the system shows `{shown}`: {how}), but the spec is a fresh install; switching would cut every existing user off from logging in"),
            help: "use `mode = \"migrate\"` so syn2mas carries the users over".into(),
        });
    }
    if from > shown {
        return Err(Refusal {
            code: "plan.claim_ahead_of_system",
            reason: format!("the claim says `{from}`, but the system shows `{shown}` ({how}); the plan would skip steps the host has not done"),
            help: "drop --from / --against so the plan starts where the system is; if that root is not the host's running system, give the right one (`--system /run/current-system` on the host)".into(),
        });
    }
    // Repeating is a forward notion: a rollback starts where the system is.
    let repeatable = from != HostState::Fresh && !opts.rollback;
    if from < shown && !(repeatable && opts.acknowledged.contains(ACK_REPEAT)) {
        let help = if repeatable {
            format!("drop --from / --against so the plan starts at `{shown}`; to repeat the steps on purpose, pass --acknowledge {ACK_REPEAT} (a second `syn2mas migrate` is refused even then)")
        } else {
            format!("drop --from / --against so the plan starts at `{shown}`, where the host is")
        };
        return Err(Refusal {
            code: "plan.claim_behind_system",
            reason: format!("the claim says `{from}`, but the system shows `{shown}` ({how}); the plan would repeat or skip steps by that difference"),
            help,
        });
    }
    Ok(())
}

pub(super) fn rollback_delegated() -> Refusal {
    Refusal {
        code: "plan.rollback_delegated",
        reason: "going back from delegation breaks every session, device and password change made through MAS since the switch".into(),
        help: format!("if that loss is acceptable, pass --acknowledge {ACK_ROLLBACK}"),
    }
}

/// Invariants every plan must keep, whatever produced it: a real migration
/// only after a clean dry run (in the plan or on record), never twice and
/// never when the system shows one done, a final switch only when the plan
/// or the system shows syn2mas ran, and one contiguous stretch of downtime.
/// `record` is what the system root shows (`Record::default()`: nothing).
pub fn check_safety(mode: Mode, steps: &[Step], record: &super::Record) -> Result<(), Refusal> {
    let pos = |id: &str| steps.iter().position(|s| s.id == id);
    let migrate = pos(steps::MIGRATE);
    if let Some(migrate) = migrate {
        let rehearsed = matches!(pos(steps::DRY_RUN), Some(dry) if dry < migrate);
        if !rehearsed && !record.dry_run_clean {
            return Err(Refusal {
                code: "plan.migrate_without_dry_run",
                reason: format!("the plan runs `syn2mas migrate` without a clean `syn2mas migrate --dry-run` before it, and no system root shows one on record (/var/lib/masgen/{DRY_RUN_STAMP})"),
                help: "run the dry run first (it shows the errors a real run would hit and how long it takes)".into(),
            });
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
        if record.shows_syn2mas_ran() {
            let (shown, how) = record
                .system
                .clone()
                .unwrap_or((HostState::Migrated, "record".into()));
            let evidence = if record.migrated {
                format!(
                    "the stamp /var/lib/masgen/{MIGRATED_STAMP} of a successful `syn2mas migrate`"
                )
            } else {
                format!("a Synapse that delegates to MAS (`{shown}`)")
            };
            return Err(Refusal {
                code: "plan.second_syn2mas",
                reason: format!("the plan runs `syn2mas migrate`, but the system shows {evidence} ({how}); a second run meets a non-empty MAS database"),
                help: "start from where the system is (drop --from); to migrate again, roll back first: `masgen plan --rollback` empties MAS's database and removes the stamps".into(),
            });
        }
    }
    if let Some(final_switch) = pos(steps::SWITCH_FINAL) {
        if mode == Mode::Migrate {
            match migrate {
                Some(m) if m > final_switch => {
                    return Err(Refusal {
                        code: "plan.final_before_syn2mas",
                        reason: "the plan switches Synapse to delegation before syn2mas has copied the users".into(),
                        help: "run `syn2mas migrate` from the prepare configuration first".into(),
                    })
                }
                Some(_) => {}
                None if record.shows_syn2mas_ran() => {}
                None => {
                    let seen = match &record.system {
                        None => "no system root was read".to_string(),
                        Some((_, how)) => format!("the system shows no stamp /var/lib/masgen/{MIGRATED_STAMP} ({how})"),
                    };
                    return Err(Refusal {
                        code: "plan.final_before_syn2mas",
                        reason: format!("the plan switches Synapse to delegation, but nothing shows syn2mas ran: the plan has no `syn2mas migrate` step and {seen}"),
                        help: format!("plan from the host itself (`--system /run/current-system`), so its stamp counts; if you ran syn2mas by hand and checked its result, record it with `touch /var/lib/masgen/{MIGRATED_STAMP}` first"),
                    });
                }
            }
        }
    }
    let down: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.synapse == super::Downtime::Down)
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
