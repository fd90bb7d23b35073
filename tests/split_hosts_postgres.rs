//! masgen's split-host modules for real: scripts/postgres-passwords.sh
//! (modules/postgres-access.nix) against a throwaway PostgreSQL listening on
//! TCP (127.0.0.1 and 127.0.0.2) with the pg_hba lines of lib.nix, and
//! scripts/database-file.sh with the jq programs of lib.nix
//! (synapse-database.nix, mas-database.nix), whose files must let psycopg2
//! (Synapse's) and a libpq URI (MAS's) connect. The modules themselves are
//! evaluated in tests/split_hosts_modules.rs.
//!
//! A missing tool makes a test print SKIP locally and fail in CI; the
//! PostgreSQL test needs root (runuser, the `postgres` OS user).

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use tempfile::TempDir;

use support::hosts::{assert_in, assert_refused};
use support::{
    mode_of, nix_instantiate, repo_root, require_root, require_tool, run_ok, synapse_python,
    NixTool, PgCluster,
};

fn modules_dir() -> PathBuf {
    repo_root().join("modules")
}

/// `lib.nix` (builtins only) applied by `body`, a Nix expression of `l`.
fn eval_lib(nix: &NixTool, body: &str) -> Value {
    let lib = modules_dir().join("lib.nix");
    nix.eval_json_expr(&format!("let l = import {}; in {body}", lib.display()))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The passwords of the real tests, as their files hold them: every
/// character that means something in a URI, in SQL or in a shell, and a
/// trailing newline (stripped: one, and only one).
const SYNAPSE_PASSWORD: &str = "s3:@/%'\"\\ $HOME `id` #x\n";
const MAS_PASSWORD: &str = "m:@/%'\"?&=+ ;!*()[]~\n";
const NEWLINES_PASSWORD: &str = "two\n\n";

fn strip_one_newline(s: &str) -> &str {
    s.strip_suffix('\n').unwrap_or(s)
}

fn write_file(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// What lib.nix makes of the clients of the real test: the pg_hba lines and
/// the password unit's plan (credentials and ROLE CREDENTIAL words).
fn access_plan(nix: &NixTool, clients: &Value) -> (String, Value) {
    let v = eval_lib(
        nix,
        &format!(
            "let clients = builtins.fromJSON {}; in {{ lines = l.postgresAccessLines clients; plan = l.postgresPasswordPlan clients; }}",
            serde_json::to_string(&clients.to_string()).unwrap()
        ),
    );
    (v["lines"].as_str().unwrap().to_owned(), v["plan"].clone())
}

/// psql over TCP to `host` as `role` with `password`, like a client host.
fn tcp_psql(pg: &PgCluster, host: &str, db: &str, role: &str, password: &str) -> Output {
    Command::new(pg.bin_dir().join("psql"))
        .args(["-X", "-w", "-q", "-A", "-t", "-h", host, "-p"])
        .arg(pg.port().to_string())
        .args(["-U", role, "-d", db, "-c"])
        .arg("SELECT current_user || '|' || current_database()")
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .current_dir("/")
        .output()
        .expect("run psql")
}

/// A directory standing for the unit's $CREDENTIALS_DIRECTORY, readable by
/// `owner` only (systemd gives the service user its credentials).
fn credentials_dir(parent: &Path, files: &[(&str, &str)], owner: Option<&str>) -> PathBuf {
    let dir = parent.join("credentials");
    fs::create_dir(&dir).unwrap();
    for (name, text) in files {
        write_file(&dir.join(name), text, 0o400);
    }
    if let Some(user) = owner {
        run_ok(Command::new("chown").arg("-R").arg(user).arg(&dir));
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o500)).unwrap();
    dir
}

/// postgres-access.nix for real: the pg_hba lines it writes and its
/// password script, then clients over TCP.
#[test]
fn postgres_access_lets_listed_clients_in_with_their_passwords() {
    let Some(nix) = nix_instantiate() else { return };
    if !require_root("runuser and a PostgreSQL cluster") {
        return;
    }
    let Some(runuser) = require_tool("runuser", "running the password script as postgres") else {
        return;
    };
    let Some(pg) = PgCluster::start() else { return };
    // 127.0.0.2 stands for the database host's address as other hosts see
    // it (all of 127.0.0.0/8 is loopback on Linux); clients connect from
    // 127.0.0.1 whatever address they dial.
    let second = std::net::TcpListener::bind("127.0.0.2:0").is_ok();
    if !second {
        eprintln!("NOTE: cannot bind 127.0.0.2 here; the cluster listens on 127.0.0.1 only");
    }
    pg.listen_tcp(if second {
        "127.0.0.1,127.0.0.2"
    } else {
        "127.0.0.1"
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // Statements are logged, but not the ones that carry a password.
    pg.superuser_sql("ALTER SYSTEM SET log_statement = 'all'")
        .unwrap();
    pg.reload().unwrap();
    pg.superuser_sql(concat!(
        r#"CREATE ROLE "matrix-synapse" LOGIN; CREATE ROLE mas LOGIN; CREATE ROLE elsewhere LOGIN; "#,
        r#"CREATE ROLE nl LOGIN; CREATE ROLE stranger LOGIN PASSWORD 'stranger'; "#,
        r#"CREATE DATABASE "matrix-synapse" OWNER "matrix-synapse"; CREATE DATABASE "mas db" OWNER mas;"#
    ))
    .unwrap();

    let clients = json!([
        {"database": "matrix-synapse", "role": "matrix-synapse", "address": "127.0.0.1", "passwordFile": "/secrets/syn"},
        {"database": "mas db", "role": "mas", "address": "127.0.0.1", "passwordFile": "/secrets/mas"},
        {"database": "matrix-synapse", "role": "elsewhere", "address": "127.0.0.3", "passwordFile": "/secrets/syn"},
        {"database": "matrix-synapse", "role": "nl", "address": "127.0.0.1", "passwordFile": "/secrets/nl"}
    ]);
    let (lines, plan) = access_plan(&nix, &clients);
    assert!(
        lines.contains("host \"mas db\" mas 127.0.0.1/32 scram-sha-256\n"),
        "{lines}"
    );
    pg.set_hba(&lines).unwrap_or_else(|e| panic!("{e}"));

    // The credentials as LoadCredential= would make them.
    let sources = [
        ("/secrets/syn", SYNAPSE_PASSWORD),
        ("/secrets/mas", MAS_PASSWORD),
        ("/secrets/nl", NEWLINES_PASSWORD),
    ];
    let creds: Vec<(String, &str)> = plan["loadCredential"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let (name, path) = c.as_str().unwrap().split_once(':').unwrap();
            let text = sources.iter().find(|(p, _)| *p == path).unwrap().1;
            (name.to_owned(), text)
        })
        .collect();
    let tmp = TempDir::new().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let files: Vec<(&str, &str)> = creds.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    let cred_dir = credentials_dir(tmp.path(), &files, Some("postgres"));

    let words: Vec<String> = plan["words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .collect();
    let path = format!(
        "{}:{}",
        pg.bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run_script = |words: &[String]| {
        Command::new(&runuser)
            .args(["-u", "postgres", "--", "env"])
            .arg(format!("PATH={path}"))
            .arg(format!("CREDENTIALS_DIRECTORY={}", cred_dir.display()))
            .arg(format!("PGHOST={}", pg.socket_dir().display()))
            .arg(format!("PGPORT={}", pg.port()))
            .arg("bash")
            .arg(modules_dir().join("scripts/postgres-passwords.sh"))
            .args(words)
            .current_dir("/")
            .output()
            .unwrap()
    };
    // Every statement is logged, even slow ones and failed ones; a role
    // that does not exist fails the unit.
    pg.superuser_sql("ALTER SYSTEM SET log_min_duration_statement = 0")
        .unwrap();
    pg.reload().unwrap();
    let ghost = run_script(&["ghost".to_string(), words[1].clone()]);
    assert!(!ghost.status.success(), "a missing role must fail the unit");
    assert!(
        String::from_utf8_lossy(&ghost.stderr).contains("role \"ghost\" does not exist"),
        "{ghost:?}"
    );
    let out = run_script(&words);
    assert!(
        out.status.success(),
        "postgres-passwords.sh: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        pg.log()
    );
    // A restart of the unit sets them again, without error.
    assert!(run_script(&words).status.success());

    let syn = strip_one_newline(SYNAPSE_PASSWORD);
    let mas = strip_one_newline(MAS_PASSWORD);
    let mut hosts = vec!["127.0.0.1"];
    if second {
        hosts.push("127.0.0.2");
    }
    for host in &hosts {
        assert_in(
            &tcp_psql(&pg, host, "matrix-synapse", "matrix-synapse", syn),
            "matrix-synapse|matrix-synapse",
        );
        assert_in(&tcp_psql(&pg, host, "mas db", "mas", mas), "mas|mas db");
    }
    let host = hosts.last().unwrap();
    let bad_password = "password authentication failed";
    let no_entry = "no pg_hba.conf entry";
    assert_refused(
        &tcp_psql(&pg, host, "matrix-synapse", "matrix-synapse", "wrong"),
        bad_password,
    );
    // The file's newline is not part of the password...
    assert_refused(
        &tcp_psql(
            &pg,
            host,
            "matrix-synapse",
            "matrix-synapse",
            SYNAPSE_PASSWORD,
        ),
        bad_password,
    );
    // ...and only one is stripped (psql's backquote, like jq's rtrimstr).
    assert_in(
        &tcp_psql(&pg, host, "matrix-synapse", "nl", "two\n"),
        "nl|matrix-synapse",
    );
    assert_refused(
        &tcp_psql(&pg, host, "matrix-synapse", "nl", "two"),
        bad_password,
    );
    // A database, role or address not listed.
    assert_refused(
        &tcp_psql(&pg, host, "mas db", "matrix-synapse", syn),
        no_entry,
    );
    assert_refused(&tcp_psql(&pg, host, "matrix-synapse", "mas", mas), no_entry);
    assert_refused(
        &tcp_psql(&pg, host, "matrix-synapse", "stranger", "stranger"),
        no_entry,
    );
    assert_refused(
        &tcp_psql(&pg, host, "matrix-synapse", "elsewhere", syn),
        no_entry,
    );
    // (elsewhere's password was set all the same, hashed.)
    assert_eq!(
        pg.superuser_sql("SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'elsewhere'")
            .unwrap(),
        "SCRAM-SHA-256$"
    );
    // Logging was on, and no password reached the log.
    let log = pg.log();
    assert!(
        log.contains("CREATE DATABASE"),
        "statements are logged:\n{log}"
    );
    for secret in [syn, mas] {
        assert!(!log.contains(secret), "the log holds a password:\n{log}");
    }
    assert!(!log.contains("ALTER ROLE"), "{log}");

    database_files_connect(&nix, &pg, host);
}

/// Runs scripts/database-file.sh with `filter` on `settings` and the
/// password file `password`, as the unit would; the output or the error.
fn database_file(
    dir: &Path,
    settings: &Value,
    filter: &str,
    password: &str,
) -> Result<(Value, String, PathBuf), String> {
    let work = TempDir::new_in(dir).unwrap();
    let work = work.keep();
    let settings_file = work.join("settings.json");
    fs::write(&settings_file, settings.to_string()).unwrap();
    let creds = credentials_dir(&work, &[("password", password)], None);
    let out_file = work.join("database.yaml");
    let out = Command::new("bash")
        .arg(modules_dir().join("scripts/database-file.sh"))
        .arg(&out_file)
        .arg(&settings_file)
        .arg(filter)
        .env("CREDENTIALS_DIRECTORY", &creds)
        .output()
        .unwrap();
    if !out.status.success() {
        assert!(
            !out_file.exists(),
            "a failed run left {}",
            out_file.display()
        );
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = fs::read_to_string(&out_file).unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    Ok((value, text, out_file))
}

/// synapse-database.nix's and mas-database.nix's files, written by their
/// script and jq programs, connect as Synapse (psycopg2) and MAS (a libpq
/// URI) would.
fn database_files_connect(nix: &NixTool, pg: &PgCluster, host: &str) {
    let Some(_jq) = require_tool("jq", "running the database file writer") else {
        return;
    };
    let f = eval_lib(
        nix,
        "{ inherit (l) synapseDatabaseFilter masDatabaseFilter; }",
    );
    let tmp = TempDir::new().unwrap();
    let syn = strip_one_newline(SYNAPSE_PASSWORD);
    let mas = strip_one_newline(MAS_PASSWORD);

    // Synapse: the whole database section, args.password added.
    let settings = json!({
        "name": "psycopg2",
        "txn_limit": 0,
        "args": {"user": "matrix-synapse", "database": "matrix-synapse", "host": host, "port": pg.port(), "cp_min": 1}
    });
    let filter = f["synapseDatabaseFilter"].as_str().unwrap();
    let (written, _, file) =
        database_file(tmp.path(), &settings, filter, SYNAPSE_PASSWORD).unwrap();
    assert_eq!(mode_of(&file), 0o400);
    let mut expected = settings.clone();
    expected["args"]["password"] = json!(syn);
    assert_eq!(written, json!({ "database": expected }));
    let (twice, _, _) = database_file(tmp.path(), &settings, filter, NEWLINES_PASSWORD).unwrap();
    assert_eq!(twice["database"]["args"]["password"], "two\n");
    let err = database_file(tmp.path(), &settings, filter, "").unwrap_err();
    assert!(err.contains("empty or missing"), "{err}");

    // The values read back, with psql.
    let args = &written["database"]["args"];
    assert_in(
        &tcp_psql(
            pg,
            args["host"].as_str().unwrap(),
            args["database"].as_str().unwrap(),
            args["user"].as_str().unwrap(),
            args["password"].as_str().unwrap(),
        ),
        "matrix-synapse|matrix-synapse",
    );
    // As Synapse reads it: YAML, database.args handed to psycopg2.connect
    // (syn2mas reads the same user/password/database/host/port).
    if let Some(python) = synapse_python() {
        let out = Command::new(python)
            .args([
                "-c",
                concat!(
                    "import sys, yaml, psycopg2\n",
                    "args = yaml.safe_load(open(sys.argv[1]))['database']['args']\n",
                    "args = {k: v for k, v in args.items() if k not in ('cp_min', 'cp_max')}\n",
                    "conn = psycopg2.connect(sslmode='disable', **args)\n",
                    "cur = conn.cursor(); cur.execute('SELECT current_user, current_database()')\n",
                    "print('|'.join(cur.fetchone()))\n"
                ),
            ])
            .arg(&file)
            .output()
            .unwrap();
        assert_in(&out, "matrix-synapse|matrix-synapse");
    }

    // MAS: the uri with the password percent-encoded as its userinfo.
    let uri = format!(
        "postgresql://mas@{host}:{}/mas%20db?sslmode=disable",
        pg.port()
    );
    let settings = json!({"uri": uri, "max_connections": 10});
    let filter = f["masDatabaseFilter"].as_str().unwrap();
    let (written, _, file) = database_file(tmp.path(), &settings, filter, MAS_PASSWORD).unwrap();
    assert_eq!(mode_of(&file), 0o400);
    assert_eq!(written["database"]["max_connections"], 10);
    let with_password = written["database"]["uri"].as_str().unwrap().to_owned();
    assert!(
        with_password.starts_with("postgresql://mas:")
            && with_password.ends_with(&format!("@{host}:{}/mas%20db?sslmode=disable", pg.port())),
        "{with_password}"
    );
    if let Some(python) = require_tool("python3", "parsing the MAS uri") {
        let out = Command::new(python)
            .args([
                "-c",
                concat!(
                    "import sys, urllib.parse as u\n",
                    "p = u.urlsplit(sys.argv[1])\n",
                    "sys.stdout.write(u.unquote(p.username) + '\\n' + u.unquote(p.password))\n"
                ),
            ])
            .arg(&with_password)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("mas\n{mas}"));
    }
    let out = Command::new(pg.bin_dir().join("psql"))
        .args(["-X", "-w", "-q", "-A", "-t", "-c"])
        .arg("SELECT current_user || '|' || current_database()")
        .arg(&with_password)
        .env_remove("PGPASSWORD")
        .current_dir("/")
        .output()
        .unwrap();
    assert_in(&out, "mas|mas db");

    // A uri without a user, or with a password already: an error, no file.
    for bad in [
        "postgresql://127.0.0.1/mas",
        "postgresql://mas:old@127.0.0.1/mas",
    ] {
        let err =
            database_file(tmp.path(), &json!({ "uri": bad }), filter, MAS_PASSWORD).unwrap_err();
        assert!(err.contains("has no USER@"), "{bad}: {err}");
    }
}
