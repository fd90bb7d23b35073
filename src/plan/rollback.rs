//! The way back to Synapse's own logins: every rollback ends at
//! `synapse-only`, with MAS gone, its data dumped and its database empty,
//! and the stamps removed, so `plan --system` and a later migration start
//! from a clean host.

use super::safety::rollback_delegated;
use super::steps::{gate, step, stop_both, undo, zero};
use super::{
    Check, Downtime, Exit, HostState, Options, Refusal, Step, StepKind, ACK_ROLLBACK,
    DRY_RUN_STAMP, MIGRATED_STAMP,
};
use crate::lower::tasks::{MAS_UNIT, SYNAPSE_UNIT};
use crate::lower::{configuration_name, Phase};
use crate::model::{Homeserver, Mode};

pub const STOP: &str = "rollback-stop";
pub const SWITCH: &str = "rollback-switch-synapse-only";
pub const EMPTY_MAS: &str = "rollback-empty-mas";

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
    if hs.is_split() {
        return Err(Refusal {
            code: "plan.rollback_split",
            reason: "this masgen plans the way back only for a homeserver on one host".into(),
            help: "on each host, switch back to its generation before MAS (`nixos-rebuild switch --rollback`, Synapse's host last), then empty MAS's database on PostgreSQL's host".into(),
        });
    }
    let mut steps = Vec::new();
    let down = match from {
        // Back at Synapse's own logins by hand, with MAS's data and stamps
        // left behind: they would refuse the next migration.
        HostState::SynapseOnly if opts.record.migrated || opts.record.dry_run_clean => {
            steps.push(empty_mas(hs, host));
            return Ok((from, steps));
        }
        HostState::Fresh | HostState::SynapseOnly => return Ok((from, steps)),
        HostState::MasPrepared => false,
        // syn2mas migrate conflicts with Synapse: it is stopped already.
        HostState::Migrated => true,
        HostState::Delegated => {
            if !opts.acknowledged.contains(ACK_ROLLBACK) {
                return Err(rollback_delegated());
            }
            let mut s = stop_both(host, STOP, HostState::Delegated);
            s.warnings.push("sessions created through MAS stop working; users log in again with their Synapse passwords (changes made in MAS are lost)".into());
            steps.push(s);
            true
        }
    };
    steps.push(switch_back(hs, host, from, down, opts));
    steps.push(empty_mas(hs, host));
    Ok((HostState::SynapseOnly, steps))
}

/// Back to the generation before MAS: Synapse on its own logins again.
fn switch_back(hs: &Homeserver, host: &str, from: HostState, down: bool, opts: &Options) -> Step {
    let prepare = opts.switch_command(&configuration_name(host, Phase::Prepare));
    let url = |path: &str| format!("https://{}{path}", hs.synapse.public_hostname);
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
            vec![
                zero(format!("systemctl is-active {SYNAPSE_UNIT}")),
                // `systemctl cat` fails for a unit that has no file.
                Check {
                    command: format!("systemctl cat {MAS_UNIT}"),
                    exit: Exit::Nonzero,
                    stdout_has: vec![],
                    stdout_lacks: vec![],
                },
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
            ],
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
        s.warnings.push("accounts created through MAS since the switch have no Synapse password: set one with Synapse's admin API (`PUT /_synapse/admin/v2/users/<user id>` with `password`) or let them log in through Synapse's own SSO".into());
    }
    s.warnings.push(format!("if no generation without MAS is left (collected), switch to the configuration the host ran before MAS instead; `{prepare}` also gives Synapse its own logins back, with MAS idle beside it (`mas-prepared`)"));
    s
}

/// MAS's data (accounts, passwords changed there, sessions) is dumped before
/// its database is emptied, so a later syn2mas meets an empty one; the
/// stamps go too, or `plan --system` would still see a migration.
fn empty_mas(hs: &Homeserver, host: &str) -> Step {
    let db = &hs.mas.database.name;
    let dump = format!(
        "sudo -u postgres pg_dump -Fc -f {dir}/{db}-before-rollback-$(date -u +%Y%m%dT%H%M%SZ).dump {db} && sudo -u postgres dropdb {db} && sudo -u postgres createdb -O {user} {db}",
        dir = hs.backup_dir,
        user = hs.mas.database.user
    );
    step(
        host,
        EMPTY_MAS,
        "Dump and empty MAS's database; remove masgen's migration stamps",
        StepKind::Manual,
        vec![
            dump,
            format!("rm -f /var/lib/masgen/{MIGRATED_STAMP} /var/lib/masgen/{DRY_RUN_STAMP}"),
        ],
        gate(
            &format!("a dump of MAS's database is under {}; the database is empty; no syn2mas stamp is left", hs.backup_dir),
            vec![
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
                zero(format!("test ! -e /var/lib/masgen/{MIGRATED_STAMP} && test ! -e /var/lib/masgen/{DRY_RUN_STAMP}")),
            ],
        ),
        Downtime::None,
        undo(false, format!("restore MAS's data from the dump this step wrote (`sudo -u postgres pg_restore -d {db} FILE`)")),
        HostState::SynapseOnly,
    )
}
