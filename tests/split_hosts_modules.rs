//! Tests of masgen's split-host modules: modules/postgres-access.nix,
//! firewall.nix, synapse-database.nix, mas-database.nix (and what
//! synapse-secrets.nix and tasks.nix do on a host without Synapse).
//!
//! Each module is evaluated in isolation with the stub `lib`/`pkgs` of
//! tests/support/module_harness.nix (as tests/modules.rs does): the units,
//! pg_hba lines, firewall rules and assertions they produce. Inside whole
//! NixOS configurations with a real nixpkgs tree's own modules:
//! tests/split_hosts_nixpkgs.rs.
//!
//! The programs the modules run are run for real, against PostgreSQL, in
//! tests/split_hosts_postgres.rs.

mod support;

use serde_json::{json, Value};

use masgen::lower::tasks::{
    implied, HostWiring, MAS_DATABASE_PATH, MAS_DATABASE_UNIT, POSTGRES_PASSWORDS_UNIT,
    SYNAPSE_DATABASE_PATH, SYNAPSE_DATABASE_UNIT,
};
use support::{nix_instantiate, NixTool};

fn eval_case(nix: &NixTool, expr: &str) -> Value {
    support::eval_module_case(nix, expr)
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
    masgen.postgresAccess = { enable = true; clients = cs; listenAddresses = null; };
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
  listening = h.resolve (h.evalModule "postgres-access.nix" (config true clients // {
    masgen.postgresAccess = { enable = true; clients = clients; listenAddresses = [ "10.0.0.1" ]; };
  })).config;
  disabled = h.resolve (h.evalModule "postgres-access.nix" {
    masgen.postgresAccess = { enable = false; clients = clients; listenAddresses = null; };
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
    // Without listenAddresses, nixpkgs' "*" of enableTCPIP stands; with
    // them, localhost and those only.
    assert!(pg["settings"]["listen_addresses"].is_null(), "{pg}");
    assert_eq!(
        v["listening"]["services"]["postgresql"]["settings"]["listen_addresses"],
        "localhost,10.0.0.1"
    );
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
        json!(["password-0:/run/secrets/syn", "password-1:/run/secrets/mas"])
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
        msgs.iter()
            .any(|m| m.contains("services.postgresql is not enabled")),
        "{msgs:?}"
    );
    let msgs = failed(&v["badAddress"]);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].contains(r#"["10.0.0.300","all"]"#), "{}", msgs[0]);
    let msgs = failed(&v["quoteInName"]);
    assert!(msgs.iter().any(|m| m.contains("double quote")), "{msgs:?}");
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
  kinds = map h.mlib.addressKind [
    "10.0.0.1" "10.0.0.256" "1.2.3" "::1" "fd00::3" "::ffff:10.0.0.1" "2001:db8:0:0:0:0:0:1"
    ":" "1:2" "1::2::3" ":::1" "12345::1" "fe80::1%eth0" "db.example.org" "db" "all" "samenet" "a b" "-x"
  ];
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
        msgs.iter().any(|m| m.contains(
            r#"DNS names ["db.example.org"] cannot be used with networking.nftables.enable"#
        )),
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
    assert_eq!(
        v["kinds"],
        json!([
            "ipv4", "invalid", "invalid", "ipv6", "ipv6", "ipv6", "ipv6", "invalid", "invalid",
            "invalid", "invalid", "invalid", "invalid", "dns", "dns", "invalid", "invalid",
            "invalid", "invalid"
        ])
    );
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
    assert_eq!(
        format!("{}.service", "masgen-mas-database"),
        MAS_DATABASE_UNIT
    );
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
