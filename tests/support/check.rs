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

/// A temporary directory holding `text` as `spec.toml`, built into `out/`
/// by `masgen build spec.toml -o out` run there.
pub fn built_in(dir: tempfile::TempDir, text: &str) -> tempfile::TempDir {
    std::fs::write(dir.path().join("spec.toml"), text).unwrap();
    let run = masgen()
        .args(["build", "spec.toml", "-o", "out"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    dir
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

// Editing one key of an example and validating it (tests/model_checks.rs,
// tests/split_hosts.rs).

/// `examples/<name>` with `path` (dotted; `[0]` for the first array entry)
/// set to `value`.
pub fn with(name: &str, path: &str, value: toml::Value) -> String {
    set(&super::example_text(name), path, value)
}

pub fn set(text: &str, path: &str, value: toml::Value) -> String {
    let mut doc: toml::Table = toml::from_str(text).expect("spec is TOML");
    let parts: Vec<&str> = path.split('.').collect();
    let mut cur = &mut doc;
    for part in &parts[..parts.len() - 1] {
        let (key, first) = match part.strip_suffix("[0]") {
            Some(k) => (k, true),
            None => (*part, false),
        };
        let item = cur
            .entry(key.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        let item = if first {
            &mut item.as_array_mut().expect("an array")[0]
        } else {
            item
        };
        cur = item.as_table_mut().expect("a table");
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    toml::to_string(&doc).expect("serialize spec")
}

/// Every diagnostic validation reports for `text`: (is an error, code,
/// message, line).
pub fn diags(text: &str) -> Vec<(bool, String, String, usize)> {
    let all = match masgen::check_source(masgen::spec::Source::new("spec.toml", text)) {
        Ok(checked) => checked.warnings,
        Err(diags) => diags,
    };
    all.iter()
        .map(|d| {
            let error = d.severity == masgen::diag::Severity::Error;
            (error, d.code.to_string(), d.message.clone(), d.line)
        })
        .collect()
}

/// The error codes and messages validation reports for `text`.
pub fn errors(text: String) -> Vec<(String, String)> {
    diags(&text)
        .into_iter()
        .filter(|d| d.0)
        .map(|(_, code, message, _)| (code, message))
        .collect()
}
