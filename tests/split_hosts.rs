//! Tests of masgen's split-host modules: modules/postgres-access.nix,
//! firewall.nix, synapse-database.nix, mas-database.nix (and what
//! synapse-secrets.nix and tasks.nix do on a host without Synapse).
//!
//! First each module is evaluated in isolation with the stub `lib`/`pkgs`
//! of tests/support/module_harness.nix (as tests/modules.rs does): the
//! units, pg_hba lines, firewall rules and assertions they produce. Then the
//! programs they run are run for real: scripts/postgres-passwords.sh against
//! a throwaway PostgreSQL listening on TCP (127.0.0.1 and 127.0.0.2) with the
//! generated pg_hba lines, and scripts/database-file.sh with the jq programs
//! of lib.nix, whose output must let psql/psycopg2 (Synapse's file) and a
//! libpq URI (MAS's file) connect. Whole NixOS configurations with these
//! modules are evaluated with a real nixpkgs tree in
//! tests/conformance_nixpkgs.rs.
//!
//! A missing tool makes a test print SKIP locally and fail in CI; the
//! PostgreSQL tests need root (runuser, the `postgres` OS user).

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use tempfile::TempDir;

use masgen::lower::tasks::{
    implied, HostWiring, MAS_DATABASE_PATH, MAS_DATABASE_UNIT, POSTGRES_PASSWORDS_UNIT,
    SYNAPSE_DATABASE_PATH, SYNAPSE_DATABASE_UNIT,
};
use support::{
    mode_of, nix_instantiate, repo_root, require_root, require_tool, run_ok, synapse_python,
    NixTool, PgCluster,
};

const HARNESS: &str = include_str!("support/module_harness.nix");

fn modules_dir() -> PathBuf {
    repo_root().join("modules")
}

/// Evaluate `expr`, a function of `{ modulesDir, harness }`, strictly to
/// JSON with `nix-instantiate --store dummy://`.
fn eval_case(nix: &NixTool, expr: &str) -> Value {
    let dir = TempDir::new().unwrap();
    let harness = dir.path().join("harness.nix");
    fs::write(&harness, HARNESS).unwrap();
    let out = run_ok(
        nix.command()
            .args(["--eval", "--strict", "--json", "--argstr", "modulesDir"])
            .arg(modules_dir())
            .arg("--argstr")
            .arg("harness")
            .arg(&harness)
            .arg("-E")
            .arg(expr),
    );
    serde_json::from_slice(&out.stdout).expect("nix-instantiate printed JSON")
}

fn assertions(config: &Value) -> Vec<bool> {
    config["assertions"]
        .as_array()
        .unwrap_or_else(|| panic!("no assertions in {config}"))
        .iter()
        .map(|a| a["assertion"].as_bool().unwrap())
        .collect()
}

/// The messages of the failed assertions.
fn failed(config: &Value) -> Vec<String> {
    config["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["assertion"] == false)
        .map(|a| a["message"].as_str().unwrap().to_owned())
        .collect()
}

// ------------------------------------------------------------ Nix, stubbed

const ACCESS_CASE: &str = r#"{ modulesDir, harness }:
let
  h = import (/. + harness) { inherit modulesDir; };
  client = database: role: address: passwordFile: { inherit database role address passwordFile; };
  clients = [
    (client "matrix-synapse" "matrix-synapse" "10.0.0.2" "/run/secrets/syn")
    (client "matrix-authentication-service" "mas" "fd00::3" "/run/secrets/mas")
    (client "all" "odd role" "db-client.example.org" "/run/secrets/syn")
  ];
  config = pg: cs: {
    masgen.postgresAccess = { enable = true; clients = cs; };
    services.postgresql = { enable = pg; package = h.stubPkg "postgresql"; finalPackage = h.stubPkg "postgresql-and-plugins"; };
  };
  eval = pg: cs: h.resolve (h.evalModule "postgres-access.nix" (config pg cs)).config;
  good = eval true clients;
in {
  inherit good;
  # The definition as written (before resolve): its priority.
  raw = (h.evalModule "postgres-access.nix" (config true clients)).config.content.services.postgresql.authentication;
  noPostgres = eval false clients;
  badAddress = eval true [ (client "d" "r" "10.0.0.300" "/f") (client "d" "r" "all" "/f") ];
  quoteInName = eval true [ (client "d\"x" "r" "10.0.0.1" "/f") ];
  twoFiles = eval true [ (client "a" "r" "10.0.0.1" "/f1") (client "b" "r" "10.0.0.2" "/f2") ];
  noClients = eval true [ ];
  disabled = h.resolve (h.evalModule "postgres-access.nix" {
    masgen.postgresAccess = { enable = false; clients = clients; };
    services.postgresql.enable = true;
  }).config;
}
"#;

#[test]
fn postgres_access_module_opens_tcp_with_one_hba_line_per_client() {
    let Some(nix) = nix_instantiate() else { return };
    let v = eval_case(&nix, ACCESS_CASE);
    let good = &v["good"];
    assert!(assertions(good).iter().all(|a| *a), "{:?}", failed(good));
    let pg = &good["services"]["postgresql"];
    assert_eq!(pg["enableTCPIP"], true);
    assert_eq!(
        pg["authentication"],
        concat!(
            "host matrix-synapse matrix-synapse 10.0.0.2/32 scram-sha-256\n",
            "host matrix-authentication-service mas fd00::3/128 scram-sha-256\n",
            "host \"all\" \"odd role\" db-client.example.org scram-sha-256\n"
        )
    );
    // Default priority: a plain string, neither mkBefore nor mkAfter.
    assert!(v["raw"].is_string(), "{}", v["raw"]);

    let unit = &good["systemd"]["services"]["masgen-postgres-passwords"];
    assert_eq!(
        format!("{}.service", "masgen-postgres-passwords"),
        POSTGRES_PASSWORDS_UNIT
    );
    assert_eq!(
        unit["after"],
        json!(["postgresql.service", "postgresql-setup.service"])
    );
    assert_eq!(unit["requires"], json!(["postgresql.service"]));
    assert_eq!(unit["wantedBy"], json!(["multi-user.target"]));
    let sc = &unit["serviceConfig"];
    assert_eq!(sc["Type"], "oneshot");
    assert_eq!(sc["RemainAfterExit"], true);
    assert_eq!(sc["User"], "postgres");
    // One credential per distinct file; each role once, with its file.
    assert_eq!(
        sc["LoadCredential"],
        json!([
            "password-0:/run/secrets/syn",
            "password-1:/run/secrets/mas"
        ])
    );
    assert_eq!(
        sc["ExecStart"],
        concat!(
            "/nix/store/stub-masgen-postgres-passwords/bin/masgen-postgres-passwords ",
            r#""matrix-synapse" "password-0" "mas" "password-1" "odd role" "password-0""#
        )
    );
    // The client list re-runs the unit when it changes.
    let triggers = unit["restartTriggers"].as_array().unwrap();
    assert_eq!(triggers.len(), 1);
    let listed: Value = serde_json::from_str(triggers[0].as_str().unwrap()).unwrap();
    assert_eq!(listed[2]["role"], "odd role");

    let msgs = failed(&v["noPostgres"]);
    assert!(
        msgs.iter().any(|m| m.contains("services.postgresql is not enabled")),
        "{msgs:?}"
    );
    let msgs = failed(&v["badAddress"]);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(
        msgs[0].contains(r#"["10.0.0.300","all"]"#),
        "{}",
        msgs[0]
    );
    let msgs = failed(&v["quoteInName"]);
    assert!(
        msgs.iter().any(|m| m.contains("double quote")),
        "{msgs:?}"
    );
    let msgs = failed(&v["twoFiles"]);
    assert!(
        msgs.iter()
            .any(|m| m.contains(r#"role(s) ["r"] given different passwordFile"#)),
        "{msgs:?}"
    );
    // No clients: TCP and no unit.
    assert_eq!(
        v["noClients"]["systemd"]["services"]["masgen-postgres-passwords"],
        Value::Null
    );
    assert_eq!(v["disabled"], Value::Null);
}

const FIREWALL_CASE: &str = r#"{ modulesDir, harness }:
let
  h = import (/. + harness) { inherit modulesDir; };
  rules = [
    { port = 5432; addresses = [ "10.0.0.2" "fd00::3" ]; }
    { port = 8080; addresses = [ "10.0.0.4" ]; }
  ];
  eval = nft: allowFrom: h.resolve (h.evalModule "firewall.nix" {
    masgen.firewall.allowFrom = allowFrom;
    networking.nftables.enable = nft;
  }).config;
in {
  iptables = eval false rules;
  nftables = eval true rules;
  dnsIptables = eval false [ { port = 5432; addresses = [ "db.example.org" ]; } ];
  dnsNftables = eval true [ { port = 5432; addresses = [ "db.example.org" ]; } ];
  invalid = eval false [ { port = 5432; addresses = [ "10.0.0.0/8" "-j ACCEPT" ]; } ];
  none = eval false [ ];
}
"#;

#[test]
fn firewall_module_writes_rules_for_the_backend_in_use() {
    let Some(nix) = nix_instantiate() else { return };
    let v = eval_case(&nix, FIREWALL_CASE);
    let ipt = &v["iptables"];
    assert!(assertions(ipt).iter().all(|a| *a));
    assert_eq!(
        ipt["networking"]["firewall"]["extraCommands"],
        concat!(
            "iptables -A nixos-fw -p tcp -s 10.0.0.2 --dport 5432 -j nixos-fw-accept\n",
            "ip6tables -A nixos-fw -p tcp -s fd00::3 --dport 5432 -j nixos-fw-accept\n",
            "iptables -A nixos-fw -p tcp -s 10.0.0.4 --dport 8080 -j nixos-fw-accept\n"
        )
    );
    // nixpkgs asserts extraCommands empty under nftables: never both.
    assert_eq!(
        ipt["networking"]["firewall"]["extraInputRules"],
        Value::Null
    );
    let nft = &v["nftables"];
    assert!(assertions(nft).iter().all(|a| *a));
    assert_eq!(
        nft["networking"]["firewall"]["extraInputRules"],
        concat!(
            "ip saddr 10.0.0.2 tcp dport 5432 accept\n",
            "ip6 saddr fd00::3 tcp dport 5432 accept\n",
            "ip saddr 10.0.0.4 tcp dport 8080 accept\n"
        )
    );
    assert_eq!(nft["networking"]["firewall"]["extraCommands"], Value::Null);

    // A DNS name: iptables resolves it when the rules load; nftables is refused.
    assert_eq!(
        v["dnsIptables"]["networking"]["firewall"]["extraCommands"],
        "iptables -A nixos-fw -p tcp -s db.example.org --dport 5432 -j nixos-fw-accept\n"
    );
    assert!(assertions(&v["dnsIptables"]).iter().all(|a| *a));
    let msgs = failed(&v["dnsNftables"]);
    assert!(
        msgs.iter()
            .any(|m| m.contains(r#"DNS names ["db.example.org"] cannot be used with networking.nftables.enable"#)),
        "{msgs:?}"
    );
    // Anything else (a network, an option) never reaches the shell script.
    let msgs = failed(&v["invalid"]);
    assert!(
        msgs.iter()
            .any(|m| m.contains(r#"["10.0.0.0/8","-j ACCEPT"]"#)),
        "{msgs:?}"
    );
    assert_eq!(v["none"], Value::Null);
}

const DATABASE_CASE: &str = r#"{ modulesDir, harness }:
let
  h = import (/. + harness) { inherit modulesDir; };
  synapseSettings = {
    server_name = "example.org";
    database = { name = "psycopg2"; args = { user = "matrix-synapse"; database = "matrix-synapse"; host = "10.0.0.1"; port = 5432; sslmode = null; }; };
  };
  synapse = enable: extraArgs: h.resolve (h.evalModule "synapse-database.nix" {
    masgen.synapse.databasePassword = { enable = true; passwordFile = "/run/secrets/syn"; };
    services.matrix-synapse = {
      inherit enable;
      settings = synapseSettings // { database = synapseSettings.database // { args = synapseSettings.database.args // extraArgs; }; };
      workers = { fed = { }; };
    };
  }).config;
  mas = enable: uri: h.resolve (h.evalModule "mas-database.nix" {
    masgen.mas.databasePassword = { enable = true; passwordFile = "/run/secrets/mas"; };
    services.matrix-authentication-service = {
      inherit enable;
      settings.database = { inherit uri; max_connections = 10; ssl_ca = null; };
    };
  }).config;
  uri = "postgresql://matrix-authentication-service@10.0.0.1:5432/matrix-authentication-service?sslmode=disable";
  exec = c: name: c.systemd.services.${name}.serviceConfig.ExecStart;
in {
  synapseHost = synapse true { };
  masHost = synapse false { };
  withPassword = synapse true { password = "in the store"; };
  mas = mas true uri;
  masOff = mas false uri;
  masNoUser = mas true "postgresql://10.0.0.1/mas";
  masWithPassword = mas true "postgresql://u:p@10.0.0.1/mas";
  filters = { inherit (h.mlib) synapseDatabaseFilter masDatabaseFilter synapseDatabaseFile masDatabaseFile; };
  disabled = h.resolve (h.evalModule "synapse-database.nix" {
    masgen.synapse.databasePassword = { enable = false; passwordFile = "/f"; };
    services.matrix-synapse = { enable = true; settings = { }; };
  }).config;
}
"#;

/// The Exec words of `ExecStart` (systemd's quoting is JSON's here).
fn exec_words(exec: &str) -> (String, Vec<String>) {
    let (program, rest) = exec.split_once(' ').unwrap();
    let mut words = Vec::new();
    let mut de = serde_json::Deserializer::from_str(rest).into_iter::<String>();
    for w in de.by_ref() {
        words.push(w.unwrap().replace("$$", "$").replace("%%", "%"));
    }
    (program.to_owned(), words)
}

#[test]
fn database_modules_write_their_files_before_the_services() {
    let Some(nix) = nix_instantiate() else { return };
    let v = eval_case(&nix, DATABASE_CASE);
    let f = &v["filters"];
    assert_eq!(f["synapseDatabaseFile"], SYNAPSE_DATABASE_PATH);
    assert_eq!(f["masDatabaseFile"], MAS_DATABASE_PATH);

    // Synapse's host: owned by matrix-synapse, before every Synapse unit.
    let s = &v["synapseHost"];
    assert!(assertions(s).iter().all(|a| *a), "{:?}", failed(s));
    assert_eq!(
        s["services"]["matrix-synapse"]["extraConfigFiles"],
        json!([SYNAPSE_DATABASE_PATH])
    );
    let unit = &s["systemd"]["services"]["masgen-synapse-database"];
    assert_eq!(
        format!("{}.service", "masgen-synapse-database"),
        SYNAPSE_DATABASE_UNIT
    );
    let units = json!([
        "matrix-synapse.service",
        "matrix-synapse-worker-fed.service"
    ]);
    assert_eq!(unit["before"], units);
    assert_eq!(unit["requiredBy"], units);
    let sc = &unit["serviceConfig"];
    assert_eq!(sc["User"], "matrix-synapse");
    assert_eq!(sc["Group"], "matrix-synapse");
    assert_eq!(sc["RuntimeDirectory"], "masgen-synapse-database");
    assert_eq!(sc["RuntimeDirectoryMode"], "0700");
    assert_eq!(sc["RemainAfterExit"], true);
    assert_eq!(sc["LoadCredential"], json!(["password:/run/secrets/syn"]));
    let (program, words) = exec_words(sc["ExecStart"].as_str().unwrap());
    assert_eq!(
        program,
        "/nix/store/stub-masgen-database-file/bin/masgen-database-file"
    );
    assert_eq!(
        words,
        [
            SYNAPSE_DATABASE_PATH,
            "/nix/store/stub-masgen-synapse-database-settings.json",
            f["synapseDatabaseFilter"].as_str().unwrap()
        ]
    );

    // The MAS host: root's file, for the syn2mas tasks only.
    let m = &v["masHost"];
    assert!(assertions(m).iter().all(|a| *a));
    let unit = &m["systemd"]["services"]["masgen-synapse-database"];
    assert_eq!(unit["serviceConfig"]["User"], "root");
    assert_eq!(unit["before"], json!([]));
    assert_eq!(unit["requiredBy"], json!([]));

    let msgs = failed(&v["withPassword"]);
    assert!(
        msgs.iter()
            .any(|m| m.contains("settings.database.args.password is set")),
        "{msgs:?}"
    );
    assert_eq!(v["disabled"], Value::Null);

    // MAS: root's file (MAS reads it through LoadCredential), before MAS.
    let mas = &v["mas"];
    assert!(assertions(mas).iter().all(|a| *a), "{:?}", failed(mas));
    assert_eq!(
        mas["services"]["matrix-authentication-service"]["extraConfigFiles"],
        json!([MAS_DATABASE_PATH])
    );
    let unit = &mas["systemd"]["services"]["masgen-mas-database"];
    assert_eq!(format!("{}.service", "masgen-mas-database"), MAS_DATABASE_UNIT);
    assert_eq!(
        unit["before"],
        json!(["matrix-authentication-service.service"])
    );
    assert_eq!(
        unit["requiredBy"],
        json!(["matrix-authentication-service.service"])
    );
    let sc = &unit["serviceConfig"];
    assert!(sc.get("User").is_none(), "root: {sc}");
    assert_eq!(sc["RuntimeDirectory"], "masgen-mas-database");
    assert_eq!(sc["LoadCredential"], json!(["password:/run/secrets/mas"]));
    let (_, words) = exec_words(sc["ExecStart"].as_str().unwrap());
    assert_eq!(
        words,
        [
            MAS_DATABASE_PATH,
            "/nix/store/stub-masgen-mas-database-settings.json",
            f["masDatabaseFilter"].as_str().unwrap()
        ]
    );
    assert_eq!(
        v["masOff"]["systemd"]["services"]["masgen-mas-database"]["before"],
        json!([])
    );
    for case in ["masNoUser", "masWithPassword"] {
        let msgs = failed(&v[case]);
        assert!(
            msgs.iter()
                .any(|m| m.contains("postgresql://USER@HOST:PORT/DB")),
            "{case}: {msgs:?}"
        );
    }
}

const TASKS_CASE: &str = r#"{ modulesDir, harness }:
let
  h = import (/. + harness) { inherit modulesDir; };
  config = on: {
    masgen.tasks.syn2mas-check = h.task "syn2mas-check" {
      command = [ "@masgen-mas-run@" "@mas-config@" "--" "@mas-cli@" "syn2mas" "@CONFIG@" "@synapse-config-args@" "check" ];
    };
    masgen.tasks.sql = h.task "sql" { command = [ "@psql@" ]; };
    masgen.synapse.passwordConfig.enable = on;
    masgen.synapse.databasePassword.enable = on;
    masgen.masKeys.generate = if on then [ { type = "rsa"; file = "/var/lib/mas/rsa.pem"; } ] else [ ];
    masgen.mas.databasePassword.enable = on;
    services.matrix-authentication-service = {
      package = h.stubPkg "matrix-authentication-service";
      settings = { };
      credentials = { };
      extraConfigFiles = [ "/run/masgen-mas-database/database.yaml" ];
    };
    services.matrix-synapse = {
      enable = false;
      settings = { server_name = "example.org"; };
      extraConfigFiles = [ "/run/masgen-synapse-database/database.yaml" ];
    };
    services.postgresql.enable = false;
  };
  eval = on: h.resolve (h.evalModule "tasks.nix" (config on)).config;
in {
  on = eval true;
  off = eval false;
}
"#;

/// tasks.nix orders a task after the database files it loads, in the order
/// `lower::tasks::implied` states (the renders and `masgen diff` follow it).
#[test]
fn tasks_wait_for_the_database_files_as_implied_says() {
    let Some(nix) = nix_instantiate() else { return };
    let v = eval_case(&nix, TASKS_CASE);
    let command: Vec<String> = [
        "@masgen-mas-run@",
        "@mas-config@",
        "--",
        "@mas-cli@",
        "syn2mas",
        "@CONFIG@",
        "@synapse-config-args@",
        "check",
    ]
    .map(String::from)
    .to_vec();
    let no_credentials = Default::default();
    for (case, on) in [("on", true), ("off", false)] {
        let units = &v[case]["systemd"]["services"];
        let rust = implied(
            "syn2mas-check",
            &command,
            &no_credentials,
            None,
            &HostWiring {
                mas_credentials: &no_credentials,
                password_config: on,
                mas_keys: on,
                synapse_database: on,
                mas_database: on,
            },
        );
        let task = &units["syn2mas-check"];
        assert_eq!(task["after"], json!(rust.after_requires), "{case}");
        assert_eq!(task["requires"], json!(rust.after_requires), "{case}");
        assert_eq!(units["sql"]["after"], json!([]), "{case}");
    }
    assert_eq!(
        v["on"]["systemd"]["services"]["syn2mas-check"]["after"],
        json!([
            "masgen-synapse-password-config.service",
            SYNAPSE_DATABASE_UNIT,
            "masgen-mas-keys.service",
            MAS_DATABASE_UNIT
        ])
    );
    // Without Synapse on the host, --synapse-config names a YAML made from
    // its settings (that it evaluates with nixpkgs' Synapse module, which
    // makes log_config from an option without value when Synapse is off, is
    // checked by tests/conformance_nixpkgs.rs), then the database file.
    let exec = v["on"]["systemd"]["services"]["syn2mas-check"]["serviceConfig"]["ExecStart"]
        .as_str()
        .unwrap();
    assert!(
        exec.contains(concat!(
            r#""--synapse-config" "/nix/store/stub-homeserver.yaml" "#,
            r#""--synapse-config" "%d/masgen-synapse-config-0" "check""#
        )),
        "{exec}"
    );
    assert_eq!(
        v["on"]["systemd"]["services"]["syn2mas-check"]["serviceConfig"]["LoadCredential"],
        json!([
            "masgen-mas-extra-config-0:/run/masgen-mas-database/database.yaml",
            "masgen-synapse-config-0:/run/masgen-synapse-database/database.yaml"
        ])
    );
}

// ------------------------------------------------------------- for real

/// The passwords of the real tests, as their files hold them: every
/// character that means something in a URI, in SQL or in a shell, and a
/// trailing newline (stripped: one, and only one).
const SYNAPSE_PASSWORD: &str = "s3:@/%'\"\\ $HOME `id` #x\n";
const MAS_PASSWORD: &str = "m:@/%'\"?&=+ ;\n";
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
    let v = eval_case(
        nix,
        &format!(
            r#"{{ modulesDir, harness }}:
            let l = import (/. + modulesDir + "/lib.nix"); clients = builtins.fromJSON {}; in {{
              lines = l.postgresAccessLines clients;
              plan = l.postgresPasswordPlan clients;
            }}"#,
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

fn connects(out: &Output, expect: &str) {
    assert!(
        out.status.success(),
        "expected a connection ({expect}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expect);
}

fn refused(out: &Output, why: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a refusal ({why})");
    assert!(err.contains(why), "expected `{why}`, got: {err}");
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
    let second = pg.listen_tcp("127.0.0.1,127.0.0.2").is_ok();
    if !second {
        eprintln!("NOTE: cannot listen on 127.0.0.2 here; 127.0.0.1 only");
        pg.listen_tcp("127.0.0.1").unwrap_or_else(|e| panic!("{e}"));
    }
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
    assert!(lines.contains("host \"mas db\" mas 127.0.0.1/32 scram-sha-256\n"), "{lines}");
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
    let set_passwords = || {
        let out = Command::new(&runuser)
            .args(["-u", "postgres", "--", "env"])
            .arg(format!("PATH={path}"))
            .arg(format!("CREDENTIALS_DIRECTORY={}", cred_dir.display()))
            .arg(format!("PGHOST={}", pg.socket_dir().display()))
            .arg(format!("PGPORT={}", pg.port()))
            .arg("bash")
            .arg(modules_dir().join("scripts/postgres-passwords.sh"))
            .args(&words)
            .current_dir("/")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "postgres-passwords.sh: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            pg.log()
        );
    };
    set_passwords();
    // A restart of the unit sets them again, without error.
    set_passwords();

    let syn = strip_one_newline(SYNAPSE_PASSWORD);
    let mas = strip_one_newline(MAS_PASSWORD);
    let mut hosts = vec!["127.0.0.1"];
    if second {
        hosts.push("127.0.0.2");
    }
    for host in &hosts {
        connects(
            &tcp_psql(&pg, host, "matrix-synapse", "matrix-synapse", syn),
            "matrix-synapse|matrix-synapse",
        );
        connects(&tcp_psql(&pg, host, "mas db", "mas", mas), "mas|mas db");
    }
    let host = hosts.last().unwrap();
    let bad_password = "password authentication failed";
    let no_entry = "no pg_hba.conf entry";
    refused(&tcp_psql(&pg, host, "matrix-synapse", "matrix-synapse", "wrong"), bad_password);
    // The file's newline is not part of the password...
    refused(
        &tcp_psql(&pg, host, "matrix-synapse", "matrix-synapse", SYNAPSE_PASSWORD),
        bad_password,
    );
    // ...and only one is stripped (psql's backquote, like jq's rtrimstr).
    connects(&tcp_psql(&pg, host, "matrix-synapse", "nl", "two\n"), "nl|matrix-synapse");
    refused(&tcp_psql(&pg, host, "matrix-synapse", "nl", "two"), bad_password);
    // A database, role or address not listed.
    refused(&tcp_psql(&pg, host, "mas db", "matrix-synapse", syn), no_entry);
    refused(&tcp_psql(&pg, host, "matrix-synapse", "mas", mas), no_entry);
    refused(&tcp_psql(&pg, host, "matrix-synapse", "stranger", "stranger"), no_entry);
    refused(&tcp_psql(&pg, host, "matrix-synapse", "elsewhere", syn), no_entry);
    // (elsewhere's password was set all the same, hashed.)
    assert_eq!(
        pg.superuser_sql("SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'elsewhere'")
            .unwrap(),
        "SCRAM-SHA-256$"
    );
    // Logging was on, and no password reached the log.
    let log = pg.log();
    assert!(log.contains("CREATE DATABASE"), "statements are logged:\n{log}");
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
        assert!(!out_file.exists(), "a failed run left {}", out_file.display());
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
    let f = eval_case(
        nix,
        r#"{ modulesDir, harness }:
        let l = import (/. + modulesDir + "/lib.nix"); in { inherit (l) synapseDatabaseFilter masDatabaseFilter; }"#,
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
    let (written, _, file) = database_file(tmp.path(), &settings, filter, SYNAPSE_PASSWORD).unwrap();
    assert_eq!(mode_of(&file), 0o400);
    let mut expected = settings.clone();
    expected["args"]["password"] = json!(syn);
    assert_eq!(written, json!({ "database": expected }));
    let (twice, _, _) = database_file(tmp.path(), &settings, filter, NEWLINES_PASSWORD).unwrap();
    assert_eq!(twice["database"]["args"]["password"], "two\n");
    let err = database_file(tmp.path(), &settings, filter, "").unwrap_err();
    assert!(err.contains("empty or missing"), "{err}");

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
        connects(&out, "matrix-synapse|matrix-synapse");
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
    connects(&out, "mas|mas db");

    // A uri without a user, or with a password already: an error, no file.
    for bad in [
        "postgresql://127.0.0.1/mas",
        "postgresql://mas:old@127.0.0.1/mas",
    ] {
        let err = database_file(tmp.path(), &json!({ "uri": bad }), filter, MAS_PASSWORD).unwrap_err();
        assert!(err.contains("has no USER@"), "{bad}: {err}");
    }
}
