//! A local copy of what state detection reads from a remote system root:
//! Synapse's and MAS's units, the config files Synapse's unit names, and
//! masgen's stamps, fetched over SSH with `cat` and `ls`.

use anyhow::Result;
use camino::Utf8Path;

use super::host::{quote, Host};
use crate::system::{self, MAS_UNIT, SYNAPSE_UNIT};

/// Units state detection looks at.
const UNITS: [&str; 2] = [SYNAPSE_UNIT, MAS_UNIT];

/// Fills `into` with the parts of `root` on `host` that `plan::locate` reads.
pub fn fetch(host: &Host, root: &str, into: &Utf8Path) -> Result<()> {
    let units = format!("{}/etc/systemd/system", root.trim_end_matches('/'));
    let (code, _, err) = host.capture(&format!("test -d {}", quote(&units)))?;
    anyhow::ensure!(
        code == Some(0),
        "--system {root} on {}: no {units} ({}); give a NixOS system root such as /run/current-system",
        host.describe(),
        err.trim()
    );
    let local_units = into.join("etc/systemd/system");
    std::fs::create_dir_all(&local_units)?;
    for unit in UNITS {
        if let Some(text) = host.read(&Utf8Path::new(&units).join(unit))? {
            std::fs::write(local_units.join(unit), text)?;
        }
    }
    // Synapse's config files: inside the root when it has them (a test
    // root), else the host's own paths (the store).
    let sys = system::read(into, &[])?;
    for file in sys.synapse_config_files() {
        // Runtime files under /run hold secrets (masgen's password-config.yaml
        // has the pepper): they stay on the host. The system reader takes a
        // missing runtime file as such, and the state is read without it.
        if file.starts_with("/run/") {
            continue;
        }
        let inside = format!(
            "{}/{}",
            root.trim_end_matches('/'),
            file.trim_start_matches('/')
        );
        let text = match host.read(Utf8Path::new(&inside))? {
            Some(t) => Some(t),
            None => host.read(Utf8Path::new(&file))?,
        };
        if let Some(text) = text {
            let local = into.join(file.trim_start_matches('/'));
            if let Some(dir) = local.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(local, text)?;
        }
    }
    // The stamps: the root's own `var/lib/masgen`, or the host's for a live
    // root in the store (as system::read decides locally).
    let q = quote(root);
    let script = format!(
        "if [ -d {q}/var/lib/masgen ]; then ls -A {q}/var/lib/masgen; else case $(readlink -f {q}) in /nix/store/*) ls -A /var/lib/masgen 2>/dev/null;; esac; fi; true"
    );
    let (_, names, _) = host.capture(&script)?;
    let stamps = into.join("var/lib/masgen");
    std::fs::create_dir_all(&stamps)?;
    for name in names
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.contains('/'))
    {
        std::fs::write(stamps.join(name), "")?;
    }
    Ok(())
}
