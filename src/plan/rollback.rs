//! The way back to Synapse's own logins: every rollback ends at
//! `synapse-only`, with MAS gone, its data dumped and its database empty,
//! and the stamps removed, so `plan --system` and a later migration start
//! from a clean host.

use super::hosts;
use super::layout::Layout;
use super::safety::rollback_delegated;
use super::steps::{gate, step, stop_both, undo, zero};
use super::{
    Check, Downtime, Exit, HostState, Options, Refusal, Step, StepKind, ACK_ROLLBACK,
    DRY_RUN_STAMP, MIGRATED_STAMP,
};
use crate::lower::tasks::{MAS_UNIT, SYNAPSE_UNIT};
use crate::lower::Phase;
use crate::model::{Homeserver, Mode};

pub const STOP: &str = "rollback-stop";
pub const SWITCH: &str = "rollback-switch-synapse-only";
pub const EMPTY_MAS: &str = "rollback-empty-mas";
pub const REMOVE_STAMPS: &str = "rollback-remove-stamps";
pub const REMOVE_MAS: &str = "rollback-remove-mas";

/// What accounts made in MAS lack once Synapse logs users in again.
const ACCOUNTS_WITHOUT_PASSWORD: &str = "accounts created through MAS since the switch have no Synapse password: set one with Synapse's admin API (`PUT /_synapse/admin/v2/users/<user id>` with `password`) or let them log in through Synapse's own SSO";

/// The NixOS generation the host ran before MAS: the newest one whose units
/// have no MAS service (the same layout `plan --system` reads).
const FIND_GENERATION: &str = r#"gen=; for n in $(ls /nix/var/nix/profiles | sed -n 's/^system-\([0-9]*\)-link$/\1/p' | sort -nr); do [ -e "/nix/var/nix/profiles/system-$n-link/etc/systemd/system/matrix-authentication-service.service" ] || { gen=$n; break; }; done; echo "last generation without MAS: ${gen:-none left}""#;
const SWITCH_GENERATION: &str = r#"test -n "$gen" && nix-env -p /nix/var/nix/profiles/system --switch-generation "$gen" && /nix/var/nix/profiles/system/bin/switch-to-configuration switch"#;

pub(super) fn rollback(
    hs: &Homeserver,
    host: &str,
    from: HostState,
    opts: &Options,
) -> Result<(HostState, Vec<Step>), Refusal> {
    if hs.mode == Mode::Fresh {
        return Err(Refusal {
            code: "plan.rollback_fresh",
            reason: "a fresh install has no Synapse-only configuration to go back to".into(),
            help: "roll back the NixOS generation with `nixos-rebuild switch --rollback`".into(),
        });
    }
    let l = Layout::of(hs);
    // MAS on a host of its own: each host goes back on its own.
    let split = l.mas != l.synapse;
    let mut steps = Vec::new();
    let down = match from {
        // Back at Synapse's own logins by hand, with MAS's data and stamps
        // left behind: they would refuse the next migration.
        HostState::SynapseOnly if opts.record.migrated || opts.record.dry_run_clean => {
            return Ok((from, empty_mas(hs, &l)));
        }
        HostState::Fresh | HostState::SynapseOnly => return Ok((from, steps)),
        HostState::MasPrepared => false,
        // syn2mas migrate conflicts with Synapse: it is stopped already.
        HostState::Migrated => true,
        HostState::Delegated => {
            if !opts.acknowledged.contains(ACK_ROLLBACK) {
                return Err(rollback_delegated());
            }
            if split {
                let ids = [STOP, "rollback-stop-mas"];
                steps.extend(hosts::stops(&l, ids, HostState::Delegated));
            } else {
                steps.push(stop_both(host, STOP, HostState::Delegated));
            }
            steps[0].warnings.push("sessions created through MAS stop working; users log in again with their Synapse passwords (changes made in MAS are lost)".into());
            true
        }
    };
    if split {
        steps.extend(split_back(hs, &l, from, down, opts));
    } else {
        steps.push(switch_back(hs, host, from, down, opts));
    }
    steps.extend(empty_mas(hs, &l));
    Ok((HostState::SynapseOnly, steps))
}

/// `systemctl cat` fails for a unit that has no file.
fn mas_unit_gone() -> Check {
    Check {
        command: format!("systemctl cat {MAS_UNIT}"),
        exit: Exit::Nonzero,
        stdout_has: vec![],
        stdout_lacks: vec![],
    }
}

/// Through the proxy, Synapse answers logins itself: it serves
/// auth_metadata only when it delegates, so the endpoint answers 404.
fn serves_own_logins(hs: &Homeserver) -> [Check; 2] {
    let url = |path: &str| format!("https://{}{path}", hs.synapse.public_hostname);
    [
        Check {
            command: format!(
                "curl -s -o /dev/null -w '%{{http_code}}\\n' {}",
                url("/_matrix/client/v1/auth_metadata")
            ),
            exit: Exit::Zero,
            stdout_has: vec!["404".into()],
            stdout_lacks: vec![],
        },
        zero(format!("curl -fsS {}", url("/_matrix/client/v3/login"))),
    ]
}

/// Back to the generation before MAS: Synapse on its own logins again.
fn switch_back(hs: &Homeserver, host: &str, from: HostState, down: bool, opts: &Options) -> Step {
    let prepare = opts.switch_command(host, Phase::Prepare);
    let mut s = step(
        host,
        SWITCH,
        if down {
            "Switch back to the generation before MAS: Synapse takes logins back (downtime ends)"
        } else {
            "Remove MAS: switch back to the generation before it"
        },
        StepKind::Rebuild,
        vec![
            FIND_GENERATION.into(),
            SWITCH_GENERATION.into(),
            // A switch starts Synapse through its target; this makes sure.
            format!("systemctl start {SYNAPSE_UNIT}"),
        ],
        gate(
            "Synapse is active and serves logins itself: MAS's unit is gone, Synapse does not delegate (it serves auth_metadata only when it delegates, so the endpoint answers 404) and /_matrix/client/v3/login lists Synapse's own login flows",
            [zero(format!("systemctl is-active {SYNAPSE_UNIT}")), mas_unit_gone()]
                .into_iter()
                .chain(serves_own_logins(hs))
                .collect(),
        ),
        if down { Downtime::Down } else { Downtime::Restart },
        if from == HostState::MasPrepared {
            undo(true, prepare.clone())
        } else {
            undo(false, "migrate again: the full migration plan from synapse-only")
        },
        HostState::SynapseOnly,
    );
    if from == HostState::Delegated {
        s.warnings.push(ACCOUNTS_WITHOUT_PASSWORD.into());
    }
    s.warnings.push(format!("if no generation without MAS is left (collected), switch to the configuration the host ran before MAS instead; `{prepare}` also gives Synapse its own logins back, with MAS idle beside it (`mas-prepared`)"));
    s
}

/// MAS's data (accounts, passwords changed there, sessions) is dumped before
/// its database is emptied (on PostgreSQL's host), so a later syn2mas meets
/// an empty one; the stamps go too (on MAS's host, where its tasks left
/// them), or `plan --system` would still see a migration.
fn empty_mas(hs: &Homeserver, l: &Layout) -> Vec<Step> {
    let db = &hs.mas.database.name;
    let db_host = hs.mas.database.on_host(&l.mas).unwrap_or(&l.mas);
    let dump = format!(
        "sudo -u postgres pg_dump -Fc -f {dir}/{db}-before-rollback-$(date -u +%Y%m%dT%H%M%SZ).dump {db} && sudo -u postgres dropdb {db} && sudo -u postgres createdb -O {user} {db}",
        dir = hs.backup_dir,
        user = hs.mas.database.user
    );
    let remove = format!("rm -f /var/lib/masgen/{MIGRATED_STAMP} /var/lib/masgen/{DRY_RUN_STAMP}");
    let gone = zero(format!(
        "test ! -e /var/lib/masgen/{MIGRATED_STAMP} && test ! -e /var/lib/masgen/{DRY_RUN_STAMP}"
    ));
    let together = db_host == l.mas;
    let mut commands = vec![dump];
    let mut checks = vec![
        zero(format!(
            "test -n \"$(find {} -maxdepth 1 -name '{db}-before-rollback-*.dump' -size +0c)\"",
            hs.backup_dir
        )),
        Check {
            command: format!("sudo -u postgres psql -d {db} -Atc \"select count(*) from pg_tables where schemaname not in ('pg_catalog', 'information_schema')\""),
            exit: Exit::Zero,
            stdout_has: vec!["0".into()],
            stdout_lacks: vec![],
        },
    ];
    if together {
        commands.push(remove.clone());
        checks.push(gone.clone());
    }
    let mut steps = vec![step(
        db_host,
        EMPTY_MAS,
        if together {
            "Dump and empty MAS's database; remove masgen's migration stamps"
        } else {
            "Dump and empty MAS's database"
        },
        StepKind::Manual,
        commands,
        gate(
            &format!(
                "a dump of MAS's database is under {}; the database is empty{}",
                hs.backup_dir,
                if together { "; no syn2mas stamp is left" } else { "" }
            ),
            checks,
        ),
        Downtime::None,
        undo(false, format!("restore MAS's data from the dump this step wrote (`sudo -u postgres pg_restore -d {db} FILE`)")),
        HostState::SynapseOnly,
    )];
    if !together {
        steps.push(step(
            &l.mas,
            REMOVE_STAMPS,
            "Remove masgen's migration stamps from MAS's host",
            StepKind::Manual,
            vec![remove],
            gate("no syn2mas stamp is left", vec![gone]),
            Downtime::None,
            undo(true, "nothing to undo: the stamps only record the earlier migration, whose data the dump keeps"),
            HostState::SynapseOnly,
        ));
    }
    steps
}

/// The hosts of a homeserver whose MAS runs on a host of its own, back
/// before MAS: the proxy's own host and Synapse's on their phase-1
/// configurations, where Synapse logs users in itself (they run phase 1
/// already unless Synapse was stopped for syn2mas or delegates; the
/// downtime ends with Synapse's), then MAS's host on its generation before
/// MAS.
fn split_back(
    hs: &Homeserver,
    l: &Layout,
    from: HostState,
    down: bool,
    opts: &Options,
) -> Vec<Step> {
    let mut steps = Vec::new();
    if down {
        let proxy_only = l.order.iter().filter(|h| l.units(h) == ["nginx"]);
        steps.extend(proxy_only.map(|h| hosts::prepare_again(l, h, opts)));
        steps.push(synapse_back(hs, l, from, opts));
    }
    steps.push(remove_mas(l, opts));
    steps
}

/// Synapse's host on its phase-1 configuration: Synapse serves its own
/// logins again (the downtime ends).
fn synapse_back(hs: &Homeserver, l: &Layout, from: HostState, opts: &Options) -> Step {
    let h = &l.synapse;
    let mut s = step(
        h,
        SWITCH,
        &format!("Switch `{h}` back to its phase-1 configuration: Synapse takes logins back (downtime ends)"),
        StepKind::Rebuild,
        vec![
            opts.switch_command(h, Phase::Prepare),
            // A switch starts Synapse through its target; this makes sure.
            format!("systemctl start {SYNAPSE_UNIT}"),
        ],
        gate(
            "Synapse is active and serves logins itself: it does not delegate (it serves auth_metadata only when it delegates, so the endpoint answers 404) and /_matrix/client/v3/login lists Synapse's own login flows",
            vec![zero(format!("systemctl is-active {SYNAPSE_UNIT}"))]
                .into_iter()
                .chain(serves_own_logins(hs))
                .collect(),
        ),
        Downtime::Down,
        undo(false, "migrate again: the full migration plan from synapse-only"),
        HostState::SynapseOnly,
    );
    if from == HostState::Delegated {
        s.warnings.push(ACCOUNTS_WITHOUT_PASSWORD.into());
    }
    s
}

/// MAS's host on its newest generation without MAS.
fn remove_mas(l: &Layout, opts: &Options) -> Step {
    let h = &l.mas;
    let mut s = step(
        h,
        REMOVE_MAS,
        &format!("Remove MAS from `{h}`: switch back to its generation before MAS"),
        StepKind::Rebuild,
        vec![FIND_GENERATION.into(), SWITCH_GENERATION.into()],
        gate("MAS's unit is gone", vec![mas_unit_gone()]),
        Downtime::None,
        undo(true, opts.switch_command(h, Phase::Prepare)),
        HostState::SynapseOnly,
    );
    s.warnings.push(format!("if no generation without MAS is left on `{h}` (collected), switch it to a configuration without MAS, or stop and disable {MAS_UNIT} there"));
    s
}
