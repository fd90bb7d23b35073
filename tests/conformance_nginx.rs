//! Conformance: masgen's nginx server blocks, run by a real nginx on
//! loopback in front of two recording upstreams standing in for Synapse and
//! MAS, route every request where Synapse and MAS expect it — for every
//! example spec and every phase. Also `nginx -t` on the production render
//! (TLS, ports 80/443).
//!
//! What is tested is masgen's reference render (`masgen::emit::render_nginx`,
//! also written to `render/<host>/<phase>/nginx.conf`), which spells out what
//! the generated `services.nginx.virtualHosts` ask nixpkgs for
//! (recommendedProxySettings included); nixpkgs' own nginx.conf cannot be
//! generated here (no nixpkgs).

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use masgen::emit::{render_nginx, RenderOptions};
use masgen::lower::Phase;
use serde_json::{json, Value};
use support::*;

/// One request through nginx; the response and, when it reached an
/// upstream, the upstream's echo of what it received.
struct Seen {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    echo: Option<Value>,
}

fn send(port: u16, method: &str, host: &str, path: &str) -> Seen {
    let body = if method == "POST" { "{}" } else { "" };
    let r = http_request(
        port,
        method,
        host,
        path,
        &[("Content-Type", "application/json")],
        body,
    )
    .unwrap_or_else(|e| panic!("{method} http://{host}{path}: {e}"));
    let echo = serde_json::from_str::<Value>(&r.body)
        .ok()
        .filter(|v| v.get("upstream").is_some() && v.get("path").is_some());
    Seen {
        status: r.status,
        headers: r.headers,
        body: r.body,
        echo,
    }
}

/// Asserts the request reached `upstream` with request-target `want_path`.
fn assert_routed(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    upstream: &str,
    want_path: &str,
    what: &str,
) {
    let seen = send(port, method, host, path);
    let echo = seen.echo.unwrap_or_else(|| {
        panic!(
            "{what}: {method} {host}{path} reached no upstream (want {upstream}): {} {}",
            seen.status, seen.body
        )
    });
    assert_eq!(
        echo["upstream"], upstream,
        "{what}: {method} {host}{path} went to the wrong upstream: {echo}"
    );
    assert_eq!(
        echo["path"], want_path,
        "{what}: {method} {host}{path} arrived at {upstream} as another path: {echo}"
    );
    assert_eq!(echo["method"], method, "{what}: {echo}");
    // recommendedProxySettings: Host kept, client address forwarded.
    assert_eq!(echo["headers"]["host"], host, "{what}: Host header: {echo}");
    assert_eq!(
        echo["headers"]["x-forwarded-for"], "127.0.0.1",
        "{what}: X-Forwarded-For: {echo}"
    );
    assert_eq!(echo["headers"]["x-real-ip"], "127.0.0.1", "{what}: {echo}");
    assert_eq!(echo["headers"]["x-forwarded-host"], host, "{what}: {echo}");
}

/// `prefix` + `path` the way MAS listens under its prefix.
fn under(prefix: &str, path: &str) -> String {
    if prefix == "/" {
        path.to_string()
    } else {
        format!("{prefix}{path}")
    }
}

/// The compat (legacy login) API a delegating Synapse no longer serves.
const COMPAT_PATHS: &[(&str, &str)] = &[
    ("GET", "/_matrix/client/v3/login"),
    ("POST", "/_matrix/client/v3/login"),
    ("POST", "/_matrix/client/r0/login"),
    ("POST", "/_matrix/client/v3/logout"),
    ("POST", "/_matrix/client/r0/logout/all"),
    ("POST", "/_matrix/client/v3/refresh"),
    ("GET", "/_matrix/client/v3/login/sso/redirect/x"),
    (
        "GET",
        "/_matrix/client/v3/login/sso/redirect/oidc-keycloak?redirectUrl=https%3A%2F%2Fapp.example%2F%3Fa%3D1",
    ),
];

/// Client-server and federation API paths Synapse keeps serving.
const SYNAPSE_PATHS: &[(&str, &str)] = &[
    ("GET", "/_matrix/client/v3/sync?timeout=0"),
    ("GET", "/_matrix/client/versions"),
    ("GET", "/_matrix/client/v3/account/whoami"),
    ("GET", "/_matrix/client/v1/auth_metadata"),
    ("POST", "/_matrix/client/v3/keys/upload"),
    ("GET", "/_matrix/federation/v1/version"),
    ("GET", "/_matrix/key/v2/server"),
    ("POST", "/_matrix/media/v3/upload"),
    ("GET", "/_synapse/client/oidc/callback?code=x&state=y"),
    ("GET", "/_synapse/client/pick_idp"),
];

#[test]
fn nginx_routes_every_example_and_phase() {
    if require_tool("nginx", "nginx routing tests").is_none() {
        return;
    }
    for (name, text) in example_specs() {
        let synapse = RecordingUpstream::start("synapse");
        let mas = RecordingUpstream::start("mas");
        let mut checked = checked(&name, &text);
        // The model's ports → the recording upstreams, on loopback.
        let hs = &mut checked.homeserver;
        hs.synapse.port = synapse.port();
        hs.synapse.listen_address = "127.0.0.1".into();
        hs.mas.port = mas.port();
        hs.mas.listen_address = "127.0.0.1".into();
        let hs = &checked.homeserver;
        let lowered = masgen::lower::lower(hs);

        for phase in &lowered.phases {
            let what = format!("{name} {}", phase.phase.name());
            let port = free_port();
            let blocks = render_nginx(
                &phase.nginx,
                &RenderOptions {
                    plain_listen: Some(format!("127.0.0.1:{port}")),
                },
            );
            match nginx_test_config(&blocks) {
                Some(Ok(())) => {}
                Some(Err(e)) => panic!("{what}: nginx -t refuses the render:\n{e}\n{blocks}"),
                None => return,
            }
            let Some(nginx) = Nginx::start(&blocks) else {
                return;
            };
            let s_host = hs.synapse.public_hostname.as_str();
            let m_host = hs.mas.hostname.as_str();
            let prefix = hs.mas.path_prefix.as_str();

            // Synapse's API, both phases.
            for (method, path) in SYNAPSE_PATHS {
                assert_routed(port, method, s_host, path, "synapse", path, &what);
            }
            let mas_paths = [
                "/account/",
                "/.well-known/openid-configuration",
                "/oauth2/introspect",
                "/assets/app.css",
                "/login?next=%2F",
            ];
            match phase.phase {
                Phase::Final => {
                    // MAS under its prefix (or at / on its own host).
                    for path in mas_paths {
                        let full = under(prefix, path);
                        assert_routed(port, "GET", m_host, &full, "mas", &full, &what);
                    }
                    if prefix != "/" {
                        let seen = send(port, "GET", m_host, prefix);
                        assert_eq!(seen.status, 301, "{what}: GET {prefix}: {}", seen.body);
                        let loc = seen
                            .headers
                            .iter()
                            .find(|(k, _)| k == "location")
                            .map(|(_, v)| v.as_str());
                        assert!(
                            loc.is_some_and(|l| l.ends_with(&format!("{prefix}/"))),
                            "{what}: {prefix} redirects to {loc:?}"
                        );
                    }
                    for (method, path) in COMPAT_PATHS {
                        // MAS serves the compat API under its own prefix.
                        assert_routed(
                            port,
                            method,
                            s_host,
                            path,
                            "mas",
                            &under(prefix, path),
                            &what,
                        );
                    }
                    for (method, path) in [
                        ("GET", "/_synapse/mas/is_localpart_available?localpart=bob"),
                        ("POST", "/_synapse/mas/provision_user"),
                    ] {
                        assert_routed(port, method, s_host, path, "synapse", path, &what);
                    }
                }
                Phase::Prepare => {
                    // MAS is installed but closed to the outside until
                    // syn2mas has run (a MAS user created now would make
                    // syn2mas refuse): nginx answers 503 itself.
                    for path in mas_paths {
                        let full = under(prefix, path);
                        let seen = send(port, "GET", m_host, &full);
                        assert!(
                            seen.echo.is_none() && seen.status == 503,
                            "{what}: GET {m_host}{full} in phase 1: {} {}",
                            seen.status,
                            seen.body
                        );
                    }
                    assert!(
                        mas.requests().is_empty(),
                        "{what}: MAS reached in phase 1: {:?}",
                        mas.requests()
                    );
                    // Synapse still does logins: every /_matrix path is Synapse's.
                    for (method, path) in COMPAT_PATHS {
                        assert_routed(port, method, s_host, path, "synapse", path, &what);
                    }
                    let before = synapse.requests().len();
                    let seen = send(
                        port,
                        "GET",
                        s_host,
                        "/_synapse/mas/is_localpart_available?localpart=bob",
                    );
                    assert!(
                        seen.echo.is_none() && seen.status == 404,
                        "{what}: /_synapse/mas is routed in phase 1: {} {}",
                        seen.status,
                        seen.body
                    );
                    assert_eq!(synapse.requests().len(), before, "{what}");
                }
            }

            if hs.proxy.well_known {
                check_well_known(port, hs, phase.phase, &what);
            }
            drop(nginx);
            eprintln!("ok: nginx routes {what}");
        }
    }
}

fn check_well_known(port: u16, hs: &masgen::model::Homeserver, phase: Phase, what: &str) {
    let host = hs.server_name.as_str();
    let seen = send(port, "GET", host, "/.well-known/matrix/client");
    assert_eq!(seen.status, 200, "{what}: client well-known: {}", seen.body);
    assert!(
        seen.echo.is_none(),
        "{what}: well-known is served by nginx itself"
    );
    let header = |name: &str| {
        seen.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/json"),
        "{what}"
    );
    assert_eq!(
        header("access-control-allow-origin").as_deref(),
        Some("*"),
        "{what}"
    );
    let client: Value = serde_json::from_str(&seen.body)
        .unwrap_or_else(|e| panic!("{what}: client well-known is not JSON ({e}): {}", seen.body));
    assert_eq!(
        client["m.homeserver"]["base_url"],
        json!(format!("https://{}", hs.synapse.public_hostname)),
        "{what}: {client}"
    );
    let auth = &client["org.matrix.msc2965.authentication"];
    match phase {
        Phase::Final => {
            assert_eq!(
                auth["issuer"],
                json!(hs.mas.public_base()),
                "{what}: {client}"
            );
            assert_eq!(
                auth["account"],
                json!(format!("{}account", hs.mas.public_base())),
                "{what}: {client}"
            );
        }
        // Phase 1 must not send clients to an idle MAS.
        Phase::Prepare => assert!(
            auth.is_null(),
            "{what}: MAS advertised in phase 1: {client}"
        ),
    }

    let seen = send(port, "GET", host, "/.well-known/matrix/server");
    assert_eq!(seen.status, 200, "{what}: server well-known: {}", seen.body);
    let server: Value = serde_json::from_str(&seen.body)
        .unwrap_or_else(|e| panic!("{what}: server well-known is not JSON ({e}): {}", seen.body));
    assert_eq!(
        server["m.server"],
        json!(format!("{}:443", hs.synapse.public_hostname)),
        "{what}"
    );
}

/// MAS's docs route `^/_matrix/client/(.*)/(login|logout|refresh)`: `(.*)`
/// spans several segments and the end is unanchored, so any client-server
/// path with a later `/login…`, `/logout…` or `/refresh…` segment would go
/// to MAS too (which answers 404) — e.g. account data of type `login.hint`
/// or a push rule called `refresh`. MAS's own routes are
/// `/_matrix/client/{version}/…` (one segment). Regression test for
/// masgen's tighter `COMPAT_ROUTE`.
#[test]
fn compat_route_leaves_other_synapse_paths_alone() {
    if require_tool("nginx", "nginx routing tests").is_none() {
        return;
    }
    for (name, text) in example_specs() {
        compat_route_over_match(&name, &text);
    }
}

fn compat_route_over_match(name: &str, text: &str) {
    let synapse = RecordingUpstream::start("synapse");
    let mas = RecordingUpstream::start("mas");
    let mut checked = checked(name, text);
    checked.homeserver.synapse.port = synapse.port();
    checked.homeserver.synapse.listen_address = "127.0.0.1".into();
    checked.homeserver.mas.port = mas.port();
    checked.homeserver.mas.listen_address = "127.0.0.1".into();
    let hs = &checked.homeserver;
    let lowered = masgen::lower::lower(hs);
    let phase = lowered
        .phases
        .iter()
        .find(|p| p.phase == Phase::Final)
        .unwrap();
    let port = free_port();
    let blocks = render_nginx(
        &phase.nginx,
        &RenderOptions {
            plain_listen: Some(format!("127.0.0.1:{port}")),
        },
    );
    let Some(_nginx) = Nginx::start(&blocks) else {
        return;
    };
    let s_host = hs.synapse.public_hostname.as_str();
    for (method, path) in [
        (
            "GET",
            "/_matrix/client/v3/user/@alice:example.com/account_data/login.hint",
        ),
        (
            "GET",
            "/_matrix/client/v3/pushrules/global/override/refresh",
        ),
        (
            "GET",
            "/_matrix/client/v3/rooms/!r:example.com/state/m.room.member/logout",
        ),
    ] {
        assert_routed(
            port,
            method,
            s_host,
            path,
            "synapse",
            path,
            &format!("{name}: compat over-match"),
        );
    }
}

// ------------------------------------------------- the production render

/// nginx's version as (major, minor, patch).
fn nginx_version(nginx: &Path) -> (u32, u32, u32) {
    let out = Command::new(nginx).arg("-v").output().expect("nginx -v");
    let text = String::from_utf8_lossy(&out.stderr);
    let v = text
        .split('/')
        .nth(1)
        .unwrap_or("0.0.0")
        .split_whitespace()
        .next()
        .unwrap_or("0.0.0");
    let mut it = v.split('.').map(|n| n.parse().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

fn self_signed(cert: &Path, key: &Path, cn: &str) {
    fs::create_dir_all(cert.parent().unwrap()).unwrap();
    fs::create_dir_all(key.parent().unwrap()).unwrap();
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `nginx -t` on `render/<host>/<phase>/nginx.conf` of `masgen::build_tree`
/// (the production form: ports 80/443, TLS). Substitutions, and why:
/// * `/var/lib/acme/…` (ACME, created by security.acme on NixOS) and the
///   spec's certificate/key files (`proxy.tls = "files"`) are moved under a
///   temp dir, where openssl writes self-signed certificates: nginx -t loads
///   them;
/// * `http2 on;` is nixpkgs' form (its nginx is ≥ 1.25.1, where the directive
///   appeared); Debian 12 ships nginx 1.22, so for an older nginx the test
///   turns it back into the `listen … ssl http2` parameter. nginx -t does not
///   bind ports, so 80/443 need no privileges.
#[test]
fn production_render_passes_nginx_t() {
    let Some(nginx) = require_tool("nginx", "nginx -t on the production render") else {
        return;
    };
    if require_tool("openssl", "self-signed certificates for nginx -t").is_none() {
        return;
    }
    let old_nginx = nginx_version(&nginx) < (1, 25, 1);
    for (name, text) in example_specs() {
        let checked = checked(&name, &text);
        let (lowered, tree) = masgen::build_tree(&checked).expect("build_tree");
        let tmp = tempfile::tempdir().unwrap();
        let certs = tmp.path().join("certs");
        let mut cert_paths: Vec<(String, String)> = Vec::new();
        if let masgen::model::Tls::Files { certificate, key } = &checked.homeserver.proxy.tls {
            cert_paths.push((certificate.clone(), key.clone()));
        }
        for phase in &lowered.phases {
            let what = format!("{name} {}", phase.phase.name());
            let rel = format!("render/{}/{}/nginx.conf", phase.host, phase.phase.name());
            let mut conf = tree
                .get(&camino::Utf8PathBuf::from(&rel))
                .unwrap_or_else(|| panic!("{what}: no {rel}"))
                .clone();
            assert!(conf.contains("listen 0.0.0.0:443 ssl;"), "{what}: {conf}");
            // ACME certificates for each virtual host.
            for vhost in &phase.nginx {
                if vhost.tls == masgen::lower::TlsMode::Acme {
                    let dir = certs.join("acme").join(&vhost.server_name);
                    if !dir.join("fullchain.pem").exists() {
                        self_signed(
                            &dir.join("fullchain.pem"),
                            &dir.join("key.pem"),
                            &vhost.server_name,
                        );
                    }
                }
            }
            conf = conf.replace("/var/lib/acme/", &format!("{}/acme/", certs.display()));
            for (i, (cert, key)) in cert_paths.iter().enumerate() {
                let (c, k) = (
                    certs.join(format!("files-{i}/fullchain.pem")),
                    certs.join(format!("files-{i}/key.pem")),
                );
                if !c.exists() {
                    self_signed(&c, &k, &checked.homeserver.server_name);
                }
                assert!(conf.contains(cert.as_str()), "{what}: cert path missing");
                conf = conf
                    .replace(cert.as_str(), &c.display().to_string())
                    .replace(key.as_str(), &k.display().to_string());
            }
            if old_nginx {
                conf = conf
                    .replace("    http2 on;\n", "")
                    .replace(" ssl;\n", " ssl http2;\n");
            }
            match nginx_test_config(&conf) {
                Some(Ok(())) => eprintln!("ok: nginx -t accepts the production render of {what}"),
                Some(Err(e)) => panic!("{what}: nginx -t refuses {rel}:\n{e}\n{conf}"),
                None => return,
            }
        }
    }
}
