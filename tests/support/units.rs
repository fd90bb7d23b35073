//! `systemd-analyze verify` on unit texts that name store paths: a temp
//! directory of units with stand-ins for the paths and stub units for the
//! dependencies that are not under test. Used for masgen's renders
//! (tests/conformance_systemd.rs) and nixpkgs' own unit texts
//! (tests/conformance_nixpkgs.rs).
//!
//! Substitutions, and why (verify checks that every Exec program exists and
//! is executable, and refuses a `Requires=` on a missing unit):
//! * the renders' `/run/current-system/sw/bin/<tool>` and every
//!   `/nix/store/<hash>-<name>/…` path → an executable stand-in script
//!   (`exit 0`) at the same relative place under the temp dir (a store path
//!   may be a program or a file; an executable file serves both);
//! * the renders' `/run/current-system/sw/share/masgen/<file>` → a temp file;
//! * every unit named in `After=`/`Before=`/`Requires=`/`Wants=`/
//!   `Conflicts=`/`BindsTo=`/`PartOf=` that is not under test → a stub unit
//!   in the same directory, so the result does not depend on the host's units.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const STORE_BIN: &str = "/run/current-system/sw/bin/";
const STORE_SHARE: &str = "/run/current-system/sw/share/";
const NIX_STORE: &str = "/nix/store/";

/// A directory of units to verify, with stand-ins for store paths and
/// stub dependency units.
pub struct UnitDir {
    dir: tempfile::TempDir,
    under_test: BTreeSet<String>,
}

impl Default for UnitDir {
    fn default() -> Self {
        Self::new()
    }
}

impl UnitDir {
    pub fn new() -> UnitDir {
        let dir = tempfile::Builder::new()
            .prefix("masgen-units-")
            .tempdir()
            .expect("temp dir");
        UnitDir {
            dir,
            under_test: BTreeSet::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// An executable stand-in at `rel` under the temp dir.
    fn executable_at(&self, rel: &str) -> PathBuf {
        let p = self.path().join(rel);
        if !p.exists() {
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        p
    }

    fn executable(&self, name: &str) -> PathBuf {
        self.executable_at(&format!("bin/{name}"))
    }

    /// Rewrites the store paths of `text` to stand-ins (creating them).
    pub fn substitute(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        loop {
            let next = [STORE_BIN, STORE_SHARE, NIX_STORE]
                .iter()
                .filter_map(|p| rest.find(p).map(|i| (i, *p)))
                .min();
            let Some((i, prefix)) = next else { break };
            out.push_str(&rest[..i]);
            let tail = &rest[i + prefix.len()..];
            let end = tail
                .find(|c: char| c.is_whitespace() || "\"':;".contains(c))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            let replacement = match prefix {
                STORE_BIN => self.executable(name),
                STORE_SHARE => {
                    let p = self.path().join("share").join(name);
                    fs::create_dir_all(p.parent().unwrap()).unwrap();
                    fs::write(&p, "# masgen test stand-in\n").unwrap();
                    p
                }
                // A bare store path that is a directory elsewhere (PATH
                // entries) only needs to be a path here.
                _ => self.executable_at(&format!("store/{}", name.trim_end_matches('/'))),
            };
            out.push_str(&replacement.display().to_string());
            rest = &tail[end..];
        }
        out.push_str(rest);
        out
    }

    /// Writes a unit under test (store paths substituted).
    pub fn add(&mut self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        fs::write(&p, self.substitute(text)).unwrap();
        self.under_test.insert(name.to_string());
        p
    }

    /// Stub units for every dependency named by the units under test.
    pub fn stub_dependencies(&self) {
        let stub_exec = self.executable("masgen-stub");
        for unit in &self.under_test {
            let text = fs::read_to_string(self.path().join(unit)).unwrap();
            for line in text.lines() {
                let Some((key, value)) = line.split_once('=') else {
                    continue;
                };
                if ![
                    "After",
                    "Before",
                    "Requires",
                    "Wants",
                    "Conflicts",
                    "BindsTo",
                    "PartOf",
                ]
                .contains(&key.trim())
                {
                    continue;
                }
                for dep in value.split_whitespace() {
                    let p = self.path().join(dep);
                    if self.under_test.contains(dep) || p.exists() {
                        continue;
                    }
                    let text = if dep.ends_with(".service") {
                        format!(
                            "[Unit]\nDescription=masgen test stub for {dep}\n\n[Service]\nType=oneshot\nExecStart={}\n",
                            stub_exec.display()
                        )
                    } else if dep.ends_with(".target") {
                        format!("[Unit]\nDescription=masgen test stub for {dep}\n")
                    } else {
                        panic!("unexpected dependency {dep}")
                    };
                    fs::write(&p, text).unwrap();
                }
            }
        }
    }
}

/// `systemd-analyze verify --man=no <unit>`: Ok when it exits 0 and prints
/// nothing; Err(exit status + output) otherwise.
pub fn verify(tool: &Path, unit: &Path) -> Result<(), String> {
    let out = Command::new(tool)
        .args(["verify", "--man=no", "--generators=no"])
        .arg(unit)
        .current_dir(unit.parent().unwrap())
        .env("SYSTEMD_PAGER", "")
        .env("SYSTEMD_COLORS", "0")
        .output()
        .expect("run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    if out.status.success() && text.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{}:\n{text}", out.status))
    }
}
