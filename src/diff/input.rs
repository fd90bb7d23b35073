//! Reading the old side: a previous output tree on disk, or the spec at a git
//! revision (through `git show`, without a checkout). Read-only.

use std::fs;
use std::process::Command;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::emit::{sha256_hex, OutputTree};
use crate::write::previous_manifest;

/// The files a previous build listed in its manifest. A directory without a
/// manifest (or no directory at all) is an empty tree. Also returns notes
/// about files edited since masgen wrote them.
pub fn read_tree(dir: &Utf8Path) -> Result<(OutputTree, Vec<String>)> {
    let manifest =
        previous_manifest(dir).with_context(|| format!("cannot read the output tree in {dir}"))?;
    let mut tree = OutputTree::new();
    let mut notes = Vec::new();
    if !dir.exists() {
        notes.push(format!("{dir} does not exist: compared with an empty tree"));
    } else if manifest.is_empty() {
        notes.push(format!(
            "{dir} has no masgen-manifest.json: compared with an empty tree"
        ));
    }
    // Read on every core (and so into memory the build's threads freed);
    // taken in the manifest's order, the first error first, as before.
    let listed: Vec<(Utf8PathBuf, String)> = manifest.into_iter().collect();
    let read = crate::par::map(&listed, 64, |(rel, hash)| read_listed(dir, rel, hash));
    for ((rel, _), found) in listed.into_iter().zip(read) {
        let (text, edited) = found?;
        if let Some(note) = edited {
            notes.push(note);
        }
        tree.insert(rel, text);
    }
    Ok((tree, notes))
}

/// One file the manifest lists: its text, and a note if it was edited
/// since masgen wrote it.
fn read_listed(dir: &Utf8Path, rel: &Utf8Path, hash: &str) -> Result<(String, Option<String>)> {
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, camino::Utf8Component::ParentDir))
    {
        bail!("cannot read the output tree in {dir}: its manifest lists {rel}, outside the tree");
    }
    let path = dir.join(rel);
    let bytes = fs::read(&path).with_context(|| {
        format!("cannot read the output tree in {dir}: {rel} is listed in its manifest")
    })?;
    let edited = (sha256_hex(&bytes) != hash)
        .then(|| format!("{path} was edited after masgen wrote it; compared as it is now"));
    let text = String::from_utf8(bytes)
        .with_context(|| format!("cannot read the output tree in {dir}: {rel} is not UTF-8"))?;
    Ok((text, edited))
}

/// The spec file as it was at `rev`, or `None` when it did not exist there.
pub struct SpecAtRev {
    pub text: Option<String>,
    /// `<rev>:<path relative to the repository>`, for messages.
    pub object: String,
}

/// Reads `spec` as committed at `rev` with `git show`, from the repository
/// that holds it.
pub fn spec_at_rev(spec: &Utf8Path, rev: &str) -> Result<SpecAtRev> {
    if rev.is_empty() || rev.starts_with('-') {
        bail!("--against-rev {rev:?} is not a git revision");
    }
    let dir = match spec.parent() {
        Some(d) if !d.as_str().is_empty() => d.to_owned(),
        _ => Utf8PathBuf::from("."),
    };
    let top = git(&dir, &["rev-parse", "--show-toplevel"])
        .with_context(|| format!("{spec} is not in a git repository"))?;
    let top = Utf8PathBuf::from(top.trim_end_matches(['\n', '\r']));
    let abs_spec = spec
        .canonicalize_utf8()
        .with_context(|| format!("cannot read spec {spec}"))?;
    let abs_top = top
        .canonicalize_utf8()
        .with_context(|| format!("cannot resolve the repository root {top}"))?;
    let rel = abs_spec
        .strip_prefix(&abs_top)
        .with_context(|| format!("{spec} is not inside the repository at {top}"))?;
    let commit = format!("{rev}^{{commit}}");
    git(&abs_top, &["rev-parse", "--verify", "--quiet", &commit])
        .with_context(|| format!("--against-rev {rev}: not a commit in {top}"))?;
    let object = format!("{rev}:{rel}");
    if git(&abs_top, &["cat-file", "-e", &object]).is_err() {
        return Ok(SpecAtRev { text: None, object });
    }
    let text = git(&abs_top, &["show", &object])?;
    Ok(SpecAtRev {
        text: Some(text),
        object,
    })
}

/// Runs git in `dir`; its stdout, or an error quoting the command and stderr.
fn git(dir: &Utf8Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir.as_str())
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run `git -C {dir} {}`", args.join(" ")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "`git -C {dir} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            stderr.trim()
        );
    }
    String::from_utf8(out.stdout).context("git printed something that is not UTF-8")
}
