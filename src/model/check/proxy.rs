//! `[proxy]`: TLS and nginx.

use super::*;

/// The scheme of the public URLs: only `tls = "none"` leaves HTTPS.
pub(super) fn public_scheme(p: &raw::ProxySpec) -> &'static str {
    if p.tls.as_deref() == Some("none") {
        "http"
    } else {
        "https"
    }
}

pub(super) fn check_proxy(c: &mut Checker, p: &raw::ProxySpec, host: &str) -> Proxy {
    if let Some(kind) = &p.kind {
        if kind != "nginx" {
            c.error(
                "proxy.kind",
                at("proxy.kind"),
                format!("reverse proxy `{kind}` is not supported"),
                "use `nginx`",
            );
        }
    }
    let tls = match p.tls.as_deref() {
        None | Some("acme") => Tls::Acme {
            email: p.acme_email.clone(),
        },
        Some("files") => {
            let cert = p.certificate_file.clone().unwrap_or_default();
            let key = p.certificate_key_file.clone().unwrap_or_default();
            if cert.is_empty() || key.is_empty() {
                c.error(
                    "proxy.tls.files",
                    at("proxy.tls"),
                    "`tls = \"files\"` needs `certificate_file` and `certificate_key_file`",
                    "set both paths",
                );
            } else {
                c.abs_path_str("proxy.certificate_file", &cert);
                c.abs_path_str("proxy.certificate_key_file", &key);
            }
            Tls::Files {
                certificate: cert,
                key,
            }
        }
        Some("external") => Tls::External,
        Some("none") => {
            c.warn(
                "proxy.tls.none",
                at("proxy.tls"),
                "`tls = \"none\"` serves Synapse and MAS over plain HTTP: the public URLs become `http://…`, passwords and tokens cross the network in clear, and other homeservers cannot federate with this one",
                "keep it for tests or a private network; if TLS terminates in front of this host (a load balancer, another proxy), write `tls = \"external\"`: nginx stays plain HTTP and the public URLs stay `https://`",
            );
            Tls::None
        }
        Some(other) => {
            c.error(
                "proxy.tls",
                at("proxy.tls"),
                format!("unknown TLS choice `{other}`"),
                "use `acme`, `files`, `external` (TLS ends in front of this host) or `none`",
            );
            Tls::None
        }
    };
    Proxy {
        host: host.to_string(),
        tls,
        well_known: p.well_known.unwrap_or(true),
    }
}
