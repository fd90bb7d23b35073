//! The host of tests/apply.rs: a system root, out/ built from the
//! migration example, and the STAND-INS of tests/fixtures/apply first on
//! PATH (see tests/apply.rs and docs/testing.md).
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use camino::Utf8Path;
use masgen::plan::{self, HostState};
use serde_json::Value;

pub struct Rig {
    pub _tmp: tempfile::TempDir,
    /// Holds out/ (commands run here).
    pub work: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub journal: PathBuf,
}

pub const STEPS: [&str; 11] = [
    "switch-prepare",
    "syn2mas-check",
    "syn2mas-dry-run",
    "backup",
    "build-final",
    "stop-services",
    "syn2mas-migrate",
    "switch-final",
    "mas-doctor",
    "register-bot.reminders",
    "follow-ups",
];

pub fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("masgen")
}

/// The stand-ins of tests/fixtures/apply as one PATH directory: links named
/// like the programs they stand in for (`mas-standin` becomes `mas-cli`: the
/// repository holds no file that could pass for MAS's own binary). With
/// `MASGEN_MAS_CLI` set to a real mas-cli binary, that binary is linked as
/// `mas-cli` instead (see [`mas_cli`]).
pub fn shims() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/apply");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("apply-shims-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for entry in fs::read_dir(&from).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let (name, path) = if name == "mas-standin" {
                ("mas-cli".to_string(), mas_cli())
            } else {
                (name, path)
            };
            std::os::unix::fs::symlink(&path, dir.join(name)).unwrap();
        }
        dir
    })
    .clone()
}

/// What the apply tests run as `mas-cli`: `$MASGEN_MAS_CLI` (a real mas-cli
/// binary) when set, else the STAND-IN tests/fixtures/apply/mas-standin.
/// Either way the tests run; which one is said on stderr, loudly.
pub fn mas_cli() -> PathBuf {
    mas_cli_from(std::env::var_os("MASGEN_MAS_CLI"))
}

/// [`mas_cli`] for a given value of `MASGEN_MAS_CLI`.
pub fn mas_cli_from(var: Option<std::ffi::OsString>) -> PathBuf {
    let standin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/apply/mas-standin");
    match var.filter(|v| !v.is_empty()) {
        Some(real) => {
            let real = PathBuf::from(real);
            assert!(
                is_executable(&real),
                "MASGEN_MAS_CLI={} is not an executable file",
                real.display()
            );
            eprintln!(
                "NOTE: mas-cli in the apply tests is the REAL binary {} (MASGEN_MAS_CLI)",
                real.display()
            );
            real
        }
        None => {
            eprintln!(
                "NOTE: MASGEN_MAS_CLI is not set: mas-cli in the apply tests is the STAND-IN \
                 tests/fixtures/apply/mas-standin (the tests still run; set MASGEN_MAS_CLI to a \
                 real mas-cli binary to use it instead; docs/testing.md)"
            );
            standin
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Rig {
    /// A host running Synapse on its own logins (`synapse-only`), and out/
    /// built from the migration example with its backups in the rig.
    pub fn new() -> Rig {
        Rig::with_spec(|s| s)
    }

    /// As `new`, with the example's text changed by `edit` first.
    pub fn with_spec(edit: impl Fn(String) -> String) -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().to_path_buf();
        let work = t.join("work");
        let (root, state, journal) = (t.join("root"), t.join("state"), t.join("journal"));
        for d in [&work, &root, &state, &state.join("fail-once")] {
            fs::create_dir_all(d).unwrap();
        }
        let spec = edit(fs::read_to_string("examples/migrate-local.toml").unwrap()).replace(
            "\"/var/backup/masgen\"",
            &format!("\"{}\"", t.join("backup").display()),
        );
        fs::write(work.join("spec.toml"), spec).unwrap();
        let built = Command::new(bin())
            .args(["build", "spec.toml", "-o", "out"])
            .current_dir(&work)
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let rig = Rig {
            _tmp: tmp,
            work,
            root,
            state,
            journal,
        };
        // Synapse-only: the prepare phase's Synapse config (no delegation), no MAS.
        let units = rig.root.join("etc/systemd/system");
        fs::create_dir_all(&units).unwrap();
        fs::create_dir_all(rig.root.join("nix/store")).unwrap();
        fs::copy(
            rig.work.join("out/render/matrix/prepare/homeserver.yaml"),
            rig.root.join("nix/store/bbb-homeserver.yaml"),
        )
        .unwrap();
        fs::write(units.join("matrix-synapse.service"), "[Service]\nExecStart=/nix/store/ccc-synapse/bin/synapse_homeserver --config-path /nix/store/bbb-homeserver.yaml\n").unwrap();
        fs::create_dir_all(rig.state.join("active")).unwrap();
        fs::write(rig.state.join("active/matrix-synapse.service"), "").unwrap();
        rig
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("apply")
            .arg("spec.toml")
            .args(["-o", "out"])
            .args(args)
            .current_dir(&self.work)
            .env("MASGEN_APPLY_PATH", shims())
            .env("MASGEN_APPLY_SYSTEM", &self.root)
            .env("MASGEN_APPLY_JOURNAL", &self.journal)
            .env("SHIM_STATE", &self.state)
            .env("SHIM_ROOT", &self.root)
            .env("SHIM_REMOTE_HOME", &self.work)
            .env_remove("MASGEN_MAS_CLI")
            .stdin(Stdio::null());
        c
    }

    pub fn apply(&self, args: &[&str]) -> (i32, String) {
        let out: Output = self.command(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code().unwrap_or(-1), err)
    }

    pub fn journal(&self) -> Vec<Value> {
        let text = fs::read_to_string(self.journal.join("matrix.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// `(step, event)` of every step line, in order.
    pub fn events(&self) -> Vec<(String, String)> {
        self.journal()
            .iter()
            .filter(|e| e.get("step").is_some())
            .map(|e| {
                (
                    e["step"].as_str().unwrap().into(),
                    e["event"].as_str().unwrap().into(),
                )
            })
            .collect()
    }

    /// The steps the journal says finished, in order.
    pub fn finished(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|(_, e)| e == "finished")
            .map(|(s, _)| s)
            .collect()
    }

    pub fn calls(&self) -> String {
        fs::read_to_string(self.state.join("calls")).unwrap_or_default()
    }

    pub fn host_state(&self) -> HostState {
        plan::locate(
            None,
            Some(plan::Roots::one(Utf8Path::from_path(&self.root).unwrap())),
        )
        .unwrap()
        .state
    }

    /// The first call made of `prefix` (and maybe more words) fails.
    pub fn fail_once(&self, prefix: &str) {
        let n = fs::read_dir(self.state.join("fail-once")).unwrap().count();
        fs::write(self.state.join(format!("fail-once/{n}")), prefix).unwrap();
    }
}

/// The command a stand-in sees for a step (what a failure is injected on).
pub fn injection(step: &str) -> &'static str {
    match step {
        "switch-prepare" => "nixos-rebuild switch --flake ./out#matrix-prepare",
        "syn2mas-check" => "systemctl start masgen-syn2mas-check.service",
        "syn2mas-dry-run" => "systemctl start masgen-syn2mas-dry-run.service",
        "backup" => "systemctl start masgen-backup.service",
        "build-final" => "nixos-rebuild build",
        "stop-services" => "systemctl stop",
        "syn2mas-migrate" => "systemctl start masgen-syn2mas-migrate.service",
        "switch-final" => "nixos-rebuild switch --flake ./out#matrix",
        "mas-doctor" => "systemctl start masgen-mas-doctor.service",
        "register-bot.reminders" => "systemctl start masgen-register-bot-reminders.service",
        other => panic!("no injection for {other}"),
    }
}
