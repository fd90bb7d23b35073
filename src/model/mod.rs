//! Stage 2: the validated homeserver. `validate` turns a parsed spec into
//! typed values with every default resolved, and reports every problem at
//! once. Nothing here knows about Nix, YAML or the disk.

mod check;
pub mod nixpkgs;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub use check::validate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No users yet: one configuration.
    Fresh,
    /// An existing Synapse with users: prepare, then final.
    Migrate,
}

/// A Synapse release line, e.g. 1.157 (patch optional).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SynapseVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: Option<u32>,
}

impl SynapseVersion {
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// Synapse 1.136 added the stable `matrix_authentication_service` block.
    pub fn has_stable_delegation(&self) -> bool {
        self.at_least(1, 136)
    }
}

impl std::fmt::Display for SynapseVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.patch {
            Some(p) => write!(f, "{}.{}.{}", self.major, self.minor, p),
            None => write!(f, "{}.{}", self.major, self.minor),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Homeserver {
    pub server_name: String,
    pub mode: Mode,
    pub nixpkgs: String,
    pub hosts: BTreeMap<String, Host>,
    pub synapse: Synapse,
    pub mas: Mas,
    pub proxy: Proxy,
    pub backup_dir: String,
    pub users: Vec<User>,
}

impl Homeserver {
    /// Whether Synapse, MAS, PostgreSQL and nginx are spread over several hosts.
    pub fn is_split(&self) -> bool {
        self.hosts.len() > 1
    }

    /// The address other hosts reach `host` at.
    pub fn address_of(&self, host: &str) -> Option<&str> {
        self.hosts.get(host)?.address.as_deref()
    }

    /// What runs on `host`.
    pub fn roles(&self, host: &str) -> Roles {
        let db_here = |d: &Database, service: &str| d.on_host(service) == Some(host);
        Roles {
            synapse: self.synapse.host == host,
            mas: self.mas.host == host,
            proxy: self.proxy.host == host,
            postgres: db_here(&self.synapse.database, &self.synapse.host)
                || db_here(&self.mas.database, &self.mas.host),
        }
    }
}

/// The services one host runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Roles {
    pub synapse: bool,
    pub mas: bool,
    pub proxy: bool,
    pub postgres: bool,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub system: String,
    pub base_flake: Option<String>,
    pub base_module: String,
    /// A plain NixOS configuration file, imported from a non-flake input of its directory.
    pub base_config: Option<String>,
    /// Where the homeserver's other hosts reach this one (required once the
    /// homeserver spans several hosts).
    pub address: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbEngine {
    Postgresql,
    Sqlite,
}

#[derive(Debug, Clone)]
pub struct Database {
    pub engine: DbEngine,
    pub name: String,
    pub user: String,
    /// Socket directory or host name.
    pub host: String,
    pub port: Option<u16>,
    /// Managed by `services.postgresql` on this host.
    pub local: bool,
    /// The spec's host whose PostgreSQL holds the database when the service
    /// reaches it over TCP (`host` is then that host's address).
    pub server: Option<String>,
    /// Over TCP: the password's file (on the service's host and on `server`).
    pub password_file: Option<String>,
    /// Over TCP: libpq's `sslmode` / MAS's `ssl_mode`.
    pub ssl_mode: Option<String>,
}

impl Database {
    /// The host whose `services.postgresql` holds it: `server`, or the
    /// service's own host for a local database.
    pub fn on_host<'a>(&'a self, service_host: &'a str) -> Option<&'a str> {
        match &self.server {
            Some(s) => Some(s),
            None if self.local => Some(service_host),
            None => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordLogin {
    Enabled,
    Disabled,
    OnlyForReauth,
}

#[derive(Debug, Clone)]
pub struct Synapse {
    pub host: String,
    pub version: SynapseVersion,
    pub public_hostname: String,
    /// `https`, or `http` when `proxy.tls = "none"`.
    pub public_scheme: &'static str,
    pub listen_address: String,
    pub port: u16,
    pub database: Database,
    pub pepper_file: Option<String>,
    pub macaroon_secret_key_file: Option<String>,
    pub registration_shared_secret_file: Option<String>,
    pub form_secret_file: Option<String>,
    pub signing_key_path: Option<String>,
    pub password_login: PasswordLogin,
    pub enable_registration: bool,
    pub allow_guest_access: bool,
    pub enable_3pid_changes: bool,
    pub login_via_existing_session: bool,
    pub registration_captcha: bool,
    pub user_consent: bool,
    pub session_lifetime: Option<String>,
    pub refresh_token_lifetime: Option<String>,
    pub nonrefreshable_access_token_lifetime: Option<String>,
    pub oidc_providers: Vec<SynapseOidc>,
    /// The single legacy `oidc_config` block, if used.
    pub legacy_oidc: Option<SynapseOidc>,
    pub legacy_sso: Vec<String>,
    pub password_providers: Vec<PasswordProvider>,
    /// The LDAP plugin (matrix-synapse-ldap3) is needed in phase 1.
    pub ldap: bool,
    /// `[synapse.ldap]`: the LDAP module's config, loaded in phase 1 only.
    pub ldap_module: Option<Value>,
    pub modules: Vec<SynapseModule>,
    pub app_services: Vec<AppService>,
    pub extra_settings: Map<String, Value>,
    pub final_extra_settings: Map<String, Value>,
    pub extra_config_files: Vec<String>,
}

impl Synapse {
    /// `https://matrix.example.com/`: Synapse's `public_baseurl`.
    pub fn public_baseurl(&self) -> String {
        format!("{}://{}/", self.public_scheme, self.public_hostname)
    }

    /// Whether anyone logs in through a Synapse password provider (legacy
    /// `password_providers`, LDAP, or a module with auth checkers): all of
    /// them stop working once Synapse delegates to MAS.
    pub fn password_auth_in_use(&self) -> bool {
        !self.password_providers.is_empty()
            || self.ldap
            || self.modules.iter().any(|m| m.password_auth)
            || !crate::rules::password_auth_in(&Value::Object(self.extra_settings.clone()))
                .is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct SynapseOidc {
    /// As written in homeserver.yaml (`keycloak`; absent for `oidc_config`).
    pub idp_id: Option<String>,
    /// What Synapse stores in `user_external_ids.auth_provider`: `oidc` or `oidc-<idp_id>`.
    pub auth_provider: String,
    pub idp_name: Option<String>,
    pub issuer: String,
    pub client_id: String,
    pub client_secret_file: Option<String>,
    pub scopes: Vec<String>,
    pub discover: Option<bool>,
    pub localpart_template: Option<String>,
    pub display_name_template: Option<String>,
    pub email_template: Option<String>,
    pub allow_existing_users: Option<bool>,
    pub has_users: bool,
    /// Further Synapse provider settings, verbatim (`extra`).
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone)]
pub struct PasswordProvider {
    pub module: String,
    pub config: Value,
}

#[derive(Debug, Clone)]
pub struct SynapseModule {
    pub module: String,
    pub config: Value,
    pub password_auth: bool,
}

#[derive(Debug, Clone)]
pub struct AppService {
    pub name: String,
    pub registration_file: String,
    pub encrypted: bool,
    pub kind: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Mas {
    pub host: String,
    pub hostname: String,
    /// `https`, or `http` when `proxy.tls = "none"`.
    pub public_scheme: &'static str,
    /// `/auth` or `/`; never a trailing slash except for `/`.
    pub path_prefix: String,
    pub listen_address: String,
    pub port: u16,
    pub health_port: u16,
    pub database: Database,
    pub encryption_file: String,
    /// `encryption_file` is made on the host when missing.
    pub generate_encryption: bool,
    pub shared_secret_file: String,
    pub signing_keys: Vec<SigningKey>,
    pub keys_dir: Option<String>,
    pub passwords_enabled: bool,
    pub minimum_complexity: u8,
    pub email: Option<Email>,
    pub account: BTreeMap<String, bool>,
    pub trusted_proxies: Vec<String>,
    pub admin_users: Vec<String>,
    pub upstream_providers: Vec<UpstreamProvider>,
    pub extra_settings: Map<String, Value>,
}

impl Mas {
    /// The keys the host makes when they are missing: (type, file), the
    /// encryption key first, then the signing keys in spec order.
    pub fn generated_keys(&self) -> Vec<(KeyType, &str)> {
        let encryption = self
            .generate_encryption
            .then_some((KeyType::Encryption, self.encryption_file.as_str()));
        let signing = self
            .signing_keys
            .iter()
            .filter_map(|k| k.generate.map(|t| (t, k.key_file.as_str())));
        encryption.into_iter().chain(signing).collect()
    }

    /// `https://matrix.example.com/auth/`: MAS's `http.public_base`.
    pub fn public_base(&self) -> String {
        let scheme = self.public_scheme;
        if self.path_prefix == "/" {
            format!("{scheme}://{}/", self.hostname)
        } else {
            format!("{scheme}://{}{}/", self.hostname, self.path_prefix)
        }
    }

    /// Where Synapse reaches MAS on loopback, with the prefix MAS listens under.
    pub fn internal_endpoint(&self) -> String {
        let host = bracket_v6(&self.listen_address);
        if self.path_prefix == "/" {
            format!("http://{host}:{}/", self.port)
        } else {
            format!("http://{host}:{}{}/", self.port, self.path_prefix)
        }
    }
}

pub fn bracket_v6(address: &str) -> String {
    if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_string()
    }
}

#[derive(Debug, Clone)]
pub struct SigningKey {
    pub kid: String,
    pub key_file: String,
    pub password_file: Option<String>,
    /// Made on the host when missing (`generate = true`), of this type.
    pub generate: Option<KeyType>,
}

/// A key masgen's host-side oneshot makes when it is missing
/// (modules/mas-keys.nix, `masgen.masKeys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// MAS's encryption key: 32 random bytes as 64 hex characters.
    Encryption,
    /// An RSA 2048 signing key, PEM.
    Rsa,
    /// An EC P-256 signing key, PEM.
    EcP256,
}

impl KeyType {
    /// The name modules/mas-keys.nix and its script take.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Encryption => "encryption",
            KeyType::Rsa => "rsa",
            KeyType::EcP256 => "ec-p256",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Email {
    pub transport: EmailTransport,
    pub from: String,
    pub reply_to: Option<String>,
}

#[derive(Debug, Clone)]
pub enum EmailTransport {
    Smtp {
        mode: String,
        hostname: String,
        port: Option<u16>,
        username: Option<String>,
        password_file: Option<String>,
    },
    Sendmail {
        command: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct UpstreamProvider {
    pub id: String,
    pub synapse_idp_id: Option<String>,
    pub issuer: Option<String>,
    pub human_name: Option<String>,
    pub brand_name: Option<String>,
    pub client_id: String,
    pub client_secret_file: Option<String>,
    pub token_endpoint_auth_method: String,
    pub token_endpoint_auth_signing_alg: Option<String>,
    pub scope: String,
    pub discovery_mode: Option<String>,
    pub pkce_method: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    pub fetch_userinfo: Option<bool>,
    /// `claims_imports` as MAS reads it.
    pub claims_imports: Option<Value>,
    /// Further provider keys, already in MAS's form (`response_mode`, …).
    pub more: Map<String, Value>,
}

#[derive(Debug, Clone)]
pub enum Tls {
    Acme {
        email: Option<String>,
    },
    Files {
        certificate: String,
        key: String,
    },
    /// nginx serves plain HTTP; TLS terminates in front of this host (a load
    /// balancer, another proxy), so the public URLs stay `https://`.
    External,
    /// Plain HTTP end to end: the public URLs are `http://` (tests, private networks).
    None,
}

#[derive(Debug, Clone)]
pub struct Proxy {
    /// The host nginx runs on.
    pub host: String,
    pub tls: Tls,
    pub well_known: bool,
}

#[derive(Debug, Clone)]
pub struct User {
    pub localpart: String,
    pub admin: bool,
    pub bot: bool,
    pub password_file: Option<String>,
}
