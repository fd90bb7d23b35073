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

pub use crate::lower::tasks::{DRY_RUN_STAMP, MIGRATED_STAMP};

/// What a system root shows beyond the state: the evidence a plan's safety
/// checks weigh. Empty (`system: None`) when no system root was read, so
/// the state is only a claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The state the system root shows, and where it was read.
    pub system: Option<(HostState, String)>,
    /// The stamp of a successful `syn2mas migrate` is there.
    pub migrated: bool,
    /// The stamp of a clean `syn2mas migrate --dry-run` is there.
    pub dry_run_clean: bool,
}

impl Record {
    pub fn shown(&self) -> Option<HostState> {
        self.system.as_ref().map(|(s, _)| *s)
    }

    /// Whether the system shows that syn2mas has run: its stamp, or a
    /// Synapse that already delegates to MAS.
    pub fn shows_syn2mas_ran(&self) -> bool {
        self.migrated || self.shown() == Some(HostState::Delegated)
    }
}

/// The system roots state detection reads: the one host's, or, for a
/// homeserver split over hosts, Synapse's host's (its unit, whether it
/// delegates) and MAS's host's (its unit, the stamps of its tasks).
#[derive(Debug, Clone, Copy)]
pub struct Roots<'a> {
    pub synapse: &'a Utf8Path,
    pub mas: &'a Utf8Path,
}

impl<'a> Roots<'a> {
    pub fn one(root: &'a Utf8Path) -> Roots<'a> {
        Roots {
            synapse: root,
            mas: root,
        }
    }
}

/// Where the host is, how that was found, and what the system shows.
#[derive(Debug, Clone)]
pub struct Located {
    pub state: HostState,
    pub how: String,
    pub record: Record,
}

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
            from_system(Roots::one(root)).map(|(state, how, _)| (state, how))
        }
        StateSource::Manifest(out) => from_manifest(out),
    }
}

/// Combines a claim (`--from` or `--against`) with the evidence of a system
/// root. Both are kept: the plan's checks refuse a claim the system
/// contradicts (see `safety::check_state`).
pub fn locate(
    claim: Option<&StateSource<'_>>,
    system: Option<Roots<'_>>,
) -> anyhow::Result<Located> {
    let record = match system {
        Some(roots) => {
            let (state, how, mut record) = from_system(roots)?;
            record.system = Some((state, how));
            record
        }
        None => Record::default(),
    };
    let Some(claim) = claim else {
        let Some((state, how)) = record.system.clone() else {
            anyhow::bail!(
                "say where the host is: --system /run/current-system (read from the host), --from <{}> or --against <previous output tree>",
                HostState::ALL.map(|h| h.name()).join("|")
            );
        };
        return Ok(Located { state, how, record });
    };
    let (state, claimed) = detect(claim)?;
    let how = match &record.system {
        None => {
            format!("{claimed} (a claim, not checked against the host: add --system to check it)")
        }
        Some((shown, how)) if *shown == state => format!("{claimed}, confirmed by {how}"),
        Some((_, how)) => format!("{claimed}, against {how}"),
    };
    Ok(Located { state, how, record })
}

/// From the units the system roots have, whether Synapse's merged config
/// delegates to MAS, and the stamps masgen's tasks left (on MAS's host,
/// where they run).
fn from_system(roots: Roots<'_>) -> anyhow::Result<(HostState, String, Record)> {
    let sys = system::read(roots.synapse, &[])?;
    let split = roots.synapse != roots.mas;
    let mas_sys = if split {
        Some(system::read(roots.mas, &[])?)
    } else {
        None
    };
    let on_mas_host = mas_sys.as_ref().unwrap_or(&sys);
    let has_synapse = sys.units.contains_key(SYNAPSE_UNIT);
    let has_mas = on_mas_host.units.contains_key(MAS_UNIT);
    let delegates = if has_synapse {
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
    let stamped = |name: &str| on_mas_host.stamps.iter().any(|s| s == name);
    let record = Record {
        system: None,
        migrated: stamped(MIGRATED_STAMP),
        dry_run_clean: stamped(DRY_RUN_STAMP),
    };
    let state = match (has_synapse, has_mas) {
        (false, _) => HostState::Fresh,
        (true, _) if delegates == Some(true) => HostState::Delegated,
        (true, false) => HostState::SynapseOnly,
        (true, true) if record.migrated => HostState::Migrated,
        (true, true) => HostState::MasPrepared,
    };
    let units: Vec<&str> = [(has_synapse, SYNAPSE_UNIT), (has_mas, MAS_UNIT)]
        .into_iter()
        .filter(|(has, _)| *has)
        .map(|(_, u)| u)
        .collect();
    let mut how = if split {
        format!(
            "system roots {} (Synapse's host) and {} (MAS's host): ",
            roots.synapse, roots.mas
        )
    } else {
        format!("system root {}: ", roots.synapse)
    };
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
    if record.dry_run_clean {
        how.push_str("; a clean syn2mas dry run is on record");
    }
    if record.migrated {
        how.push_str("; syn2mas migrate has completed");
    }
    Ok((state, how, record))
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
