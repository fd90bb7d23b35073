//! MAS's config.yaml for each phase. Secrets are referred to through the
//! unit's credentials directory: the nixpkgs module loads each file with
//! LoadCredential and substitutes `${CREDENTIALS_DIRECTORY}` at start.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{merge, MasOut};
use crate::model::{bracket_v6, EmailTransport, Homeserver, Mas, Mode, UpstreamProvider};

/// The client id MAS's docs use for Synapse under MSC3861 (Synapse < 1.136).
pub const SYNAPSE_CLIENT_ID: &str = "0000000000000000000SYNAPSE";

const NIXPKGS_DB: &str = "matrix-authentication-service";

fn cred(name: &str) -> String {
    format!("${{CREDENTIALS_DIRECTORY}}/{name}")
}

/// nixpkgs' `createDatabase` creates exactly this database and role.
pub(super) fn uses_default_database(hs: &Homeserver) -> bool {
    let d = &hs.mas.database;
    d.local && d.name == NIXPKGS_DB && d.user == NIXPKGS_DB
}

/// LoadCredential name → secret file on the host, filled by each section.
type Credentials = BTreeMap<String, String>;

/// MAS's settings are the same in both phases: in phase 1 it is only
/// unreachable from outside (see `nginx`). One function per section of
/// MAS's config.yaml; maps keep insertion order, so the order of the calls
/// is the order of the sections in the rendered file.
pub(super) fn lower(hs: &Homeserver) -> MasOut {
    let mas = &hs.mas;
    let mut credentials = BTreeMap::new();
    let mut m = Map::new();

    m.insert("http".into(), http(mas));
    m.insert(
        "database".into(),
        database(mas, hs.synapse.database.ssl_mode.is_some()),
    );
    m.insert("matrix".into(), matrix(hs, &mut credentials));
    m.insert("secrets".into(), secrets(mas, &mut credentials));
    m.insert("passwords".into(), passwords(hs, &mut credentials));
    m.insert("email".into(), email(mas, &mut credentials));
    if !mas.account.is_empty() {
        m.insert("account".into(), json!(mas.account));
    }
    if !mas.admin_users.is_empty() {
        m.insert(
            "policy".into(),
            json!({"data": {"admin_users": mas.admin_users}}),
        );
    }
    if !mas.upstream_providers.is_empty() {
        let providers: Vec<Value> = mas
            .upstream_providers
            .iter()
            .map(|p| upstream_provider(p, &mut credentials))
            .collect();
        m.insert("upstream_oauth2".into(), json!({"providers": providers}));
    }
    if !hs.synapse.version.has_stable_delegation() {
        m.insert("clients".into(), msc3861_clients());
    }

    merge(&mut m, &mas.extra_settings);
    MasOut {
        settings: Value::Object(m),
        credentials,
        create_database: uses_default_database(hs),
        generated_keys: mas
            .generated_keys()
            .into_iter()
            .map(|(t, file)| super::GeneratedKey {
                key_type: t.name(),
                file: file.to_string(),
            })
            .collect(),
    }
}

/// `http`: the public web listener (behind the proxy, under the path
/// prefix) and the internal health listener.
fn http(mas: &Mas) -> Value {
    let mut web = json!({
        "name": "web",
        "resources": [
            {"name": "discovery"}, {"name": "human"}, {"name": "oauth"},
            {"name": "compat"}, {"name": "graphql"}, {"name": "assets"},
        ],
        "binds": [{"host": mas.listen_address, "port": mas.port}],
        "proxy_protocol": false,
    });
    if mas.path_prefix != "/" {
        web["prefix"] = json!(mas.path_prefix);
    }
    json!({
        "public_base": mas.public_base(),
        "trusted_proxies": mas.trusted_proxies,
        "listeners": [
            web,
            {
                "name": "internal",
                "resources": [{"name": "health"}],
                "binds": [{"host": mas.listen_address, "port": mas.health_port}],
                "proxy_protocol": false,
            },
        ],
    })
}

/// `database`: a URI, so a socket directory can be the host. syn2mas
/// runs with `PGSSLMODE` set to Synapse's database's `ssl_mode` (the only
/// way it applies one, lower/tasks.rs), and sqlx takes that variable as the
/// default of every connection, MAS's too: then MAS's URI states its own
/// mode, sqlx's default `prefer` when the spec gives none.
fn database(mas: &Mas, synapse_ssl_mode: bool) -> Value {
    let d = &mas.database;
    let mode = d
        .ssl_mode
        .as_deref()
        .or(synapse_ssl_mode.then_some("prefer"));
    if d.server.is_some() {
        // Over TCP; masgen.mas.databasePassword adds the password at run time.
        let mut uri = format!(
            "postgresql://{}@{}:{}/{}",
            percent(&d.user),
            bracket_v6(&d.host),
            d.port.unwrap_or(crate::lower::POSTGRES_PORT),
            percent(&d.name)
        );
        if let Some(mode) = mode {
            uri.push_str(&format!("?sslmode={mode}"));
        }
        return json!({ "uri": uri });
    }
    let mut uri = format!("postgresql:///{}?host={}&user={}", d.name, d.host, d.user);
    if let Some(port) = d.port {
        uri.push_str(&format!("&port={port}"));
    }
    if let Some(mode) = mode {
        uri.push_str(&format!("&sslmode={mode}"));
    }
    json!({ "uri": uri })
}

/// `matrix`: the link to Synapse, with the secret both share.
fn matrix(hs: &Homeserver, credentials: &mut Credentials) -> Value {
    credentials.insert("matrix-secret".into(), hs.mas.shared_secret_file.clone());
    json!({
        "kind": "synapse",
        "homeserver": hs.server_name,
        "endpoint": format!("http://{}:{}/", bracket_v6(&hs.synapse.listen_address), hs.synapse.port),
        "secret_file": cred("matrix-secret"),
    })
}

/// `secrets`: the encryption key and the signing keys, either a directory
/// of keys or each key by file.
fn secrets(mas: &Mas, credentials: &mut Credentials) -> Value {
    credentials.insert("encryption".into(), mas.encryption_file.clone());
    let mut secrets = json!({"encryption_file": cred("encryption")});
    if let Some(dir) = &mas.keys_dir {
        credentials.insert("keys".into(), dir.clone());
        secrets["keys_dir"] = json!(cred("keys"));
    } else {
        let mut keys = Vec::new();
        // Named by position: kids may differ only in characters a
        // credential name cannot hold.
        for (i, k) in mas.signing_keys.iter().enumerate() {
            let name = format!("signing-key-{i}");
            credentials.insert(name.clone(), k.key_file.clone());
            let mut key = json!({"kid": k.kid, "key_file": cred(&name)});
            if let Some(p) = &k.password_file {
                let pname = format!("{name}-password");
                credentials.insert(pname.clone(), p.clone());
                key["password_file"] = json!(cred(&pname));
            }
            keys.push(key);
        }
        secrets["keys"] = json!(keys);
    }
    secrets
}

/// `passwords`: migrated Synapse hashes are bcrypt with Synapse's pepper:
/// keep them as version 1 and re-hash to argon2id (version 2) at the next
/// login.
fn passwords(hs: &Homeserver, credentials: &mut Credentials) -> Value {
    let schemes = match hs.mode {
        Mode::Fresh => json!([{"version": 1, "algorithm": "argon2id"}]),
        Mode::Migrate => {
            let mut bcrypt =
                json!({"version": 1, "algorithm": "bcrypt", "unicode_normalization": true});
            if let Some(pepper) = &hs.synapse.pepper_file {
                credentials.insert("synapse-pepper".into(), pepper.clone());
                bcrypt["secret_file"] = json!(cred("synapse-pepper"));
            }
            json!([bcrypt, {"version": 2, "algorithm": "argon2id"}])
        }
    };
    json!({
        "enabled": hs.mas.passwords_enabled,
        "minimum_complexity": hs.mas.minimum_complexity,
        "schemes": schemes,
    })
}

/// `email`: without a transport MAS drops mail (`blackhole`).
fn email(mas: &Mas, credentials: &mut Credentials) -> Value {
    let Some(e) = &mas.email else {
        return json!({"transport": "blackhole"});
    };
    let mut o = json!({"from": e.from});
    if let Some(r) = &e.reply_to {
        o["reply_to"] = json!(r);
    }
    match &e.transport {
        EmailTransport::Smtp {
            mode,
            hostname,
            port,
            username,
            password_file,
        } => {
            o["transport"] = json!("smtp");
            o["mode"] = json!(mode);
            o["hostname"] = json!(hostname);
            if let Some(p) = port {
                o["port"] = json!(p);
            }
            if let Some(u) = username {
                o["username"] = json!(u);
            }
            if let Some(f) = password_file {
                credentials.insert("smtp-password".into(), f.clone());
                o["password_file"] = json!(cred("smtp-password"));
            }
        }
        EmailTransport::Sendmail { command } => {
            o["transport"] = json!("sendmail");
            if let Some(c) = command {
                o["command"] = json!(c);
            }
        }
    }
    o
}

/// One entry of `upstream_oauth2.providers`; the spec's extra keys (`more`)
/// go last and win over the modelled ones.
fn upstream_provider(p: &UpstreamProvider, credentials: &mut Credentials) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(p.id));
    let optional = [
        ("synapse_idp_id", &p.synapse_idp_id),
        ("issuer", &p.issuer),
        ("human_name", &p.human_name),
        ("brand_name", &p.brand_name),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            o.insert(k.into(), json!(v));
        }
    }
    o.insert("client_id".into(), json!(p.client_id));
    if let Some(f) = &p.client_secret_file {
        let name = format!("upstream-{}", p.id.to_ascii_lowercase());
        credentials.insert(name.clone(), f.clone());
        o.insert("client_secret_file".into(), json!(cred(&name)));
    }
    o.insert(
        "token_endpoint_auth_method".into(),
        json!(p.token_endpoint_auth_method),
    );
    let optional = [
        (
            "token_endpoint_auth_signing_alg",
            &p.token_endpoint_auth_signing_alg,
        ),
        ("discovery_mode", &p.discovery_mode),
        ("pkce_method", &p.pkce_method),
        ("authorization_endpoint", &p.authorization_endpoint),
        ("token_endpoint", &p.token_endpoint),
        ("userinfo_endpoint", &p.userinfo_endpoint),
        ("jwks_uri", &p.jwks_uri),
    ];
    o.insert("scope".into(), json!(p.scope));
    for (k, v) in optional {
        if let Some(v) = v {
            o.insert(k.into(), json!(v));
        }
    }
    if let Some(f) = p.fetch_userinfo {
        o.insert("fetch_userinfo".into(), json!(f));
    }
    if let Some(ci) = &p.claims_imports {
        o.insert("claims_imports".into(), ci.clone());
    }
    o.extend(p.more.clone());
    Value::Object(o)
}

/// `clients`: Synapse before stable delegation (MSC3861) authenticates to
/// MAS as an OAuth client with the shared secret.
fn msc3861_clients() -> Value {
    json!([{
        "client_id": SYNAPSE_CLIENT_ID,
        "client_auth_method": "client_secret_basic",
        "client_secret_file": cred("matrix-secret"),
    }])
}

/// Percent-encodes what a URI's user or path segment cannot hold as it is.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
