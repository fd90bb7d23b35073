//! Tests of the shared test support code itself (tests/support/mod.rs).

mod support;

use std::fs;

use serde_json::json;
use support::*;

#[test]
fn basics() {
    assert!(repo_root().join("Cargo.toml").is_file());
    assert_ne!(free_port(), 0);
    if in_ci() {
        // CI checks out the shared dir beside the repo.
        assert!(shared_dir().is_dir(), "{} missing", shared_dir().display());
    }
    assert!(find_tool("sh").is_some());
    assert!(find_tool("definitely-not-a-tool-masgen").is_none());
}

#[test]
fn postgres_peer_auth_with_ident_map() {
    if !ensure_os_user("masgen-test-a") {
        return;
    }
    let Some(pg) = PgCluster::start() else { return };
    assert!(pg
        .socket_dir()
        .join(format!(".s.PGSQL.{}", pg.port()))
        .exists());

    pg.superuser_sql("CREATE ROLE role_b LOGIN;\nCREATE DATABASE db_b OWNER role_b;")
        .unwrap();
    pg.set_ident("testmap masgen-test-a role_b\n").unwrap();
    pg.set_hba("local db_b role_b peer map=testmap\nlocal all all reject\n")
        .unwrap();

    let who = pg
        .psql_as(
            "masgen-test-a",
            "db_b",
            "role_b",
            "SELECT current_user, current_database();",
        )
        .unwrap();
    assert_eq!(who, "role_b|db_b");
    // Role ownership: role_b can create tables in its own db.
    pg.psql_as(
        "masgen-test-a",
        "db_b",
        "role_b",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (41), (1);",
    )
    .unwrap();
    assert_eq!(
        pg.psql_as("masgen-test-a", "db_b", "role_b", "SELECT sum(x) FROM t;")
            .unwrap(),
        "42"
    );

    // The map does not let masgen-test-a be the superuser...
    let err = pg
        .psql_as("masgen-test-a", "postgres", pg.superuser(), "SELECT 1;")
        .unwrap_err();
    assert!(err.contains("authentication failed"), "{err}");
    // ...nor the superuser OS account be role_b.
    assert!(pg
        .psql_as(pg.superuser(), "db_b", "role_b", "SELECT 1;")
        .is_err());

    // Broken hba files are reported, not silently ignored.
    let err = pg.set_hba("local all all nonsense-method\n").unwrap_err();
    assert!(err.contains("nonsense-method"), "{err}");
}

#[test]
fn postgres_trust_cluster_and_uri() {
    let Some(pg) = PgCluster::start_with_auth("trust") else {
        return;
    };
    pg.superuser_sql("CREATE ROLE someone LOGIN;").unwrap();
    // Trust: any OS user may connect as any role.
    let me = pg.superuser().to_owned();
    assert_eq!(
        pg.psql_as(&me, "postgres", "someone", "SELECT current_user;")
            .unwrap(),
        "someone"
    );
    assert!(pg.uri("db", "someone").contains("%2F"));
}

#[test]
fn upstream_records_requests_directly() {
    let up = RecordingUpstream::start("direct");
    let (status, body) = http_get(up.port(), "example.test", "/x/%2Fy?z=1");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["upstream"], "direct");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/x/%2Fy?z=1");
    assert_eq!(v["headers"]["host"], "example.test");

    let r = http_request(up.port(), "POST", "h", "/p", &[("X-Test", "1")], "hello").unwrap();
    assert_eq!(r.json()["body"], "hello");
    assert_eq!(r.json()["headers"]["x-test"], "1");
    assert_eq!(up.requests().len(), 2);
}

#[test]
fn nginx_routes_to_upstreams() {
    let a = RecordingUpstream::start("a");
    let b = RecordingUpstream::start("b");
    let port = free_port();
    let blocks = format!(
        r#"
server {{
  listen 127.0.0.1:{port};
  server_name matrix.example.test;
  location /a {{
    proxy_pass http://127.0.0.1:{pa};
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
  }}
  location /b {{
    proxy_pass http://127.0.0.1:{pb};
  }}
  location / {{ return 404; }}
}}
"#,
        pa = a.port(),
        pb = b.port()
    );
    let Some(nginx) = Nginx::start(&blocks) else {
        return;
    };

    let (status, body) = http_get(port, "matrix.example.test", "/a/one?x=%2F");
    assert_eq!(status, 200, "{body}\n{}", nginx.error_log());
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["upstream"], "a");
    assert_eq!(v["path"], "/a/one?x=%2F");
    assert_eq!(v["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(v["headers"]["host"], "matrix.example.test");

    let (status, body) = http_get(port, "matrix.example.test", "/b/two");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["upstream"], "b");
    assert_eq!(v["path"], "/b/two");
    assert!(v["headers"].get("x-forwarded-for").is_none(), "{v}");

    let (status, _) = http_get(port, "matrix.example.test", "/c");
    assert_eq!(status, 404);
    assert_eq!(a.requests().len(), 1);
    assert_eq!(b.requests().len(), 1);
    assert!(nginx.access_log().contains("/b/two"));
}

#[test]
fn nginx_config_check() {
    let Some(ok) = nginx_test_config("server { listen 127.0.0.1:1; return 204; }") else {
        return;
    };
    ok.unwrap();
    let err = nginx_test_config("server { listen 127.0.0.1:1; bogus_directive on; }")
        .unwrap()
        .unwrap_err();
    assert!(err.contains("unknown directive"), "{err}");
    assert!(Nginx::try_start("server { nope; }").unwrap().is_err());
}

#[test]
fn nix_parse_and_eval() {
    let Some(nix) = nix_instantiate() else { return };
    nix.parse_str("{ a = 1; b = x: x + 1; }").unwrap();
    let err = nix.parse_str("{ a = ; }").unwrap_err();
    assert!(err.contains("syntax error"), "{err}");
    assert!(err.contains("nix-instantiate"), "{err}");

    assert_eq!(
        nix.eval_json_expr(r#"{ a = 1; b = [ true "x" null ]; c.d = 1.5; }"#)
            .unwrap(),
        json!({"a": 1, "b": [true, "x", null], "c": {"d": 1.5}})
    );
    let err = nix.eval_json_expr(r#"throw "boom""#).unwrap_err();
    assert!(err.contains("boom"), "{err}");

    // Files, relative imports and path values (copied into the dummy store).
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("b.nix"), "{ q = 1; }").unwrap();
    let main = dir.path().join("main.nix");
    fs::write(&main, "{ y = import ./b.nix; p = \"${./b.nix}\"; }").unwrap();
    nix.parse_file(&main).unwrap();
    let v = nix.eval_json_file(&main).unwrap();
    assert_eq!(v["y"], json!({"q": 1}));
    assert!(v["p"].as_str().unwrap().starts_with("/nix/store/"), "{v}");
    let bad = dir.path().join("bad.nix");
    fs::write(&bad, "{ a = 1 }").unwrap();
    assert!(nix.parse_file(&bad).is_err());
}

#[test]
fn synapse_venv_is_importable() {
    let Some(py) = synapse_python() else { return };
    let out = std::process::Command::new(py)
        .args([
            "-c",
            "import synapse, psycopg2, authlib; print(synapse.__version__)",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1.163.2");
}
