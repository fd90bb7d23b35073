//! masgen's oneshot units: the migration and follow-up tasks the plan runs
//! with `systemctl start`. The module `modules/tasks.nix` turns each into a
//! `systemd.services.<name>`; tokens like `@mas-cli@` become store paths there.
//!
//! A task states only its own needs. What its placeholders imply (MAS's
//! credentials for `@mas-config@`, the password-config unit for
//! `@synapse-config-args@`, a runtime directory for `@masgen-mas-run@`) is
//! added by the module; the reference renders and `masgen diff` follow the
//! module through [`implied`], the one place Rust states those rules.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Phase, SynapseOut};
use crate::model::{Homeserver, Mode, User};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    pub description: String,
    pub after: Vec<String>,
    pub requires: Vec<String>,
    pub conflicts: Vec<String>,
    pub user: Option<String>,
    pub dynamic_user: bool,
    pub credentials: BTreeMap<String, String>,
    /// Environment= of the unit.
    pub environment: BTreeMap<String, String>,
    pub command: Vec<String>,
    pub runtime_directory: Option<String>,
    /// Created under /var/lib/masgen on success (state detection for `plan`).
    pub success_stamp: Option<String>,
    /// Removes the stamp when a run starts, so it records the last run's
    /// outcome, not an earlier one's.
    pub clear_stamp_at_start: bool,
}

pub const SYNAPSE_UNIT: &str = "matrix-synapse.service";
pub const MAS_UNIT: &str = "matrix-authentication-service.service";
/// Makes MAS's keys with `generate = true` when missing (modules/mas-keys.nix).
pub const MAS_KEYS_UNIT: &str = "masgen-mas-keys.service";
pub const MAS_USER: &str = "matrix-authentication-service";
pub const PASSWORD_CONFIG_UNIT: &str = "masgen-synapse-password-config.service";
/// Writes Synapse's database section with its password (split hosts;
/// modules/synapse-database.nix) to [`SYNAPSE_DATABASE_PATH`].
pub const SYNAPSE_DATABASE_UNIT: &str = "masgen-synapse-database.service";
pub const SYNAPSE_DATABASE_PATH: &str = "/run/masgen-synapse-database/database.yaml";
/// Writes MAS's database uri with its password (split hosts;
/// modules/mas-database.nix) to [`MAS_DATABASE_PATH`].
pub const MAS_DATABASE_UNIT: &str = "masgen-mas-database.service";
pub const MAS_DATABASE_PATH: &str = "/run/masgen-mas-database/database.yaml";
/// Sets the passwords of the roles other hosts use, on the PostgreSQL host
/// (modules/postgres-access.nix).
pub const POSTGRES_PASSWORDS_UNIT: &str = "masgen-postgres-passwords.service";
/// Left in /var/lib/masgen when `syn2mas migrate` succeeds (`plan --system` reads it).
pub const MIGRATED_STAMP: &str = "syn2mas-migrate.done";
/// Left when `syn2mas migrate --dry-run` exits 0 (clean; 11 and 10 fail the
/// unit, so they leave none): the dry run on record for `plan --system`.
pub const DRY_RUN_STAMP: &str = "syn2mas-dry-run.done";

pub const BACKUP: &str = "masgen-backup";
pub const MAS_CONFIG_CHECK: &str = "masgen-mas-config-check";
/// The placeholder modules/tasks.nix expands to `--synapse-config` arguments.
pub const SYNAPSE_CONFIG_ARGS: &str = "@synapse-config-args@";
pub const SYN2MAS_CHECK: &str = "masgen-syn2mas-check";
pub const SYN2MAS_DRY_RUN: &str = "masgen-syn2mas-dry-run";
pub const SYN2MAS_MIGRATE: &str = "masgen-syn2mas-migrate";
pub const MAS_DOCTOR: &str = "masgen-mas-doctor";

pub fn register_user_task(localpart: &str) -> String {
    let safe: String = localpart
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("masgen-register-{safe}")
}

/// What modules/tasks.nix adds to a task because of the placeholders its
/// command uses (see the module's header, "Implicit additions").
#[derive(Debug, Clone, PartialEq)]
pub struct Implied {
    /// `LoadCredential=` names and files: MAS's credentials for a task using
    /// `@mas-config@` with the task's own winning a clash, in name order
    /// (as Nix lists an attribute set), without the extra config files
    /// (`@synapse-config-args@` names those where it expands).
    pub credentials: BTreeMap<String, String>,
    /// Added to both `After=` and `Requires=` (each unit named once), in
    /// this order: the password-config unit and the Synapse database unit
    /// for `@synapse-config-args@`, the MAS keys unit and the MAS database
    /// unit for `@mas-config@`, each where the host has it.
    pub after_requires: Vec<String>,
    pub runtime_directory: Option<String>,
}

/// What of the host the implicit additions depend on.
#[derive(Debug, Clone)]
pub struct HostWiring<'a> {
    /// The credentials the MAS service loads.
    pub mas_credentials: &'a BTreeMap<String, String>,
    /// Whether Synapse reads the password-config file masgen writes at boot.
    pub password_config: bool,
    /// Whether the host makes MAS keys (`masgen.masKeys`) before MAS starts.
    pub mas_keys: bool,
    /// Whether the host writes Synapse's database section with a password
    /// (`masgen.synapse.databasePassword`).
    pub synapse_database: bool,
    /// Whether the host writes MAS's database uri with a password
    /// (`masgen.mas.databasePassword`).
    pub mas_database: bool,
}

/// The module's implicit additions for the task `name` (its `command`, own
/// `credentials` and `runtime_directory`) on a host wired as `host`.
pub fn implied(
    name: &str,
    command: &[String],
    own_credentials: &BTreeMap<String, String>,
    runtime_directory: Option<&str>,
    host: &HostWiring<'_>,
) -> Implied {
    let uses = |token: &str| command.iter().any(|w| w == token);
    let mut credentials = BTreeMap::new();
    if uses("@mas-config@") {
        credentials.extend(host.mas_credentials.clone());
    }
    credentials.extend(own_credentials.clone());
    let mut after_requires = Vec::new();
    if uses("@synapse-config-args@") && host.password_config {
        after_requires.push(PASSWORD_CONFIG_UNIT.to_string());
    }
    if uses("@synapse-config-args@") && host.synapse_database {
        after_requires.push(SYNAPSE_DATABASE_UNIT.to_string());
    }
    // MAS's credentials include the keys the host makes: a task may run
    // before MAS has ever started on this host.
    if uses("@mas-config@") && host.mas_keys {
        after_requires.push(MAS_KEYS_UNIT.to_string());
    }
    if uses("@mas-config@") && host.mas_database {
        after_requires.push(MAS_DATABASE_UNIT.to_string());
    }
    Implied {
        credentials,
        after_requires,
        runtime_directory: runtime_directory
            .or(uses("@masgen-mas-run@").then_some(name))
            .map(str::to_string),
    }
}

/// A task that runs `mas-cli` with the MAS config (the module adds MAS's
/// credentials and a runtime directory), as MAS's own dynamic user (peer
/// auth to its database works for it).
fn mas_cli(description: &str, args: &[&str]) -> Task {
    let mut command = vec![
        "@masgen-mas-run@".to_string(),
        "@mas-config@".into(),
        "--".into(),
        "@mas-cli@".into(),
    ];
    command.extend(args.iter().map(|a| a.to_string()));
    Task {
        description: description.into(),
        after: vec!["postgresql.service".into()],
        requires: vec!["postgresql.service".into()],
        conflicts: vec![],
        user: Some(MAS_USER.into()),
        dynamic_user: true,
        credentials: BTreeMap::new(),
        command,
        runtime_directory: None,
        success_stamp: None,
        clear_stamp_at_start: false,
        environment: BTreeMap::new(),
    }
}

/// The tasks of one phase: the config check always; the backup and syn2mas
/// before the switch of a migration; the doctor and user registrations
/// once MAS serves users.
pub(super) fn lower(
    hs: &Homeserver,
    phase: Phase,
    synapse: &SynapseOut,
    host: &str,
) -> BTreeMap<String, Task> {
    let mut tasks = BTreeMap::new();
    // The backup runs where Synapse's database is; the rest uses mas-cli,
    // on MAS's host.
    let db = &hs.synapse.database;
    if hs.mode == Mode::Migrate
        && phase == Phase::Prepare
        && db.on_host(&hs.synapse.host).unwrap_or(&hs.synapse.host) == host
    {
        tasks.insert(BACKUP.to_string(), backup(hs, synapse, host));
    }
    if hs.mas.host != host {
        return tasks;
    }
    tasks.insert(
        MAS_CONFIG_CHECK.to_string(),
        mas_cli(
            "masgen: check the MAS configuration",
            &["config", "check", "@CONFIG@"],
        ),
    );
    if hs.mode == Mode::Migrate && phase == Phase::Prepare {
        tasks.extend(syn2mas_tasks(hs));
    }
    if phase == Phase::Final {
        tasks.insert(
            MAS_DOCTOR.to_string(),
            mas_cli(
                "masgen: mas-cli doctor against the public URL",
                &["doctor", "@CONFIG@"],
            ),
        );
        for user in &hs.users {
            tasks.insert(register_user_task(&user.localpart), register_user(hs, user));
        }
    }
    // A host without PostgreSQL (MAS's host of a split homeserver) has no
    // postgresql.service, and systemd refuses to start a unit that
    // Requires= a unit it cannot find ("Unit postgresql.service not found").
    if !hs.roles(host).postgres {
        for task in tasks.values_mut() {
            task.after.retain(|u| u != "postgresql.service");
            task.requires.retain(|u| u != "postgresql.service");
        }
    }
    tasks
}

/// `masgen-backup`: Synapse's database and config files, before syn2mas.
fn backup(hs: &Homeserver, synapse: &SynapseOut, host: &str) -> Task {
    // Synapse's config files are copied where Synapse runs; the pepper-bearing
    // runtime file is among them. On a database host of its own only the
    // database is dumped (the configuration is the flake's).
    let with_config = hs.synapse.host == host;
    let mut backup_deps = vec!["postgresql.service".to_string()];
    if with_config && synapse.password_config.is_some() {
        backup_deps.push(PASSWORD_CONFIG_UNIT.to_string());
    }
    let mut backup_cmd = vec![
        "@masgen-backup@".to_string(),
        hs.synapse.database.name.clone(),
        hs.backup_dir.clone(),
    ];
    if with_config {
        backup_cmd.extend(synapse.extra_config_files.iter().cloned());
    }
    Task {
        description: "masgen: back up the Synapse database and config files".into(),
        after: backup_deps.clone(),
        requires: backup_deps,
        conflicts: vec![],
        user: None,
        dynamic_user: false,
        credentials: BTreeMap::new(),
        command: backup_cmd,
        runtime_directory: None,
        success_stamp: None,
        clear_stamp_at_start: false,
        environment: BTreeMap::new(),
    }
}

/// `syn2mas check`, `migrate --dry-run` and `migrate`.
///
/// syn2mas reads the phase-1 Synapse config (it still lists the pepper and
/// the OIDC providers), so these tasks exist only in phase 1. (The module
/// orders them after the unit that writes the pepper-bearing
/// password-config file: `@synapse-config-args@`.)
fn syn2mas_tasks(hs: &Homeserver) -> [(String, Task); 3] {
    let syn2mas = |description: &str, sub: &[&str]| {
        let mut args = vec!["syn2mas", "@CONFIG@", SYNAPSE_CONFIG_ARGS];
        args.extend_from_slice(sub);
        let mut task = mas_cli(description, &args);
        // syn2mas reads host, port, user, password and database name from
        // Synapse's `database.args`, not `sslmode`: its connection starts
        // from sqlx's defaults and the PG* variables (MAS
        // crates/syn2mas/src/synapse_reader/config/mod.rs, to_sqlx_postgres).
        // MAS's own URI then states its mode (lower/mas.rs), so this one
        // reaches Synapse's database only.
        if let Some(mode) = &hs.synapse.database.ssl_mode {
            task.environment.insert("PGSSLMODE".into(), mode.clone());
        }
        task
    };
    let check = syn2mas(
        "masgen: syn2mas check (exit 0 clean, 11 warnings, 10 errors)",
        &["check"],
    );
    let mut dry_run = syn2mas(
        "masgen: syn2mas migrate --dry-run (writes to MAS, then empties it)",
        &["migrate", "--dry-run"],
    );
    dry_run.success_stamp = Some(DRY_RUN_STAMP.into());
    // A later dry run with errors must not leave an earlier clean one on record.
    dry_run.clear_stamp_at_start = true;
    let mut migrate = syn2mas(
        "masgen: syn2mas migrate (Synapse and MAS must be stopped)",
        &["migrate"],
    );
    // Starting the real migration stops Synapse and MAS: syn2mas only
    // takes table locks and does not enforce Synapse being offline.
    migrate.conflicts = vec![SYNAPSE_UNIT.into(), MAS_UNIT.into()];
    // Conflicts= alone does not order: wait until both have stopped.
    migrate
        .after
        .extend([SYNAPSE_UNIT.to_string(), MAS_UNIT.to_string()]);
    migrate.success_stamp = Some(MIGRATED_STAMP.into());
    [
        (SYN2MAS_CHECK.into(), check),
        (SYN2MAS_DRY_RUN.into(), dry_run),
        (SYN2MAS_MIGRATE.into(), migrate),
    ]
}

/// `masgen-register-<localpart>`: one of the spec's `[[users]]` in MAS.
fn register_user(hs: &Homeserver, user: &User) -> Task {
    // masgen-register-user wraps `mas-cli manage register-user`: an
    // existing user is not an error, so the task can be re-run.
    let mut command = vec![
        "@masgen-mas-run@".to_string(),
        "@mas-config@".into(),
        "--".into(),
        "@masgen-register-user@".into(),
        "@mas-cli@".into(),
        "@CONFIG@".into(),
        user.localpart.clone(),
    ];
    if user.admin {
        command.push("--admin".into());
    }
    let mut task = mas_cli(
        &format!(
            "masgen: register @{}:{} in MAS",
            user.localpart, hs.server_name
        ),
        &[],
    );
    if let Some(f) = &user.password_file {
        task.credentials.insert("user-password".into(), f.clone());
        command.push("--password-file".into());
        command.push("user-password".into());
    }
    task.command = command;
    task.after.push(MAS_UNIT.into());
    task
}
