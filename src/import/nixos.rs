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
    for path in state.synapse_config_files() {
        let inside = root.join(path.trim_start_matches('/'));
        let found = if inside.exists() {
            Some(inside)
        } else if Utf8Path::new(&path).exists() && !path.starts_with("/run/") {
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
    let merged = merge(parsed);
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
    for f in &unreadable {
        let t = ctx.spec.table("synapse");
        let arr = t
            .entry("extra_config_files")
            .or_insert_with(|| toml_edit::value(toml_edit::Array::new()))
            .as_array_mut()
            .expect("an array");
        arr.push(f.as_str());
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
