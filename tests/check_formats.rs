//! `masgen check --format json|github` on the bad specs of tests/bad_specs:
//! the JSON objects are the diagnostics masgen finds, and the GitHub workflow
//! commands read back, through a stand-in for the runner's parser, as those
//! same diagnostics (assert_cmd).

mod support;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn masgen() -> Command {
    let mut c = Command::cargo_bin("masgen").unwrap();
    c.env_remove("MASGEN_LOG");
    c
}

fn bad_specs() -> Vec<PathBuf> {
    let mut specs: Vec<PathBuf> = fs::read_dir(support::repo_root().join("tests/bad_specs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    specs.sort();
    assert!(specs.len() > 10, "tests/bad_specs holds the bad specs");
    specs
}

/// `masgen check --format FORMAT SPEC` run in `dir`: (exit code, stdout, stderr).
fn check(dir: &Path, spec: &str, format: &str) -> (i32, String, String) {
    let out = masgen()
        .current_dir(dir)
        .args(["check", "--format", format, spec])
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// What masgen's library finds in a spec (relative to the repository), as
/// the JSON format should show it; `None` when the spec cannot be read.
fn expected(spec: &str) -> Option<(i32, Vec<Value>)> {
    let path = camino::Utf8PathBuf::from_path_buf(support::repo_root().join(spec)).unwrap();
    let result = masgen::check_file(&path).ok()?;
    let (code, diags) = match &result {
        Ok(checked) => (0, &checked.warnings[..]),
        Err(diags) => (2, &diags[..]),
    };
    let objects = diags
        .iter()
        .map(|d| {
            serde_json::json!({
                "code": d.code,
                "severity": if d.severity == masgen::diag::Severity::Error { "error" } else { "warning" },
                "file": spec,
                "line": d.line,
                "column": d.column,
                "message": d.message,
                "help": d.help,
            })
        })
        .collect();
    Some((code, objects))
}

fn relative(spec: &Path) -> String {
    spec.strip_prefix(support::repo_root())
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn json_lists_every_diagnostic_of_every_bad_spec() {
    let root = support::repo_root();
    for spec in bad_specs() {
        let spec = relative(&spec);
        let (code, stdout, _) = check(&root, &spec, "json");
        let Some((want_code, want)) = expected(&spec) else {
            // Not even read (not UTF-8): an error without a place.
            assert_eq!(code, 2, "{spec}");
            assert_eq!(stdout, "", "{spec}");
            continue;
        };
        assert_eq!(code, want_code, "{spec}: exit code");
        let got: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{spec}: {l}: {e}")))
            .collect();
        assert_eq!(got.len(), want.len(), "{spec}: one object per diagnostic");
        assert!(!got.is_empty(), "{spec}: a bad spec has diagnostics");
        // Lossy: a spec that is not UTF-8 is reported too (at its byte offset).
        let lines = String::from_utf8_lossy(&fs::read(root.join(&spec)).unwrap())
            .lines()
            .count();
        for (mut g, w) in got.into_iter().zip(want) {
            let obj = g.as_object_mut().unwrap();
            let end = (
                obj.remove("end_line").and_then(|v| v.as_u64()).unwrap() as usize,
                obj.remove("end_column").and_then(|v| v.as_u64()).unwrap() as usize,
            );
            let start = (
                obj["line"].as_u64().unwrap() as usize,
                obj["column"].as_u64().unwrap() as usize,
            );
            assert!(
                start <= end,
                "{spec}: the range {start:?}..{end:?} runs backwards"
            );
            assert!(
                end.0 <= lines.max(1),
                "{spec}: the range ends past the file: {end:?}"
            );
            assert_eq!(g, w, "{spec}");
        }
    }
}

/// What the Actions runner reads from a workflow command line: a stand-in
/// written after `ActionCommand.TryParseV2` and its unescaping tables in
/// actions/runner@079cdb1d05fe0ec50f8c51de5a4fa51d0eb189b0,
/// src/Runner.Common/ActionCommand.cs.
struct RunnerCommand {
    command: String,
    properties: HashMap<String, String>,
    data: String,
}

fn runner_parse(line: &str) -> Option<RunnerCommand> {
    let line = line.trim_start();
    let rest = line.strip_prefix("::")?;
    let end = rest.find("::")?;
    let (info, data) = (&rest[..end], &rest[end + 2..]);
    let (command, props) = info.split_once(' ').unwrap_or((info, ""));
    let unescape = |s: &str, table: &[(&str, &str)]| {
        table.iter().fold(s.to_string(), |acc, (token, escaped)| {
            acc.replace(escaped, token)
        })
    };
    let data_table = [("\r", "%0D"), ("\n", "%0A"), ("%", "%25")];
    let property_table = [
        ("\r", "%0D"),
        ("\n", "%0A"),
        (":", "%3A"),
        (",", "%2C"),
        ("%", "%25"),
    ];
    let mut properties = HashMap::new();
    for prop in props.trim().split(',').filter(|p| !p.is_empty()) {
        if let Some((k, v)) = prop.split_once('=') {
            properties.insert(k.to_string(), unescape(v, &property_table));
        }
    }
    Some(RunnerCommand {
        command: command.to_string(),
        properties,
        data: unescape(data, &data_table),
    })
}

#[test]
fn github_commands_read_back_as_the_diagnostics() {
    let root = support::repo_root();
    for spec in bad_specs() {
        let spec = relative(&spec);
        let (code, stdout, _) = check(&root, &spec, "github");
        let Some((want_code, want)) = expected(&spec) else {
            // Not even read (not UTF-8): an error without a place.
            assert_eq!(code, 2, "{spec}");
            assert!(stdout.starts_with("::error::"), "{spec}: {stdout}");
            continue;
        };
        assert_eq!(code, want_code, "{spec}: exit code");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines.len(),
            want.len(),
            "{spec}: one command per diagnostic:\n{stdout}"
        );
        for (line, w) in lines.into_iter().zip(want) {
            let cmd = runner_parse(line).unwrap_or_else(|| panic!("{spec}: not a command: {line}"));
            assert_eq!(cmd.command, w["severity"], "{spec}: {line}");
            let p = &cmd.properties;
            assert_eq!(p["file"], spec, "{line}");
            assert_eq!(p["line"], w["line"].to_string(), "{line}");
            assert_eq!(p["title"], w["code"], "{line}");
            let end_line: usize = p["endLine"].parse().unwrap();
            assert!(end_line >= w["line"].as_u64().unwrap() as usize, "{line}");
            if end_line.to_string() == p["line"] {
                assert_eq!(p["col"], w["column"].to_string(), "{line}");
                let end_col: usize = p["endColumn"].parse().unwrap();
                assert!(end_col >= w["column"].as_u64().unwrap() as usize, "{line}");
            } else {
                // GitHub takes columns only for a range on one line.
                assert!(
                    !p.contains_key("col") && !p.contains_key("endColumn"),
                    "{line}"
                );
            }
            let mut message = w["message"].as_str().unwrap().to_string();
            if let Some(help) = w["help"].as_str() {
                message.push_str(&format!("\nhelp: {help}"));
            }
            assert_eq!(cmd.data, message, "{spec}: {line}");
        }
    }
}

#[test]
fn github_escapes_a_file_name_with_separators() {
    let dir = tempfile::tempdir().unwrap();
    let name = "odd, name:100%.toml";
    fs::copy(
        support::repo_root().join("tests/bad_specs/08-literal-client-secret.toml"),
        dir.path().join(name),
    )
    .unwrap();
    let (code, stdout, _) = check(dir.path(), name, "github");
    assert_eq!(code, 2);
    assert!(
        stdout.contains("file=odd%2C name%3A100%25.toml,"),
        "{stdout}"
    );
    let cmd = runner_parse(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(cmd.command, "error");
    assert_eq!(cmd.properties["file"], name);
    assert_eq!(cmd.properties["title"], "secret.literal");
}

#[test]
fn warnings_only_exit_zero_and_annotate_as_warnings() {
    let root = support::repo_root();
    let spec = "tests/bad_specs/62-warn-password-providers-migrate.toml";
    let (code, stdout, stderr) = check(&root, spec, "github");
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.is_empty());
    for line in stdout.lines() {
        assert_eq!(runner_parse(line).unwrap().command, "warning", "{line}");
    }
    let (code, stdout, _) = check(&root, spec, "json");
    assert_eq!(code, 0);
    let first: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["severity"], "warning");
}

#[test]
fn a_valid_spec_prints_nothing_on_stdout() {
    let root = support::repo_root();
    for format in ["json", "github"] {
        let (code, stdout, stderr) = check(&root, "examples/fresh.toml", format);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stdout, "", "{format}: stdout holds diagnostics only");
        assert!(stderr.contains("examples/fresh.toml: ok"), "{stderr}");
    }
}

#[test]
fn an_unreadable_spec_is_an_error_annotation() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = check(dir.path(), "missing.toml", "github");
    assert_eq!(code, 2);
    let cmd = runner_parse(stdout.trim_end()).unwrap();
    assert_eq!(cmd.command, "error");
    assert!(
        cmd.data.contains("cannot read spec missing.toml"),
        "{}",
        cmd.data
    );
    assert!(stderr.contains("cannot read spec"), "{stderr}");
}

/// The machine formats print every diagnostic, not the first 50 that the
/// text format shows: 200 unknown keys are 200 objects and 200 commands,
/// in file order, and the summary on stderr counts them all.
#[test]
fn machine_formats_print_every_diagnostic_past_the_text_cap() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = fs::read_to_string(support::repo_root().join("examples/fresh.toml")).unwrap();
    spec.push_str("\n[migration]\n");
    let first_line = spec.lines().count() + 1;
    for i in 0..200 {
        spec.push_str(&format!("unknown_{i:03} = 1\n"));
    }
    fs::write(dir.path().join("many.toml"), &spec).unwrap();
    const { assert!(200 > masgen::diag::MAX_SHOWN) };

    let (code, stdout, stderr) = check(dir.path(), "many.toml", "json");
    assert_eq!(code, 2, "{stderr}");
    let objects: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 200, "{stdout}");
    for (i, o) in objects.iter().enumerate() {
        assert_eq!(o["code"], "spec.unknown_key");
        assert_eq!(o["line"], first_line + i, "{o}");
        assert_eq!(o["column"], 1);
        assert_eq!(
            o["message"],
            format!("unknown key `migration.unknown_{i:03}`")
        );
    }
    assert!(
        stderr.contains("many.toml: failed (200 error(s), 0 warning(s))"),
        "{stderr}"
    );
    assert!(!stdout.contains("more diagnostic(s)"), "{stdout}");

    let (code, stdout, _) = check(dir.path(), "many.toml", "github");
    assert_eq!(code, 2);
    let commands: Vec<RunnerCommand> = stdout.lines().map(|l| runner_parse(l).unwrap()).collect();
    assert_eq!(commands.len(), 200, "{stdout}");
    let last = &commands[199];
    assert_eq!(last.properties["line"], (first_line + 199).to_string());
    assert!(
        last.data.starts_with("unknown key `migration.unknown_199`"),
        "{}",
        last.data
    );
}

/// A missing value: TOML's error points at the newline. The JSON range and
/// the GitHub annotation end on that line, not on the next.
#[test]
fn a_missing_value_is_annotated_on_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("spec.toml"),
        "version = 1\nserver_name = \n",
    )
    .unwrap();
    let (code, out, _) = check(dir.path(), "spec.toml", "json");
    assert_eq!(code, 2, "{out}");
    let d: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        (&d["code"], &d["line"], &d["end_line"]),
        (
            &Value::from("toml.syntax"),
            &Value::from(2),
            &Value::from(2)
        ),
        "{out}"
    );
    let (_, out, _) = check(dir.path(), "spec.toml", "github");
    assert!(out.contains("line=2,col=15,endLine=2,"), "{out}");
}
