//! Where a host is now: from `--from`, a previous output tree, or a system root.

use camino::Utf8Path;
use serde::Serialize;

use crate::system::{SystemRoot, MAS_UNIT, SYNAPSE_UNIT};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostState {
    /// Nothing installed yet.
    Fresh,
    /// Synapse with its own logins, no MAS.
    SynapseOnly,
    /// Phase 1 active: MAS installed with an empty database, Synapse unchanged.
    MasPrepared,
    /// syn2mas has copied the users; Synapse not yet switched to delegation.
    Migrated,
    /// Synapse delegates authentication to MAS.
    Delegated,
}

impl HostState {
    pub const ALL: [HostState; 5] = [
        HostState::Fresh,
        HostState::SynapseOnly,
        HostState::MasPrepared,
        HostState::Migrated,
        HostState::Delegated,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HostState::Fresh => "fresh",
            HostState::SynapseOnly => "synapse-only",
            HostState::MasPrepared => "mas-prepared",
            HostState::Migrated => "migrated",
            HostState::Delegated => "delegated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        HostState::ALL.into_iter().find(|h| h.name() == s)
    }
}

impl std::fmt::Display for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which of the three sources a state came from.
#[derive(Debug, Clone)]
pub enum StateSource<'a> {
    Flag(&'a str),
    Manifest(&'a Utf8Path),
    System(&'a Utf8Path),
}

/// Marker the syn2mas migrate task leaves on success (see modules/tasks.nix).
pub const MIGRATED_STAMP: &str = "syn2mas-migrate.done";

/// Detects the state; returns it with a sentence saying how it was found.
pub fn detect(source: &StateSource<'_>) -> anyhow::Result<(HostState, String)> {
    match source {
        StateSource::Flag(s) => {
            let state = HostState::parse(s).ok_or_else(|| {
                let names: Vec<&str> = HostState::ALL.iter().map(|h| h.name()).collect();
                anyhow::anyhow!("unknown state `{s}`; use one of: {}", names.join(", "))
            })?;
            Ok((state, format!("--from {s}")))
        }
        StateSource::System(root) => {
            let sys = SystemRoot::read(root)?;
            let state = from_system(&sys);
            let mut how = format!("system root {root}: ");
            let units: Vec<&str> = [SYNAPSE_UNIT, MAS_UNIT]
                .into_iter()
                .filter(|u| sys.units.contains_key(*u))
                .collect();
            how.push_str(&if units.is_empty() {
                "no Synapse or MAS unit".to_string()
            } else {
                units.join(", ")
            });
            if sys.synapse_config.is_some() {
                how.push_str(if sys.synapse_delegates() {
                    "; Synapse delegates to MAS"
                } else {
                    "; Synapse uses its own logins"
                });
            }
            if sys.stamps.iter().any(|s| s == MIGRATED_STAMP) {
                how.push_str("; syn2mas migrate has completed");
            }
            Ok((state, how))
        }
        StateSource::Manifest(out) => from_manifest(out),
    }
}

pub fn from_system(sys: &SystemRoot) -> HostState {
    let synapse = sys.units.contains_key(SYNAPSE_UNIT);
    let mas = sys.units.contains_key(MAS_UNIT);
    match (synapse, mas) {
        (false, _) => HostState::Fresh,
        (true, _) if sys.synapse_delegates() => HostState::Delegated,
        (true, false) => HostState::SynapseOnly,
        (true, true) if sys.stamps.iter().any(|s| s == MIGRATED_STAMP) => HostState::Migrated,
        (true, true) => HostState::MasPrepared,
    }
}

/// A previous output tree says which configurations were built, not which
/// one is active; it decides only when that is unambiguous.
fn from_manifest(out: &Utf8Path) -> anyhow::Result<(HostState, String)> {
    let manifest = crate::write::previous_manifest(out)?;
    anyhow::ensure!(
        !manifest.is_empty(),
        "{out} has no masgen manifest; build it first, or give the state with --from or --system"
    );
    let has = |phase: &str| {
        manifest.keys().any(|p| {
            p.as_str().starts_with("render/") && p.as_str().contains(&format!("/{phase}/"))
        })
    };
    match (has("prepare"), has("final")) {
        (false, true) => Ok((
            HostState::Delegated,
            format!("manifest of {out}: its only configuration delegates to MAS (assumed deployed)"),
        )),
        (true, _) => anyhow::bail!(
            "the manifest of {out} holds a two-phase migration, so it cannot tell how far the host got; \
             give the state with --from <state> or read it from the host with --system /run/current-system"
        ),
        _ => anyhow::bail!("the manifest of {out} lists no configuration"),
    }
}
