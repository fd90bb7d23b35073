//! Stage 3: lower the validated homeserver to what each host runs in each
//! phase: Synapse and MAS settings, nginx virtual hosts, PostgreSQL databases
//! and masgen's task units. Pure data; no Nix or YAML text here.

mod mas;
mod nginx;
mod synapse;
pub mod tasks;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::{Homeserver, Mode, Roles};

pub use nginx::{Location, TlsMode, VirtualHost, COMPAT_ROUTE};
pub use tasks::Task;

/// The two configurations of a migration. A fresh install has only `Final`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// MAS installed and idle; Synapse unchanged for users.
    Prepare,
    /// Synapse delegates authentication to MAS.
    Final,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Prepare => "prepare",
            Phase::Final => "final",
        }
    }
}

/// Everything one host runs in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct HostPhase {
    pub host: String,
    pub phase: Phase,
    /// `nixosConfigurations` attribute: `matrix-prepare` or `matrix`.
    pub configuration: String,
    /// The services this host runs (all four on a homeserver of one host).
    pub roles: Roles,
    pub synapse: SynapseOut,
    pub mas: MasOut,
    pub nginx: Vec<VirtualHost>,
    pub postgres: PostgresOut,
    pub tasks: BTreeMap<String, Task>,
    /// Let the syn2mas task read Synapse's database through a peer-auth map.
    pub syn2mas_access: Option<Syn2masAccess>,
    /// Certificates from Let's Encrypt (`security.acme`), with this contact.
    pub acme: Option<Acme>,
    /// Settings removed from this phase's Synapse config, and why.
    pub dropped: Vec<Dropped>,
    /// Ports open to everyone, and ports open only to other hosts.
    pub firewall: Firewall,
    /// Database passwords read from files, for a database on another host.
    pub database_passwords: DatabasePasswords,
}

/// The host's firewall: public ports, and ports only the homeserver's other
/// hosts reach (`masgen.firewall.allowFrom`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Firewall {
    pub public: Vec<u16>,
    pub allow_from: Vec<AllowFrom>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllowFrom {
    pub port: u16,
    pub addresses: Vec<String>,
}

/// Password files of databases reached over TCP: Synapse's (read by Synapse,
/// or by syn2mas on the MAS host) and MAS's.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DatabasePasswords {
    pub synapse: Option<String>,
    pub mas: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Syn2masAccess {
    pub database: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Acme {
    pub email: Option<String>,
}

impl HostPhase {
    /// Whether this host needs Synapse's settings: it runs Synapse, or a task
    /// reads Synapse's config (syn2mas on MAS's host).
    pub fn synapse_config_here(&self) -> bool {
        self.roles.synapse
            || self
                .tasks
                .values()
                .any(|t| t.command.iter().any(|a| a == tasks::SYNAPSE_CONFIG_ARGS))
    }
}

/// A host as the flake needs it.
#[derive(Debug, Clone, Serialize)]
pub struct HostOut {
    pub name: String,
    pub system: String,
    /// Where the host's own configuration comes from.
    pub base: Option<HostBase>,
}

/// The flake input `host-<name>` and what the configurations import from it.
#[derive(Debug, Clone, Serialize)]
pub enum HostBase {
    /// A flake exporting `nixosModules.<module>`.
    Flake { url: String, module: String },
    /// A plain configuration file: its directory is a non-flake `path:` input.
    Config { dir: String, file: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct SynapseOut {
    pub settings: Value,
    pub extra_config_files: Vec<String>,
    /// `password_config` with the pepper merged in at runtime (no `_file` form exists).
    pub password_config: Option<PasswordConfigOut>,
    /// nixpkgs `services.matrix-synapse.extras`.
    pub extras: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PasswordConfigOut {
    pub settings: Value,
    pub pepper_file: String,
}

/// Where masgen's runtime copy of the pepper-bearing password config lives.
pub const PASSWORD_CONFIG_PATH: &str = "/run/masgen-synapse/password-config.yaml";

#[derive(Debug, Clone, Serialize)]
pub struct MasOut {
    pub settings: Value,
    /// LoadCredential name → secret file on the host.
    pub credentials: BTreeMap<String, String>,
    pub create_database: bool,
    /// Keys the host makes when missing, before MAS starts
    /// (`masgen.masKeys.generate`, modules/mas-keys.nix).
    pub generated_keys: Vec<GeneratedKey>,
}

/// One key of `masgen.masKeys.generate`.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedKey {
    /// `encryption`, `rsa` or `ec-p256`.
    pub key_type: &'static str,
    pub file: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PostgresOut {
    pub databases: Vec<String>,
    pub users: Vec<String>,
    /// `--locale=C` for a cluster created by this configuration (Synapse needs C collation).
    pub c_locale: bool,
    /// Roles that log in from other hosts over TCP (`masgen.postgresAccess`).
    pub clients: Vec<PostgresClient>,
    /// The address PostgreSQL listens on for them (besides localhost).
    pub listen: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostgresClient {
    pub database: String,
    pub role: String,
    pub address: String,
    pub password_file: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dropped {
    pub setting: String,
    pub reason: String,
}

/// How a homeserver is laid out across hosts and phases.
#[derive(Debug, Clone, Serialize)]
pub struct Lowered {
    pub server_name: String,
    pub mode: Mode,
    pub nixpkgs: String,
    pub hosts: Vec<HostOut>,
    pub phases: Vec<HostPhase>,
}

pub fn lower(hs: &Homeserver) -> Lowered {
    let phases: &[Phase] = match hs.mode {
        Mode::Fresh => &[Phase::Final],
        Mode::Migrate => &[Phase::Prepare, Phase::Final],
    };
    let mut out = Vec::new();
    for host in hs.hosts.values() {
        for &phase in phases {
            out.push(lower_phase(hs, &host.name, phase));
        }
    }
    Lowered {
        server_name: hs.server_name.clone(),
        mode: hs.mode,
        nixpkgs: hs.nixpkgs.clone(),
        hosts: hs
            .hosts
            .values()
            .map(|h| HostOut {
                name: h.name.clone(),
                system: h.system.clone(),
                base: host_base(h),
            })
            .collect(),
        phases: out,
    }
}

fn host_base(h: &crate::model::Host) -> Option<HostBase> {
    if let Some(url) = &h.base_flake {
        return Some(HostBase::Flake {
            url: url.clone(),
            module: h.base_module.clone(),
        });
    }
    let (dir, file) = h.base_config.as_deref()?.rsplit_once('/')?;
    Some(HostBase::Config {
        dir: dir.to_string(),
        file: file.to_string(),
    })
}

pub fn configuration_name(host: &str, phase: Phase) -> String {
    match phase {
        Phase::Prepare => format!("{host}-prepare"),
        Phase::Final => host.to_string(),
    }
}

fn lower_phase(hs: &Homeserver, host: &str, phase: Phase) -> HostPhase {
    let roles = hs.roles(host);
    // Synapse's settings are lowered on every host: syn2mas reads them on MAS's.
    let (synapse, dropped) = synapse::lower(hs, phase);
    let mas = mas::lower(hs);
    let nginx = if roles.proxy {
        nginx::lower(hs, phase)
    } else {
        Vec::new()
    };
    let postgres = postgres(hs, host, phase);
    let tasks = tasks::lower(hs, phase, &synapse, host);
    let syn2mas = hs.mode == Mode::Migrate && phase == Phase::Prepare;
    let s = &hs.synapse.database;
    HostPhase {
        host: host.to_string(),
        phase,
        configuration: configuration_name(host, phase),
        roles,
        synapse,
        mas,
        nginx,
        postgres,
        tasks,
        // Peer access over the socket: Synapse's database is local to MAS's host.
        syn2mas_access: (syn2mas && roles.mas && s.on_host(&hs.synapse.host) == Some(host)).then(
            || Syn2masAccess {
                database: s.name.clone(),
                role: s.user.clone(),
            },
        ),
        acme: match &hs.proxy.tls {
            crate::model::Tls::Acme { email } if roles.proxy => Some(Acme {
                email: email.clone(),
            }),
            _ => None,
        },
        // Reported once, for the host that runs Synapse.
        dropped: if roles.synapse { dropped } else { Vec::new() },
        firewall: firewall(hs, host, roles),
        database_passwords: DatabasePasswords {
            synapse: s
                .password_file
                .clone()
                .filter(|_| roles.synapse || (roles.mas && syn2mas)),
            mas: hs.mas.database.password_file.clone().filter(|_| roles.mas),
        },
    }
}

/// The databases and roles `host`'s PostgreSQL holds for this homeserver,
/// and who logs in to them from other hosts.
fn postgres(hs: &Homeserver, host: &str, phase: Phase) -> PostgresOut {
    let mut out = PostgresOut::default();
    let (s, m) = (&hs.synapse.database, &hs.mas.database);
    // An existing Synapse database is the operator's; masgen only creates
    // the ones a fresh install needs.
    if hs.mode == Mode::Fresh && s.on_host(&hs.synapse.host) == Some(host) {
        out.databases.push(s.name.clone());
        out.users.push(s.user.clone());
        out.c_locale = true;
    }
    if m.on_host(&hs.mas.host) == Some(host) && !mas::uses_default_database(hs) {
        out.databases.push(m.name.clone());
        out.users.push(m.user.clone());
    }
    let mut client = |d: &crate::model::Database, from: &str| {
        if let (Some(address), Some(password_file)) = (hs.address_of(from), &d.password_file) {
            out.clients.push(PostgresClient {
                database: d.name.clone(),
                role: d.user.clone(),
                address: address.to_string(),
                password_file: password_file.clone(),
            });
        }
    };
    if s.server.as_deref() == Some(host) {
        client(s, &hs.synapse.host);
        // syn2mas, on MAS's host, reads Synapse's database as Synapse does.
        if hs.mode == Mode::Migrate && phase == Phase::Prepare && hs.mas.host != hs.synapse.host {
            client(s, &hs.mas.host);
        }
    }
    if m.server.as_deref() == Some(host) {
        client(m, &hs.mas.host);
    }
    if !out.clients.is_empty() {
        out.listen = hs.address_of(host).map(str::to_string);
    }
    out
}

/// Public ports on the proxy's host; on a homeserver of several hosts, each
/// service's port only to the hosts that call it.
fn firewall(hs: &Homeserver, host: &str, roles: Roles) -> Firewall {
    if !hs.is_split() {
        return Firewall {
            public: vec![80, 443],
            allow_from: Vec::new(),
        };
    }
    let mut allow_from = Vec::new();
    let mut allow = |port: u16, from: &[&str]| {
        let mut addresses: Vec<String> = from
            .iter()
            .filter(|h| **h != host)
            .filter_map(|h| hs.address_of(h).map(str::to_string))
            .collect();
        addresses.sort();
        addresses.dedup();
        if !addresses.is_empty() {
            allow_from.push(AllowFrom { port, addresses });
        }
    };
    if roles.synapse {
        allow(hs.synapse.port, &[&hs.proxy.host, &hs.mas.host]);
    }
    if roles.mas {
        allow(hs.mas.port, &[&hs.proxy.host, &hs.synapse.host]);
    }
    let mut db_clients = Vec::new();
    if hs.synapse.database.server.as_deref() == Some(host) {
        db_clients.push(hs.synapse.host.as_str());
        if hs.mode == Mode::Migrate {
            db_clients.push(hs.mas.host.as_str());
        }
    }
    if hs.mas.database.server.as_deref() == Some(host) {
        db_clients.push(hs.mas.host.as_str());
    }
    if !db_clients.is_empty() {
        allow(POSTGRES_PORT, &db_clients);
    }
    Firewall {
        public: if roles.proxy {
            vec![80, 443]
        } else {
            Vec::new()
        },
        allow_from,
    }
}

/// The port masgen's PostgreSQL listens on for other hosts (the model
/// refuses another port for a database on another host).
pub const POSTGRES_PORT: u16 = 5432;

/// Deep-merges `extra` into `base`: objects merge key by key, anything else
/// in `extra` replaces what `base` had.
pub fn merge(base: &mut Map<String, Value>, extra: &Map<String, Value>) {
    for (key, value) in extra {
        match (base.get_mut(key), value) {
            (Some(Value::Object(b)), Value::Object(e)) => merge(b, e),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Removes a dotted path; returns the removed value.
pub(crate) fn remove_path(settings: &mut Map<String, Value>, path: &str) -> Option<Value> {
    match path.split_once('.') {
        None => settings.remove(path),
        Some((head, rest)) => {
            let child = settings.get_mut(head)?.as_object_mut()?;
            let removed = remove_path(child, rest);
            if child.is_empty() {
                settings.remove(head);
            }
            removed
        }
    }
}
