//! Serde mirror of the spec file, as close to the TOML as possible. Defaults
//! and meaning are resolved later, in `model`.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct SpecFile {
    pub version: u32,
    pub homeserver: HomeserverSpec,
    #[serde(default)]
    pub flake: FlakeSpec,
    #[serde(default)]
    pub hosts: BTreeMap<String, HostSpec>,
    pub synapse: SynapseSpec,
    pub mas: MasSpec,
    #[serde(default)]
    pub proxy: ProxySpec,
    #[serde(default)]
    pub migration: MigrationSpec,
    #[serde(default)]
    pub users: Vec<UserSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HomeserverSpec {
    pub server_name: String,
    /// `fresh` or `migrate`.
    pub mode: String,
    pub implementation: Option<String>,
    /// The NixOS configuration name of the host running everything (default `matrix`).
    pub host: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FlakeSpec {
    pub nixpkgs: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostSpec {
    pub system: Option<String>,
    /// Flake reference of the host's own base configuration (hardware, users, ...).
    pub base_flake: Option<String>,
    /// Which `nixosModules.<name>` of `base_flake` to import (default `default`).
    pub base_module: Option<String>,
    /// A plain NixOS configuration file (e.g. `/etc/nixos/configuration.nix`);
    /// its directory becomes a non-flake input.
    pub base_config: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListenerSpec {
    pub address: Option<String>,
    pub port: Option<i64>,
    pub health_port: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DatabaseSpec {
    /// `postgresql` or `sqlite`.
    pub engine: Option<String>,
    pub name: Option<String>,
    pub user: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub password_file: Option<String>,
    /// Whether masgen manages this database in `services.postgresql` on this host.
    pub local: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SynapseSpec {
    pub host: Option<String>,
    /// The Synapse release line; derived from a known `flake.nixpkgs` when omitted.
    pub version: Option<String>,
    pub public_hostname: Option<String>,
    #[serde(default)]
    pub listener: ListenerSpec,
    #[serde(default)]
    pub database: DatabaseSpec,
    pub pepper_file: Option<String>,
    pub macaroon_secret_key_file: Option<String>,
    pub registration_shared_secret_file: Option<String>,
    pub form_secret_file: Option<String>,
    pub signing_key_path: Option<String>,
    /// `true`, `false` or `"only_for_reauth"` (Synapse's `password_config.enabled`).
    pub password_login: Option<toml::Value>,
    pub enable_registration: Option<bool>,
    pub allow_guest_access: Option<bool>,
    pub enable_3pid_changes: Option<bool>,
    pub login_via_existing_session: Option<bool>,
    pub registration_captcha: Option<bool>,
    pub user_consent: Option<bool>,
    pub session_lifetime: Option<String>,
    pub refresh_token_lifetime: Option<String>,
    pub nonrefreshable_access_token_lifetime: Option<String>,
    #[serde(default)]
    pub oidc_providers: Vec<SynapseOidcSpec>,
    pub oidc_config: Option<SynapseOidcSpec>,
    /// SAML2, CAS or JWT logins in use (`saml2`, `cas`, `jwt`).
    #[serde(default)]
    pub legacy_sso: Vec<String>,
    #[serde(default)]
    pub password_providers: Vec<PasswordProviderSpec>,
    /// `true` (install the LDAP plugin only) or matrix-synapse-ldap3's settings.
    pub ldap: Option<toml::Value>,
    #[serde(default)]
    pub modules: Vec<SynapseModuleSpec>,
    #[serde(default)]
    pub app_services: Vec<AppServiceSpec>,
    /// Settings masgen does not model, merged into homeserver.yaml.
    #[serde(default)]
    pub extra_settings: toml::Table,
    /// Extra settings for the final (delegated) phase only.
    #[serde(default)]
    pub final_extra_settings: toml::Table,
    /// Secret YAML files of the operator's, passed as extra `--config-path`s.
    #[serde(default)]
    pub extra_config_files: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SynapseOidcSpec {
    pub idp_id: Option<String>,
    pub idp_name: Option<String>,
    pub issuer: String,
    pub client_id: String,
    pub client_secret_file: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub discover: Option<bool>,
    pub localpart_template: Option<String>,
    pub display_name_template: Option<String>,
    pub email_template: Option<String>,
    pub allow_existing_users: Option<bool>,
    /// Whether any Synapse user is linked to this provider (default: assume so).
    pub has_users: Option<bool>,
    /// Synapse provider settings without a key of their own, passed to
    /// phase 1 verbatim (deep-merged into the provider).
    #[serde(default)]
    pub extra: toml::Table,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PasswordProviderSpec {
    pub module: String,
    #[serde(default)]
    pub config: toml::Table,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SynapseModuleSpec {
    pub module: String,
    #[serde(default)]
    pub config: toml::Table,
    /// Whether this module implements password authentication (`auth_checkers`).
    pub password_auth: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AppServiceSpec {
    pub name: String,
    pub registration_file: String,
    pub encrypted: Option<bool>,
    /// A known bot (e.g. `reminder-bot`, `postmoogle`).
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MasSpec {
    pub host: Option<String>,
    pub hostname: Option<String>,
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub listener: ListenerSpec,
    #[serde(default)]
    pub database: DatabaseSpec,
    pub encryption_file: Option<String>,
    pub shared_secret_file: Option<String>,
    #[serde(default)]
    pub signing_keys: Vec<SigningKeySpec>,
    pub keys_dir: Option<String>,
    #[serde(default)]
    pub passwords: MasPasswordsSpec,
    pub email: Option<EmailSpec>,
    #[serde(default)]
    pub account: BTreeMap<String, bool>,
    pub trusted_proxies: Option<Vec<String>>,
    #[serde(default)]
    pub admin_users: Vec<String>,
    #[serde(default)]
    pub upstream_providers: Vec<UpstreamProviderSpec>,
    #[serde(default)]
    pub extra_settings: toml::Table,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SigningKeySpec {
    pub kid: String,
    pub key_file: String,
    pub password_file: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MasPasswordsSpec {
    pub enabled: Option<bool>,
    pub minimum_complexity: Option<i64>,
    /// Extra algorithms after the defaults; rarely needed.
    pub algorithm: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EmailSpec {
    /// `smtp`, `sendmail` or `none`.
    pub transport: String,
    pub from: Option<String>,
    pub reply_to: Option<String>,
    pub mode: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<i64>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub command: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UpstreamProviderSpec {
    pub id: String,
    pub synapse_idp_id: Option<String>,
    pub issuer: Option<String>,
    pub human_name: Option<String>,
    pub brand_name: Option<String>,
    pub client_id: String,
    pub client_secret_file: Option<String>,
    pub token_endpoint_auth_method: String,
    pub token_endpoint_auth_signing_alg: Option<String>,
    pub scope: Option<String>,
    pub discovery_mode: Option<String>,
    pub pkce_method: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    pub fetch_userinfo: Option<bool>,
    pub claims_imports: Option<ClaimsImportsSpec>,
    /// Passed to MAS as they are (checked in model/check/upstream.rs).
    pub id_token_signed_response_alg: Option<String>,
    pub userinfo_signed_response_alg: Option<String>,
    pub response_mode: Option<String>,
    pub forward_login_hint: Option<bool>,
    pub on_backchannel_logout: Option<String>,
    pub additional_authorization_parameters: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClaimsImportsSpec {
    pub subject: Option<ClaimSpec>,
    pub localpart: Option<ClaimSpec>,
    pub displayname: Option<ClaimSpec>,
    pub email: Option<ClaimSpec>,
    /// A display name for the upstream account (`template` only).
    pub account_name: Option<ClaimSpec>,
    pub skip_confirmation: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClaimSpec {
    pub action: Option<String>,
    pub template: Option<String>,
    /// `localpart` only: `fail`, `add`, `replace` or `set`.
    pub on_conflict: Option<String>,
    /// Refused: MAS dropped it before 1.0 and ignores it.
    pub set_email_verification: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProxySpec {
    pub kind: Option<String>,
    /// `acme`, `files`, `external` (TLS ends in front of this host) or `none`.
    pub tls: Option<String>,
    pub acme_email: Option<String>,
    /// The host's own configuration sets `security.acme.defaults.email`.
    pub acme_email_from_host: Option<bool>,
    pub certificate_file: Option<String>,
    pub certificate_key_file: Option<String>,
    /// Serve `/.well-known/matrix/{client,server}` on the server_name host.
    pub well_known: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MigrationSpec {
    pub backup_dir: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserSpec {
    pub localpart: String,
    pub admin: Option<bool>,
    /// `bot` or `person`.
    pub kind: Option<String>,
    pub password_file: Option<String>,
}
