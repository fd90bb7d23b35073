//! One homeserver on several hosts (`examples/fleet/example-net.toml`:
//! Synapse and nginx on matrix-net, MAS on auth-net, PostgreSQL on db-net):
//! where each service lands, how the hosts are wired (listeners, endpoints,
//! database logins, firewall), what the spec may not do, and the plan across
//! hosts (the plan, apply and rollback across hosts: tests/split_hosts_plan.rs).
//! The modules these options drive are evaluated with nixpkgs in
//! tests/nixos_eval.rs and run against PostgreSQL in their own tests.

mod support;

use std::path::Path;

use serde_json::Value;
use support::check::{errors, set, with};
use support::{example_text, nix_instantiate};

const SPLIT: &str = "fleet/example-net.toml";

fn split_text() -> String {
    example_text(SPLIT)
}

fn build(text: &str) -> tempfile::TempDir {
    support::check::built_in(tempfile::tempdir().unwrap(), text)
}

/// The NixOS module of `configuration` (`hosts/<host>/<phase>/default.nix`),
/// applied to nothing: the options it sets, as JSON.
fn module(out: &Path, host: &str, phase: &str) -> Option<Value> {
    let nix = nix_instantiate()?;
    let file = out.join("hosts").join(host).join(phase).join("default.nix");
    let expr = format!("import {} {{}}", file.display());
    Some(nix.eval_json_expr(&expr).expect("module evaluates"))
}

fn codes(text: String) -> Vec<String> {
    errors(text).into_iter().map(|(code, _)| code).collect()
}

#[test]
fn the_split_example_validates() {
    assert_eq!(errors(split_text()), Vec::<(String, String)>::new());
}

/// Each host gets only its own services; the renders follow.
#[test]
fn each_host_runs_only_its_services() {
    let dir = build(&split_text());
    let out = dir.path().join("out");
    let has = |p: &str| out.join(p).exists();
    assert!(has("render/matrix-net/final/homeserver.yaml"));
    assert!(has("render/matrix-net/final/nginx.conf"));
    assert!(!has("render/matrix-net/final/mas-config.yaml"));
    assert!(has("render/auth-net/final/mas-config.yaml"));
    assert!(!has("render/auth-net/final/nginx.conf"));
    // syn2mas reads Synapse's config on MAS's host, in phase 1 only.
    assert!(has("render/auth-net/prepare/homeserver.yaml"));
    assert!(!has("render/auth-net/final/homeserver.yaml"));
    assert!(has("render/db-net/prepare/units/masgen-backup.service"));
    assert!(!has("render/db-net/final/homeserver.yaml"));
    assert!(!has(
        "render/matrix-net/prepare/units/masgen-syn2mas-migrate.service"
    ));
    assert!(has(
        "render/auth-net/prepare/units/masgen-syn2mas-migrate.service"
    ));

    let Some(web) = module(&out, "matrix-net", "final") else {
        return;
    };
    let services = &web["services"];
    assert_eq!(services["matrix-synapse"]["enable"], true);
    assert_eq!(services["nginx"]["enable"], true);
    assert!(services.get("matrix-authentication-service").is_none());
    assert!(services.get("postgresql").is_none());
    assert_eq!(
        web["networking"]["firewall"]["allowedTCPPorts"],
        serde_json::json!([80, 443])
    );

    let auth = module(&out, "auth-net", "prepare").unwrap();
    assert_eq!(
        auth["services"]["matrix-authentication-service"]["enable"],
        true
    );
    // Synapse's settings without Synapse: for syn2mas.
    assert!(auth["services"]["matrix-synapse"].get("enable").is_none());
    assert!(auth["services"]["matrix-synapse"]["settings"].is_object());
    assert!(
        auth.get("networking").is_none(),
        "no public port on MAS's host"
    );

    let db = module(&out, "db-net", "final").unwrap();
    assert_eq!(
        db["services"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["postgresql"]
    );
    assert!(db.get("security").is_none(), "ACME only on nginx's host");
}

/// Listeners bind the host's address; each side calls the other's.
#[test]
fn services_reach_each_other_at_the_hosts_addresses() {
    let dir = build(&split_text());
    let out = dir.path().join("out");
    let Some(web) = module(&out, "matrix-net", "final") else {
        return;
    };
    let synapse = &web["services"]["matrix-synapse"]["settings"];
    assert_eq!(
        synapse["listeners"][0]["bind_addresses"],
        serde_json::json!(["10.20.0.2"])
    );
    assert_eq!(
        synapse["matrix_authentication_service"]["endpoint"],
        "http://10.20.0.3:8080/auth/"
    );
    let db = &synapse["database"]["args"];
    assert_eq!(db["host"], "10.20.0.4");
    assert_eq!(db["port"], 5432);
    assert_eq!(db["sslmode"], "prefer");
    assert!(
        db.get("password").is_none(),
        "the password is added at run time"
    );
    assert_eq!(
        web["masgen"]["synapse"]["databasePassword"]["passwordFile"],
        "/run/secrets/synapse-db-password"
    );

    let auth = module(&out, "auth-net", "final").unwrap();
    let mas = &auth["services"]["matrix-authentication-service"]["settings"];
    assert_eq!(mas["matrix"]["endpoint"], "http://10.20.0.2:8008/");
    assert_eq!(
        mas["database"]["uri"],
        "postgresql://matrix-authentication-service@10.20.0.4:5432/matrix-authentication-service?sslmode=prefer"
    );
    let trusted = mas["http"]["trusted_proxies"].as_array().unwrap();
    assert!(
        trusted.contains(&Value::from("10.20.0.2/32")),
        "{trusted:?}"
    );
    let binds = &mas["http"]["listeners"][0]["binds"][0];
    assert_eq!(binds["host"], "10.20.0.3");
    // MAS's port is open to nginx's and Synapse's host only.
    assert_eq!(
        auth["masgen"]["firewall"]["allowFrom"],
        serde_json::json!([{"port": 8080, "addresses": ["10.20.0.2"]}])
    );
}

/// PostgreSQL's host lets each role in from the hosts that use it, and
/// syn2mas's login to Synapse's database exists only in phase 1.
#[test]
fn the_database_host_admits_exactly_its_clients() {
    let dir = build(&split_text());
    let out = dir.path().join("out");
    let Some(prepare) = module(&out, "db-net", "prepare") else {
        return;
    };
    let clients = |m: &Value| -> Vec<(String, String, String)> {
        m["masgen"]["postgresAccess"]["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["database"].as_str().unwrap().to_string(),
                    c["role"].as_str().unwrap().to_string(),
                    c["address"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let synapse = ("matrix-synapse".to_string(), "matrix-synapse".to_string());
    let mas = "matrix-authentication-service".to_string();
    assert_eq!(
        clients(&prepare),
        [
            (synapse.0.clone(), synapse.1.clone(), "10.20.0.2".into()),
            (synapse.0.clone(), synapse.1.clone(), "10.20.0.3".into()),
            (mas.clone(), mas.clone(), "10.20.0.3".into()),
        ]
    );
    // PostgreSQL listens on db-net's own address (and localhost) only.
    assert_eq!(
        prepare["masgen"]["postgresAccess"]["listenAddresses"],
        serde_json::json!(["10.20.0.4"])
    );
    let fin = module(&out, "db-net", "final").unwrap();
    assert_eq!(
        clients(&fin),
        [
            (synapse.0.clone(), synapse.1.clone(), "10.20.0.2".into()),
            (mas.clone(), mas.clone(), "10.20.0.3".into()),
        ]
    );
    // MAS's database is created on db-net, not by MAS's module on auth-net.
    assert_eq!(
        fin["services"]["postgresql"]["ensureDatabases"],
        serde_json::json!([mas])
    );
    let auth = module(&out, "auth-net", "final").unwrap();
    assert!(auth["services"]["matrix-authentication-service"]
        .get("createDatabase")
        .is_none());
}

/// What a split spec may not do, each refused at its key.
#[test]
fn split_mistakes_are_refused() {
    let t = split_text();
    let cases: Vec<(String, &str)> = vec![
        (set(&t, "mas.host", "nowhere".into()), "host.unknown"),
        (
            set(&t, "hosts.spare.address", "10.20.0.9".into()),
            "host.unused",
        ),
        (
            set(&t, "hosts.db-net.address", "not an address".into()),
            "value.address",
        ),
        (
            {
                let mut doc: toml::Table = toml::from_str(&t).unwrap();
                let hosts = doc["hosts"].as_table_mut().unwrap();
                hosts["auth-net"].as_table_mut().unwrap().remove("address");
                toml::to_string(&doc).unwrap()
            },
            "host.address_required",
        ),
        (
            set(&t, "synapse.listener.address", "127.0.0.1".into()),
            "host.listen_unreachable",
        ),
        (
            {
                let mut doc: toml::Table = toml::from_str(&t).unwrap();
                doc["mas"]["database"]
                    .as_table_mut()
                    .unwrap()
                    .remove("password_file");
                toml::to_string(&doc).unwrap()
            },
            "database.password_required",
        ),
        (set(&t, "mas.database.port", 5433.into()), "database.port"),
        (
            set(&t, "mas.database.ssl_mode", "always".into()),
            "database.ssl_mode",
        ),
        (
            set(&t, "hosts.matrix-net.address", "web.internal".into()),
            "host.address_ip",
        ),
        // Synapse's database on its own host's socket: syn2mas on auth-net
        // cannot reach it.
        (
            {
                let mut doc: toml::Table = toml::from_str(&t).unwrap();
                let db = doc["synapse"]["database"].as_table_mut().unwrap();
                for k in ["host", "password_file", "ssl_mode"] {
                    db.remove(k);
                }
                toml::to_string(&doc).unwrap()
            },
            "host.syn2mas_database",
        ),
    ];
    for (text, code) in cases {
        let got = codes(text);
        assert!(got.contains(&code.to_string()), "{code}: {got:?}");
    }
    // On one host, ssl_mode and password_file have no place.
    let got = codes(with(
        "migrate-local.toml",
        "synapse.database.ssl_mode",
        "require".into(),
    ));
    assert_eq!(got, ["database.ssl_mode"]);
    // A database on the service's own host is its socket: no password.
    let own = set(&t, "mas.database.host", "auth-net".into());
    assert!(codes(own).contains(&"database.password_file".to_string()));
}

/// syn2mas applies no `sslmode` from Synapse's `database.args`: its tasks
/// get Synapse's `ssl_mode` as `PGSSLMODE`, and MAS's URI states its own
/// mode (sqlx's default `prefer` when the spec gives none), so the variable
/// reaches Synapse's connection only.
#[test]
fn syn2mas_connects_with_synapse_database_ssl_mode() {
    let text = set(&split_text(), "synapse.database.ssl_mode", "require".into());
    let mut doc: toml::Table = toml::from_str(&text).unwrap();
    doc["mas"]["database"]
        .as_table_mut()
        .unwrap()
        .remove("ssl_mode");
    let dir = build(&toml::to_string(&doc).unwrap());
    let render = dir.path().join("out/render/auth-net/prepare");
    for unit in [
        "masgen-syn2mas-check",
        "masgen-syn2mas-dry-run",
        "masgen-syn2mas-migrate",
    ] {
        let text = std::fs::read_to_string(render.join(format!("units/{unit}.service"))).unwrap();
        assert!(
            text.contains("Environment=\"PGSSLMODE=require\"\n"),
            "{unit}:\n{text}"
        );
    }
    let config = std::fs::read_to_string(render.join("mas-config.yaml")).unwrap();
    assert!(
        config.contains("@10.20.0.4:5432/matrix-authentication-service?sslmode=prefer"),
        "{config}"
    );
    // Without a mode for Synapse's database, neither is set.
    let mut doc: toml::Table = toml::from_str(&split_text()).unwrap();
    for db in ["synapse", "mas"] {
        doc[db]["database"]
            .as_table_mut()
            .unwrap()
            .remove("ssl_mode");
    }
    let dir = build(&toml::to_string(&doc).unwrap());
    let render = dir.path().join("out/render/auth-net/prepare");
    let unit =
        std::fs::read_to_string(render.join("units/masgen-syn2mas-migrate.service")).unwrap();
    assert!(!unit.contains("PGSSLMODE"), "{unit}");
    let config = std::fs::read_to_string(render.join("mas-config.yaml")).unwrap();
    assert!(!config.contains("sslmode"), "{config}");
}

/// PostgreSQL runs on every host that holds one of the two databases:
/// MAS's alone on MAS's host (its socket), Synapse's alone on another.
#[test]
fn postgres_runs_where_either_database_is() {
    let mut doc: toml::Table = toml::from_str(&split_text()).unwrap();
    let mas_db = doc["mas"]["database"].as_table_mut().unwrap();
    mas_db.insert("host".into(), "auth-net".into());
    mas_db.remove("password_file");
    mas_db.remove("ssl_mode");
    let c = support::checked("split.toml", &toml::to_string(&doc).unwrap());
    let hs = &c.homeserver;
    let postgres = |h: &str| hs.roles(h).postgres;
    assert!(postgres("auth-net") && postgres("db-net") && !postgres("matrix-net"));
    assert!(hs.roles("auth-net").mas && !hs.roles("db-net").mas);
}

/// The edges of placement: a DNS name is an address; a listener address
/// that is not loopback is the operator's choice, and every loopback form
/// is refused; a two-host split is checked like a bigger one; MAS's trusted
/// proxies from the spec are kept as given; the help for an unknown host
/// names the spec's hosts.
#[test]
fn placement_edges() {
    let t = split_text();
    let clean = |text: String| {
        let got = errors(text.clone());
        assert_eq!(got, Vec::<(String, String)>::new(), "{text}");
    };
    clean(set(&t, "hosts.db-net.address", "db.internal".into()));
    clean(set(&t, "synapse.listener.address", "10.20.0.2".into()));
    for loopback in ["localhost", "::1", "[::1]", "127.0.0.2"] {
        let got = codes(set(&t, "mas.listener.address", loopback.into()));
        assert!(
            got.contains(&"host.listen_unreachable".to_string()),
            "{loopback}: {got:?}"
        );
    }
    // Two hosts: Synapse, MAS and nginx on matrix-net, PostgreSQL on db-net.
    let mut doc: toml::Table = toml::from_str(&t).unwrap();
    doc["hosts"].as_table_mut().unwrap().remove("auth-net");
    doc["mas"]["host"] = "matrix-net".into();
    let two = toml::to_string(&doc).unwrap();
    clean(two.clone());
    let mut doc: toml::Table = toml::from_str(&two).unwrap();
    doc["hosts"]["db-net"]
        .as_table_mut()
        .unwrap()
        .remove("address");
    let got = codes(toml::to_string(&doc).unwrap());
    assert!(
        got.contains(&"host.address_required".to_string()),
        "{got:?}"
    );
    // trusted_proxies given: exactly those.
    let given = set(
        &t,
        "mas.trusted_proxies",
        vec![toml::Value::from("10.9.9.9/32")].into(),
    );
    let c = support::checked("given.toml", &given);
    assert_eq!(c.homeserver.mas.trusted_proxies, ["10.9.9.9/32"]);
    let c = support::checked("split.toml", &t);
    // (MAS's own default, loopback, and nginx's host.)
    assert_eq!(
        c.homeserver.mas.trusted_proxies,
        ["127.0.0.1/8", "::1/128", "10.20.0.2/32"]
    );
    // The help lists the hosts.
    let report = masgen::check_source(masgen::spec::Source::new(
        "spec.toml",
        set(&t, "mas.host", "nowhere".into()),
    ))
    .err()
    .unwrap();
    let help: Vec<String> = report
        .iter()
        .filter(|d| d.code == "host.unknown")
        .filter_map(|d| d.help.as_ref().map(|h| h.to_string()))
        .collect();
    assert!(
        help.iter()
            .any(|h| h.ends_with("name one of: `auth-net`, `db-net`, `matrix-net`")),
        "{help:?}"
    );
}
