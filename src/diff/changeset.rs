//! The result of a comparison, independent of how it is shown. Serialized
//! as-is for `--format json` (schema in docs/diff.md); every list is sorted so
//! the output is deterministic.

use serde::Serialize;
use serde_json::Value;

/// Version of the JSON document; bump on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything a build would change, against one baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changeset {
    pub schema_version: u32,
    /// The spec the new side was built from, as given on the command line.
    pub spec: String,
    pub against: Against,
    /// Whether anything changed (the exit code is 1 exactly when this is true).
    pub changed: bool,
    /// One entry per NixOS configuration of the new tree, then the old
    /// configurations that are no longer built; sorted by host, then phase.
    pub configurations: Vec<ConfigurationChange>,
    /// Files of the output tree that differ (tree and git baselines only),
    /// sorted by path; `masgen-manifest.json` is left out.
    pub files: Vec<FileChange>,
    /// What could not be compared, and why.
    pub notes: Vec<String>,
}

/// What the new tree is compared with.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Against {
    /// A previous output tree on disk (`--against DIR`).
    Tree { path: String },
    /// The tree built from the spec at a git revision (`--against-rev REV`).
    Rev { rev: String },
    /// A NixOS system root (`--system ROOT`).
    System { root: String },
}

impl Against {
    pub fn describe(&self) -> String {
        match self {
            Against::Tree { path } => format!("the output tree in {path}"),
            Against::Rev { rev } => format!("the spec at git revision {rev}"),
            Against::System { root } => format!("the system at {root}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

impl Change {
    pub fn sigil(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Changed => '~',
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The configuration is new (no baseline to compare with).
    Added,
    /// The configuration was in the old tree and is no longer built.
    Removed,
    Changed,
    Unchanged,
}

/// One NixOS configuration (`nixosConfigurations.<configuration>`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigurationChange {
    pub host: String,
    pub configuration: String,
    /// `prepare` or `final`.
    pub phase: String,
    /// What this configuration is compared with: the old configuration of
    /// the same name, another old configuration of the same host (e.g.
    /// `matrix-prepare` when `matrix` is new), the system, or nothing.
    pub baseline: Option<String>,
    pub status: Status,
    /// What `switch-to-configuration` does to each unit that differs.
    pub units: Vec<UnitChange>,
    pub synapse_settings: Vec<SettingChange>,
    pub mas_settings: Vec<SettingChange>,
    pub virtual_hosts: Vec<VhostChange>,
    pub routes: Vec<RouteChange>,
    /// Other NixOS options of the configuration module, as key paths.
    pub other_options: Vec<SettingChange>,
    /// Settings the system has and masgen does not set (system baseline
    /// only): nixpkgs defaults or the host's own configuration; kept as they are.
    pub unmanaged_settings: Vec<String>,
    /// Units on the system masgen knows nothing about (system baseline only).
    pub foreign_units: Vec<String>,
    pub phase_change: Option<PhaseChange>,
    /// Things a reviewer must not miss, loudest first.
    pub warnings: Vec<Warning>,
}

/// What `switch-to-configuration` will do to a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Start,
    Stop,
    Restart,
    Reload,
    /// Left alone (e.g. a oneshot task that is not running, or a unit whose
    /// change takes effect through another unit).
    None,
}

impl Action {
    pub fn word(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Reload => "reload",
            Action::None => "-",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitChange {
    pub unit: String,
    pub change: Change,
    pub action: Action,
    /// The prediction in words: `restarted`, `added (not started)`,
    /// `changed (not running)`, `restart not needed, ensure-step reruns`.
    pub summary: String,
    /// What changed that feeds this unit.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingChange {
    /// `a.b[0].c`; keys that are not plain names are quoted: `a["m.homeserver"]`.
    pub path: String,
    pub change: Change,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VhostChange {
    pub server_name: String,
    pub change: Change,
    /// Virtual-host options that changed (TLS, ACME), as `option: old → new`.
    pub reasons: Vec<String>,
}

/// Where an nginx location sends a request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RouteTarget {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_pass: Option<String>,
    #[serde(rename = "return", skip_serializing_if = "Option::is_none")]
    pub return_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_config: Option<String>,
}

impl RouteTarget {
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.proxy_pass {
            parts.push(format!("proxy_pass {p}"));
        }
        if let Some(r) = &self.return_value {
            parts.push(format!("return {r}"));
        }
        if let Some(e) = &self.extra_config {
            parts.push(e.replace('\n', " "));
        }
        if parts.is_empty() {
            "(empty)".into()
        } else {
            parts.join("; ")
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteChange {
    pub server_name: String,
    /// The nginx location matcher: `/_matrix`, `= /auth`, `~ regex`.
    pub matcher: String,
    pub change: Change,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<RouteTarget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<RouteTarget>,
    /// The matcher is MAS's login compatibility route (`login|logout|refresh`).
    pub compat: bool,
}

/// A change of migration phase: Synapse starts or stops delegating to MAS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseChange {
    /// `prepare` or `final` for masgen configurations; `delegating` or
    /// `not delegating` for a system.
    pub from: String,
    pub to: String,
    /// `delegate` (Synapse starts delegating) or `rollback` (it stops).
    pub direction: PhaseDirection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseDirection {
    Delegate,
    Rollback,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Warning {
    /// Stable identifier, e.g. `logins_move_to_mas`.
    pub code: String,
    pub message: String,
}

/// One file of the output tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileChange {
    pub path: String,
    pub change: Change,
    /// For a file of a new configuration compared with another phase of the
    /// same host: the old file it is diffed against (`hosts/h/prepare/x`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared_with: Option<String>,
    /// Unified diff (`a/<path>`, `b/<path>`; `/dev/null` for a missing side).
    pub diff: String,
}

impl ConfigurationChange {
    pub fn is_changed(&self) -> bool {
        self.status != Status::Unchanged
    }
}
