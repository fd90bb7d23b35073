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

use crate::model::{Homeserver, Mode};

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
    let (synapse, dropped) = synapse::lower(hs, phase);
    let mas = mas::lower(hs);
    let nginx = nginx::lower(hs, phase);
    let postgres = postgres(hs);
    let tasks = tasks::lower(hs, phase, &synapse);
    HostPhase {
        host: host.to_string(),
        phase,
        configuration: configuration_name(host, phase),
        synapse,
        mas,
        nginx,
        postgres,
        tasks,
        syn2mas_access: (hs.mode == Mode::Migrate && phase == Phase::Prepare).then(|| {
            Syn2masAccess {
                database: hs.synapse.database.name.clone(),
                role: hs.synapse.database.user.clone(),
            }
        }),
        acme: match &hs.proxy.tls {
            crate::model::Tls::Acme { email } => Some(Acme {
                email: email.clone(),
            }),
            _ => None,
        },
        dropped,
    }
}

fn postgres(hs: &Homeserver) -> PostgresOut {
    let mut out = PostgresOut::default();
    // An existing Synapse database is the operator's; masgen only creates
    // the ones a fresh install needs.
    if hs.mode == Mode::Fresh && hs.synapse.database.local {
        out.databases.push(hs.synapse.database.name.clone());
        out.users.push(hs.synapse.database.user.clone());
        out.c_locale = true;
    }
    if hs.mas.database.local && !mas::uses_default_database(hs) {
        out.databases.push(hs.mas.database.name.clone());
        out.users.push(hs.mas.database.user.clone());
    }
    out
}

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
