//! The NixOS configurations of an output tree, read back from the
//! `hosts/<host>/<phase>/*.nix` files masgen wrote (so a tree on disk, a tree
//! built from an old spec and the new tree are all read the same way).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::emit::OutputTree;
use crate::lower::{configuration_name, tasks, Phase};

use super::changeset::RouteTarget;
use super::nixdata;

/// One `nixosConfigurations.<configuration>` of a tree: the host module as data.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigState {
    pub host: String,
    /// `prepare` or `final`.
    pub phase: String,
    pub configuration: String,
    /// `hosts/<host>/<phase>/default.nix` with its imports, as JSON data.
    pub module: Value,
}

/// A virtual host's options (without its locations) and its locations.
#[derive(Debug, Clone, PartialEq)]
pub struct Vhost {
    pub options: Map<String, Value>,
    pub locations: BTreeMap<String, RouteTarget>,
}

/// Reads every configuration of a tree, sorted by host, then phase.
pub fn configurations(tree: &OutputTree) -> Result<Vec<ConfigState>, String> {
    let mut out = headers(tree);
    for c in &mut out {
        c.load(tree)?;
    }
    Ok(out)
}

/// The host and phase of `hosts/<host>/<phase>/default.nix`, the file that
/// makes a configuration; `None` for any other path.
pub fn configuration_file(path: &camino::Utf8Path) -> Option<(&str, &str)> {
    let mut parts = path.components().map(|c| c.as_str());
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("hosts"), Some(host), Some(phase), Some("default.nix"), None) => Some((host, phase)),
        _ => None,
    }
}

/// Every configuration of a tree by name only (`module` is null until
/// [`ConfigState::load`]), sorted by host, then phase.
pub fn headers(tree: &OutputTree) -> Vec<ConfigState> {
    let mut out = Vec::new();
    for path in tree.keys() {
        let Some((host, phase)) = configuration_file(path) else {
            continue;
        };
        let configuration = match phase {
            "prepare" => configuration_name(host, Phase::Prepare),
            "final" => configuration_name(host, Phase::Final),
            other => format!("{host}-{other}"),
        };
        out.push(ConfigState {
            host: host.to_string(),
            phase: phase.to_string(),
            configuration,
            module: Value::Null,
        });
    }
    out.sort_by(|a, b| (&a.host, phase_rank(&a.phase)).cmp(&(&b.host, phase_rank(&b.phase))));
    out
}

impl ConfigState {
    /// The directory of its module, `hosts/<host>/<phase>/`.
    pub fn dir(&self) -> String {
        format!("hosts/{}/{}/", self.host, self.phase)
    }

    /// Parses `hosts/<host>/<phase>/default.nix` with its imports, once.
    pub fn load(&mut self, tree: &OutputTree) -> Result<(), String> {
        if self.module.is_null() {
            let path = camino::Utf8PathBuf::from(format!("{}default.nix", self.dir()));
            self.module = nixdata::read(tree, &path)?;
        }
        Ok(())
    }
}

pub fn phase_rank(phase: &str) -> u8 {
    match phase {
        "prepare" => 0,
        "final" => 1,
        _ => 2,
    }
}

const EMPTY: &Value = &Value::Null;

impl ConfigState {
    pub fn get(&self, path: &[&str]) -> &Value {
        path.iter()
            .try_fold(&self.module, |v, k| v.get(*k))
            .unwrap_or(EMPTY)
    }

    fn enabled(&self, service: &str) -> bool {
        self.get(&["services", service, "enable"]) == &Value::Bool(true)
    }

    pub fn synapse_enabled(&self) -> bool {
        self.enabled("matrix-synapse")
    }

    pub fn synapse_settings(&self) -> Value {
        object(self.get(&["services", "matrix-synapse", "settings"]))
    }

    /// `services.matrix-synapse.extraConfigFiles`, plus the password-config
    /// file masgen's module appends when `masgen.synapse.passwordConfig` is on.
    pub fn synapse_extra_files(&self) -> Vec<String> {
        let mut files = strings(self.get(&["services", "matrix-synapse", "extraConfigFiles"]));
        if self.enabled_option(&["masgen", "synapse", "databasePassword"]) {
            files.push(tasks::SYNAPSE_DATABASE_PATH.to_string());
        }
        if self.password_config().is_some() {
            files.push(crate::lower::PASSWORD_CONFIG_PATH.to_string());
        }
        files
    }

    /// Whether the option set at `path` has `enable = true`.
    fn enabled_option(&self, path: &[&str]) -> bool {
        self.get(path).get("enable") == Some(&Value::Bool(true))
    }

    /// `masgen.synapse.passwordConfig` when enabled: `{settings, pepperFile}`.
    pub fn password_config(&self) -> Option<&Value> {
        let pc = self.get(&["masgen", "synapse", "passwordConfig"]);
        (pc.get("enable") == Some(&Value::Bool(true))).then_some(pc)
    }

    pub fn mas_enabled(&self) -> bool {
        self.enabled("matrix-authentication-service")
    }

    pub fn mas_settings(&self) -> Value {
        object(self.get(&["services", "matrix-authentication-service", "settings"]))
    }

    pub fn mas_credentials(&self) -> BTreeMap<String, String> {
        self.get(&["services", "matrix-authentication-service", "credentials"])
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn nginx_enabled(&self) -> bool {
        self.enabled("nginx")
    }

    pub fn postgres_enabled(&self) -> bool {
        self.enabled("postgresql")
    }

    pub fn vhosts(&self) -> BTreeMap<String, Vhost> {
        let mut out = BTreeMap::new();
        let Some(hosts) = self.get(&["services", "nginx", "virtualHosts"]).as_object() else {
            return out;
        };
        for (name, v) in hosts {
            let mut options = v.as_object().cloned().unwrap_or_default();
            let locations = options
                .remove("locations")
                .and_then(|l| l.as_object().cloned())
                .unwrap_or_default()
                .into_iter()
                .map(|(matcher, l)| {
                    let s = |k: &str| l.get(k).and_then(|v| v.as_str()).map(str::to_string);
                    (
                        matcher,
                        RouteTarget {
                            proxy_pass: s("proxyPass"),
                            return_value: s("return"),
                            extra_config: s("extraConfig"),
                        },
                    )
                })
                .collect();
            out.insert(name.clone(), Vhost { options, locations });
        }
        out
    }

    /// Virtual hosts that get an ACME certificate (`enableACME`).
    pub fn acme_hosts(&self) -> Vec<String> {
        self.vhosts()
            .into_iter()
            .filter(|(_, v)| v.options.get("enableACME") == Some(&Value::Bool(true)))
            .map(|(k, _)| k)
            .collect()
    }

    /// masgen's tasks as modules/tasks.nix makes them: each task's own
    /// fields with what its placeholders imply, so a change of MAS's
    /// credentials shows on the tasks that load them.
    pub fn tasks(&self) -> BTreeMap<String, Value> {
        let mas_credentials = self.mas_credentials();
        let host = tasks::HostWiring {
            mas_credentials: &mas_credentials,
            password_config: self.password_config().is_some(),
            mas_keys: self
                .get(&["masgen", "masKeys", "generate"])
                .as_array()
                .is_some_and(|keys| !keys.is_empty()),
            synapse_database: self.enabled_option(&["masgen", "synapse", "databasePassword"]),
            mas_database: self.enabled_option(&["masgen", "mas", "databasePassword"]),
        };
        self.get(&["masgen", "tasks"])
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), with_implied(k, v, &host)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn with_implied(name: &str, task: &Value, host: &tasks::HostWiring<'_>) -> Value {
    let Value::Object(fields) = task else {
        return task.clone();
    };
    let own: BTreeMap<String, String> = fields
        .get("credentials")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let implied = tasks::implied(
        name,
        &strings(fields.get("command").unwrap_or(&Value::Null)),
        &own,
        fields.get("runtimeDirectory").and_then(Value::as_str),
        host,
    );
    let mut out = fields.clone();
    out.insert("credentials".into(), json!(implied.credentials));
    for key in ["after", "requires"] {
        let mut list = strings(fields.get(key).unwrap_or(&Value::Null));
        for unit in &implied.after_requires {
            if !list.contains(unit) {
                list.push(unit.clone());
            }
        }
        out.insert(key.into(), json!(list));
    }
    if let Some(d) = implied.runtime_directory {
        out.insert("runtimeDirectory".into(), json!(d));
    }
    Value::Object(out)
}

fn object(v: &Value) -> Value {
    match v {
        Value::Object(_) => v.clone(),
        _ => Value::Object(Map::new()),
    }
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
