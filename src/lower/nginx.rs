//! nginx virtual hosts: Synapse on its public hostname, MAS under its prefix
//! or on its own hostname, and in the final phase the login compatibility
//! routes that must reach MAS because a delegating Synapse no longer serves them.

use serde::Serialize;
use serde_json::json;

use super::Phase;
use crate::model::{bracket_v6, Homeserver, Tls};

/// The compat-layer routes of MAS's reverse-proxy docs, with the version
/// limited to one path segment: the docs' `(.*)` also catches Synapse paths
/// that merely contain a `/login` segment later on (account data, room
/// state keys). Sub-paths such as `/login/sso/redirect/…` and `/logout/all`
/// still go to MAS.
pub const COMPAT_ROUTE: &str = "~ ^/_matrix/client/[^/]+/(login|logout|refresh)(/|$)";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VirtualHost {
    pub server_name: String,
    pub tls: TlsMode,
    pub locations: Vec<Location>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TlsMode {
    Acme,
    Files { certificate: String, key: String },
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Location {
    /// nginx location matcher: `/_matrix`, `= /auth`, `~ regex`.
    pub matcher: String,
    /// Which service answers: `synapse`, `mas` or `static`.
    pub upstream: String,
    pub proxy_pass: Option<String>,
    /// Extra directives, one per element, without the trailing `;`.
    pub directives: Vec<String>,
    /// nginx `return` value.
    pub return_value: Option<String>,
}

impl Location {
    fn proxy(
        matcher: impl Into<String>,
        upstream: &str,
        target: String,
        directives: Vec<String>,
    ) -> Self {
        Location {
            matcher: matcher.into(),
            upstream: upstream.into(),
            proxy_pass: Some(target),
            directives,
            return_value: None,
        }
    }
}

/// The virtual hosts of one phase: Synapse's public hostname, MAS's (when
/// it has its own) and the server name's (when `.well-known` is served
/// there); route groups share a host when the names coincide.
pub(super) fn lower(hs: &Homeserver, phase: Phase) -> Vec<VirtualHost> {
    let synapse = format!(
        "http://{}:{}",
        bracket_v6(&hs.synapse.listen_address),
        hs.synapse.port
    );
    let mas = format!(
        "http://{}:{}",
        bracket_v6(&hs.mas.listen_address),
        hs.mas.port
    );
    let final_phase = phase == Phase::Final;
    let tls = tls_mode(hs);

    let mut matrix = synapse_routes(hs, &synapse, &mas, final_phase);
    let mas_locations = mas_routes(&hs.mas.path_prefix, &mas, final_phase);
    let well_known = if hs.proxy.well_known {
        well_known(hs, final_phase)
    } else {
        vec![]
    };

    let mut hosts = Vec::new();
    if hs.mas.hostname == hs.synapse.public_hostname {
        matrix.extend(mas_locations);
    } else {
        hosts.push(VirtualHost {
            server_name: hs.mas.hostname.clone(),
            tls: tls.clone(),
            locations: mas_locations,
        });
    }
    if hs.server_name == hs.synapse.public_hostname {
        matrix.extend(well_known);
    } else if !well_known.is_empty() {
        if hs.server_name == hs.mas.hostname {
            if let Some(h) = hosts.iter_mut().find(|h| h.server_name == hs.server_name) {
                h.locations.extend(well_known);
            }
        } else {
            hosts.push(VirtualHost {
                server_name: hs.server_name.clone(),
                tls: tls.clone(),
                locations: well_known,
            });
        }
    }
    hosts.push(VirtualHost {
        server_name: hs.synapse.public_hostname.clone(),
        tls,
        locations: matrix,
    });
    for h in &mut hosts {
        h.locations.sort_by(|a, b| a.matcher.cmp(&b.matcher));
    }
    hosts.sort_by(|a, b| a.server_name.cmp(&b.server_name));
    hosts
}

/// Every virtual host uses the proxy's TLS; an external terminator means
/// plain HTTP here.
fn tls_mode(hs: &Homeserver) -> TlsMode {
    match &hs.proxy.tls {
        Tls::Acme { .. } => TlsMode::Acme,
        Tls::Files { certificate, key } => TlsMode::Files {
            certificate: certificate.clone(),
            key: key.clone(),
        },
        Tls::External | Tls::None => TlsMode::None,
    }
}

/// Uploads pass through nginx first: allow what Synapse allows
/// (`max_upload_size`, Synapse's default 50M).
fn max_upload_size(hs: &Homeserver) -> String {
    hs.synapse
        .extra_settings
        .get("max_upload_size")
        .and_then(|v| {
            v.as_str()
                .map(str::to_string)
                .or_else(|| v.as_u64().map(|n| n.to_string()))
        })
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or_else(|| "50M".into())
}

/// Synapse's public hostname: the client-server and admin APIs, and once
/// Synapse delegates, MAS's endpoint in Synapse and the compat routes.
fn synapse_routes(hs: &Homeserver, synapse: &str, mas: &str, final_phase: bool) -> Vec<Location> {
    let prefix = &hs.mas.path_prefix;
    let body_size = vec![format!("client_max_body_size {}", max_upload_size(hs))];
    let mut matrix = vec![
        Location::proxy("/_matrix", "synapse", synapse.into(), body_size),
        Location::proxy("/_synapse/client", "synapse", synapse.into(), vec![]),
    ];
    if final_phase {
        matrix.push(Location::proxy(
            "/_synapse/mas",
            "synapse",
            synapse.into(),
            vec![],
        ));
        // MAS expects the compat API under its own prefix.
        let directives = if prefix == "/" {
            vec![]
        } else {
            vec![format!("rewrite ^(.*)$ {prefix}$1 break")]
        };
        matrix.push(Location::proxy(COMPAT_ROUTE, "mas", mas.into(), directives));
    }
    matrix
}

/// MAS under its prefix (on its own hostname or Synapse's).
fn mas_routes(prefix: &str, mas: &str, final_phase: bool) -> Vec<Location> {
    if !final_phase {
        // MAS must stay unreachable until syn2mas has run: a user created
        // through it now would make syn2mas refuse the empty-database check.
        // The location (and for its own hostname, the certificate) exists
        // already, so the final switch changes only where it points.
        let matcher = if prefix == "/" {
            "/".to_string()
        } else {
            format!("{prefix}/")
        };
        return vec![Location {
            matcher,
            upstream: "static".into(),
            proxy_pass: None,
            directives: vec![],
            return_value: Some("503".into()),
        }];
    }
    if prefix == "/" {
        return vec![Location::proxy("/", "mas", mas.into(), vec![])];
    }
    vec![
        Location::proxy(format!("{prefix}/"), "mas", mas.into(), vec![]),
        Location {
            matcher: format!("= {prefix}"),
            upstream: "static".into(),
            proxy_pass: None,
            directives: vec![],
            return_value: Some(format!("301 {prefix}/")),
        },
    ]
}

/// `/.well-known/matrix/{client,server}`. Clients learn about MAS through
/// `org.matrix.msc2965.authentication` only once Synapse delegates.
fn well_known(hs: &Homeserver, final_phase: bool) -> Vec<Location> {
    let mut client = json!({"m.homeserver": {"base_url": format!("{}://{}", hs.synapse.public_scheme, hs.synapse.public_hostname)}});
    if final_phase {
        client["org.matrix.msc2965.authentication"] = json!({
            "issuer": hs.mas.public_base(),
            "account": format!("{}account", hs.mas.public_base()),
        });
    }
    let server = json!({"m.server": format!("{}:443", hs.synapse.public_hostname)});
    let headers = || {
        vec![
            "default_type application/json".to_string(),
            "add_header Access-Control-Allow-Origin *".to_string(),
        ]
    };
    vec![
        Location {
            matcher: "= /.well-known/matrix/client".into(),
            upstream: "static".into(),
            proxy_pass: None,
            directives: headers(),
            return_value: Some(format!("200 '{}'", nginx_quote(&client.to_string()))),
        },
        Location {
            matcher: "= /.well-known/matrix/server".into(),
            upstream: "static".into(),
            proxy_pass: None,
            directives: headers(),
            return_value: Some(format!("200 '{}'", nginx_quote(&server.to_string()))),
        },
    ]
}

/// Escapes text for an nginx single-quoted string.
fn nginx_quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}
