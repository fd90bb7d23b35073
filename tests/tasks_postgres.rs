//! masgen's backup and syn2mas oneshot units, run against a real PostgreSQL.
//!
//! For the prepare phase of `examples/migrate-local.toml`, the reference
//! `.service` files (`masgen::emit::render_unit`) are parsed and their
//! ExecStart= argv is run the way systemd would run it: as the unit's User=
//! (runuser), with UMask=0077, a fresh RuntimeDirectory= owned by that user,
//! a credentials directory holding copies of every LoadCredential= source,
//! and `%d` / `%%` / `$$` expanded. The cluster uses peer authentication
//! (like NixOS), with the two databases owned by the roles the services use
//! and the pg_hba/pg_ident lines of modules/syn2mas-access.nix, evaluated
//! from modules/lib.nix with nix-instantiate.
//!
//! What could not run here, and what stands in for it:
//! - MAS itself (`mas-cli`) is not available: a stand-in (`FAKE_MAS_CLI`)
//!   checks the argv it gets, reads the rendered MAS config and the Synapse
//!   config files with the unit's permissions, and connects to both
//!   databases with the settings it finds there. It does not migrate
//!   anything: whether syn2mas accepts this data and config is not tested.
//! - systemd does not run the units: the test plays its part (see above);
//!   DynamicUser= is played by a static system user of the same name, and the
//!   unit's ordering (After=/Requires=/Conflicts=) is not exercised.
//! - The Nix store paths (`/run/current-system/sw/...` in the renders) are
//!   replaced by modules/scripts/*.sh (wrapped like writeShellApplication)
//!   and by the phase's settings written as YAML; the PostgreSQL socket of
//!   the configs (`/run/postgresql`) is pointed at the test cluster, and the
//!   secret files (`/run/secrets/...`) are dummies in a temp dir.
//!
//! Needs root (runuser, system users); a missing tool SKIPs locally and
//! fails in CI.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use masgen::lower::tasks::{BACKUP, MAS_USER, SYN2MAS_DRY_RUN};
use masgen::lower::{HostPhase, Phase, PASSWORD_CONFIG_PATH};
use masgen::model::Homeserver;
use serde_json::{json, Value};
use support::task_units::*;
use support::*;

const SPEC: &str = "migrate-local.toml";

/// The socket directory the lowered Synapse/MAS database settings use.
const NIXOS_PG_SOCKET: &str = "/run/postgresql";

/// Synapse's `users` rows in the test database.
const SYNAPSE_USERS: [&str; 3] = [
    "@alice:example.com",
    "@bob:example.com",
    "@bot.reminders:example.com",
];

/// Dummy contents of the host's secret files (the pepper without a trailing
/// newline: MAS reads it verbatim, see modules/synapse-secrets.nix).
const SECRETS: [(&str, &str); 5] = [
    (
        "/run/secrets/mas-encryption",
        "0000111122223333444455556666777788889999aaaabbbbccccddddeeeeffff",
    ),
    (
        "/run/secrets/mas-rsa.pem",
        "-----BEGIN RSA PRIVATE KEY-----\ndummy\n-----END RSA PRIVATE KEY-----\n",
    ),
    ("/run/secrets/mas-synapse-secret", "dummy-shared-secret"),
    ("/run/secrets/synapse-pepper", "dummy-pepper"),
    ("/run/secrets/synapse-registration", "dummy-registration"),
];

// ------------------------------------------------------------- the spec

/// The validated spec and its prepare phase.
fn prepare_phase() -> (Homeserver, HostPhase) {
    let checked = checked(SPEC, &example_text(SPEC));
    let lowered = masgen::lower::lower(&checked.homeserver);
    let phase = lowered
        .phases
        .into_iter()
        .find(|p| p.phase == Phase::Prepare)
        .expect("a migrate spec has a prepare phase");
    assert!(
        phase.syn2mas_access.is_some(),
        "prepare phase enables syn2masAccess"
    );
    (checked.homeserver, phase)
}

fn rendered_unit(phase: &HostPhase, name: &str) -> Unit {
    let task = phase
        .tasks
        .get(name)
        .unwrap_or_else(|| panic!("no task {name} in {:?}", phase.tasks.keys()));
    let text = masgen::emit::render_unit(name, task, phase);
    Unit::parse(&text)
}

// ----------------------------------------------------------- the "system"

/// Stand-ins for the files a NixOS host of the prepare phase has
/// (tests/support/task_units.rs).
fn new_host(phase: &HostPhase, hs: &Homeserver, pg: &PgCluster) -> HostDir {
    let mut host = HostDir::new("masgen-tasks-");
    let root = host.dir.path().to_path_buf();
    let paths = &mut host.paths;

    // The host's secret files: root-only, as on the host.
    let secrets = root.join("secrets");
    mkdir_owned(&secrets, 0o700, None);
    for (original, content) in SECRETS {
        let local = secrets.join(Path::new(original).file_name().unwrap());
        write_owned(&local, content, 0o400, None);
        paths.insert(original.to_owned(), local);
    }

    // Scripts and tools of the system profile.
    let bin = root.join("bin");
    mkdir_owned(&bin, 0o755, None);
    for (tool, script) in [
        ("masgen-mas-run", "mas-run.sh"),
        ("masgen-backup", "backup.sh"),
    ] {
        let path = bin.join(tool);
        write_owned(&path, &shell_application(script), 0o555, None);
        paths.insert(format!("{STORE_BIN}/{tool}"), path);
    }

    // The store's config files, world-readable.
    let store = root.join("store");
    mkdir_owned(&store, 0o755, None);
    let mas_config = store.join("mas-config.yaml");
    write_owned(&mas_config, &mas_config_yaml(phase, pg), 0o444, None);
    paths.insert(STORE_MAS_CONFIG.to_owned(), mas_config);
    let homeserver = store.join("homeserver.yaml");
    write_owned(&homeserver, &synapse_config_yaml(phase, pg), 0o444, None);
    paths.insert(STORE_SYNAPSE_CONFIG.to_owned(), homeserver);

    // What masgen-synapse-password-config.service writes at boot.
    let run_dir = root.join("run-masgen-synapse");
    mkdir_owned(&run_dir, 0o700, Some("matrix-synapse"));
    let password_config = run_dir.join("password-config.yaml");
    write_owned(
        &password_config,
        &password_config_json(phase),
        0o400,
        Some("matrix-synapse"),
    );
    paths.insert(PASSWORD_CONFIG_PATH.to_owned(), password_config);

    // The backup directory does not exist yet.
    paths.insert(hs.backup_dir.clone(), root.join("var/backup/masgen"));
    host
}

/// The MAS settings as YAML, with the database socket pointed at the test
/// cluster.
fn mas_config_yaml(phase: &HostPhase, pg: &PgCluster) -> String {
    let mut settings = phase.mas.settings.clone();
    let uri = settings["database"]["uri"]
        .as_str()
        .expect("MAS database.uri")
        .to_owned();
    let from = format!("host={NIXOS_PG_SOCKET}");
    assert_eq!(uri.matches(&from).count(), 1, "{uri}");
    settings["database"]["uri"] = json!(uri.replace(
        &from,
        &format!("host={}&port={}", pg.socket_dir().display(), pg.port())
    ));
    serde_norway::to_string(&settings).unwrap()
}

/// The Synapse settings as YAML, with database host/port pointed at the test
/// cluster.
fn synapse_config_yaml(phase: &HostPhase, pg: &PgCluster) -> String {
    let mut settings = phase.synapse.settings.clone();
    let args = &mut settings["database"]["args"];
    // No `host`: libpq's default socket, NixOS's /run/postgresql.
    assert!(args.get("host").is_none(), "{args}");
    args["host"] = json!(pg.socket_dir());
    args["port"] = json!(pg.port());
    serde_norway::to_string(&settings).unwrap()
}

/// The file modules/synapse-secrets.nix writes: jq's pretty JSON of
/// `{password_config: settings + {pepper: <pepper file, one "\n" stripped>}}`.
fn password_config_json(phase: &HostPhase) -> String {
    let pc = phase
        .synapse
        .password_config
        .as_ref()
        .expect("the spec has a pepper");
    let pepper = SECRETS
        .iter()
        .find(|(p, _)| *p == pc.pepper_file)
        .unwrap_or_else(|| panic!("no dummy for {}", pc.pepper_file))
        .1;
    let mut settings = pc.settings.clone();
    settings["pepper"] = json!(pepper.strip_suffix('\n').unwrap_or(pepper));
    let mut out = serde_json::to_string_pretty(&json!({ "password_config": settings })).unwrap();
    out.push('\n');
    out
}

// --------------------------------------------------------------- postgres

/// The cluster as NixOS would have it before the migration: peer auth, the
/// Synapse database (C collation) and MAS's, each owned by the role of the
/// service, and a `users` table created by Synapse's own role.
fn start_cluster(hs: &Homeserver) -> Option<PgCluster> {
    let why = "running masgen's task units against PostgreSQL";
    if !require_root(why) {
        return None;
    }
    require_tool("runuser", why)?;
    let synapse = &hs.synapse.database;
    let mas = &hs.mas.database;
    // Peer auth: OS user = role, as on the host.
    for user in [synapse.user.as_str(), mas.user.as_str()] {
        if !ensure_os_user(user) {
            return None;
        }
    }
    let pg = PgCluster::start()?;
    let su = |sql: &str| {
        pg.superuser_sql(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    su(&format!(
        r#"CREATE ROLE "{0}" LOGIN; CREATE ROLE "{1}" LOGIN;"#,
        synapse.user, mas.user
    ));
    su(&format!(
        r#"CREATE DATABASE "{}" OWNER "{}" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';"#,
        synapse.name, synapse.user
    ));
    su(&format!(
        r#"CREATE DATABASE "{}" OWNER "{}";"#,
        mas.name, mas.user
    ));
    assert_eq!(
        su(&format!(
            "SELECT datcollate || ' ' || datctype FROM pg_database WHERE datname = '{}'",
            synapse.name
        )),
        "C C"
    );
    let rows: Vec<String> = SYNAPSE_USERS
        .iter()
        .enumerate()
        .map(|(i, u)| format!("('{u}', 'hash{i}', {})", 1_700_000_000_000u64 + i as u64))
        .collect();
    pg.psql_as(
        &synapse.user,
        &synapse.name,
        &synapse.user,
        &format!(
            "CREATE TABLE users (name text NOT NULL UNIQUE, password_hash text, creation_ts bigint, \
             admin smallint DEFAULT 0 NOT NULL, deactivated smallint DEFAULT 0 NOT NULL);\n\
             INSERT INTO users (name, password_hash, creation_ts) VALUES {};",
            rows.join(", ")
        ),
    )
    .unwrap_or_else(|e| panic!("create Synapse's users table: {e}"));
    Some(pg)
}

/// pg_hba/pg_ident lines of modules/syn2mas-access.nix, from lib.nix's
/// `syn2masAccessLines` with the values the generated configuration passes
/// (synapseDatabase/synapseRole from the spec; masUser left at the module
/// default, `matrix-authentication-service` = MAS_USER).
fn syn2mas_access_lines(nix: &NixTool, hs: &Homeserver) -> (String, String) {
    let out = run_ok(
        nix.command()
            .args(["--eval", "--strict", "--json"])
            .arg("--argstr")
            .arg("lib")
            .arg(repo_root().join("modules/lib.nix"))
            .args(["--argstr", "db", &hs.synapse.database.name])
            .args(["--argstr", "role", &hs.synapse.database.user])
            .args(["--argstr", "masUser", MAS_USER])
            .arg("-E")
            .arg(
                r#"{ lib, db, role, masUser }:
                let l = import (/. + lib); in
                l.syn2masAccessLines { synapseDatabase = db; synapseRole = role; inherit masUser; }
                // { plain = builtins.all l.isPlainPgName [ db role masUser ]; }"#,
            ),
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON from nix-instantiate");
    // The module asserts this; the lines below are only valid if it holds.
    assert_eq!(v["plain"], true, "{v}");
    (
        v["authentication"].as_str().unwrap().to_owned(),
        v["identMap"].as_str().unwrap().to_owned(),
    )
}

/// The only default rule of this host (nixpkgs adds it with lib.mkAfter).
const DEFAULT_HBA: &str = "local all all peer\n";

// ------------------------------------------------------------------ tests

#[test]
fn syn2mas_dry_run_unit_reads_synapse_db_through_the_ident_map() {
    let (hs, phase) = prepare_phase();
    let unit = rendered_unit(&phase, SYN2MAS_DRY_RUN);
    assert_eq!(unit.user.as_deref(), Some(MAS_USER), "{}", unit.text);
    assert!(unit.dynamic_user, "{}", unit.text);

    let Some(nix) = nix_instantiate() else { return };
    let why = "running masgen-mas-run";
    if require_tool("envsubst", why).is_none() {
        return;
    }
    let Some(pg) = start_cluster(&hs) else { return };
    let Some(python) = python_with_yaml(MAS_USER) else {
        return;
    };
    let (access_hba, access_ident) = syn2mas_access_lines(&nix, &hs);
    // The lines the module produces for this spec (cf. tests/modules.rs).
    assert_eq!(
        access_hba,
        "local matrix-synapse matrix-synapse peer map=masgen-syn2mas\n"
    );

    let mut host = new_host(&phase, &hs, &pg);
    host.install_fake_mas_cli(&python, &pg.bin_dir().join("psql"));

    // Every credential the unit loads, and nothing else.
    assert_eq!(
        unit.credentials,
        BTreeMap::from(
            [
                ("encryption", "/run/secrets/mas-encryption"),
                ("signing-key-0", "/run/secrets/mas-rsa.pem"),
                ("matrix-secret", "/run/secrets/mas-synapse-secret"),
                ("synapse-pepper", "/run/secrets/synapse-pepper"),
                ("masgen-synapse-config-0", PASSWORD_CONFIG_PATH),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        ),
        "{}",
        unit.text
    );

    let secret_len = |original: &str| {
        SECRETS
            .iter()
            .find(|(p, _)| *p == original)
            .unwrap()
            .1
            .len()
    };
    let expected_stdout = |runtime: &Path, creds: &Path, tail: &[String]| -> Vec<String> {
        let argv = json!([
            "syn2mas",
            "--config",
            runtime.join("config.yaml"),
            "--synapse-config",
            host.path(STORE_SYNAPSE_CONFIG),
            "--synapse-config",
            creds.join("masgen-synapse-config-0"),
            "migrate",
            "--dry-run"
        ]);
        let mut lines = vec![format!("ARGV {argv}"), format!("USER {MAS_USER}")];
        for (key, cred, original) in [
            (
                "matrix.secret_file",
                "matrix-secret",
                "/run/secrets/mas-synapse-secret",
            ),
            (
                "passwords.schemes[0].secret_file",
                "synapse-pepper",
                "/run/secrets/synapse-pepper",
            ),
            (
                "secrets.encryption_file",
                "encryption",
                "/run/secrets/mas-encryption",
            ),
            (
                "secrets.keys[0].key_file",
                "signing-key-0",
                "/run/secrets/mas-rsa.pem",
            ),
        ] {
            lines.push(format!("MAS-FILE {key} {cred} {}", secret_len(original)));
        }
        lines.push(format!("MAS-DB {0}@{0}", MAS_USER));
        lines.push("MAS-DB-FROM local".to_owned());
        lines.push("PEPPER match".to_owned());
        lines.extend(tail.iter().cloned());
        lines
    };

    // Control: peer auth alone (no syn2mas-access lines). MAS's own database
    // works, Synapse's is refused.
    pg.set_ident("").unwrap();
    pg.set_hba(DEFAULT_HBA).unwrap();
    let (out, runtime, creds) = host.run_unit(&unit, &format!("{SYN2MAS_DRY_RUN}-without-access"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        text(&out.stdout).lines().collect::<Vec<_>>(),
        expected_stdout(&runtime, &creds, &[]),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(r#"Peer authentication failed for user "matrix-synapse""#),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot connect to the Synapse database"),
        "{stderr}"
    );

    // With the module's lines (mkBefore: ahead of the default rule).
    pg.set_ident(&access_ident).unwrap();
    pg.set_hba(&format!("{access_hba}{DEFAULT_HBA}")).unwrap();
    let (out, runtime, creds) = host.run_unit(&unit, &format!("{SYN2MAS_DRY_RUN}-with-access"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout).lines().collect::<Vec<_>>(),
        expected_stdout(
            &runtime,
            &creds,
            &[
                "SYNAPSE-DB matrix-synapse@matrix-synapse".to_owned(),
                "SYNAPSE-DB-FROM local".to_owned(),
                format!("SYNAPSE-USERS {}", SYNAPSE_USERS.len()),
                "DRY-RUN done".to_owned(),
            ]
        ),
        "stderr:\n{}",
        text(&out.stderr)
    );
    // masgen-mas-run left the rendered config private to the MAS user.
    let rendered = runtime.join("config.yaml");
    assert_eq!(mode_of(&rendered), 0o600);
    assert_eq!(fs::metadata(&rendered).unwrap().uid(), ids(MAS_USER).0);
    let rendered_text = fs::read_to_string(&rendered).unwrap();
    assert!(
        rendered_text.contains(&format!("{}/encryption", creds.display())),
        "{rendered_text}"
    );
    // The originals stayed out of reach: only the copies were read.
    for (original, _) in SECRETS {
        assert!(!rendered_text.contains(original), "{rendered_text}");
    }
}

#[test]
fn backup_unit_dumps_the_synapse_database() {
    let (hs, phase) = prepare_phase();
    let unit = rendered_unit(&phase, BACKUP);
    // Runs as root, with no credentials or runtime directory.
    assert_eq!(unit.user, None, "{}", unit.text);
    assert!(!unit.dynamic_user);
    assert!(unit.credentials.is_empty(), "{}", unit.text);
    assert_eq!(unit.runtime_directory, None);

    let Some(pg) = start_cluster(&hs) else { return };
    // backup.sh runs pg_dump as `postgres` (PG_DUMP_AS unset, as in the unit).
    assert_eq!(pg.superuser(), "postgres");
    let host = new_host(&phase, &hs, &pg);

    let wrapper = host.pg_dump_wrapper(&pg);
    let argv = host.rewrite(&unit.argv(None));
    let backup_dir = host.path(&hs.backup_dir).to_path_buf();
    assert_eq!(
        argv[1..],
        [
            hs.synapse.database.name.clone(),
            backup_dir.to_str().unwrap().to_owned(),
            host.path(PASSWORD_CONFIG_PATH).to_str().unwrap().to_owned(),
        ]
    );
    let out = run_as_unit(&unit, None, &argv, &[("PG_DUMP", &wrapper)]);
    assert!(out.status.success(), "{out:?}\n{}", pg.log());

    let stdout = text(&out.stdout);
    let dump = PathBuf::from(stdout.lines().last().expect("dump path").trim());
    assert_eq!(dump.parent(), Some(backup_dir.as_path()), "{stdout}");
    let name = dump.file_name().unwrap().to_str().unwrap();
    let base = name
        .strip_suffix(".dump")
        .unwrap_or_else(|| panic!("unexpected dump name {name}"));
    assert!(base.starts_with("matrix-synapse-"), "{name}");
    let meta = fs::metadata(&dump).unwrap();
    assert!(meta.len() > 0);
    assert_eq!(meta.uid(), 0, "root-owned");
    assert_eq!(mode_of(&dump), 0o600);
    assert_eq!(mode_of(&backup_dir), 0o700);

    // A custom-format dump of Synapse's database, with its owner.
    let pg_restore = pg.bin_dir().join("pg_restore");
    let list = text(&run_ok(Command::new(&pg_restore).arg("--list").arg(&dump)).stdout);
    for entry in [
        "TABLE public users matrix-synapse",
        "TABLE DATA public users matrix-synapse",
    ] {
        assert!(list.contains(entry), "{entry} not in:\n{list}");
    }
    assert!(list.contains("dbname: matrix-synapse"), "{list}");
    // ... holding exactly the rows of `users`.
    let data = text(
        &run_ok(
            Command::new(&pg_restore)
                .args(["--data-only", "--table=users", "-f", "-"])
                .arg(&dump),
        )
        .stdout,
    );
    let copy = data
        .split_once("COPY public.users ")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .and_then(|(_, rest)| rest.split_once("\n\\.\n"))
        .unwrap_or_else(|| panic!("no COPY block in:\n{data}"))
        .0;
    let names: Vec<&str> = copy
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(names, SYNAPSE_USERS);

    // The Synapse config file the unit names is copied beside the dump.
    let config_dir = backup_dir.join(format!("{base}-config"));
    assert_eq!(mode_of(&config_dir), 0o700);
    let copied: Vec<String> = fs::read_dir(&config_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(copied, ["01-password-config.yaml"]);
    let copy = config_dir.join("01-password-config.yaml");
    assert_eq!(mode_of(&copy), 0o600);
    assert_eq!(
        fs::read_to_string(&copy).unwrap(),
        password_config_json(&phase)
    );
}
