//! The promises of `masgen build` and `masgen ulid` that only the command line
//! shows: exit codes, what `--check` prints, refusals (assert_cmd).

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn example(name: &str) -> PathBuf {
    support::repo_root().join("examples").join(name)
}

fn masgen() -> Command {
    let mut c = Command::cargo_bin("masgen").unwrap();
    c.env_remove("MASGEN_LOG");
    c
}

/// `masgen build <spec> -o out [extra]`, run in `dir`.
fn build(dir: &Path, spec: &Path, extra: &[&str]) -> std::process::Output {
    masgen()
        .current_dir(dir)
        .arg("build")
        .arg(spec)
        .args(["-o", "out"])
        .args(extra)
        .output()
        .unwrap()
}

/// Every file under `dir` with its contents.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((
                    path.strip_prefix(dir).unwrap().into(),
                    fs::read(&path).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn build_check_exits_1_on_a_stale_tree() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");

    // Nothing built yet: every file is missing.
    let res = build(work.path(), &example("fresh.toml"), &["--check"]);
    assert_eq!(res.status.code(), Some(1), "{}", text(&res.stderr));
    assert!(
        text(&res.stdout).contains("missing: out/flake.nix"),
        "{}",
        text(&res.stdout)
    );
    assert!(!out.exists(), "--check must not create out/");

    let res = build(work.path(), &example("migrate-local.toml"), &[]);
    assert!(res.status.success(), "{}", text(&res.stderr));
    let before = contents(&out);

    // Up to date.
    let res = build(work.path(), &example("migrate-local.toml"), &["--check"]);
    assert_eq!(res.status.code(), Some(0), "{}", text(&res.stderr));
    assert!(
        text(&res.stderr).contains("out: up to date"),
        "{}",
        text(&res.stderr)
    );

    // Another spec: stale, and files no longer generated; nothing changes.
    let res = build(work.path(), &example("fresh.toml"), &["--check"]);
    assert_eq!(res.status.code(), Some(1), "{}", text(&res.stderr));
    let stdout = text(&res.stdout);
    assert!(stdout.contains("stale: out/flake.nix"), "{stdout}");
    assert!(
        stdout.contains("no longer generated: out/hosts/matrix/prepare/default.nix"),
        "{stdout}"
    );
    assert!(
        text(&res.stderr).contains("out of date"),
        "{}",
        text(&res.stderr)
    );
    assert_eq!(contents(&out), before, "--check changed out/");
}

#[test]
fn edited_file_that_is_no_longer_generated_is_refused_not_deleted() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let res = build(work.path(), &example("migrate-local.toml"), &[]);
    assert!(res.status.success(), "{}", text(&res.stderr));

    // fresh.toml has no prepare phase, so this file is no longer generated.
    let edited = out.join("hosts/matrix/prepare/default.nix");
    let mut mine = fs::read_to_string(&edited).unwrap();
    mine.push_str("# a local tweak\n");
    fs::write(&edited, &mine).unwrap();
    let before = contents(&out);

    for extra in [&[][..], &["--check"][..]] {
        let res = build(work.path(), &example("fresh.toml"), extra);
        assert_eq!(
            res.status.code(),
            Some(2),
            "{extra:?}: {}",
            text(&res.stderr)
        );
        let stderr = text(&res.stderr);
        assert!(
            stderr.contains("out/hosts/matrix/prepare/default.nix"),
            "{extra:?}: the refusal must name the edited file: {stderr}"
        );
        assert!(stderr.contains("nothing was changed"), "{stderr}");
        assert_eq!(contents(&out), before, "{extra:?}: out/ changed");
        assert_eq!(fs::read_to_string(&edited).unwrap(), mine);
    }
}

#[test]
fn ulid_prints_a_new_ulid_each_time() {
    let run = || {
        let res = masgen().arg("ulid").output().unwrap();
        assert!(res.status.success(), "{}", text(&res.stderr));
        let stdout = text(&res.stdout);
        assert!(stdout.ends_with('\n'), "{stdout:?}");
        stdout.trim_end().to_string()
    };
    let (a, b) = (run(), run());
    for id in [&a, &b] {
        assert_eq!(id.len(), 26, "{id}");
        // Crockford base32, upper case: no I, L, O or U.
        assert!(
            id.chars()
                .all(|c| c.is_ascii_digit() || (c.is_ascii_uppercase() && !"ILOU".contains(c))),
            "{id}"
        );
        let parsed = ulid::Ulid::from_string(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(parsed.to_string(), *id);
        // Made now: its timestamp is within a minute of the clock.
        let age = std::time::SystemTime::now()
            .duration_since(parsed.datetime())
            .unwrap_or_default();
        assert!(age.as_secs() < 60, "{id} is {age:?} old");
    }
    assert_ne!(a, b, "two calls gave the same ULID");
}
