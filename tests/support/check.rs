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

/// A diagnostic as printed (annotate-snippets' layout, as rustc's):
/// `<severity>[<code>]: <message>` and, on the next line,
/// `--> <file>:<line>:<column>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printed {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub line: usize,
    pub column: usize,
}

/// Every diagnostic printed for `file`, in printed order. Panics when a
/// diagnostic's title is not followed by its `--> file:line:column` line:
/// every message has its place.
pub fn printed(stderr: &str, file: &str) -> Vec<Printed> {
    let mut out = Vec::new();
    let mut lines = stderr.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((severity, after)) = ["error[", "warning["]
            .iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (&p[..p.len() - 1], rest)))
        else {
            continue;
        };
        let Some((code, message)) = after.split_once("]: ") else {
            continue;
        };
        let at = lines.next().unwrap_or_default().trim_start();
        let place = at
            .strip_prefix("--> ")
            .and_then(|r| r.strip_prefix(file))
            .and_then(|r| r.strip_prefix(':'))
            .and_then(|r| r.split_once(':'))
            .and_then(|(l, c)| Some((l.parse().ok()?, c.parse().ok()?)));
        let Some((line, column)) = place else {
            panic!(
                "`{line}` is not followed by `--> {file}:<line>:<column>` but by `{at}`:\n{stderr}"
            );
        };
        out.push(Printed {
            severity: severity.to_string(),
            code: code.to_string(),
            message: message.to_string(),
            line,
            column,
        });
    }
    out
}

/// The codes of the diagnostics printed for `file`, in printed order.
pub fn printed_codes(stderr: &str, file: &str) -> Vec<String> {
    printed(stderr, file).into_iter().map(|p| p.code).collect()
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
