//! `generate = true` on MAS's keys: the host makes a missing key before MAS
//! starts (modules/mas-keys.nix runs modules/scripts/mas-keys.sh as
//! `masgen-mas-keys.service`). The keys are checked with their real
//! consumers' rules: `openssl pkey` parses the PEMs (RSA 2048, EC P-256, one
//! PEM document each, which is what MAS's `PrivateKey::load_pem` takes), the
//! encryption key is exactly 64 hex characters with no newline (MAS
//! hex-decodes the whole file); the unit nixpkgs would install passes
//! `systemd-analyze verify`, and the script it names, run as the unit would
//! run it, makes those keys and leaves existing files alone.

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::nixos;
use support::*;

const UNIT: &str = "masgen-mas-keys.service";
const MAS_UNIT: &str = "matrix-authentication-service.service";

fn script() -> PathBuf {
    repo_root().join("modules/scripts/mas-keys.sh")
}

/// Runs `script` with bash, as `writeShellApplication`'s wrapper would.
fn run(script: &Path, args: &[String]) -> Output {
    Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .expect("run bash")
}

fn args(keys: &[(&str, &Path)]) -> Vec<String> {
    keys.iter()
        .flat_map(|(t, p)| [t.to_string(), p.display().to_string()])
        .collect()
}

/// `openssl pkey -in FILE -noout -text`, which fails unless it parses.
fn pkey_text(openssl: &Path, file: &Path) -> String {
    let out = run_ok(
        Command::new(openssl)
            .args(["pkey", "-noout", "-text", "-in"])
            .arg(file),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks the three keys as their consumers read them.
fn check_keys(openssl: &Path, encryption: &Path, rsa: &Path, ec: &Path) {
    let enc = fs::read(encryption).unwrap();
    assert_eq!(enc.len(), 64, "{enc:?}");
    assert!(enc.iter().all(u8::is_ascii_hexdigit), "{enc:?}");
    assert!(!enc.contains(&b'\n'));
    let rsa_text = pkey_text(openssl, rsa);
    assert!(rsa_text.contains("Private-Key: (2048 bit"), "{rsa_text}");
    let ec_text = pkey_text(openssl, ec);
    assert!(ec_text.contains("NIST CURVE: P-256"), "{ec_text}");
    for pem in [rsa, ec] {
        let text = fs::read_to_string(pem).unwrap();
        // One PEM document: MAS's loader (pem_rfc7468::decode_vec) takes one.
        assert_eq!(text.matches("-----BEGIN ").count(), 1, "{text}");
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
    }
    for file in [encryption, rsa, ec] {
        assert_eq!(mode_of(file), 0o400, "{}", file.display());
        let meta = fs::metadata(file).unwrap();
        assert_eq!(meta.uid(), rustix::process::getuid().as_raw());
    }
}

/// (size, inode, mtime, content) of each file, to see that nothing changed.
fn snapshot(files: &[&Path]) -> Vec<(u64, u64, i64, i64, Vec<u8>)> {
    files
        .iter()
        .map(|f| {
            let m = fs::symlink_metadata(f).unwrap();
            let content = fs::read(f).unwrap_or_default();
            (m.size(), m.ino(), m.mtime(), m.mtime_nsec(), content)
        })
        .collect()
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".masgen-key"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn script_makes_the_keys_mas_reads_and_a_second_run_keeps_them() {
    let Some(openssl) = require_tool("openssl", "making and parsing MAS's keys") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("var/lib/masgen-keys");
    let (enc, rsa, ec) = (dir.join("enc"), dir.join("rsa.pem"), dir.join("ec.pem"));
    let a = args(&[("encryption", &enc), ("rsa", &rsa), ("ec-p256", &ec)]);
    let out = run(&script(), &a);
    assert!(out.status.success(), "{out:?}");
    check_keys(&openssl, &enc, &rsa, &ec);
    // The directories it made are root's alone; no temporary file is left.
    assert_eq!(mode_of(&dir), 0o700);
    assert_eq!(mode_of(&tmp.path().join("var/lib")), 0o700);
    assert_eq!(leftovers(&dir), Vec::<String>::new());

    let before = snapshot(&[&enc, &rsa, &ec]);
    let again = run(&script(), &a);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        snapshot(&[&enc, &rsa, &ec]),
        before,
        "a second run changed a key"
    );
    let said = String::from_utf8_lossy(&again.stdout);
    assert_eq!(said.matches("exists, kept").count(), 3, "{said}");
    // Two runs make two different keys: they are random.
    let other = tmp.path().join("other");
    assert!(run(&script(), &args(&[("encryption", &other)]))
        .status
        .success());
    assert_ne!(fs::read(&other).unwrap(), fs::read(&enc).unwrap());
}

/// A file that exists is never touched, whatever it holds: an empty file,
/// a wrong one with other permissions, a dangling symlink.
#[test]
fn existing_files_are_never_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let (enc, rsa, ec) = (
        tmp.path().join("enc"),
        tmp.path().join("rsa.pem"),
        tmp.path().join("ec.pem"),
    );
    fs::write(&enc, "").unwrap();
    fs::write(&rsa, "not a key\n").unwrap();
    fs::set_permissions(&rsa, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("nowhere"), &ec).unwrap();
    let before = snapshot(&[&enc, &rsa, &ec]);
    let out = run(
        &script(),
        &args(&[("encryption", &enc), ("rsa", &rsa), ("ec-p256", &ec)]),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(snapshot(&[&enc, &rsa, &ec]), before);
    assert_eq!(mode_of(&rsa), 0o644);
    assert!(!tmp.path().join("nowhere").exists());
}

/// A key that cannot be made leaves neither a file nor a temporary one; a
/// path in the Nix store or a relative one is refused before anything is made.
#[test]
fn failures_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("key");
    let out = run(&script(), &args(&[("dsa", &file)]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key type 'dsa'"));
    assert!(!file.exists());
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
    for bad in ["/nix/store/abc-mas-rsa.pem", "relative/key.pem"] {
        let out = run(&script(), &["rsa".into(), bad.into()]);
        assert!(!out.status.success(), "{bad}");
        assert!(!Path::new(bad).exists());
    }
    let odd = run(&script(), &["rsa".into()]);
    assert!(!odd.status.success());
}

/// The host module sets `masgen.masKeys` exactly for the keys with
/// `generate`: the example that generates its keys, not the others.
#[test]
fn host_module_lists_the_generated_keys() {
    for (name, checked) in checked_examples() {
        let (_, tree) = masgen::build_tree(&checked).unwrap();
        let modules: Vec<&String> = tree
            .iter()
            .filter(|(p, _)| {
                p.as_str().starts_with("hosts/") && p.as_str().ends_with("/default.nix")
            })
            .map(|(_, t)| t)
            .collect();
        assert!(!modules.is_empty(), "{name}");
        let generated = checked.homeserver.mas.generated_keys();
        for text in modules {
            assert_eq!(
                text.contains("masKeys"),
                !generated.is_empty(),
                "{name}:\n{text}"
            );
            for (t, file) in &generated {
                assert!(
                    text.contains(&format!("file = \"{file}\";"))
                        && text.contains(&format!("type = \"{}\";", t.name())),
                    "{name}: {file}\n{text}"
                );
            }
        }
    }
    let own = checked("mas-own-host.toml", &example_text("mas-own-host.toml"));
    assert_eq!(own.homeserver.mas.generated_keys().len(), 3);
}

/// What nixpkgs would install for the example with generated keys: the
/// unit runs before MAS and MAS requires it, it passes `systemd-analyze
/// verify`, and the script its ExecStart names, with its arguments moved
/// under a temporary directory, makes the keys MAS reads.
#[test]
fn nixos_unit_runs_before_mas_and_its_script_makes_the_keys() {
    let Some(openssl) = require_tool("openssl", "making and parsing MAS's keys") else {
        return;
    };
    let Some(systemd_analyze) = require_tool("systemd-analyze", "verifying the keys unit") else {
        return;
    };
    let trees = nixos::trees("tests/mas_keys.rs");
    if trees.is_empty() || nix_instantiate().is_none() {
        return;
    }
    let checked = checked("mas-own-host.toml", &example_text("mas-own-host.toml"));
    let out = nixos::build_output(&checked).unwrap();
    for tree in &trees {
        for configuration in nixos::configurations(out.path()).unwrap() {
            let what = format!("mas-own-host × {configuration} × {} tree", tree.label);
            let eval = nixos::evaluate(out.path(), &configuration, &tree.path)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let unit = eval
                .units
                .get(UNIT)
                .unwrap_or_else(|| panic!("{what}: no {UNIT}: {:?}", eval.units.keys()));
            assert!(
                unit.contains(&format!("\nBefore={MAS_UNIT}\n")),
                "{what}:\n{unit}"
            );
            assert!(unit.contains("\nType=oneshot\n"), "{what}:\n{unit}");
            assert!(unit.contains("\nRemainAfterExit=true\n"), "{what}:\n{unit}");
            assert_eq!(eval.required_by[UNIT], [MAS_UNIT], "{what}");

            let mut dir = support::units::UnitDir::new();
            let path = dir.add(UNIT, unit);
            dir.stub_dependencies();
            if let Err(e) = support::units::verify(&systemd_analyze, &path) {
                panic!("{what}: systemd-analyze verify {UNIT}: {e}\n{unit}");
            }

            run_exec_start(&openssl, &eval, &what);
            eprintln!("ok: {what}: {UNIT} verifies and makes the keys");
        }
    }
}

/// Runs the unit's ExecStart as the host would, with the key files moved
/// under a temporary directory, twice.
fn run_exec_start(openssl: &Path, eval: &nixos::NixosEval, what: &str) {
    let exec = &eval.exec["masgen-mas-keys"]["ExecStart"];
    let line = exec[0].as_str().unwrap_or_else(|| panic!("{what}: {exec}"));
    let mut words = line.split_whitespace();
    let program = words.next().unwrap();
    // The arguments are JSON-quoted words (lib.nix's escapeExecArg).
    let rest: Vec<String> = words
        .map(|w| serde_json::from_str::<String>(w).unwrap_or_else(|e| panic!("{w}: {e}")))
        .collect();
    assert_eq!(
        rest,
        [
            "encryption",
            "/var/lib/masgen-keys/mas-encryption",
            "rsa",
            "/var/lib/masgen-keys/mas-rsa.pem",
            "ec-p256",
            "/var/lib/masgen-keys/mas-ec-p256.pem"
        ],
        "{what}: {line}"
    );
    let files = tempfile::tempdir().unwrap();
    let written = eval.write_files(files.path()).unwrap();
    let script = PathBuf::from(nixos::localize(program, &written));
    assert_eq!(
        fs::read_to_string(&script).unwrap(),
        fs::read_to_string(self::script()).unwrap(),
        "{what}: the unit runs modules/scripts/mas-keys.sh"
    );
    let root = tempfile::tempdir().unwrap();
    let moved: Vec<String> = rest
        .iter()
        .map(|a| match a.strip_prefix('/') {
            Some(p) => root.path().join(p).display().to_string(),
            None => a.clone(),
        })
        .collect();
    let out = run(&script, &moved);
    assert!(out.status.success(), "{what}: {out:?}");
    let keys = root.path().join("var/lib/masgen-keys");
    let (enc, rsa, ec) = (
        keys.join("mas-encryption"),
        keys.join("mas-rsa.pem"),
        keys.join("mas-ec-p256.pem"),
    );
    check_keys(openssl, &enc, &rsa, &ec);
    let before = snapshot(&[&enc, &rsa, &ec]);
    assert!(run(&script, &moved).status.success());
    assert_eq!(snapshot(&[&enc, &rsa, &ec]), before, "{what}");
    // Nothing of a key is in what the evaluation generated (the store).
    for file in eval.files.values() {
        assert!(
            !file.content().contains("PRIVATE KEY-----"),
            "{}",
            file.path
        );
    }
}

/// A task given a key the host makes (through MAS's credentials) requires
/// and follows the keys unit: it may run before MAS has ever started on the
/// host. Read from the rendered units, which `conformance_nixpkgs` checks
/// against the units modules/tasks.nix makes.
#[test]
fn tasks_reading_generated_keys_wait_for_them() {
    let mut seen = 0;
    for (name, checked) in checked_examples() {
        let lowered = masgen::lower::lower(&checked.homeserver);
        let generated = checked.homeserver.mas.generated_keys();
        for phase in &lowered.phases {
            for (task_name, task) in &phase.tasks {
                let unit = masgen::emit::render_unit(task_name, task, phase);
                let line = |key: &str| {
                    unit.lines()
                        .filter_map(|l| l.strip_prefix(key))
                        .flat_map(str::split_whitespace)
                        .any(|u| u == UNIT)
                };
                let reads = unit
                    .lines()
                    .filter_map(|l| l.strip_prefix("LoadCredential="))
                    .any(|c| generated.iter().any(|(_, g)| c.ends_with(&format!(":{g}"))));
                let what = format!("{name} {task_name}:\n{unit}");
                assert_eq!(line("Requires="), reads, "{what}");
                assert_eq!(line("After="), reads, "{what}");
                seen += usize::from(reads);
            }
        }
    }
    assert!(seen > 0, "no task reads a generated key");
}
