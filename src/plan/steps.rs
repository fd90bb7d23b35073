//! The step sequences: fresh install, two-phase migration, rollback.

use super::hosts;
use super::layout::Layout;
use super::{
    Check, Downtime, Exit, Gate, HostState, Options, Refusal, Step, StepKind, Undo,
    ACK_PASSWORD_PROVIDERS, ACK_ROLLBACK,
};
use crate::lower::tasks as unit;
use crate::lower::Phase;
use crate::model::{Homeserver, Mode};

pub const SWITCH_PREPARE: &str = "switch-prepare";
pub const CHECK: &str = "syn2mas-check";
pub const DRY_RUN: &str = "syn2mas-dry-run";
pub const BACKUP: &str = "backup";
pub const BUILD_FINAL: &str = "build-final";
pub const STOP: &str = "stop-services";
pub const MIGRATE: &str = "syn2mas-migrate";
pub const SWITCH_FINAL: &str = "switch-final";
pub const DOCTOR: &str = "mas-doctor";

pub(super) fn start(unit: &str) -> String {
    format!("systemctl start {unit}.service")
}

pub(super) fn journal(unit: &str) -> String {
    format!("journalctl -u {unit}.service -o cat --since today")
}

/// The properties that show how a oneshot unit's last run ended.
fn show(unit: &str) -> String {
    format!("systemctl show -p Result -p ExecMainStatus -p ExecMainExitTimestampMonotonic {unit}.service")
}

/// The unit's last run succeeded. A unit that never ran (or was unloaded
/// since) also says `Result=success`, so its exit time must be set.
pub(super) fn ran_ok(unit: &str) -> Check {
    Check {
        command: show(unit),
        exit: Exit::Zero,
        stdout_has: vec!["Result=success".into(), "ExecMainStatus=0".into()],
        stdout_lacks: vec!["ExecMainExitTimestampMonotonic=0".into()],
    }
}

/// A command that must exit 0.
pub(super) fn zero(command: impl Into<String>) -> Check {
    Check {
        command: command.into(),
        exit: Exit::Zero,
        stdout_has: vec![],
        stdout_lacks: vec![],
    }
}

/// Both services running.
pub(super) fn both_active() -> Check {
    zero(format!(
        "systemctl is-active {} {}",
        unit::SYNAPSE_UNIT,
        unit::MAS_UNIT
    ))
}

/// Both services stopped.
pub(super) fn both_inactive() -> Check {
    inactive(&format!("{} {}", unit::SYNAPSE_UNIT, unit::MAS_UNIT))
}

/// The `units` (space-separated) stopped: `systemctl is-active` prints one
/// state per unit (and exits non-zero unless all are active).
pub(super) fn inactive(units: &str) -> Check {
    Check {
        command: format!("systemctl is-active {units}"),
        exit: Exit::Any,
        stdout_has: vec![],
        stdout_lacks: vec![
            "active".into(),
            "activating".into(),
            "deactivating".into(),
            "reloading".into(),
        ],
    }
}

/// The gate of a syn2mas unit: its run exited 0; exit 11 is warnings only.
fn syn2mas_gate(condition: &str, unit: &str) -> Gate {
    let mut g = gate(condition, vec![ran_ok(unit)]);
    g.warnings_only = Some(Check {
        command: show(unit),
        exit: Exit::Zero,
        stdout_has: vec!["ExecMainStatus=11".into()],
        stdout_lacks: vec!["ExecMainExitTimestampMonotonic=0".into()],
    });
    g
}

/// Gate text for syn2mas exit codes (crates/cli/src/commands/syn2mas.rs).
const SYN2MAS_EXIT: &str = "exit code 0 = clean; 11 = warnings only: read every warning in the journal and go on only if you accept each; 10 = errors: stop and fix them";

/// Stops Synapse and MAS: where a migration's or a rollback's downtime
/// starts. `id` names the step; `reaches` is the state the host is in once
/// both are stopped.
pub(super) fn stop_both(host: &str, id: &str, reaches: HostState) -> Step {
    let both = format!("{} {}", unit::SYNAPSE_UNIT, unit::MAS_UNIT);
    step(
        host,
        id,
        "Stop Synapse and MAS (downtime starts)",
        StepKind::Manual,
        vec![format!("systemctl stop {both}")],
        gate("both units are inactive", vec![both_inactive()]),
        Downtime::Down,
        undo(true, format!("systemctl start {both}")),
        reaches,
    )
}

/// One step; every field a reader needs is an argument, in the order the
/// plan prints them.
#[allow(clippy::too_many_arguments)]
pub(super) fn step(
    host: &str,
    id: &str,
    title: &str,
    kind: StepKind,
    commands: Vec<String>,
    gate: Gate,
    synapse: Downtime,
    undo: Undo,
    reaches: HostState,
) -> Step {
    Step {
        id: id.into(),
        host: host.into(),
        title: title.into(),
        kind,
        commands,
        gate,
        synapse,
        undo,
        warnings: Vec::new(),
        reaches,
    }
}

pub(super) fn gate(condition: &str, check: Vec<Check>) -> Gate {
    Gate {
        condition: condition.into(),
        check,
        warnings_only: None,
    }
}

pub(super) fn undo(possible: bool, how: impl Into<String>) -> Undo {
    Undo {
        possible,
        how: how.into(),
    }
}

/// Spec-level warnings every plan repeats.
pub(super) fn spec_warnings(hs: &Homeserver) -> Vec<String> {
    let mut w = Vec::new();
    let s = &hs.synapse;
    if s.password_auth_in_use() {
        w.push("Synapse password providers (shared-secret-auth, rest-auth, LDAP) stop working once Synapse delegates to MAS; bridges should use appservice double puppeting, LDAP users need an upstream OIDC provider (e.g. Dex)".into());
    }
    if s.app_services.iter().any(|a| a.encrypted) {
        w.push("encrypted appservices need MSC4190 support in the bridge (Synapse ≥ 1.141 needs no opt-in); check each bridge before the final switch".into());
    }
    for a in &s.app_services {
        if matches!(a.kind.as_deref(), Some("reminder-bot") | Some("postmoogle")) {
            w.push(format!(
                "`{}` is known to misbehave with MAS (lost state, rescheduled reminders)",
                a.name
            ));
        }
    }
    if hs.mas.email.is_none() {
        w.push("no email is configured: MAS cannot verify addresses or recover passwords; users migrated with unverified emails keep them unverified".into());
    }
    if hs.mode == Mode::Migrate && !s.legacy_sso.is_empty() {
        w.push(format!(
            "users of {} cannot be carried over by syn2mas",
            s.legacy_sso.join(", ")
        ));
    }
    w
}

pub(super) fn forward(
    hs: &Homeserver,
    host: &str,
    from: HostState,
    opts: &Options,
) -> Result<(HostState, Vec<Step>), Refusal> {
    refuse(hs, from, opts)?;
    let l = Layout::of(hs);
    let mut steps = Vec::new();
    if hs.mode == Mode::Migrate && from < HostState::Migrated {
        steps.extend(migration(hs, &l, host, from, opts));
    }
    // From every state the plan ends with the final configuration.
    steps.extend(final_switch(hs, &l, host, from, opts));
    steps.extend(registrations(hs, &l.mas));
    steps.extend(follow_ups(hs, host));
    if l.split() {
        // PostgreSQL's own host last: its final configuration only drops
        // syn2mas's login.
        let db_only = l.order.iter().filter(|h| l.units(h) == ["postgresql"]);
        steps.extend(db_only.map(|h| hosts::final_switch(&l, h, opts, Downtime::None)));
    }
    Ok((HostState::Delegated, steps))
}

/// Transitions no plan makes: a fresh install over a running Synapse, a
/// migration without one, password providers nobody acknowledged.
fn refuse(hs: &Homeserver, from: HostState, opts: &Options) -> Result<(), Refusal> {
    match (hs.mode, from) {
        (Mode::Fresh, HostState::SynapseOnly | HostState::MasPrepared | HostState::Migrated) => {
            return Err(Refusal {
                code: "plan.fresh_over_existing",
                reason: format!("the host runs Synapse ({from}), but the spec is a fresh install; switching would cut every existing user off from logging in"),
                help: "use `mode = \"migrate\"` so syn2mas carries the users over".into(),
            })
        }
        (Mode::Migrate, HostState::Fresh) => {
            return Err(Refusal {
                code: "plan.migrate_without_synapse",
                reason: "the spec migrates an existing Synapse, but the host has none".into(),
                help: "use `mode = \"fresh\"` for a new homeserver, or check --from / --system".into(),
            })
        }
        _ => {}
    }
    if hs.mode == Mode::Migrate
        && from < HostState::Migrated
        && hs.synapse.password_auth_in_use()
        && !opts.acknowledged.contains(ACK_PASSWORD_PROVIDERS)
    {
        return Err(Refusal {
            code: "plan.password_providers",
            reason: "the spec still uses Synapse password providers (password_providers / ldap / auth modules); after the migration nobody can log in through them".into(),
            help: format!("move those users to MAS (upstream OIDC, e.g. Dex in front of LDAP) and remove the providers, or pass --acknowledge {ACK_PASSWORD_PROVIDERS}"),
        });
    }
    Ok(())
}

/// Phase 1 and the migration itself: MAS installed idle, syn2mas checked
/// and rehearsed, a backup, the final configuration built, then Synapse
/// and MAS stopped for `syn2mas migrate`.
fn migration(
    hs: &Homeserver,
    l: &Layout,
    host: &str,
    from: HostState,
    opts: &Options,
) -> Vec<Step> {
    let mut steps = Vec::new();
    if from < HostState::MasPrepared && l.split() {
        steps.extend(hosts::prepare_switches(l, opts));
    } else if from < HostState::MasPrepared {
        steps.push(step(host, SWITCH_PREPARE, "Install MAS idle beside Synapse (migration phase 1)", StepKind::Rebuild,
            vec![opts.switch_command(host, Phase::Prepare)],
            gate("MAS and Synapse are active; MAS's config check passes; Synapse still logs users in itself", vec![
                both_active(),
                zero(start(unit::MAS_CONFIG_CHECK)),
                ran_ok(unit::MAS_CONFIG_CHECK),
            ]),
            Downtime::Restart,
            undo(true, "nixos-rebuild switch --rollback (MAS's database stays empty; nothing to clean up)"),
            HostState::MasPrepared));
    }
    let mut check = step(
        &l.mas,
        CHECK,
        "Check the homeserver for syn2mas",
        StepKind::Check,
        vec![start(unit::SYN2MAS_CHECK), journal(unit::SYN2MAS_CHECK)],
        syn2mas_gate(SYN2MAS_EXIT, unit::SYN2MAS_CHECK),
        Downtime::None,
        undo(true, "nothing to undo: the check only reads"),
        HostState::MasPrepared,
    );
    if hs.synapse.pepper_file.is_some() {
        check.warnings.push(format!(
            "MAS reads the pepper file byte for byte while Synapse's side strips a trailing newline: write {} without one (`printf '%s' PEPPER > FILE`), or the check reports a pepper mismatch",
            hs.synapse.pepper_file.as_deref().unwrap_or_default()
        ));
    }
    check.warnings.push("a leftover `oauth-delegated` external id from an earlier MAS attempt is an error; the message gives the DELETE statement to run".into());
    steps.push(check);
    steps.push(step(&l.mas, DRY_RUN, "Rehearse the migration (syn2mas migrate --dry-run)", StepKind::RunUnit,
        vec![start(unit::SYN2MAS_DRY_RUN), journal(unit::SYN2MAS_DRY_RUN)],
        syn2mas_gate(&format!("{SYN2MAS_EXIT}. The dry run writes to MAS and then empties it, so its duration (`systemctl show -p ExecMainStartTimestamp -p ExecMainExitTimestamp {}.service`) is how long the real migration keeps Synapse down", unit::SYN2MAS_DRY_RUN), unit::SYN2MAS_DRY_RUN),
        Downtime::None, undo(true, "nothing to undo: MAS's database is emptied again"), HostState::MasPrepared));
    steps.push(step(
        &l.synapse_db,
        BACKUP,
        "Back up the Synapse database and config files",
        StepKind::RunUnit,
        vec![start(unit::BACKUP), journal(unit::BACKUP)],
        gate(
            &format!(
                "the unit succeeded and its last journal line names a non-empty dump under {}",
                hs.backup_dir
            ),
            vec![
                ran_ok(unit::BACKUP),
                zero(format!(
                    "test -n \"$(find {} -maxdepth 1 -name '*.dump' -size +0c)\"",
                    hs.backup_dir
                )),
            ],
        ),
        Downtime::None,
        undo(
            true,
            format!("delete the dump from {} if unwanted", hs.backup_dir),
        ),
        HostState::MasPrepared,
    ));
    if l.split() {
        steps.extend(hosts::final_builds(l, opts));
        steps.extend(hosts::stops(l, [STOP, "stop-mas"], HostState::MasPrepared));
    } else {
        steps.push(step(
            host,
            BUILD_FINAL,
            "Build the final configuration without activating it",
            StepKind::Rebuild,
            vec![opts.build_command(host, Phase::Final)],
            build_gate(opts, host),
            Downtime::None,
            undo(true, "nothing to undo: nothing was activated"),
            HostState::MasPrepared,
        ));
        steps.push(stop_both(host, STOP, HostState::MasPrepared));
    }
    let mut migrate = step(&l.mas, MIGRATE, "Copy users, passwords, links and sessions into MAS (syn2mas migrate)", StepKind::RunUnit,
        vec![start(unit::SYN2MAS_MIGRATE), journal(unit::SYN2MAS_MIGRATE)],
        syn2mas_gate(SYN2MAS_EXIT, unit::SYN2MAS_MIGRATE),
        Downtime::Down,
        undo(true, format!("clean: syn2mas never writes to Synapse's database. Drop and recreate MAS's database (`sudo -u postgres dropdb {db}; sudo -u postgres createdb -O {user} {db}`), then `systemctl start {synapse}`", db = hs.mas.database.name, user = hs.mas.database.user, synapse = unit::SYNAPSE_UNIT)),
        HostState::Migrated);
    migrate.warnings.push("it reads the phase-1 Synapse config files (pepper, OIDC providers); do not switch to the final configuration first".into());
    migrate.warnings.push("until the final switch, do not reboot and do not run another `nixos-rebuild switch`: either starts Synapse again on its own logins (and starting Synapse stops a running migration, whose unit conflicts with it)".into());
    steps.push(migrate);
    steps
}

/// The switch to the final configuration (the end of the downtime when
/// migrating) and mas-cli doctor.
fn final_switch(
    hs: &Homeserver,
    l: &Layout,
    host: &str,
    from: HostState,
    opts: &Options,
) -> Vec<Step> {
    let host = if l.split() { l.synapse.as_str() } else { host };
    let mut steps = Vec::new();
    let migrating = hs.mode == Mode::Migrate && from < HostState::Delegated;
    let during = if migrating {
        Downtime::Down
    } else {
        Downtime::Restart
    };
    // Split: MAS's host before Synapse's, nginx's own host after it.
    if l.split() && l.mas != l.synapse {
        steps.push(hosts::final_switch(l, &l.mas, opts, during));
    }
    let mut switch = step(host, SWITCH_FINAL,
        if migrating { "Switch Synapse to MAS delegation (downtime ends)" } else { "Switch to the configuration" },
        StepKind::Rebuild,
        vec![opts.switch_command(host, Phase::Final)],
        gate(&format!("{} active; Synapse delegates to MAS (it serves /_matrix/client/v1/auth_metadata only then); /_matrix/client/v3/login is answered through the proxy", if l.split() { "Synapse is" } else { "Synapse and MAS are" }), vec![
            if l.split() { hosts::synapse_active(l) } else { both_active() },
            Check {
                command: format!("curl -s -o /dev/null -w '%{{http_code}}\\n' {}_matrix/client/v1/auth_metadata", hs.synapse.public_baseurl()),
                exit: Exit::Zero,
                stdout_has: vec!["200".into()],
                stdout_lacks: vec![],
            },
            zero(format!("curl -fsS {}_matrix/client/v3/login", hs.synapse.public_baseurl())),
        ]),
        if migrating { Downtime::Down } else { Downtime::Restart },
        if migrating {
            undo(false, format!("only with `masgen plan --rollback --acknowledge {ACK_ROLLBACK}`: sessions created through MAS break when Synapse takes logins back"))
        } else {
            undo(true, "nixos-rebuild switch --rollback")
        },
        HostState::Delegated);
    if migrating {
        switch.warnings.push("from here on users log in through MAS; going back breaks every session created after this step".into());
    }
    steps.push(switch);
    let proxy_only = l.order.iter().filter(|h| l.units(h) == ["nginx"]);
    steps.extend(proxy_only.map(|h| hosts::final_switch(l, h, opts, during)));
    steps.push(step(&l.mas, DOCTOR, "Verify the installation with mas-cli doctor", StepKind::Check,
        vec![start(unit::MAS_DOCTOR), journal(unit::MAS_DOCTOR)],
        gate("doctor reports no error (it checks that the legacy login API is served by MAS through the public URL)", vec![ran_ok(unit::MAS_DOCTOR)]),
        Downtime::None, undo(true, "nothing to undo: doctor only reads"), HostState::Delegated));
    steps
}

/// One step per user the spec registers in MAS.
fn registrations(hs: &Homeserver, host: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for user in &hs.users {
        let task = unit::register_user_task(&user.localpart);
        let who = if user.bot { "bot" } else { "user" };
        steps.push(step(
            host,
            &format!("register-{}", user.localpart),
            &format!(
                "Register the {who} @{}:{} in MAS",
                user.localpart, hs.server_name
            ),
            StepKind::RunUnit,
            vec![start(&task), journal(&task)],
            gate(
                "the unit succeeded (an existing user is not an error)",
                vec![ran_ok(&task)],
            ),
            Downtime::None,
            undo(
                true,
                format!(
                    "mas-cli manage lock-user {} (or deactivate it)",
                    user.localpart
                ),
            ),
            HostState::Delegated,
        ));
    }
    steps
}

/// What admins must know afterwards (admin rights, email), if anything.
fn follow_ups(hs: &Homeserver, host: &str) -> Option<Step> {
    let mut notes = Vec::new();
    if hs.mode == Mode::Migrate {
        notes.push("Synapse admins were migrated with `can_request_admin`; new password (compat) logins never get admin rights: use an OAuth session asking for `urn:synapse:admin:*` (e.g. Element Admin), or `mas-cli manage issue-compatibility-token --yes-i-want-to-grant-synapse-admin-privileges <user>`".to_string());
    }
    if hs.mas.email.is_none() {
        notes.push("email is off: users cannot recover passwords; verify addresses by hand with `mas-cli manage add-email` if needed".into());
    }
    if notes.is_empty() {
        return None;
    }
    let mut s = step(
        host,
        "follow-ups",
        "Follow-ups for admins and email",
        StepKind::Manual,
        vec![],
        gate("read and done", vec![]),
        Downtime::None,
        undo(true, "nothing to undo"),
        HostState::Delegated,
    );
    s.warnings = notes;
    Some(s)
}

/// What shows that the final configuration built: nixos-rebuild leaves
/// `./result`; Colmena keeps no link, and building again is a no-op that
/// succeeds only when the first build did.
pub(super) fn build_gate(opts: &Options, host: &str) -> Gate {
    let check = zero(opts.built_check(host, Phase::Final));
    gate(
        "the build succeeds, so the later switch only activates",
        vec![check],
    )
}
