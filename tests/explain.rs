//! `masgen explain`: every code used in src/ has an explanation in
//! docs/codes.md (and no explanation is left for a code no longer used),
//! and the command prints it (assert_cmd).

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use assert_cmd::Command;

fn masgen() -> Command {
    let mut c = Command::cargo_bin("masgen").unwrap();
    c.env_remove("MASGEN_LOG");
    c
}

/// Looks like a code: lower-case dotted words (`secret.literal`).
fn is_code(s: &str) -> bool {
    s.contains('.')
        && !s.starts_with('.')
        && !s.ends_with('.')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
}

/// The string literal codes in one source file (its `#[cfg(test)]` part
/// left out): the first argument of `Diagnostic::error/warning(` and of the
/// checker's `.error(` / `.warn(`, and `code: "…",` fields (diagnostics
/// built as structs, plan refusals).
fn codes_in(text: &str) -> BTreeSet<String> {
    let text = text.split("#[cfg(test)]").next().unwrap_or(text);
    let mut codes = BTreeSet::new();
    for pattern in [
        "Diagnostic::error(",
        "Diagnostic::warning(",
        ".error(",
        ".warn(",
        ".warning(",
        "code:",
    ] {
        for (i, _) in text.match_indices(pattern) {
            let rest = text[i + pattern.len()..].trim_start();
            let Some(rest) = rest.strip_prefix('"') else {
                continue;
            };
            let Some(end) = rest.find('"') else { continue };
            let literal = &rest[..end];
            let after = rest[end + 1..].trim_start();
            let field_ok = pattern != "code:" || after.starts_with(',');
            if is_code(literal) && field_ok {
                codes.insert(literal.to_string());
            }
        }
    }
    codes
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every code used in src/.
fn codes_in_src() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&support::repo_root().join("src"), &mut files);
    files
        .iter()
        .flat_map(|f| codes_in(&fs::read_to_string(f).unwrap()))
        .collect()
}

#[test]
fn the_collector_finds_codes_in_each_form() {
    let src = r#"
        c.error(
            "mas.signing_keys", at("mas"), "…", "…");
        c.warn("migrate.captcha", at("x"), "…", "…");
        Diagnostic::error("spec.unknown_key", path, format!("unknown key"));
        Refusal { code: "plan.second_syn2mas", reason: "…".into() }
        Change { code: "login_route_moves".into() }
        tracing::error!("not.a_code {x}");
        #[cfg(test)]
        c.error("test.only", at("x"), "…", "…");
    "#;
    let found: Vec<String> = codes_in(src).into_iter().collect();
    assert_eq!(
        found,
        [
            "mas.signing_keys",
            "migrate.captcha",
            "plan.second_syn2mas",
            "spec.unknown_key"
        ]
    );
}

#[test]
fn every_code_in_src_has_an_explanation() {
    let used = codes_in_src();
    assert!(
        used.len() > 50 && used.contains("secret.literal") && used.contains("plan.second_syn2mas"),
        "the collector finds the codes of src/: {used:?}"
    );
    let explained: BTreeSet<String> = masgen::explain::all()
        .into_iter()
        .map(|(c, _)| c.to_string())
        .collect();
    let missing: Vec<&String> = used.difference(&explained).collect();
    let stale: Vec<&String> = explained.difference(&used).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/codes.md must explain exactly the codes used in src/.\n\
         Codes without an explanation (add a \"## `CODE`\" section to docs/codes.md \
         with why it matters, what Synapse/MAS/syn2mas do, and a **Fix:** paragraph):\n  {}\n\
         Explained codes no longer used in src/ (remove or rename the section):\n  {}",
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
        stale
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
    );
}

#[test]
fn every_explanation_says_how_to_fix_and_appears_once() {
    let all = masgen::explain::all();
    let mut seen = BTreeSet::new();
    for (code, text) in &all {
        assert!(seen.insert(*code), "`{code}` is explained twice");
        assert!(
            text.contains("**Fix:**"),
            "`{code}`: the explanation has no **Fix:** paragraph:\n{text}"
        );
        assert!(text.len() > 40, "`{code}`: too short to explain: {text}");
    }
}

#[test]
fn explain_prints_the_explanation() {
    let out = masgen()
        .args(["explain", "migrate.sqlite"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("migrate.sqlite\n\n"), "{text}");
    assert!(text.contains("synapse_port_db"), "{text}");

    // As printed in a diagnostic or a refusal.
    for form in ["error[migrate.sqlite]", "warning[migrate.sqlite]"] {
        let out = masgen().args(["explain", form]).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), text, "{form}");
    }
}

#[test]
fn explain_without_a_code_lists_every_code() {
    let out = masgen().arg("explain").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let listed: BTreeSet<&str> = text
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let all: BTreeSet<&str> = masgen::explain::all().into_iter().map(|(c, _)| c).collect();
    assert_eq!(listed, all);
}

#[test]
fn an_unknown_code_is_an_error_with_suggestions() {
    let out = masgen()
        .args(["explain", "secret.literl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("no explanation for `secret.literl`") && err.contains("secret.literal"),
        "{err}"
    );
}
