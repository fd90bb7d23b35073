//! Running `masgen check` on spec files and reading what it prints: shared
//! by the bad-spec corpus (tests/diagnostics.rs) and the ordering tests
//! (tests/diagnostics_order.rs).

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;

use super::repo_root;

pub fn masgen() -> Command {
    let mut cmd = Command::cargo_bin("masgen").expect("the masgen binary");
    cmd.env_remove("MASGEN_LOG").env_remove("RUST_LOG");
    cmd
}

/// Runs `masgen check <rel>` from `dir`, with a relative path so the output
/// does not depend on where the repository lives.
pub fn check_in(dir: &Path, rel: &str) -> Output {
    masgen()
        .current_dir(dir)
        .arg("check")
        .arg(rel)
        .output()
        .expect("run masgen check")
}

pub fn check(rel: &str) -> Output {
    check_in(&repo_root(), rel)
}

pub fn exit_code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The codes of the diagnostics printed for `file`, in printed order. A
/// diagnostic line is `<file>:<line>:<col>: <severity>[<code>]: <message>`.
pub fn printed_codes(stderr: &str, file: &str) -> Vec<String> {
    let mut codes = Vec::new();
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix(file).and_then(|r| r.strip_prefix(':')) else {
            continue;
        };
        let mut parts = rest.splitn(3, ':');
        let (Some(l), Some(c), Some(tail)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if l.parse::<usize>().is_err() || c.parse::<usize>().is_err() {
            continue;
        }
        let tail = tail.trim_start();
        let Some(after) = tail
            .strip_prefix("error[")
            .or_else(|| tail.strip_prefix("warning["))
        else {
            continue;
        };
        if let Some(end) = after.find("]: ") {
            codes.push(after[..end].to_string());
        }
    }
    codes
}

pub fn spec_stems(dir: &Path) -> Vec<String> {
    let mut stems: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    stems.sort();
    stems
}

pub fn fresh_spec() -> String {
    // 64-warn-no-email without its first line: a valid spec (one warning).
    let text = std::fs::read_to_string(repo_root().join("tests/bad_specs/64-warn-no-email.toml"))
        .expect("read 64-warn-no-email.toml");
    text.split_once('\n').unwrap().1.to_string()
}
