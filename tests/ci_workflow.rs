//! The GitHub Actions workflow of docs/ci.md, run as a runner would run its
//! `run:` steps, in a temporary git repository with a bare `origin`: a good
//! pull request passes and leaves the Markdown diff, a stale `out/` fails at
//! `build --check`, a bad spec fails at `check` with an annotation.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_norway::Value;
use support::{require_tool, run_ok};

/// The first ```yaml block of docs/ci.md, parsed.
fn workflow() -> Value {
    let doc = fs::read_to_string(support::repo_root().join("docs/ci.md")).unwrap();
    let start = doc
        .find("```yaml\n")
        .expect("docs/ci.md has a ```yaml block")
        + 8;
    let end = doc[start..].find("\n```").expect("the yaml block ends") + start;
    serde_norway::from_str(&doc[start..end]).expect("the workflow is valid YAML")
}

struct Step {
    name: String,
    run: String,
}

/// The steps a test can run: every `run:` step except the one that installs
/// masgen (the test puts the masgen under test on PATH instead). A step's
/// `if:` must be one the test knows: it runs as a pull request.
fn runnable_steps(wf: &Value) -> Vec<Step> {
    let jobs = wf["jobs"].as_mapping().expect("jobs");
    assert_eq!(jobs.len(), 1, "one job");
    let steps = jobs.values().next().unwrap()["steps"]
        .as_sequence()
        .expect("steps");
    let mut out = Vec::new();
    for step in steps {
        let Some(run) = step.get("run").and_then(Value::as_str) else {
            assert!(
                step.get("uses").is_some(),
                "a step without run: uses an action"
            );
            continue;
        };
        if step.get("id").and_then(Value::as_str) == Some("install-masgen") {
            continue;
        }
        if let Some(cond) = step.get("if").and_then(Value::as_str) {
            assert_eq!(
                cond, "github.event_name == 'pull_request'",
                "an `if:` this test cannot evaluate"
            );
        }
        let name = step["name"]
            .as_str()
            .expect("run steps are named")
            .to_string();
        out.push(Step {
            name,
            run: run.to_string(),
        });
    }
    out
}

fn git(dir: &Path, args: &[&str]) -> Output {
    run_ok(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.org")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.org"),
    )
}

fn masgen_build(repo: &Path) {
    run_ok(
        Command::new(assert_cmd::cargo::cargo_bin("masgen"))
            .current_dir(repo)
            .args(["build", "spec.toml", "-o", "out"]),
    );
}

/// A clone of a bare `origin` whose `main` holds examples/fresh.toml as
/// spec.toml and its built out/, on a new branch `change`.
fn repository(root: &Path) -> PathBuf {
    let origin = root.join("origin.git");
    let repo = root.join("repo");
    run_ok(
        Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&origin),
    );
    run_ok(
        Command::new("git")
            .args(["clone", "-q"])
            .arg(&origin)
            .arg(&repo),
    );
    git(&repo, &["checkout", "-q", "-b", "main"]);
    fs::write(repo.join("spec.toml"), support::example_text("fresh.toml")).unwrap();
    masgen_build(&repo);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "spec and out"]);
    git(&repo, &["push", "-q", "origin", "main"]);
    git(&repo, &["checkout", "-q", "-b", "change"]);
    repo
}

fn edit_spec(repo: &Path, from: &str, to: &str) {
    let spec = repo.join("spec.toml");
    let text = fs::read_to_string(&spec).unwrap();
    assert!(text.contains(from), "spec.toml has {from:?}");
    fs::write(&spec, text.replacen(from, to, 1)).unwrap();
}

fn commit(repo: &Path, message: &str) {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", message]);
}

/// Runs the steps in order like a runner for a pull request into `main`;
/// stops at the first failing step: (its name, its output) or `None`.
fn run_workflow(bash: &Path, wf: &Value, repo: &Path) -> Option<(String, Output)> {
    let bin_dir = assert_cmd::cargo::cargo_bin("masgen")
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for step in runnable_steps(wf) {
        let mut cmd = Command::new(bash);
        cmd.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &step.run])
            .current_dir(repo)
            .env("PATH", &path)
            .env("GITHUB_EVENT_NAME", "pull_request")
            .env("GITHUB_BASE_REF", "main")
            .env("GITHUB_ACTIONS", "true")
            .env_remove("MASGEN_LOG");
        for (k, v) in wf["env"].as_mapping().expect("workflow env") {
            cmd.env(k.as_str().unwrap(), v.as_str().unwrap());
        }
        let out = cmd.output().unwrap();
        if !out.status.success() {
            return Some((step.name, out));
        }
    }
    None
}

fn require_tools() -> Option<PathBuf> {
    require_tool(
        "git",
        "running the CI workflow's commands in a git repository",
    )?;
    require_tool("bash", "running the CI workflow's commands")
}

#[test]
fn the_workflow_runs_masgen_check_build_check_and_diff() {
    let steps = runnable_steps(&workflow());
    let all: String = steps.iter().map(|s| s.run.as_str()).collect();
    for command in [
        "masgen check --format github",
        "masgen build --check",
        "masgen diff",
        "--against-rev",
        "--format markdown",
    ] {
        assert!(
            all.contains(command),
            "the workflow runs `{command}`: {all}"
        );
    }
}

#[test]
fn a_rebuilt_change_passes_and_leaves_the_markdown_diff() {
    let Some(bash) = require_tools() else { return };
    let wf = workflow();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    edit_spec(&repo, "minimum_complexity = 3", "minimum_complexity = 4");
    masgen_build(&repo);
    commit(&repo, "stricter passwords");

    if let Some((step, out)) = run_workflow(&bash, &wf, &repo) {
        panic!(
            "step `{step}` failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let comment = fs::read_to_string(repo.join("masgen-diff.md"))
        .expect("the diff step wrote masgen-diff.md");
    assert!(
        comment.starts_with("### "),
        "a Markdown headline: {comment}"
    );
    assert!(
        comment.contains("minimum_complexity"),
        "the change is named: {comment}"
    );
}

#[test]
fn a_spec_change_without_a_rebuild_fails_at_build_check() {
    let Some(bash) = require_tools() else { return };
    let wf = workflow();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    edit_spec(&repo, "minimum_complexity = 3", "minimum_complexity = 4");
    commit(&repo, "forgot to rebuild");

    let (step, out) = run_workflow(&bash, &wf, &repo).expect("the workflow fails");
    assert_eq!(step, "The committed output is what the spec builds");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("stale: out/"), "{stdout}");
}

#[test]
fn a_literal_secret_fails_at_check_with_an_annotation() {
    let Some(bash) = require_tools() else { return };
    let wf = workflow();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    edit_spec(
        &repo,
        "password_file = \"/run/secrets/smtp-password\"",
        "password = \"hunter2\"",
    );
    commit(&repo, "inline the SMTP password");

    let (step, out) = run_workflow(&bash, &wf, &repo).expect("the workflow fails");
    assert_eq!(step, "Check the spec");
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("::error file=spec.toml,line=")
            && stdout.contains("title=secret.literal::"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("hunter2"),
        "the annotation does not repeat the secret: {stdout}"
    );
}
