//! The routing assertions of the nginx conformance tests, shared by the
//! test of masgen's render (tests/conformance_nginx.rs) and the test of
//! nixpkgs' own nginx.conf (tests/conformance_nixpkgs.rs): which upstream
//! each request reaches, with which path and headers.

use masgen::lower::Phase;
use masgen::model::Homeserver;
use serde_json::{json, Value};

use super::{http_request, RecordingUpstream};

/// One request through nginx; the response and, when it reached an
/// upstream, the upstream's echo of what it received.
pub struct Seen {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub echo: Option<Value>,
}

pub fn send(port: u16, method: &str, host: &str, path: &str) -> Seen {
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
pub fn assert_routed(
    front: &Front,
    method: &str,
    host: &str,
    path: &str,
    upstream: &str,
    want_path: &str,
    what: &str,
) {
    let seen = send(front.port, method, host, path);
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
    // Every header the config sets, with the value its variable stands for.
    for (name, value) in front.headers {
        let want = header_value(value, host);
        assert_eq!(
            echo["headers"][name.to_ascii_lowercase()].as_str(),
            Some(want.as_str()),
            "{what}: `proxy_set_header {name} {value}` did not arrive as {want:?}: {echo}"
        );
    }
}

/// The nginx under test: its port on 127.0.0.1 and the `proxy_set_header`
/// lines of its config ([`proxy_headers`]).
pub struct Front<'a> {
    pub port: u16,
    pub headers: &'a [(String, String)],
}

/// `prefix` + `path` the way MAS listens under its prefix.
pub fn under(prefix: &str, path: &str) -> String {
    if prefix == "/" {
        path.to_string()
    } else {
        format!("{prefix}{path}")
    }
}

/// The compat (legacy login) API a delegating Synapse no longer serves.
pub const COMPAT_PATHS: &[(&str, &str)] = &[
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
pub const SYNAPSE_PATHS: &[(&str, &str)] = &[
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

/// The `proxy_set_header` lines of an nginx config (`include`s already
/// expanded), as (name, value) in order, each name once. A header set to
/// `""` is not sent by nginx and is left out.
pub fn proxy_headers(conf: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in conf.lines() {
        let Some(rest) = line.trim().strip_prefix("proxy_set_header") else {
            continue;
        };
        let rest = rest.trim().trim_end_matches(';').trim();
        let Some((name, value)) = rest.split_once(char::is_whitespace) else {
            continue;
        };
        let (name, value) = (name.trim_matches('"'), value.trim());
        if value == "\"\"" || out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            continue;
        }
        out.push((name.to_string(), value.to_string()));
    }
    out
}

/// What an upstream receives for a `proxy_set_header` value, for a request
/// to `host` from 127.0.0.1 over plain HTTP (the tests listen without TLS).
fn header_value(value: &str, host: &str) -> String {
    match value {
        "$host" => host.to_string(),
        "$remote_addr" | "$proxy_add_x_forwarded_for" => "127.0.0.1".to_string(),
        "$scheme" => "http".to_string(),
        "$hostname" => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .expect("read the hostname")
            .trim()
            .to_string(),
        v if !v.contains('$') => v.trim_matches('"').to_string(),
        v => panic!("the routing test does not know what nginx makes of `{v}`"),
    }
}

/// Every routing assertion for one phase, against an nginx listening on
/// 127.0.0.1:`port` (plain HTTP) in front of the two recording upstreams.
/// `headers`: the `proxy_set_header` lines of the config under test.
pub fn check_routes(
    port: u16,
    hs: &Homeserver,
    phase: Phase,
    synapse: &RecordingUpstream,
    mas: &RecordingUpstream,
    headers: &[(String, String)],
    what: &str,
) {
    let front = Front { port, headers };
    let s_host = hs.synapse.public_hostname.as_str();
    let m_host = hs.mas.hostname.as_str();
    let prefix = hs.mas.path_prefix.as_str();

    // Synapse's API, both phases.
    for (method, path) in SYNAPSE_PATHS {
        assert_routed(&front, method, s_host, path, "synapse", path, what);
    }
    let mas_paths = [
        "/account/",
        "/.well-known/openid-configuration",
        "/oauth2/introspect",
        "/assets/app.css",
        "/login?next=%2F",
    ];
    match phase {
        Phase::Final => {
            // MAS under its prefix (or at / on its own host).
            for path in mas_paths {
                let full = under(prefix, path);
                assert_routed(&front, "GET", m_host, &full, "mas", &full, what);
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
                    &front,
                    method,
                    s_host,
                    path,
                    "mas",
                    &under(prefix, path),
                    what,
                );
            }
            for (method, path) in [
                ("GET", "/_synapse/mas/is_localpart_available?localpart=bob"),
                ("POST", "/_synapse/mas/provision_user"),
            ] {
                assert_routed(&front, method, s_host, path, "synapse", path, what);
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
                assert_routed(&front, method, s_host, path, "synapse", path, what);
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
        check_well_known(port, hs, phase, what);
    }
}

pub fn check_well_known(port: u16, hs: &Homeserver, phase: Phase, what: &str) {
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
