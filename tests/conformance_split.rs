//! Conformance: one homeserver split across three hosts
//! (`examples/fleet/example-net.toml`) runs for real, with loopback
//! addresses standing for the hosts: matrix-net = 127.0.0.2 (Synapse),
//! auth-net = 127.0.0.3 (MAS's tasks), db-net = 127.0.0.4 (PostgreSQL).
//! The spec's addresses are replaced by these (and nothing else), then
//! validated and built with masgen's library.
//!
//! What runs for real:
//! - PostgreSQL 15 with exactly the pg_hba lines of db-net's
//!   `masgen.postgresAccess.clients` (read from the built tree's
//!   hosts/db-net/*/default.nix, turned into lines by the tree's lib.nix),
//!   the existing Synapse database (C collation, owned by `matrix-synapse`)
//!   and MAS's database and role as the module's ensureDatabases/ensureUsers
//!   make them; the passwords set by scripts/postgres-passwords.sh run as
//!   `postgres` with the unit's credentials.
//! - Synapse 1.163 (`MASGEN_SYNAPSE_PYTHON`) from render/matrix-net/*/
//!   homeserver.yaml and the files masgen's modules write at boot, made by
//!   the real scripts (database-file.sh with lib.nix's jq program and the
//!   password file; the password-config file as tests/support/synapse.rs
//!   writes it). Phase 1: it listens on 127.0.0.2, reaches PostgreSQL over
//!   TCP with the password; shared-secret registration, password login,
//!   whoami. Final: it starts on the same database and answers 404
//!   `M_UNRECOGNIZED` on `/_matrix/client/v3/login` (MAS is not needed).
//! - auth-net's syn2mas units (check, dry run, migrate) and db-net's backup
//!   unit, run the way systemd would (tests/support/task_units.rs).
//!
//! What stands in:
//! - The network between the hosts: a TCP relay (Python,
//!   tests/support/hosts.rs) listens on 127.0.0.4:5432, the address and
//!   port the configs name, and forwards to the cluster (127.0.0.4, another
//!   port) FROM the address of the host that is acting (127.0.0.2 for
//!   Synapse, 127.0.0.3 for syn2mas). Without it every local client
//!   connects from 127.0.0.1 and libpq cannot pick a source address; with
//!   it PostgreSQL's pg_hba decisions are made on the real source
//!   addresses. If 127.0.0.4:5432 is taken, the relay uses a free port and
//!   the configs' port is rewritten to it (a NOTE line says so).
//! - `mas-cli`: the stand-in of tests/support/task_units.rs, which reads
//!   the configs the unit hands it (MAS's extra config file with the
//!   password in its uri, Synapse's database file with args.password) and
//!   connects to both databases with them; it migrates nothing.
//! - Secret files are dummies; Synapse's listener port is the rendered one
//!   when free on 127.0.0.2, else a free one.
//!
//! Needs root (runuser, the `postgres` user); a missing tool SKIPs locally
//! and fails in CI.

mod support;

use std::fs;

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use masgen::lower::tasks::{MAS_DATABASE_PATH, MAS_USER, SYNAPSE_DATABASE_PATH};
use masgen::lower::{HostPhase, Lowered, Phase};
use serde_json::{json, Value};
use support::hosts::*;
use support::synapse::*;
use support::task_units::*;
use support::*;

const SPEC: &str = "fleet/example-net.toml";
const MATRIX: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const AUTH: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const DB: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
/// The port the configs name (PostgreSQL's default).
const PG_PORT: u16 = 5432;
const SYNAPSE_ROLE: &str = "matrix-synapse";
const MAS_ROLE: &str = "matrix-authentication-service";

/// The database password files, as the operator writes them (one trailing
/// newline, which is not part of the password).
const PASSWORDS: [(&str, &str); 2] = [
    (
        "/run/secrets/synapse-db-password",
        "syn:@/%'\"\\ $HOME `id` #x\n",
    ),
    ("/run/secrets/mas-db-password", "mas:@/%'\"?&=+ ;!*()\n"),
];

fn password(file: &str) -> &'static str {
    let text = PASSWORDS.iter().find(|(p, _)| *p == file).unwrap().1;
    text.strip_suffix('\n').unwrap()
}

// ------------------------------------------------------------- the build

/// The split spec with the hosts' addresses replaced, built.
struct Build {
    lowered: Lowered,
    out: tempfile::TempDir,
}

impl Build {
    fn new() -> Build {
        let mut text = example_text(SPEC);
        for (host, addr) in [("matrix-net", MATRIX), ("auth-net", AUTH), ("db-net", DB)] {
            let value = toml::Value::String(addr.to_string());
            text = support::check::set(&text, &format!("hosts.{host}.address"), value);
        }
        let checked = checked(SPEC, &text);
        let out = support::nixos::build_output(&checked).unwrap_or_else(|e| panic!("{e}"));
        let lowered = masgen::lower::lower(&checked.homeserver);
        Build { lowered, out }
    }

    fn phase(&self, host: &str, phase: Phase) -> &HostPhase {
        let found = self
            .lowered
            .phases
            .iter()
            .find(|p| p.host == host && p.phase == phase);
        found.unwrap_or_else(|| panic!("no {host} {phase:?}"))
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.out.path().join(rel)
    }

    /// A YAML render as data (its `#` lines are comments).
    fn yaml(&self, rel: &str) -> Value {
        let text = fs::read_to_string(self.path(rel)).unwrap();
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn unit(&self, rel: &str) -> Unit {
        Unit::parse(&fs::read_to_string(self.path(rel)).unwrap())
    }
}

/// db-net's PostgreSQL settings of `phase`, through nix-instantiate: the
/// module's clients, their pg_hba lines and password plan (the tree's
/// lib.nix), ensureDatabases/ensureUsers, and the database-file filters.
fn db_host(nix: &NixTool, build: &Build, phase: &str) -> Value {
    let module = build.path(&format!("hosts/db-net/{phase}/default.nix"));
    let lib = build.path("masgen/modules/lib.nix");
    let expr = format!(
        "let l = import {}; m = (import {} {{}}); c = m.masgen.postgresAccess.clients; in {{ \
         clients = c; lines = l.postgresAccessLines c; plan = l.postgresPasswordPlan c; \
         inherit (m.services.postgresql) ensureDatabases ensureUsers; \
         inherit (l) synapseDatabaseFilter masDatabaseFilter; }}",
        lib.display(),
        module.display()
    );
    nix.eval_json_expr(&expr).unwrap_or_else(|e| panic!("{e}"))
}

/// The configs name 127.0.0.4:5432; when the relay cannot have that port,
/// `port` instead (see the file's doc comment).
fn at_port(v: &Value, port: u16) -> Value {
    let text = v
        .to_string()
        .replace("\"port\":5432", &format!("\"port\":{port}"))
        .replace("127.0.0.4:5432", &format!("127.0.0.4:{port}"));
    serde_json::from_str(&text).unwrap()
}

// ------------------------------------------------------------ PostgreSQL

/// The cluster on db-net before the migration, with db-net-prepare's
/// access applied.
fn start_cluster(prepare: &Value, secrets: &Path) -> Option<PgCluster> {
    let pg = PgCluster::start()?;
    pg.listen_tcp(&DB.to_string()).unwrap();
    let sql = |s: &str| pg.superuser_sql(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    // The operator's existing database (Synapse needs C collation).
    sql(&format!(
        r#"CREATE ROLE "{SYNAPSE_ROLE}" LOGIN; CREATE DATABASE "{SYNAPSE_ROLE}" OWNER "{SYNAPSE_ROLE}" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';"#
    ));
    // What postgresql-setup.service does for ensureDatabases/ensureUsers.
    for db in prepare["ensureDatabases"].as_array().unwrap() {
        sql(&format!(r#"CREATE DATABASE "{}";"#, db.as_str().unwrap()));
    }
    for user in prepare["ensureUsers"].as_array().unwrap() {
        let name = user["name"].as_str().unwrap();
        sql(&format!(r#"CREATE ROLE "{name}" WITH LOGIN;"#));
        if user["ensureDBOwnership"] == true {
            sql(&format!(r#"ALTER DATABASE "{name}" OWNER TO "{name}";"#));
        }
    }
    pg.set_hba(prepare["lines"].as_str().unwrap()).unwrap();
    let sources = PASSWORDS.map(|(original, _)| (original.to_owned(), secret(secrets, original)));
    run_postgres_passwords(&pg, &prepare["plan"], &sources.into());
    Some(pg)
}

/// Who may connect from where: real connections through relays bound to
/// each host's address.
fn check_access(pg: &PgCluster, lines: &str, final_phase: bool) {
    pg.set_hba(lines).unwrap();
    let upstream = (DB, pg.port());
    let from = |source| Relay::start((DB, 0), upstream, source);
    let (matrix, auth) = (from(MATRIX), from(AUTH));
    let stranger = from(Ipv4Addr::new(127, 0, 0, 9));
    let syn = password(PASSWORDS[0].0);
    let mas = password(PASSWORDS[1].0);
    let (no_entry, bad) = ("no pg_hba.conf entry", "password authentication failed");
    // syn2mas is over in the final phase: Synapse's role no longer comes
    // in from auth-net.
    let syn2mas = if final_phase { Err(no_entry) } else { Ok(AUTH) };
    // (from, database, role, password, Ok(address seen) or Err(refusal))
    let cases = [
        (&matrix, SYNAPSE_ROLE, SYNAPSE_ROLE, syn, Ok(MATRIX)),
        (&auth, MAS_ROLE, MAS_ROLE, mas, Ok(AUTH)),
        (&auth, SYNAPSE_ROLE, SYNAPSE_ROLE, syn, syn2mas),
        (&matrix, SYNAPSE_ROLE, SYNAPSE_ROLE, "wrong", Err(bad)),
        (&matrix, MAS_ROLE, MAS_ROLE, mas, Err(no_entry)),
        (&auth, SYNAPSE_ROLE, MAS_ROLE, mas, Err(no_entry)),
        (&auth, MAS_ROLE, SYNAPSE_ROLE, syn, Err(no_entry)),
        (&stranger, SYNAPSE_ROLE, SYNAPSE_ROLE, syn, Err(no_entry)),
    ];
    for (relay, db, role, password, expect) in cases {
        let out = psql_via(relay, DB, db, role, password);
        match expect {
            Ok(addr) => assert_in(&out, &format!("{role}@{addr}")),
            Err(why) => assert_refused(&out, why),
        }
    }
}

// ------------------------------------------------------ the boot files

/// The password files of the hosts (root-only).
fn password_files() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("masgen-split-secrets-")
        .tempdir()
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    for (original, text) in PASSWORDS {
        let local = dir.path().join(Path::new(original).file_name().unwrap());
        write_owned(&local, text, 0o400, None);
    }
    dir
}

fn secret(dir: &Path, original: &str) -> PathBuf {
    dir.join(Path::new(original).file_name().unwrap())
}

// --------------------------------------------------------------- Synapse

const REGISTRATION_SECRET: &str = "masgen-test-registration-secret";

/// matrix-net's Synapse in `phase`: its render, the files its modules
/// write at boot, listening on 127.0.0.2 and reaching PostgreSQL at
/// 127.0.0.4:`db_port` with the password.
fn start_synapse(
    build: &Build,
    py: &Path,
    phase: Phase,
    db: &Value,
    secrets: &Path,
    db_port: u16,
) -> (SynapseSetup, SynapseProcess) {
    let hp = build.phase("matrix-net", phase);
    let render = build.yaml(&format!(
        "render/matrix-net/{}/homeserver.yaml",
        phase.name()
    ));
    let render = at_port(&render, db_port);
    let listener = &render["listeners"][0];
    assert_eq!(listener["bind_addresses"], json!([MATRIX.to_string()]));
    // Shared-secret registration needs a secret: the spec sets none.
    let extra = json!({ "registration_shared_secret": REGISTRATION_SECRET });
    let mut setup = write_phase(hp, &render, &no_pg(), Some(extra));
    // write_phase points Synapse at a socket: back to the render's TCP.
    let main = &setup.config_files[0];
    let mut settings: Value = serde_norway::from_str(&fs::read_to_string(main).unwrap()).unwrap();
    settings["database"] = render["database"].clone();
    write_mode(main, &serde_norway::to_string(&settings).unwrap(), 0o644);
    assert_eq!(render["database"]["args"]["host"], DB.to_string());
    assert!(render["database"]["args"].get("password").is_none());
    // What masgen-synapse-database.service writes at boot.
    let files = &hp.synapse.extra_config_files;
    let i = files
        .iter()
        .position(|f| f == SYNAPSE_DATABASE_PATH)
        .unwrap_or_else(|| panic!("no database file in {files:?}"));
    let filter = db["synapseDatabaseFilter"].as_str().unwrap();
    let password = secret(secrets, PASSWORDS[0].0);
    database_file(
        &setup.config_files[i + 1],
        &render["database"],
        filter,
        &password,
    )
    .unwrap();

    let rendered_port = listener["port"].as_u64().unwrap() as u16;
    let port = if TcpListener::bind((MATRIX, rendered_port)).is_ok() {
        rendered_port
    } else {
        eprintln!("NOTE: {MATRIX}:{rendered_port} is taken; Synapse listens on a free port");
        free_port()
    };
    setup.listen_on(MATRIX, port);
    setup.generate_keys(py).unwrap();
    let syn = setup.start(py);
    (setup, syn)
}

/// The client addresses and roles of the connections to Synapse's
/// database PostgreSQL sees.
fn synapse_connections(pg: &PgCluster) -> String {
    pg.superuser_sql(&format!(
        "SELECT string_agg(DISTINCT coalesce(host(client_addr), 'local') || ' ' || usename, ',') \
         FROM pg_stat_activity WHERE datname = '{SYNAPSE_ROLE}'"
    ))
    .unwrap()
}

// --------------------------------------------------------------- auth-net

/// auth-net in phase 1 as the syn2mas units see it: the store's configs
/// (its renders), the boot files (Synapse's from matrix-net, `mas_db` for
/// MAS's), dummy secrets (the pepper is Synapse's), masgen-mas-run and the
/// mas-cli stand-in.
fn auth_host(
    build: &Build,
    synapse: &SynapseSetup,
    mas_db: &Path,
    db_port: u16,
) -> Option<HostDir> {
    let python = python_with_yaml(MAS_USER)?;
    let mut host = HostDir::new("masgen-split-auth-");
    let root = host.root().to_path_buf();
    let hp = build.phase("matrix-net", Phase::Prepare);
    // auth-net's modules write the same boot files from the same settings.
    let auth = &build.phase("auth-net", Phase::Prepare).synapse;
    assert_eq!(auth.extra_config_files, hp.synapse.extra_config_files);
    assert_eq!(auth.settings["database"], hp.synapse.settings["database"]);
    for (i, file) in hp.synapse.extra_config_files.iter().enumerate() {
        host.paths
            .insert(file.clone(), synapse.config_files[i + 1].clone());
    }
    host.paths.insert(MAS_DATABASE_PATH.into(), mas_db.into());
    mkdir_owned(&root.join("secrets"), 0o700, None);
    for unit in SYN2MAS_UNITS {
        for source in build.unit(&auth_unit(unit.0)).credentials.values() {
            if host.paths.contains_key(source) {
                continue;
            }
            let local = match synapse.secrets.files.get(source) {
                Some((path, _)) => path.clone(),
                None => root.join("secrets").join(source.replace('/', "_")),
            };
            if !local.exists() {
                write_owned(&local, &format!("dummy {source}"), 0o400, None);
            }
            host.paths.insert(source.clone(), local);
        }
    }
    host.install_script("masgen-mas-run", "mas-run.sh");
    host.install_fake_mas_cli(&python, &find_tool("psql").unwrap());
    mkdir_owned(&root.join("store"), 0o755, None);
    for (store, render) in [
        (STORE_MAS_CONFIG, "mas-config.yaml"),
        (STORE_SYNAPSE_CONFIG, "homeserver.yaml"),
    ] {
        let v = at_port(
            &build.yaml(&format!("render/auth-net/prepare/{render}")),
            db_port,
        );
        let local = root.join("store").join(render);
        write_owned(&local, &serde_norway::to_string(&v).unwrap(), 0o444, None);
        host.paths.insert(store.into(), local);
    }
    Some(host)
}

const SYN2MAS_UNITS: [(&str, &str); 3] = [
    ("masgen-syn2mas-check", "CHECK done"),
    ("masgen-syn2mas-dry-run", "DRY-RUN done"),
    ("masgen-syn2mas-migrate", "MIGRATE done"),
];

fn auth_unit(name: &str) -> String {
    format!("render/auth-net/prepare/units/{name}.service")
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Each syn2mas unit reaches both databases over TCP from auth-net, with
/// the passwords the configs carry.
fn run_syn2mas(build: &Build, host: &HostDir, users: &str) {
    for (name, done) in SYN2MAS_UNITS {
        let unit = build.unit(&auth_unit(name));
        let extra = unit.environment.get("MASGEN_MAS_EXTRA_CONFIGS");
        assert_eq!(extra.map(String::as_str), Some("masgen-mas-extra-config-0"));
        let (out, runtime, creds) = host.run_unit(&unit, name);
        let lines = stdout_lines(&out);
        assert!(out.status.success(), "{name}: {out:?}");
        let argv: Value = serde_json::from_str(lines[0].strip_prefix("ARGV ").unwrap()).unwrap();
        let configs = json!([
            "--config",
            runtime.join("config.yaml"),
            "--config",
            creds.join("masgen-mas-extra-config-0")
        ]);
        assert_eq!(
            argv.as_array().unwrap()[1..5],
            configs.as_array().unwrap()[..],
            "{name}: {argv}"
        );
        for expect in [
            format!("MAS-DB {MAS_ROLE}@{MAS_ROLE}"),
            format!("MAS-DB-FROM {AUTH} -> {DB}"),
            "PEPPER match".to_owned(),
            format!("SYNAPSE-DB {SYNAPSE_ROLE}@{SYNAPSE_ROLE}"),
            format!("SYNAPSE-DB-FROM {AUTH} -> {DB}"),
            format!("SYNAPSE-USERS {users}"),
        ] {
            assert!(
                lines.contains(&expect),
                "{name}: no {expect:?} in {lines:?}"
            );
        }
        assert_eq!(lines.last().unwrap(), done, "{name}");
    }
}

/// A wrong password file, for MAS's or for Synapse's database: the dry
/// run fails on that database.
fn wrong_password_fails(build: &Build, host: &mut HostDir, db: &Value, wrong: &Path) {
    let unit = build.unit(&auth_unit(SYN2MAS_UNITS[1].0));
    let store = |p: &str| -> Value {
        serde_norway::from_str(&fs::read_to_string(host.path(p)).unwrap()).unwrap()
    };
    let cases = [
        (
            MAS_DATABASE_PATH,
            "MAS",
            "masDatabaseFilter",
            store(STORE_MAS_CONFIG),
        ),
        (
            SYNAPSE_DATABASE_PATH,
            "Synapse",
            "synapseDatabaseFilter",
            store(STORE_SYNAPSE_CONFIG),
        ),
    ];
    for (key, what, filter, config) in cases {
        let file = host.root().join(format!("wrong-{what}.yaml"));
        let filter = db[filter].as_str().unwrap();
        database_file(&file, &config["database"], filter, wrong).unwrap();
        let right = host.paths.insert(key.into(), file).unwrap();
        let (out, _, _) = host.run_unit(&unit, &format!("wrong-{what}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
        assert!(
            err.contains("password authentication failed"),
            "{what}: {err}"
        );
        assert!(
            err.contains(&format!("cannot connect to the {what} database")),
            "{err}"
        );
        host.paths.insert(key.into(), right);
    }
}

// ---------------------------------------------------------------- db-net

/// db-net-prepare's masgen-backup unit: pg_dump of Synapse's database on
/// the database host (over the socket, as `postgres`).
fn backup(build: &Build, pg: &PgCluster) {
    let unit = build.unit("render/db-net/prepare/units/masgen-backup.service");
    assert_eq!(unit.user, None, "{}", unit.text);
    let mut host = HostDir::new("masgen-split-backup-");
    let root = host.root().to_path_buf();
    host.install_script("masgen-backup", "backup.sh");
    host.paths
        .insert("/var/backup/masgen".into(), root.join("backup"));
    let wrapper = host.pg_dump_wrapper(pg);
    let argv = host.rewrite(&unit.argv(None));
    assert_eq!(
        argv[1..],
        [
            SYNAPSE_ROLE.to_owned(),
            root.join("backup").display().to_string()
        ]
    );
    let out = run_as_unit(&unit, None, &argv, &[("PG_DUMP", &wrapper)]);
    assert!(out.status.success(), "{out:?}\n{}", pg.log());
    let dump = PathBuf::from(stdout_lines(&out).last().expect("dump path").trim());
    assert!(fs::metadata(&dump).unwrap().len() > 0, "{}", dump.display());
    let list = Command::new(pg.bin_dir().join("pg_restore"))
        .arg("--list")
        .arg(&dump)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    // Synapse's own tables, made by the phase-1 Synapse.
    assert!(list.contains("TABLE public users matrix-synapse"), "{list}");
}

// ------------------------------------------------------------------ test

/// 127.0.0.2-4 can be bound (all of 127.0.0.0/8 is loopback on Linux).
fn loopback_hosts() -> bool {
    [MATRIX, AUTH, DB]
        .iter()
        .all(|a| TcpListener::bind((*a, 0)).is_ok())
}

#[test]
fn split_homeserver_runs_on_three_loopback_hosts() {
    let why = "the split-host conformance test";
    if !require_root(why) {
        return;
    }
    let Some(nix) = nix_instantiate() else { return };
    // /usr/bin/python3 runs the relay (tests/support/hosts.rs).
    if !Path::new("/usr/bin/python3").exists() {
        return unavailable("/usr/bin/python3", why).unwrap_or(());
    }
    for tool in ["runuser", "jq", "envsubst", "pg_dump"] {
        if require_tool(tool, why).is_none() {
            return;
        }
    }
    let Some(py) = synapse_python() else { return };
    if !loopback_hosts() {
        return unavailable("127.0.0.2-4 (loopback addresses)", why).unwrap_or(());
    }
    let build = Build::new();
    let prepare = db_host(&nix, &build, "prepare");
    let fin = db_host(&nix, &build, "final");
    // The clients masgen derives, as pg_hba lines (one per client).
    let line =
        |db: &str, role: &str, a: Ipv4Addr| format!("host {db} {role} {a}/32 scram-sha-256\n");
    let (syn_from, mas_from) = (
        |a| line(SYNAPSE_ROLE, SYNAPSE_ROLE, a),
        line(MAS_ROLE, MAS_ROLE, AUTH),
    );
    assert_eq!(
        prepare["lines"],
        syn_from(MATRIX) + &syn_from(AUTH) + &mas_from
    );
    assert_eq!(fin["lines"], syn_from(MATRIX) + &mas_from);

    let secrets = password_files();
    let Some(pg) = start_cluster(&prepare, secrets.path()) else {
        return;
    };
    check_access(&pg, prepare["lines"].as_str().unwrap(), false);

    // The route to db-net the configs name; else one free port for every
    // phase (the boot files of one host are read on another).
    let db_port = match TcpListener::bind((DB, PG_PORT)) {
        Ok(_) => PG_PORT,
        Err(_) => {
            let port = TcpListener::bind((DB, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            eprintln!("NOTE: {DB}:{PG_PORT} is taken; the configs name port {port} instead");
            port
        }
    };
    let route_from = |source| Relay::start((DB, db_port), (DB, pg.port()), source);

    // Phase 1, matrix-net: Synapse as it runs today, over TCP.
    let relay = route_from(MATRIX);
    let (setup, syn) = start_synapse(
        &build,
        &py,
        Phase::Prepare,
        &prepare,
        secrets.path(),
        relay.port,
    );
    assert_eq!(synapse_connections(&pg), format!("{MATRIX} {SYNAPSE_ROLE}"));
    let user = register_login_whoami(&py, &syn, REGISTRATION_SECRET, "matrix-net-prepare");
    drop(syn);
    drop(relay);

    // Phase 1, auth-net: syn2mas reads both databases.
    let relay = route_from(AUTH);
    let mas_db = setup
        .dir
        .path()
        .join("run/masgen-mas-database/database.yaml");
    let mas_settings = build.phase("auth-net", Phase::Prepare).mas.settings["database"].clone();
    let filter = prepare["masDatabaseFilter"].as_str().unwrap();
    let mas_password = secret(secrets.path(), PASSWORDS[1].0);
    database_file(
        &mas_db,
        &at_port(&mas_settings, relay.port),
        filter,
        &mas_password,
    )
    .unwrap();
    if let Some(mut host) = auth_host(&build, &setup, &mas_db, relay.port) {
        run_syn2mas(&build, &host, "1");
        let wrong = setup.dir.path().join("wrong-password");
        write_owned(&wrong, "wrong\n", 0o400, None);
        wrong_password_fails(&build, &mut host, &prepare, &wrong);
    }
    drop(relay);

    // Phase 1, db-net: the backup.
    backup(&build, &pg);

    // Final: syn2mas's access is gone; Synapse delegates on the same data.
    check_access(&pg, fin["lines"].as_str().unwrap(), true);
    let relay = route_from(MATRIX);
    let (_setup, syn) = start_synapse(&build, &py, Phase::Final, &fin, secrets.path(), relay.port);
    assert_delegated_endpoints(&syn, "matrix-net final");
    let rows = pg
        .superuser_sql_in(
            SYNAPSE_ROLE,
            &format!("SELECT count(*) FROM users WHERE name = '{user}'"),
        )
        .unwrap();
    assert_eq!(rows, "1");
}
