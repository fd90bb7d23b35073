//! `[proxy]`: TLS and nginx.

use super::*;

pub(super) fn check_proxy(c: &mut Checker, p: &raw::ProxySpec) -> Proxy {
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
        Some("none") => Tls::None,
        Some(other) => {
            c.error(
                "proxy.tls",
                at("proxy.tls"),
                format!("unknown TLS choice `{other}`"),
                "use `acme`, `files` or `none`",
            );
            Tls::None
        }
    };
    Proxy {
        tls,
        well_known: p.well_known.unwrap_or(true),
    }
}
