//! Conformance: masgen's nginx server blocks, run by a real nginx on
//! loopback in front of two recording upstreams standing in for Synapse and
//! MAS, route every request where Synapse and MAS expect it — for every
//! example spec and every phase. Also `nginx -t` on the production render
//! (TLS, ports 80/443).
//!
//! What is tested here is masgen's reference render
//! (`masgen::emit::render_nginx`, also written to
//! `render/<host>/<phase>/nginx.conf`). The same routing assertions
//! (tests/support/routing.rs) run on nixpkgs' own nginx.conf in
//! tests/conformance_nixpkgs.rs.

mod support;

use std::fs;

use masgen::emit::{render_nginx, RenderOptions};
use masgen::lower::Phase;
use support::routing::*;
use support::*;

#[test]
fn nginx_routes_every_example_and_phase() {
    if nginx_bin().is_none() {
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
            let headers = proxy_headers(&blocks);
            check_routes(port, hs, phase.phase, &synapse, &mas, &headers, &what);
            drop(nginx);
            eprintln!("ok: nginx routes {what}");
        }
    }
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
    if nginx_bin().is_none() {
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
            &Front {
                port,
                headers: &proxy_headers(&blocks),
            },
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

#[test]
fn production_render_passes_nginx_t() {
    if nginx_bin().is_none() {
        return;
    }
    if require_tool("openssl", "self-signed certificates for nginx -t").is_none() {
        return;
    }
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
                        // security.acme writes chain.pem beside them.
                        fs::copy(dir.join("fullchain.pem"), dir.join("chain.pem")).unwrap();
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
            match nginx_test_config(&conf) {
                Some(Ok(())) => eprintln!("ok: nginx -t accepts the production render of {what}"),
                Some(Err(e)) => panic!("{what}: nginx -t refuses {rel}:\n{e}\n{conf}"),
                None => return,
            }
        }
    }
}
