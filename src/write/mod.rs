//! Stage 5: the only code that writes to the disk.
//!
//! A build replaces the files masgen generated before (listed in the previous
//! manifest) and nothing else: a file masgen did not write, or one edited
//! since, stops the build before anything changes.
//!
//! Crash safety: the new tree is assembled in a sibling directory
//! (`.<out>.masgen-next`) — new files written, every other file of `out/`
//! hard-linked — synced once, and exchanged with `out/` in one
//! `renameat2(RENAME_EXCHANGE)`. At every instant `out/` is the complete old
//! tree or the complete new one; what an interruption leaves is the sibling,
//! which the next write removes (see [`swap`] and docs/guide.md).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::ops::ControlFlow;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::emit::{sha256_hex, OutputTree, MANIFEST};

mod swap;

/// What a write did, or would do with `dry_run`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteReport {
    pub created: Vec<Utf8PathBuf>,
    pub updated: Vec<Utf8PathBuf>,
    pub removed: Vec<Utf8PathBuf>,
    pub unchanged: usize,
    /// Files that appeared in `out/` while the build ran and could not be
    /// put back (their path is taken): they stay where they are listed.
    pub kept_aside: Vec<Utf8PathBuf>,
}

impl WriteReport {
    pub fn is_clean(&self) -> bool {
        self.created.is_empty() && self.updated.is_empty() && self.removed.is_empty()
    }
}

/// The steps of a write, in order, as seen by [`write_tree_with`]'s observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// Every file of `out/` that stays has been linked into the staging
    /// directory.
    Carried,
    /// One new or changed file has been written into the staging directory.
    Staged(&'a Utf8Path),
    /// The staging directory is on disk (one `syncfs`).
    Synced,
    /// `out/` now holds the new tree (the exchange, then a sync of the parent).
    Committed,
    /// The old tree is gone.
    Retired,
}

/// An observer stopped the write, as a `kill -9` would: nothing was cleaned up.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("write interrupted by its observer")
    }
}

impl std::error::Error for Interrupted {}

/// Writes one file whole or not at all: a temporary sibling, synced, renamed
/// over `path`, then the directory synced, so a crash leaves the old file or
/// the new one (for single files such as `masgen import -o spec.toml`).
pub fn write_file(path: &Utf8Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = dir_of(path);
    let name = path
        .file_name()
        .with_context(|| format!("{path} names no file"))?;
    let tmp = dir.join(format!(".{name}.{}.partial", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.with_context(|| format!("cannot write {path}"))
}

/// The directory `path` is in: `.` for a bare file name (its parent is "").
fn dir_of(path: &Utf8Path) -> &Utf8Path {
    match path.parent() {
        Some(p) if !p.as_str().is_empty() => p,
        _ => Utf8Path::new("."),
    }
}

/// Files of the previous build, from its manifest: path → sha256.
pub fn previous_manifest(out: &Utf8Path) -> Result<BTreeMap<Utf8PathBuf, String>> {
    let path = out.join(MANIFEST);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {path}")),
    };
    // The usual manifest, read straight into the map; anything unusual
    // (values that are not strings, ...) takes the general path below, whose
    // errors and defaults are the reference.
    #[derive(serde::Deserialize)]
    struct Files {
        files: BTreeMap<String, String>,
    }
    // Two spellings of one path ("a//b", "a/b") are one entry either way,
    // with the later value.
    if let Ok(m) = serde_json::from_str::<Files>(&text) {
        return Ok(m
            .files
            .into_iter()
            .map(|(k, v)| (Utf8PathBuf::from(k), v))
            .collect());
    }
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{path} is not a masgen manifest"))?;
    let files = value
        .get("files")
        .and_then(|f| f.as_object())
        .with_context(|| format!("{path} has no `files`"))?;
    let mut out = BTreeMap::new();
    for (k, v) in files {
        out.insert(
            Utf8PathBuf::from(k),
            v.as_str().unwrap_or_default().to_string(),
        );
    }
    Ok(out)
}

/// Compares `tree` with what is on disk under `out`, refusing to touch files
/// masgen does not own, and replaces `out/` with the new tree. With `dry_run`
/// nothing is written (and nothing left by an interrupted build is cleaned).
pub fn write_tree(out: &Utf8Path, tree: &OutputTree, dry_run: bool) -> Result<WriteReport> {
    write_tree_with(out, tree, dry_run, &mut |_| ControlFlow::Continue(()))
}

/// [`write_tree`], telling `observe` each step; `ControlFlow::Break` stops the
/// write on the spot with [`Interrupted`], leaving the disk as a crash would.
pub fn write_tree_with(
    out: &Utf8Path,
    tree: &OutputTree,
    dry_run: bool,
    observe: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
) -> Result<WriteReport> {
    for rel in tree.keys() {
        check_relative(rel)?;
    }
    if dry_run {
        return classify(out, tree);
    }
    let place = swap::Place::locate(out)?;
    let _lock = place.lock()?;
    place.recover()?;
    let mut report = classify(out, tree)?;
    if report.is_clean() {
        return Ok(report);
    }
    // The manifest is staged first: recovery knows a staged file is masgen's
    // because the staged manifest lists it.
    let mut changed: Vec<&Utf8Path> = report
        .created
        .iter()
        .chain(&report.updated)
        .map(Utf8PathBuf::as_path)
        .collect();
    changed.sort_by_key(|rel| *rel != MANIFEST);
    let skip: BTreeSet<&Utf8Path> = changed
        .iter()
        .copied()
        .chain(report.removed.iter().map(Utf8PathBuf::as_path))
        .collect();
    let stage = swap::Stage {
        place: &place,
        tree,
        changed: &changed,
        skip: &skip,
    };
    // A file that does not parse is masgen's bug; it is not written (files
    // already on disk were checked when they were written). The check runs
    // while the files are staged, and nothing is committed before it says.
    let (parses, staged) = crate::par::both(
        || every_nix_file_parses(tree, &changed),
        || stage.build(observe),
    );
    if let Err(e) = staged.and(parses) {
        if e.downcast_ref::<Interrupted>().is_none() {
            stage.discard();
        }
        return Err(e);
    }
    step(observe, Event::Synced)?;
    place.commit()?;
    step(observe, Event::Committed)?;
    report.kept_aside = place.retire_old()?;
    step(observe, Event::Retired)?;
    Ok(report)
}

/// An error naming the first of the `changed` Nix files (in order) that
/// rnix cannot parse.
fn every_nix_file_parses(tree: &OutputTree, changed: &[&Utf8Path]) -> Result<()> {
    let nix: Vec<&Utf8Path> = changed
        .iter()
        .copied()
        .filter(|rel| rel.extension() == Some("nix"))
        .collect();
    let texts: Vec<&str> = nix.iter().map(|rel| tree[*rel].as_str()).collect();
    let parsed = crate::nix::syntax_errors_each(&texts);
    for (rel, errors) in nix.iter().zip(parsed) {
        anyhow::ensure!(
            errors.is_empty(),
            "internal error: generated {rel} does not parse: {errors:?}"
        );
    }
    Ok(())
}

fn step(observe: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>, event: Event<'_>) -> Result<()> {
    match observe(event) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(Interrupted.into()),
    }
}

/// What writing `tree` into `out` would do; an error if it would touch a file
/// masgen does not own.
fn classify(out: &Utf8Path, tree: &OutputTree) -> Result<WriteReport> {
    let previous = previous_manifest(out)?;
    let mut report = WriteReport::default();
    let mut foreign = Vec::new();
    // Reading and comparing 19,000 files: on every core; the results are
    // taken in the tree's order, the first error first, as before.
    let entries: Vec<(&Utf8PathBuf, &String)> = tree.iter().collect();
    let found = if holds_nothing(out) {
        // A first build: no file can be there, none is looked for.
        entries.iter().map(|_| Ok(Found::Missing)).collect()
    } else {
        crate::par::map(&entries, 64, |(rel, text)| {
            compare(out, rel, text, &previous)
        })
    };
    for ((rel, _), found) in entries.iter().zip(found) {
        match found? {
            Found::Same => report.unchanged += 1,
            Found::Owned => report.updated.push((*rel).clone()),
            Found::Foreign => foreign.push((*rel).clone()),
            Found::Missing => report.created.push((*rel).clone()),
        }
    }
    for (rel, hash) in &previous {
        if tree.contains_key(rel) {
            continue;
        }
        check_relative(rel)?;
        let target = out.join(rel);
        match fs::read(&target) {
            Ok(existing) if sha256_hex(&existing) == *hash => report.removed.push(rel.clone()),
            Ok(_) => foreign.push(rel.clone()),
            Err(_) => {}
        }
    }
    if !foreign.is_empty() {
        let list: Vec<String> = foreign
            .iter()
            .map(|p| format!("  {}", out.join(p)))
            .collect();
        bail!(
            "refusing to write: these files were not generated by masgen, or were edited after it wrote them:\n{}\nmove them away (or restore them) and build again; nothing was changed",
            list.join("\n")
        );
    }
    Ok(report)
}

/// Whether `out` is missing or an empty directory.
fn holds_nothing(out: &Utf8Path) -> bool {
    match fs::read_dir(out) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// How a file of the new tree stands on disk.
enum Found {
    /// The same bytes.
    Same,
    /// Other bytes, which masgen wrote (the manifest lists their hash).
    Owned,
    /// Other bytes, not masgen's or edited since.
    Foreign,
    Missing,
}

fn compare(
    out: &Utf8Path,
    rel: &Utf8Path,
    text: &str,
    previous: &BTreeMap<Utf8PathBuf, String>,
) -> Result<Found> {
    let target = out.join(rel);
    match fs::read(&target) {
        Ok(existing) if existing == text.as_bytes() => Ok(Found::Same),
        Ok(existing) => {
            let owned = rel == MANIFEST
                || previous
                    .get(rel)
                    .is_some_and(|hash| *hash == sha256_hex(&existing));
            Ok(if owned { Found::Owned } else { Found::Foreign })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Found::Missing),
        Err(e) => Err(e).with_context(|| format!("reading {target}")),
    }
}

fn check_relative(rel: &Utf8Path) -> Result<()> {
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, camino::Utf8Component::ParentDir))
    {
        bail!("internal error: output path {rel} escapes the output directory");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> OutputTree {
        files
            .iter()
            .map(|(p, t)| (Utf8PathBuf::from(*p), t.to_string()))
            .collect()
    }

    /// `files` and a manifest listing them, as a build makes.
    fn built(files: &[(&str, &str)]) -> OutputTree {
        let m: serde_json::Map<String, serde_json::Value> = files
            .iter()
            .map(|(p, t)| (p.to_string(), sha256_hex(t.as_bytes()).into()))
            .collect();
        let mut t = tree(files);
        t.insert(
            MANIFEST.into(),
            serde_json::json!({ "files": m }).to_string(),
        );
        t
    }

    /// The new tree's directories keep the old ones' mode and, as root,
    /// owner: the operator's `chmod`/`chown` outlive a rebuild.
    #[test]
    fn directories_keep_their_mode_and_owner() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let out = Utf8Path::from_path(dir.path()).unwrap().join("out");
        write_tree(&out, &built(&[("d/f", "1")]), false).unwrap();
        let root = rustix::process::geteuid().is_root();
        for (d, mode) in [(out.clone(), 0o700), (out.join("d"), 0o750)] {
            fs::set_permissions(&d, fs::Permissions::from_mode(mode)).unwrap();
            if root {
                std::os::unix::fs::chown(&d, Some(4321), Some(4321)).unwrap();
            }
        }
        write_tree(&out, &built(&[("d/f", "2"), ("e/g", "3")]), false).unwrap();
        assert_eq!(fs::read_to_string(out.join("d/f")).unwrap(), "2");
        for (d, mode) in [(out.clone(), 0o700), (out.join("d"), 0o750)] {
            let meta = fs::metadata(&d).unwrap();
            assert_eq!(meta.permissions().mode() & 0o7777, mode, "{d}");
            if root {
                assert_eq!((meta.uid(), meta.gid()), (4321, 4321), "{d}");
            }
        }
    }

    /// A build that fails while staging (here a file and a directory of
    /// one name) leaves the old tree as it was and no staging directory.
    #[test]
    fn a_failed_staging_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        let out = root.join("out");
        write_tree(&out, &built(&[("keep", "1")]), false).unwrap();
        let err = write_tree(&out, &built(&[("a", "x"), ("a/b", "y")]), false).unwrap_err();
        // The directory `a` is made first; the file `a` cannot be written.
        assert!(format!("{err:#}").contains("writing"), "{err:#}");
        let mut left: Vec<String> = fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["out"]);
        assert_eq!(fs::read_to_string(out.join("keep")).unwrap(), "1");
    }

    /// The fast path and the general one read a manifest alike, also where
    /// it spells one path twice or holds a value that is not a string.
    #[test]
    fn manifest_paths_spelled_twice_are_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let out = Utf8Path::from_path(dir.path()).unwrap();
        for (files, want) in [
            (r#"{"a//b": "1", "a/b": "2"}"#, vec![("a/b", "2")]),
            (r#"{"a//b": "1", "a/b": 2}"#, vec![("a/b", "")]),
            (r#"{"c": "3", "a/b": "2"}"#, vec![("a/b", "2"), ("c", "3")]),
        ] {
            fs::write(out.join(MANIFEST), format!(r#"{{"files": {files}}}"#)).unwrap();
            let got = previous_manifest(out).unwrap();
            // Paths compare by component: "a//b" is "a/b".
            assert_eq!(got.len(), want.len(), "{files}");
            for (k, v) in &want {
                assert_eq!(
                    got.get(Utf8Path::new(k)).map(String::as_str),
                    Some(*v),
                    "{files}"
                );
            }
        }
    }

    /// A generated Nix file that does not parse is masgen's bug: the build
    /// stops before writing anything, and the old tree stays as it was.
    #[test]
    fn a_nix_file_that_does_not_parse_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = Utf8Path::from_path(dir.path()).unwrap().join("out");
        let good = tree(&[("a.nix", "{ x = 1; }\n")]);
        write_tree(&out, &good, false).unwrap();
        let bad = tree(&[("a.nix", "{ x = 1; }\n"), ("b.nix", "{ x = ; }\n")]);
        let err = write_tree(&out, &bad, false).unwrap_err().to_string();
        assert!(err.contains("generated b.nix does not parse"), "{err}");
        assert!(!out.join("b.nix").exists());
        // The files staged while it was checked are gone with their stage.
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        // An unchanged file is not parsed again, a changed one is.
        let changed = tree(&[("a.nix", "{ x = ; }\n")]);
        assert!(write_tree(&out, &changed, false).is_err());
        assert_eq!(
            fs::read_to_string(out.join("a.nix")).unwrap(),
            "{ x = 1; }\n"
        );
    }

    /// `write_file` replaces the file whole, leaves no temporary file, and
    /// names the file it could not write.
    #[test]
    fn write_file_replaces_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let base = Utf8Path::from_path(dir.path()).unwrap();
        let path = base.join("spec.toml");
        write_file(&path, b"old").unwrap();
        write_file(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let names: Vec<String> = fs::read_dir(base)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["spec.toml"]);
        let err = write_file(&base.join("missing/spec.toml"), b"x").unwrap_err();
        assert!(format!("{err:#}").contains("cannot write"), "{err:#}");
        assert_eq!(Interrupted.to_string(), "write interrupted by its observer");
    }

    /// The manifest is staged first (recovery trusts a staged file only if
    /// the staged manifest lists it), and an observer's stop is obeyed.
    #[test]
    fn the_manifest_is_staged_first_and_a_stop_stops() {
        let dir = tempfile::tempdir().unwrap();
        let out = Utf8Path::from_path(dir.path()).unwrap().join("out");
        let t = built(&[("a.nix", "1\n"), ("b/c.yaml", "x\n")]);
        let mut staged = Vec::new();
        write_tree_with(&out, &t, false, &mut |e| {
            if let Event::Staged(p) = e {
                staged.push(p.to_string());
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(
            staged.first().map(String::as_str),
            Some(MANIFEST),
            "{staged:?}"
        );
        let again = built(&[("a.nix", "2\n")]);
        let err =
            write_tree_with(&out, &again, false, &mut |_| ControlFlow::Break(())).unwrap_err();
        assert!(err.downcast_ref::<Interrupted>().is_some(), "{err:#}");
    }

    /// Into a missing or empty directory every file is new (no file is
    /// looked for); a directory holding anything is looked at file by file.
    #[test]
    fn a_first_build_creates_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let base = Utf8Path::from_path(dir.path()).unwrap();
        let t = built(&[("a.nix", "1\n"), ("b/c.yaml", "x\n")]);
        let missing = base.join("missing");
        assert!(holds_nothing(&missing));
        assert_eq!(classify(&missing, &t).unwrap().created.len(), 3);
        fs::create_dir(base.join("empty")).unwrap();
        assert!(holds_nothing(&base.join("empty")));
        assert_eq!(
            write_tree(&base.join("empty"), &t, false)
                .unwrap()
                .created
                .len(),
            3
        );
        // Only a foreign file there: it is found and refused.
        fs::create_dir(base.join("other")).unwrap();
        fs::write(base.join("other/a.nix"), "mine\n").unwrap();
        assert!(!holds_nothing(&base.join("other")));
        assert!(write_tree(&base.join("other"), &t, false).is_err());
        // A file where the directory should be is not "nothing".
        fs::write(base.join("file"), "").unwrap();
        assert!(!holds_nothing(&base.join("file")));
    }

    /// A path outside `out/` is refused, absolute or climbing out.
    #[test]
    fn output_paths_stay_inside_out() {
        for bad in ["/etc/passwd", "../x.nix", "a/../../x.nix"] {
            assert!(check_relative(Utf8Path::new(bad)).is_err(), "{bad}");
        }
        assert!(check_relative(Utf8Path::new("hosts/a/default.nix")).is_ok());
    }

    /// A file masgen wrote and someone then edited is refused, not
    /// overwritten; an unreadable target is an error, not a new file.
    #[test]
    fn edited_and_unreadable_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = Utf8Path::from_path(dir.path()).unwrap().join("out");
        write_tree(&out, &built(&[("a.nix", "1\n")]), false).unwrap();
        fs::write(out.join("a.nix"), "edited\n").unwrap();
        let t2 = built(&[("a.nix", "2\n")]);
        let err = write_tree(&out, &t2, false).unwrap_err().to_string();
        assert!(
            err.contains("not generated by masgen, or were edited"),
            "{err}"
        );
        assert_eq!(fs::read_to_string(out.join("a.nix")).unwrap(), "edited\n");

        fs::remove_file(out.join("a.nix")).unwrap();
        fs::create_dir(out.join("a.nix")).unwrap();
        let err = format!("{:#}", write_tree(&out, &t2, true).unwrap_err());
        assert!(err.contains("reading"), "{err}");
        // The manifest itself unreadable: an error, not a first build.
        let dir2 = tempfile::tempdir().unwrap();
        let out2 = Utf8Path::from_path(dir2.path()).unwrap();
        fs::create_dir(out2.join(MANIFEST)).unwrap();
        assert!(previous_manifest(out2).is_err());
    }

    /// The temporary file goes beside the target (a rename across file
    /// systems would fail), also for a bare file name.
    #[test]
    fn the_temporary_file_is_made_beside_the_target() {
        assert_eq!(dir_of(Utf8Path::new("spec.toml")), ".");
        assert_eq!(dir_of(Utf8Path::new("specs/a.toml")), "specs");
        assert_eq!(dir_of(Utf8Path::new("/etc/masgen/a.toml")), "/etc/masgen");
    }
}
