//! Serde mirror of the spec file, as close to the TOML as possible. Defaults
//! and meaning are resolved later, in `model`.
//!
//! The doc comments are also the descriptions of the spec's JSON Schema
//! (`masgen schema`, [`super::schema`]): one source for both. Every table
//! refuses unknown keys (the loader reports them as `spec.unknown_key`), so
//! each struct says `deny_unknown_fields` to schemars; serde itself reports
//! them through `serde_ignored` to collect them all.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::schema::{account, free_table, ldap, password_login, port};

/// A masgen spec: one Matrix homeserver (Synapse) with the Matrix Authentication Service.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, title = "masgen spec")]
pub struct SpecFile {
    /// The spec format version; this masgen reads `1`.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    pub homeserver: HomeserverSpec,
    #[serde(default)]
    pub flake: FlakeSpec,
    /// The NixOS hosts, by configuration name.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostSpec>,
    pub synapse: SynapseSpec,
    pub mas: MasSpec,
    #[serde(default)]
    pub proxy: ProxySpec,
    #[serde(default)]
    pub migration: MigrationSpec,
    /// Users registered through MAS after the switch.
    #[serde(default)]
    pub users: Vec<UserSpec>,
}

/// The homeserver: its name and whether it is new or migrated.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct HomeserverSpec {
    /// The Matrix server name (`@user:<server_name>`).
    pub server_name: String,
    /// `fresh` (no users: one configuration) or `migrate` (an existing
    /// Synapse: a `-prepare` and a final configuration).
    #[schemars(extend("enum" = ["fresh", "migrate"]))]
    pub mode: String,
    /// Only `synapse` can delegate to MAS (the default).
    #[schemars(extend("enum" = ["synapse"]))]
    pub implementation: Option<String>,
    /// The NixOS configuration name of the host running everything (default `matrix`).
    pub host: Option<String>,
}

/// The generated flake's inputs.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct FlakeSpec {
    /// The nixpkgs flake reference (default `github:NixOS/nixpkgs/nixos-unstable`).
    pub nixpkgs: Option<String>,
}

/// One NixOS host and its own base configuration.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct HostSpec {
    /// The Nix system (default `x86_64-linux`).
    pub system: Option<String>,
    /// Flake reference of the host's own base configuration (hardware, users, ...).
    pub base_flake: Option<String>,
    /// Which `nixosModules.<name>` of `base_flake` to import (default `default`).
    pub base_module: Option<String>,
    /// A plain NixOS configuration file (e.g. `/etc/nixos/configuration.nix`);
    /// its directory becomes a non-flake input.
    pub base_config: Option<String>,
    /// The address the homeserver's other hosts reach this one at (an IP
    /// address or a DNS name on the private network); needed when Synapse,
    /// MAS, PostgreSQL and the proxy are not all on one host.
    pub address: Option<String>,
}

/// A loopback HTTP listener.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ListenerSpec {
    /// The address to bind (default `127.0.0.1`).
    pub address: Option<String>,
    /// The TCP port (Synapse default 8008, MAS 8080).
    #[serde(default)] // optional: schemars cannot see through `schema_with`
    #[schemars(schema_with = "port")]
    pub port: Option<i64>,
    /// MAS only: the health listener's port (default 8081).
    #[serde(default)] // optional: schemars cannot see through `schema_with`
    #[schemars(schema_with = "port")]
    pub health_port: Option<i64>,
}

/// A PostgreSQL (or SQLite) database.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct DatabaseSpec {
    /// `postgresql` or `sqlite`.
    #[schemars(extend("enum" = ["postgresql", "sqlite"]))]
    pub engine: Option<String>,
    /// The database name.
    pub name: Option<String>,
    /// The database user.
    pub user: Option<String>,
    /// The database host (default `/run/postgresql`, the unix socket).
    pub host: Option<String>,
    /// The database port.
    #[serde(default)] // optional: schemars cannot see through `schema_with`
    #[schemars(schema_with = "port")]
    pub port: Option<i64>,
    /// A file holding the database password.
    pub password_file: Option<String>,
    /// Whether masgen manages this database in `services.postgresql` on this host.
    pub local: Option<bool>,
    /// Over TCP: libpq's `sslmode` (Synapse) and MAS's `ssl_mode`.
    #[schemars(extend("enum" = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]))]
    pub ssl_mode: Option<String>,
}

/// Synapse: what the homeserver runs today and keeps running.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SynapseSpec {
    /// The NixOS configuration name of Synapse's host.
    pub host: Option<String>,
    /// The Synapse release line; derived from a known `flake.nixpkgs` when omitted.
    pub version: Option<String>,
    /// The client-facing hostname (default `matrix.<server_name>`).
    pub public_hostname: Option<String>,
    #[serde(default)]
    pub listener: ListenerSpec,
    #[serde(default)]
    pub database: DatabaseSpec,
    /// A file holding Synapse's `password_config.pepper`.
    pub pepper_file: Option<String>,
    /// A file holding Synapse's `macaroon_secret_key`.
    pub macaroon_secret_key_file: Option<String>,
    /// A file holding Synapse's `registration_shared_secret`.
    pub registration_shared_secret_file: Option<String>,
    /// A file holding Synapse's `form_secret`.
    pub form_secret_file: Option<String>,
    /// Synapse's signing key file (`signing_key_path`).
    pub signing_key_path: Option<String>,
    /// `true`, `false` or `"only_for_reauth"` (Synapse's `password_config.enabled`).
    #[serde(default)] // optional: schemars cannot see through `schema_with`
    #[schemars(schema_with = "password_login")]
    pub password_login: Option<toml::Value>,
    /// Synapse's `enable_registration` today (dropped from the final phase).
    pub enable_registration: Option<bool>,
    /// Synapse's `allow_guest_access` today.
    pub allow_guest_access: Option<bool>,
    /// Whether users can change their email addresses and phone numbers today.
    pub enable_3pid_changes: Option<bool>,
    /// Synapse's `login_via_existing_session.enabled` today.
    pub login_via_existing_session: Option<bool>,
    /// Whether registration asks for a captcha today.
    pub registration_captcha: Option<bool>,
    /// Whether Synapse asks users for consent today.
    pub user_consent: Option<bool>,
    /// Synapse's `session_lifetime` today.
    pub session_lifetime: Option<String>,
    /// Synapse's `refresh_token_lifetime` today.
    pub refresh_token_lifetime: Option<String>,
    /// Synapse's `nonrefreshable_access_token_lifetime` today.
    pub nonrefreshable_access_token_lifetime: Option<String>,
    /// Synapse's legacy OIDC providers (Synapse stores `oidc-<idp_id>`).
    #[serde(default)]
    pub oidc_providers: Vec<SynapseOidcSpec>,
    /// The single legacy `oidc_config` block (id `oidc`).
    pub oidc_config: Option<SynapseOidcSpec>,
    /// SAML2, CAS or JWT logins in use (`saml2`, `cas`, `jwt`).
    #[serde(default)]
    #[schemars(extend("items" = { "type": "string", "enum": ["saml2", "cas", "jwt"] }))]
    pub legacy_sso: Vec<String>,
    /// Synapse's `password_providers` (phase 1 only).
    #[serde(default)]
    pub password_providers: Vec<PasswordProviderSpec>,
    /// `true` (install the LDAP plugin only) or matrix-synapse-ldap3's settings.
    #[serde(default)] // optional: schemars cannot see through `schema_with`
    #[schemars(schema_with = "ldap")]
    pub ldap: Option<toml::Value>,
    /// Synapse's `modules`.
    #[serde(default)]
    pub modules: Vec<SynapseModuleSpec>,
    /// Application services (bridges and bots).
    #[serde(default)]
    pub app_services: Vec<AppServiceSpec>,
    /// Settings masgen does not model, merged into homeserver.yaml.
    #[serde(default)]
    #[schemars(schema_with = "free_table")]
    pub extra_settings: toml::Table,
    /// Extra settings for the final (delegated) phase only.
    #[serde(default)]
    #[schemars(schema_with = "free_table")]
    pub final_extra_settings: toml::Table,
    /// Secret YAML files of the operator's, passed as extra `--config-path`s.
    #[serde(default)]
    pub extra_config_files: Vec<String>,
}

/// A legacy Synapse OIDC provider.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SynapseOidcSpec {
    /// The provider's id (Synapse stores `oidc-<idp_id>`).
    pub idp_id: Option<String>,
    /// The name shown on the login page.
    pub idp_name: Option<String>,
    /// The OIDC issuer URL.
    pub issuer: String,
    /// The OAuth2 client id.
    pub client_id: String,
    /// A file holding the OAuth2 client secret.
    pub client_secret_file: Option<String>,
    /// The scopes requested.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Whether Synapse uses OIDC discovery.
    pub discover: Option<bool>,
    /// The user mapping's `localpart_template`.
    pub localpart_template: Option<String>,
    /// The user mapping's `display_name_template`.
    pub display_name_template: Option<String>,
    /// The user mapping's `email_template`.
    pub email_template: Option<String>,
    /// Whether logins may take over existing users.
    pub allow_existing_users: Option<bool>,
    /// Whether any Synapse user is linked to this provider (default: assume so).
    pub has_users: Option<bool>,
    /// Synapse provider settings without a key of their own, passed to
    /// phase 1 verbatim (deep-merged into the provider).
    #[serde(default)]
    #[schemars(schema_with = "free_table")]
    pub extra: toml::Table,
}

/// A Synapse password provider (phase 1 only).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PasswordProviderSpec {
    /// The provider's Python module.
    pub module: String,
    /// The provider's settings.
    #[serde(default)]
    #[schemars(schema_with = "free_table")]
    pub config: toml::Table,
}

/// A Synapse module.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SynapseModuleSpec {
    /// The module's Python class.
    pub module: String,
    /// The module's settings.
    #[serde(default)]
    #[schemars(schema_with = "free_table")]
    pub config: toml::Table,
    /// Whether this module implements password authentication (`auth_checkers`).
    pub password_auth: Option<bool>,
}

/// An application service (bridge or bot).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct AppServiceSpec {
    /// A name for it.
    pub name: String,
    /// Its registration YAML file.
    pub registration_file: String,
    /// Whether it uses end-to-end encryption (MSC4190 warning).
    pub encrypted: Option<bool>,
    /// A known bot (e.g. `reminder-bot`, `postmoogle`).
    pub kind: Option<String>,
}

/// The Matrix Authentication Service.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct MasSpec {
    /// The NixOS configuration name of MAS's host.
    pub host: Option<String>,
    /// MAS's public hostname (default `matrix.<server_name>`).
    pub hostname: Option<String>,
    /// MAS's public path (default `/auth`).
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub listener: ListenerSpec,
    #[serde(default)]
    pub database: DatabaseSpec,
    /// A file holding MAS's encryption key (32 bytes as hex).
    pub encryption_file: Option<String>,
    /// Create `encryption_file` on the host at first boot when it is missing
    /// (a oneshot ordered before MAS); it must be on persistent storage.
    pub generate_encryption: Option<bool>,
    /// A file holding the secret Synapse and MAS share (readable by `matrix-synapse`).
    pub shared_secret_file: Option<String>,
    /// MAS's signing keys (or `keys_dir`).
    #[serde(default)]
    pub signing_keys: Vec<SigningKeySpec>,
    /// A directory of signing keys (instead of `signing_keys`).
    pub keys_dir: Option<String>,
    #[serde(default)]
    pub passwords: MasPasswordsSpec,
    pub email: Option<EmailSpec>,
    /// MAS `account` options (booleans).
    #[serde(default)]
    #[schemars(schema_with = "account")]
    pub account: BTreeMap<String, bool>,
    /// MAS's `http.trusted_proxies` (default `127.0.0.1/8`, `::1/128`).
    pub trusted_proxies: Option<Vec<String>>,
    /// MAS admins (`policy.data.admin_users`).
    #[serde(default)]
    pub admin_users: Vec<String>,
    /// Upstream OAuth2 providers.
    #[serde(default)]
    pub upstream_providers: Vec<UpstreamProviderSpec>,
    /// Settings masgen does not model, merged into MAS's config.
    #[serde(default)]
    #[schemars(schema_with = "free_table")]
    pub extra_settings: toml::Table,
}

/// A MAS signing key.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SigningKeySpec {
    /// The key id.
    pub kid: String,
    /// A PEM file holding the private key.
    pub key_file: String,
    /// A file holding the key's password, when it is encrypted.
    pub password_file: Option<String>,
    /// Create `key_file` on the host at first boot when it is missing (a
    /// oneshot ordered before MAS); it must be on persistent storage.
    pub generate: Option<bool>,
    /// With `generate`: `rsa` (RSA 2048, the default) or `ec-p256`.
    #[schemars(extend("enum" = ["rsa", "ec-p256"]))]
    pub key_type: Option<String>,
}

/// MAS password logins.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct MasPasswordsSpec {
    /// Whether MAS accepts passwords (default `true`).
    pub enabled: Option<bool>,
    /// The minimum password complexity, 0 to 4 (default 3).
    pub minimum_complexity: Option<i64>,
    /// Extra algorithms after the defaults; rarely needed.
    pub algorithm: Option<String>,
}

/// How MAS sends email.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EmailSpec {
    /// `smtp`, `sendmail` or `none`.
    #[schemars(extend("enum" = ["smtp", "sendmail", "none"]))]
    pub transport: String,
    /// The `From:` address.
    pub from: Option<String>,
    /// The `Reply-To:` address.
    pub reply_to: Option<String>,
    /// SMTP: `plain`, `tls` or `starttls` (default).
    #[schemars(extend("enum" = ["plain", "tls", "starttls"]))]
    pub mode: Option<String>,
    /// SMTP: the server's hostname.
    pub hostname: Option<String>,
    /// SMTP: the server's port.
    #[serde(default)] // optional: schemars cannot see through `schema_with`
    #[schemars(schema_with = "port")]
    pub port: Option<i64>,
    /// SMTP: the user name.
    pub username: Option<String>,
    /// SMTP: a file holding the password.
    pub password_file: Option<String>,
    /// sendmail: the command.
    pub command: Option<String>,
}

/// An upstream OAuth2 provider of MAS.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct UpstreamProviderSpec {
    /// A ULID (`masgen ulid` prints one).
    pub id: String,
    /// The Synapse provider this one replaces (`oidc-<idp_id>`), for syn2mas.
    pub synapse_idp_id: Option<String>,
    /// The OIDC issuer URL.
    pub issuer: Option<String>,
    /// The name shown on the login page.
    pub human_name: Option<String>,
    /// A brand (e.g. `google`, `github`) for the login button.
    pub brand_name: Option<String>,
    /// The OAuth2 client id.
    pub client_id: String,
    /// A file holding the OAuth2 client secret.
    pub client_secret_file: Option<String>,
    /// How MAS authenticates to the token endpoint.
    #[schemars(extend("enum" = [
        "none",
        "client_secret_basic",
        "client_secret_post",
        "client_secret_jwt",
        "private_key_jwt"
    ]))]
    pub token_endpoint_auth_method: String,
    /// The signing algorithm for `client_secret_jwt` / `private_key_jwt`.
    pub token_endpoint_auth_signing_alg: Option<String>,
    /// The scopes requested (space-separated).
    pub scope: Option<String>,
    /// `oidc`, `insecure` or `disabled`.
    #[schemars(extend("enum" = ["oidc", "insecure", "disabled"]))]
    pub discovery_mode: Option<String>,
    /// `auto`, `always` or `never`.
    #[schemars(extend("enum" = ["auto", "always", "never"]))]
    pub pkce_method: Option<String>,
    /// The authorization endpoint (needed without discovery).
    pub authorization_endpoint: Option<String>,
    /// The token endpoint (needed without discovery).
    pub token_endpoint: Option<String>,
    /// The userinfo endpoint.
    pub userinfo_endpoint: Option<String>,
    /// The JWKS URI.
    pub jwks_uri: Option<String>,
    /// Whether MAS fetches the userinfo endpoint.
    pub fetch_userinfo: Option<bool>,
    /// Which claims MAS imports, and how.
    pub claims_imports: Option<ClaimsImportsSpec>,
    /// Passed to MAS as they are (checked in model/check/upstream.rs).
    pub id_token_signed_response_alg: Option<String>,
    /// MAS's `userinfo_signed_response_alg`.
    pub userinfo_signed_response_alg: Option<String>,
    /// `query` or `form_post`.
    #[schemars(extend("enum" = ["query", "form_post"]))]
    pub response_mode: Option<String>,
    /// Whether MAS forwards the login hint.
    pub forward_login_hint: Option<bool>,
    /// What MAS does on a back-channel logout.
    pub on_backchannel_logout: Option<String>,
    /// Extra parameters of the authorization request.
    pub additional_authorization_parameters: Option<BTreeMap<String, String>>,
}

/// The claims MAS imports from an upstream provider.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ClaimsImportsSpec {
    /// The subject claim.
    pub subject: Option<ClaimSpec>,
    /// The localpart.
    pub localpart: Option<ClaimSpec>,
    /// The display name.
    pub displayname: Option<ClaimSpec>,
    /// The email address.
    pub email: Option<ClaimSpec>,
    /// A display name for the upstream account (`template` only).
    pub account_name: Option<ClaimSpec>,
    /// Skip the confirmation screen (needs `localpart.action = "require"`).
    pub skip_confirmation: Option<bool>,
}

/// One imported claim.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ClaimSpec {
    /// `ignore`, `suggest`, `force` or `require`.
    #[schemars(extend("enum" = ["ignore", "suggest", "force", "require"]))]
    pub action: Option<String>,
    /// A template over the upstream claims.
    pub template: Option<String>,
    /// `localpart` only: `fail`, `add`, `replace` or `set`.
    #[schemars(extend("enum" = ["fail", "add", "replace", "set"]))]
    pub on_conflict: Option<String>,
    /// Refused: MAS dropped it before 1.0 and ignores it.
    pub set_email_verification: Option<String>,
}

/// The reverse proxy (nginx) and TLS.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ProxySpec {
    /// The host nginx runs on (default `homeserver.host`).
    pub host: Option<String>,
    /// The reverse proxy: `nginx` (the default and only one).
    #[schemars(extend("enum" = ["nginx"]))]
    pub kind: Option<String>,
    /// `acme`, `files`, `external` (TLS ends in front of this host) or `none`.
    #[schemars(extend("enum" = ["acme", "files", "external", "none"]))]
    pub tls: Option<String>,
    /// `security.acme.defaults.email`.
    pub acme_email: Option<String>,
    /// The host's own configuration sets `security.acme.defaults.email`.
    pub acme_email_from_host: Option<bool>,
    /// `tls = "files"`: the certificate.
    pub certificate_file: Option<String>,
    /// `tls = "files"`: the certificate's key.
    pub certificate_key_file: Option<String>,
    /// Serve `/.well-known/matrix/{client,server}` on the server_name host.
    pub well_known: Option<bool>,
}

/// The migration tasks.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct MigrationSpec {
    /// Where `masgen-backup.service` writes `pg_dump` files (default `/var/backup/masgen`).
    pub backup_dir: Option<String>,
}

/// A user registered through MAS after the switch.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct UserSpec {
    /// The user's localpart.
    pub localpart: String,
    /// Whether the user is an admin.
    pub admin: Option<bool>,
    /// `bot` or `person`.
    #[schemars(extend("enum" = ["bot", "person"]))]
    pub kind: Option<String>,
    /// A file holding the user's initial password.
    pub password_file: Option<String>,
}

/// MAS's `account` options `[mas.account]` may set (checked in
/// model/check/mas.rs; the schema lists them too).
pub const MAS_ACCOUNT_KEYS: &[&str] = &[
    "email_change_allowed",
    "displayname_change_allowed",
    "password_registration_enabled",
    "password_registration_email_required",
    "password_change_allowed",
    "password_recovery_enabled",
    "account_deactivation_allowed",
    "login_with_email_allowed",
    "password_registration_token_required",
];
