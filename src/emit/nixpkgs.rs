//! What nixpkgs' own modules add to the files masgen's options produce, so
//! the reference renders can show it: the settings defaults of
//! `services.matrix-synapse` and `services.matrix-authentication-service`
//! that masgen leaves unset, and the `http {}` context nixpkgs' nginx module
//! wraps around the server blocks.
//!
//! Texts of 2026 nixpkgs, standing for the default pin (nixos-unstable): nixpkgs
//! nixos/modules/services/matrix/synapse.nix and
//! web-servers/nginx/default.nix as in siraben/nixpkgs@a0931b4d,
//! matrix-authentication-service.nix as in siraben/nixpkgs@3c573fbc.
//! tests/conformance_nixpkgs.rs checks every value here against an
//! evaluation of those modules.

use serde_json::{json, Map, Value};

/// `services.matrix-synapse.settings` defaults (nulls are dropped by the
/// module). `log_config` is a store file nixpkgs writes (journald logging).
pub fn synapse_defaults() -> Value {
    json!({
        "app_service_config_files": [],
        "dynamic_thumbnails": false,
        "enable_metrics": false,
        "instance_map": {},
        "log_config": "/nix/store/<hash>-synapse-log-synapse.yaml",
        "max_image_pixels": "32M",
        "max_upload_size": "50M",
        "media_store_path": "/var/lib/matrix-synapse/media_store",
        "pid_file": "/run/matrix-synapse.pid",
        "presence": {"enabled": true},
        "redis": {"enabled": false},
        "report_stats": false,
        "signing_key_path": "/var/lib/matrix-synapse/homeserver.signing.key",
        "trusted_key_servers": [{
            "server_name": "matrix.org",
            "verify_keys": {"ed25519:auto": "Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw"}
        }],
        "turn_shared_secret": "",
        "turn_uris": [],
        "url_preview_enabled": true,
        "url_preview_ip_range_blacklist": [
            "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
            "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16",
            "192.88.99.0/24", "198.18.0.0/15", "198.51.100.0/24", "2001:db8::/32",
            "203.0.113.0/24", "224.0.0.0/4", "::1/128", "fc00::/7", "fe80::/10",
            "fec0::/10", "ff00::/8"
        ],
        "url_preview_ip_range_whitelist": [],
        "url_preview_url_blacklist": [],
    })
}

/// `services.matrix-authentication-service.settings` defaults masgen does
/// not set itself: the connection pool.
pub fn mas_defaults() -> Value {
    json!({
        "database": {
            "connect_timeout": 30,
            "idle_timeout": 600,
            "max_connections": 10,
            "max_lifetime": 1800,
            "min_connections": 0,
        }
    })
}

/// The parts of `defaults` that `ours` leaves unset: a key masgen sets wins
/// (objects are merged key by key, like NixOS submodule options).
pub fn unset(defaults: &Value, ours: &Value) -> Value {
    let (Value::Object(d), Value::Object(o)) = (defaults, ours) else {
        return Value::Null;
    };
    let mut out = Map::new();
    for (k, v) in d {
        match o.get(k) {
            None => {
                out.insert(k.clone(), v.clone());
            }
            Some(mine) if v.is_object() && mine.is_object() => {
                let rest = unset(v, mine);
                if rest.as_object().is_some_and(|m| !m.is_empty()) {
                    out.insert(k.clone(), rest);
                }
            }
            Some(_) => {}
        }
    }
    Value::Object(out)
}

/// nixpkgs' part of nginx.conf before the server blocks, for the options
/// masgen sets (`recommendedProxySettings`, `recommendedTlsSettings`) and
/// the module's defaults; the `include` of its
/// `nginx-recommended-proxy-headers.conf` is shown as that file's lines.
/// Store paths read `/nix/store/<hash>-<package>/…`.
pub const NGINX_PROLOGUE: &str = r#"pid /run/nginx/nginx.pid;
error_log stderr;
daemon off;
events {
}
http {
    include /nix/store/<hash>-mailcap/etc/nginx/mime.types;
    types_hash_max_size 2688;
    include /nix/store/<hash>-nginx/conf/fastcgi.conf;
    include /nix/store/<hash>-nginx/conf/uwsgi_params;
    default_type application/octet-stream;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
    ssl_conf_command Groups "X25519MLKEM768:X25519:P-256:P-384";
    ssl_session_timeout 1d;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets off;
    ssl_prefer_server_ciphers off;
    proxy_redirect off;
    proxy_connect_timeout 60s;
    proxy_send_timeout 60s;
    proxy_read_timeout 60s;
    proxy_http_version 1.1;
    proxy_set_header "Connection" "";
    proxy_set_header Host $host;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-Host $host;
    proxy_set_header X-Forwarded-Server $hostname;
    map $http_upgrade $connection_upgrade {
        default upgrade;
        '' close;
    }
    client_max_body_size 10m;
    server_tokens off;
"#;

/// What closes nixpkgs' nginx.conf after the server blocks.
pub const NGINX_EPILOGUE: &str = "}\n";

/// What NixOS adds to the `[Service]` section of every service unit
/// (nixos/modules/system/boot/systemd.nix: `environment` from the default
/// `path` = coreutils, findutils, gnugrep, gnused, systemd; `LOCALE_ARCHIVE`
/// and `TZDIR`).
pub const SERVICE_ENVIRONMENT: [&str; 3] = [
    r#"Environment="LOCALE_ARCHIVE=/nix/store/<hash>-glibc-locales/lib/locale/locale-archive""#,
    r#"Environment="PATH=/nix/store/<hash>-coreutils/bin:/nix/store/<hash>-findutils/bin:/nix/store/<hash>-gnugrep/bin:/nix/store/<hash>-gnused/bin:/nix/store/<hash>-systemd/bin:/nix/store/<hash>-coreutils/sbin:/nix/store/<hash>-findutils/sbin:/nix/store/<hash>-gnugrep/sbin:/nix/store/<hash>-gnused/sbin:/nix/store/<hash>-systemd/sbin""#,
    r#"Environment="TZDIR=/nix/store/<hash>-tzdata/share/zoneinfo""#,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_keeps_only_what_masgen_leaves_out() {
        let defaults = json!({"a": 1, "b": {"x": 1, "y": 2}, "c": [1], "d": {"z": 1}});
        let ours = json!({"a": 5, "b": {"x": 9}, "d": {"z": 2}});
        assert_eq!(unset(&defaults, &ours), json!({"b": {"y": 2}, "c": [1]}));
        assert_eq!(unset(&defaults, &json!({})), defaults);
    }
}
