//! Reading the old side: a previous output tree on disk, or the spec at a git
//! revision (through `git show`, without a checkout). Read-only.

use std::collections::BTreeSet;
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
    read_tree_sharing(dir, &mut OutputTree::new())
}

/// [`read_tree`] for a comparison with `new`, holding once what both trees
/// have byte for byte. A group of files that is the same on both sides
/// (`hosts/<host>/`, `render/<host>/`, `homeservers/<name>/`,
/// `rehearsal/<file>`: most of a fleet's tree when little changed) is left
/// out of both trees, but for each configuration's `default.nix`, which
/// names the configuration. `compare::compare_trees` reports the same:
/// it skips equal files, and compares a configuration whose files are all
/// equal without reading them.
pub fn read_tree_sharing(
    dir: &Utf8Path,
    new: &mut OutputTree,
) -> Result<(OutputTree, Vec<String>)> {
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
    // taken in the manifest's order, the first error first, as before. A
    // file equal to the new tree's is not kept.
    let listed: Vec<(Utf8PathBuf, String)> = manifest.into_iter().collect();
    let shared: &OutputTree = new;
    let read = crate::par::map(&listed, 64, |(rel, hash)| {
        read_listed(dir, rel, hash).map(|(text, edited)| {
            let text = (shared.get(rel) != Some(&text)).then_some(text);
            (text, edited)
        })
    });
    let mut same = Vec::new();
    for ((rel, _), found) in listed.into_iter().zip(read) {
        let (text, edited) = found?;
        if let Some(note) = edited {
            notes.push(note);
        }
        match text {
            Some(text) => {
                tree.insert(rel, text);
            }
            None => same.push(rel),
        }
    }
    let differ: BTreeSet<&str> = new
        .keys()
        .filter(|rel| !tree.contains_key(*rel) && same.binary_search(rel).is_err())
        .chain(tree.keys())
        .map(|rel| group(rel).unwrap_or(rel.as_str()))
        .collect();
    let (dropped, kept): (Vec<Utf8PathBuf>, Vec<Utf8PathBuf>) = same.into_iter().partition(|rel| {
        group(rel).is_some_and(|g| !differ.contains(g))
            && super::state::configuration_file(rel).is_none()
    });
    for rel in kept {
        let text = new[&rel].clone();
        tree.insert(rel, text);
    }
    for rel in &dropped {
        new.remove(rel);
    }
    Ok((tree, notes))
}

/// The group of a file that only its own homeserver or host reads:
/// `hosts/<host>`, `render/<host>`, `homeservers/<name>`, `rehearsal/<file>`.
fn group(rel: &Utf8Path) -> Option<&str> {
    let s = rel.as_str();
    let (top, rest) = s.split_once('/')?;
    if !["hosts", "render", "homeservers", "rehearsal"].contains(&top) {
        return None;
    }
    let end = top.len() + 1 + rest.find('/').unwrap_or(rest.len());
    Some(&s[..end])
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
