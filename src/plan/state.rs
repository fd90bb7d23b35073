//! Where a host is now: from `--from`, a previous output tree, or a system root.

use camino::Utf8Path;
use serde::Serialize;

use crate::system::{self, MAS_UNIT, SYNAPSE_UNIT};

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

pub use crate::lower::tasks::MIGRATED_STAMP;

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
        StateSource::System(root) => from_system(root),
        StateSource::Manifest(out) => from_manifest(out),
    }
}

/// From the units a system root has, whether Synapse's merged config
/// delegates to MAS, and the stamps masgen's tasks left.
fn from_system(root: &Utf8Path) -> anyhow::Result<(HostState, String)> {
    let sys = system::read(root, &[])?;
    let has = |unit: &str| sys.units.contains_key(unit);
    let delegates = if has(SYNAPSE_UNIT) {
        let (config, unreadable) = sys.merged(&sys.synapse_config_files(), false);
        // Runtime files (/run/...) are not part of a system root: skip them.
        if let Some((f, e)) = unreadable.iter().find(|(f, _)| !f.starts_with("/run/")) {
            anyhow::bail!(
                "Synapse's config file {f}: {e}; cannot tell whether Synapse delegates to MAS"
            );
        }
        Some(system::delegates(&config))
    } else {
        None
    };
    let migrated = sys.stamps.iter().any(|s| s == MIGRATED_STAMP);
    let state = match (has(SYNAPSE_UNIT), has(MAS_UNIT)) {
        (false, _) => HostState::Fresh,
        (true, _) if delegates == Some(true) => HostState::Delegated,
        (true, false) => HostState::SynapseOnly,
        (true, true) if migrated => HostState::Migrated,
        (true, true) => HostState::MasPrepared,
    };
    let units: Vec<&str> = [SYNAPSE_UNIT, MAS_UNIT]
        .into_iter()
        .filter(|u| has(u))
        .collect();
    let mut how = format!("system root {root}: ");
    how.push_str(&if units.is_empty() {
        "no Synapse or MAS unit".to_string()
    } else {
        units.join(", ")
    });
    how.push_str(match delegates {
        Some(true) => "; Synapse delegates to MAS",
        Some(false) => "; Synapse uses its own logins",
        None => "",
    });
    if migrated {
        how.push_str("; syn2mas migrate has completed");
    }
    Ok((state, how))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A root whose Synapse reads `files` (`(path, YAML or None)`) in order.
    fn root_with_synapse(files: &[(&str, Option<&str>)]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let units = tmp.path().join("etc/systemd/system");
        std::fs::create_dir_all(&units).unwrap();
        let mut exec = "ExecStart=/nix/store/s/bin/synapse_homeserver".to_string();
        for (path, yaml) in files {
            exec.push_str(&format!(" \\\n  --config-path {path}"));
            if let Some(yaml) = yaml {
                let p = tmp.path().join(path.trim_start_matches('/'));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, yaml).unwrap();
            }
        }
        std::fs::write(units.join(SYNAPSE_UNIT), format!("[Service]\n{exec}\n")).unwrap();
        tmp
    }

    fn detect_in(tmp: &tempfile::TempDir) -> anyhow::Result<(HostState, String)> {
        detect(&StateSource::System(
            Utf8Path::from_path(tmp.path()).unwrap(),
        ))
    }

    #[test]
    fn synapse_files_merge_shallowly_and_absent_runtime_files_are_skipped() {
        let on = "matrix_authentication_service:\n  enabled: true\n";
        let off = "matrix_authentication_service: {}\n";
        let msc3861 = "experimental_features:\n  msc3861:\n    enabled: true\n";
        let cases = [
            (vec![("/nix/store/a.yaml", Some(on))], HostState::Delegated),
            (
                vec![
                    ("/nix/store/a.yaml", Some(on)),
                    ("/nix/store/b.yaml", Some(off)),
                ],
                HostState::SynapseOnly,
            ),
            (
                vec![("/nix/store/a.yaml", Some(off)), ("/run/x/b.yaml", None)],
                HostState::SynapseOnly,
            ),
            (
                vec![
                    ("/nix/store/a.yaml", Some(off)),
                    ("/etc/b.yaml", Some(msc3861)),
                ],
                HostState::Delegated,
            ),
        ];
        for (files, expected) in cases {
            let (state, how) = detect_in(&root_with_synapse(&files)).unwrap();
            assert_eq!(state, expected, "{files:?}: {how}");
        }
        let missing = root_with_synapse(&[("/nix/store/masgen-test-missing.yaml", None)]);
        let err = detect_in(&missing).unwrap_err().to_string();
        assert!(err.contains("masgen-test-missing.yaml"), "{err}");
    }
}
