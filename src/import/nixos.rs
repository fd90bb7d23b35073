//! `masgen import nixos [--system /run/current-system]`: the Synapse a NixOS
//! host runs, read from its system root (`crate::system`): the config files
//! `matrix-synapse.service` names with `--config-path`, merged as Synapse
//! merges them, and the Synapse version from the store path of its binary.

use camino::{Utf8Path, Utf8PathBuf};

use super::synapse::{expand, import_merged, merge, Version};
use super::writer::finish;
use super::{Ctx, Imported};
use crate::system::SYNAPSE_UNIT;

pub fn import(root: &Utf8Path, spec_name: &str) -> anyhow::Result<Imported> {
    let state = crate::system::read(root, &[])?;
    let Some(unit) = state.units.get(SYNAPSE_UNIT) else {
        anyhow::bail!("{root}: no {SYNAPSE_UNIT} in etc/systemd/system; this host does not run services.matrix-synapse (for another setup use `masgen import synapse FILE…`)");
    };
    let words = unit.exec_start();
    let mut parsed = Vec::new();
    let mut unreadable = Vec::new();
    let mut runtime = std::collections::BTreeSet::new();
    let live = root
        .canonicalize_utf8()
        .is_ok_and(|r| r.starts_with("/nix/store"));
    for path in state.synapse_config_files() {
        let inside = root.join(path.trim_start_matches('/'));
        // A fixture keeps its files inside the root; a live root (a store
        // path) names the host's own files, runtime secrets included.
        let found = if inside.exists() {
            Some(inside)
        } else if live && Utf8Path::new(&path).exists() {
            Some(Utf8PathBuf::from(&path))
        } else {
            None
        };
        match found {
            Some(p) => {
                for file in expand(&p)? {
                    let data = super::read_yaml(&file)?;
                    // Name files as the unit names them, not by the root.
                    let name = file
                        .strip_prefix(root)
                        .map(|r| format!("/{r}"))
                        .unwrap_or_else(|_| file.to_string());
                    if !name.starts_with("/nix/store/") {
                        runtime.insert(name.clone());
                    }
                    parsed.push((name, data));
                }
            }
            None => unreadable.push(path),
        }
    }
    anyhow::ensure!(
        !parsed.is_empty(),
        "{root}: {SYNAPSE_UNIT} names no config file that can be read (--config-path)"
    );
    let mut merged = merge(parsed);
    merged.runtime = runtime;
    let mut files = merged.files.clone();
    files.extend(unreadable.iter().map(|f| format!("{f} (not readable)")));
    let mut ctx = Ctx::new("nixos", files);
    let version = words
        .first()
        .and_then(|bin| version_of(bin))
        .map(|v| Version {
            from: format!("{SYNAPSE_UNIT}: ExecStart {}", words[0]),
            version: v,
        });
    if version.is_none() {
        ctx.human(
            SYNAPSE_UNIT,
            "ExecStart",
            "the binary's store path shows no matrix-synapse version: set synapse.version",
        );
    }
    import_merged(&mut ctx, &merged, version)?;
    // Runtime files stay where they are, in the order the unit names them.
    for f in state.synapse_config_files() {
        if !f.starts_with("/nix/store/") {
            super::synapse::add_extra_config_file(&mut ctx, &f);
        }
    }
    for f in &unreadable {
        ctx.human(
            SYNAPSE_UNIT,
            &format!("--config-path {f}"),
            "a runtime file (secrets, typically) outside the system root: its keys are not imported; it stays an extra config file of both phases, so check that it sets nothing delegation forbids (oidc_providers, password_config.enabled, …)",
        );
    }
    finish(ctx, spec_name)
}

/// `/nix/store/<hash>-matrix-synapse-1.157.0/bin/…` → `1.157.0`.
fn version_of(bin: &str) -> Option<String> {
    let dir = bin.strip_prefix("/nix/store/")?.split('/').next()?;
    let v = dir.split_once("-matrix-synapse-")?.1;
    let v: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (v.split('.').count() >= 2).then_some(v.trim_end_matches('.').to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_version_from_the_store_path() {
        assert_eq!(
            super::version_of("/nix/store/d4e5-matrix-synapse-1.157.0/bin/synapse_homeserver")
                .as_deref(),
            Some("1.157.0")
        );
        assert_eq!(super::version_of("/usr/bin/synapse"), None);
    }
}
