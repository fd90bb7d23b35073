//! The rebuild and stop steps of a homeserver split across hosts: one step
//! per host and configuration, each gated on that host's own units.

use super::layout::Layout;
use super::steps::{gate, step, undo, zero};
use super::{Check, Downtime, HostState, Options, Step, StepKind};
use crate::lower::tasks::{self as unit, MAS_UNIT, SYNAPSE_UNIT};
use crate::lower::Phase;

/// modules/postgres-access.nix's oneshot: the roles' passwords set.
const POSTGRES_PASSWORDS: &str = "masgen-postgres-passwords";

/// `host`'s units are active.
fn active(l: &Layout, host: &str) -> Check {
    zero(format!("systemctl is-active {}", l.units(host).join(" ")))
}

/// Phase 1 on every host, PostgreSQL's first (MAS's database and the
/// logins of the other hosts), then MAS's, then Synapse's and nginx's.
pub(super) fn prepare_switches(l: &Layout, opts: &Options) -> Vec<Step> {
    l.order
        .iter()
        .map(|h| {
            let mut checks = vec![active(l, h)];
            let roles = l.roles(h);
            if l.postgres_logins.contains(h) {
                checks.push(super::steps::ran_ok(POSTGRES_PASSWORDS));
            }
            if roles.mas {
                checks.push(zero(super::steps::start(unit::MAS_CONFIG_CHECK)));
                checks.push(super::steps::ran_ok(unit::MAS_CONFIG_CHECK));
            }
            step(
                h,
                &format!("switch-prepare-{h}"),
                &format!("Migration phase 1 on `{h}` ({})", l.describe(h)),
                StepKind::Rebuild,
                vec![opts.switch_command(h, Phase::Prepare)],
                gate(&format!("the units of `{h}` are active{}", if roles.mas { "; MAS's config check passes" } else { "" }), checks),
                if roles.synapse { Downtime::Restart } else { Downtime::None },
                undo(true, "nixos-rebuild switch --rollback on that host (MAS's database stays empty; nothing to clean up)"),
                HostState::MasPrepared,
            )
        })
        .collect()
}

/// Every host's final configuration built, none activated.
pub(super) fn final_builds(l: &Layout, opts: &Options) -> Vec<Step> {
    l.order
        .iter()
        .map(|h| {
            let id = if *h == l.synapse {
                super::steps::BUILD_FINAL.to_string()
            } else {
                format!("{}-{h}", super::steps::BUILD_FINAL)
            };
            step(
                h,
                &id,
                &format!("Build the final configuration of `{h}` without activating it"),
                StepKind::Rebuild,
                vec![opts.build_command(h, Phase::Final)],
                super::steps::build_gate(opts, h),
                Downtime::None,
                undo(true, "nothing to undo: nothing was activated"),
                HostState::MasPrepared,
            )
        })
        .collect()
}

/// Synapse stopped on its host (the downtime starts), then MAS on its own:
/// steps `ids` (Synapse's, MAS's), reaching `reaches`.
pub(super) fn stops(l: &Layout, ids: [&str; 2], reaches: HostState) -> Vec<Step> {
    let stop = |h: &str, id: &str, title: &str, u: &str| {
        step(
            h,
            id,
            title,
            StepKind::Manual,
            vec![format!("systemctl stop {u}")],
            gate(&format!("{u} is inactive"), vec![super::steps::inactive(u)]),
            Downtime::Down,
            undo(true, format!("systemctl start {u}")),
            reaches,
        )
    };
    vec![
        stop(
            &l.synapse,
            ids[0],
            &format!("Stop Synapse on `{}` (downtime starts)", l.synapse),
            SYNAPSE_UNIT,
        ),
        stop(
            &l.mas,
            ids[1],
            &format!("Stop MAS on `{}`", l.mas),
            MAS_UNIT,
        ),
    ]
}

/// A final switch of `h`, other than Synapse's own host.
pub(super) fn final_switch(l: &Layout, h: &str, opts: &Options, downtime: Downtime) -> Step {
    step(
        h,
        &format!("switch-final-{h}"),
        &format!("Final configuration on `{h}` ({})", l.describe(h)),
        StepKind::Rebuild,
        vec![opts.switch_command(h, Phase::Final)],
        gate(
            &format!("the units of `{h}` are active"),
            vec![active(l, h)],
        ),
        downtime,
        undo(
            downtime == Downtime::None,
            "nixos-rebuild switch --rollback on that host",
        ),
        HostState::Delegated,
    )
}

/// A proxy's own host back on its phase-1 configuration (a rollback):
/// nginx sends logins to Synapse again.
pub(super) fn prepare_again(l: &Layout, h: &str, opts: &Options) -> Step {
    step(
        h,
        &format!("rollback-switch-{h}"),
        &format!(
            "Switch `{h}` ({}) back to its phase-1 configuration",
            l.describe(h)
        ),
        StepKind::Rebuild,
        vec![opts.switch_command(h, Phase::Prepare)],
        gate(
            &format!("the units of `{h}` are active"),
            vec![active(l, h)],
        ),
        Downtime::Down,
        undo(true, opts.switch_command(h, Phase::Final)),
        HostState::SynapseOnly,
    )
}

/// Synapse's host's units, for the gate of its final switch.
pub(super) fn synapse_active(l: &Layout) -> Check {
    active(l, &l.synapse)
}
