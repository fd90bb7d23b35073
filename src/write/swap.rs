//! Replacing `out/` as a whole: staging beside it, one sync, one exchange,
//! and the recovery of whatever an interrupted build left.
//!
//! Invariants the recovery relies on:
//! - `out/` is only ever changed by the exchange (or, where the file system
//!   cannot exchange, by two renames that recovery completes);
//! - the staging directory holds links to `out/`'s own files, files whose
//!   name ends in [`PARTIAL`], the staged manifest, and files that manifest
//!   lists — written in that order;
//! - after the exchange the sibling is the old tree: its manifest lists its
//!   generated files, everything else is a link to a file still in `out/`.
//!
//! So a file in a sibling can be deleted when `out/` has the same contents at
//! the same path, when the sibling's manifest lists it, or when it is partial.
//! Anything else appeared in `out/` while a build ran and is never deleted.

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::ops::ControlFlow;
use std::os::unix::fs::MetadataExt;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::FlockOperation;

use super::{previous_manifest, step, Event};
use crate::emit::{OutputTree, MANIFEST};

/// Suffix of a file being copied into the staging directory.
const PARTIAL: &str = ".masgen-partial";

/// `out/` and its two possible siblings, as absolute paths.
#[derive(Clone)]
pub(super) struct Place {
    parent: Utf8PathBuf,
    out: Utf8PathBuf,
    /// Where the new tree is staged; after the exchange, the old tree.
    next: Utf8PathBuf,
    /// The old tree, where the file system cannot exchange directories.
    old: Utf8PathBuf,
}

impl Place {
    pub(super) fn locate(out: &Utf8Path) -> Result<Place> {
        let out = match out.canonicalize_utf8() {
            Ok(real) => {
                if !real.is_dir() {
                    bail!("{out} is not a directory; give `-o` a directory");
                }
                real
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let name = out
                    .file_name()
                    .with_context(|| format!("{out} cannot be an output directory"))?;
                let parent = match out.parent() {
                    Some(p) if !p.as_str().is_empty() => p,
                    _ => Utf8Path::new("."),
                };
                fs::create_dir_all(parent).with_context(|| format!("creating {parent}"))?;
                parent
                    .canonicalize_utf8()
                    .with_context(|| format!("resolving {parent}"))?
                    .join(name)
            }
            Err(e) => return Err(e).with_context(|| format!("resolving {out}")),
        };
        let (Some(parent), Some(name)) = (out.parent(), out.file_name()) else {
            bail!("{out} cannot be an output directory: masgen replaces it as a whole");
        };
        Ok(Place {
            parent: parent.to_path_buf(),
            next: parent.join(format!(".{name}.masgen-next")),
            old: parent.join(format!(".{name}.masgen-old")),
            out: out.clone(),
        })
    }

    /// One build at a time per parent directory; released when dropped (and
    /// by the kernel when the process dies). A holder gets a few seconds: a
    /// process forked between two builds holds the lock until it execs.
    pub(super) fn lock(&self) -> Result<fs::File> {
        self.lock_within(std::time::Duration::from_secs(10))
    }

    fn lock_within(&self, wait: std::time::Duration) -> Result<fs::File> {
        let dir =
            fs::File::open(&self.parent).with_context(|| format!("opening {}", self.parent))?;
        let start = std::time::Instant::now();
        loop {
            match rustix::fs::flock(&dir, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(dir),
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                    if start.elapsed() > wait {
                        bail!(
                            "another masgen build is writing into {} right now; wait for it and build again",
                            self.parent
                        );
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                // A file system without locks: carry on unlocked.
                Err(e) => {
                    tracing::debug!("no lock on {}: {e}", self.parent);
                    return Ok(dir);
                }
            }
        }
    }

    /// Finishes or undoes what an interrupted build left, before anything
    /// else reads `out/`.
    pub(super) fn recover(&self) -> Result<()> {
        if !exists(&self.out)? && exists(&self.old)? {
            // Interrupted between the two renames of `commit_by_renames`: the
            // staged tree is complete (it was synced before), so it goes in.
            let from = if exists(&self.next)? {
                &self.next
            } else {
                &self.old
            };
            fs::rename(from, &self.out).with_context(|| format!("restoring {}", self.out))?;
        }
        for sibling in [&self.next, &self.old] {
            if !exists(sibling)? {
                continue;
            }
            let kept = retire(sibling, &self.out, false)?;
            if !kept.is_empty() {
                let list: Vec<String> = kept.iter().map(|p| format!("  {p}")).collect();
                bail!(
                    "an earlier masgen build (interrupted, or with files added to out/ while it ran) left {sibling}, and it holds files masgen did not write:\n{}\ncompare them with {}, keep what you need elsewhere, delete {sibling} and build again; {} was not changed",
                    list.join("\n"),
                    self.out,
                    self.out
                );
            }
        }
        Ok(())
    }

    /// Makes the staged tree `out/`, atomically where the file system can
    /// exchange two directories, then makes that durable.
    pub(super) fn commit(&self) -> Result<()> {
        if !exists(&self.out)? {
            fs::rename(&self.next, &self.out)
                .with_context(|| format!("renaming {} to {}", self.next, self.out))?;
        } else {
            match exchange(&self.next, &self.out) {
                Ok(()) => {}
                Err(e) if exchange_unsupported(e) => self.commit_by_renames()?,
                Err(e) => {
                    return Err(std::io::Error::from(e))
                        .with_context(|| format!("exchanging {} and {}", self.next, self.out))
                }
            }
        }
        fs::File::open(&self.parent)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", self.parent))
    }

    /// What to add to the error of creating the staging directory: a
    /// refusal is about the parent directory, which users do not expect.
    fn why_not_created(&self, kind: ErrorKind) -> String {
        if kind == ErrorKind::PermissionDenied {
            format!(
                "; masgen builds the new tree beside {} and swaps the two, so it needs write access to {}",
                self.out, self.parent
            )
        } else {
            String::new()
        }
    }

    /// Without an exchange there is a moment with no `out/`; `recover` ends it.
    fn commit_by_renames(&self) -> Result<()> {
        fs::rename(&self.out, &self.old)
            .with_context(|| format!("renaming {} to {}", self.out, self.old))?;
        fs::rename(&self.next, &self.out)
            .with_context(|| format!("renaming {} to {}", self.next, self.out))
    }

    /// Removes the old tree after a commit. Files that appeared in `out/`
    /// during the build are moved back into it, or kept aside if their path
    /// is taken; the paths where they stay are returned.
    pub(super) fn retire_old(&self) -> Result<Vec<Utf8PathBuf>> {
        let mut kept = Vec::new();
        for sibling in [&self.next, &self.old] {
            if exists(sibling)? {
                kept.extend(retire(sibling, &self.out, true)?);
            }
        }
        Ok(kept)
    }
}

/// The new tree being assembled in `place.next`.
pub(super) struct Stage<'a> {
    pub place: &'a Place,
    pub tree: &'a OutputTree,
    /// New or changed files, manifest first.
    pub changed: &'a [&'a Utf8Path],
    /// Paths not carried over from `out/`: changed and removed files.
    pub skip: &'a BTreeSet<&'a Utf8Path>,
}

impl Stage<'_> {
    pub(super) fn build(
        &self,
        observe: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        let (next, out) = (&self.place.next, &self.place.out);
        if let Err(e) = fs::create_dir(next) {
            let why = self.place.why_not_created(e.kind());
            return Err(e).with_context(|| format!("creating {next}{why}"));
        }
        if let Ok(meta) = fs::symlink_metadata(out) {
            copy_dir_attributes(&meta, next);
            carry(out, next, Utf8Path::new(""), self.skip, meta.dev())?;
        }
        step(observe, Event::Carried)?;
        // Each directory once, parents first (a file's own `create_dir_all`
        // would try its directory again for each file in it); on every core.
        let dirs: BTreeSet<&Utf8Path> = self
            .changed
            .iter()
            .filter_map(|rel| rel.parent())
            .filter(|dir| !dir.as_str().is_empty())
            .collect();
        let dirs: Vec<&Utf8Path> = dirs.into_iter().collect();
        let made = crate::par::map(&dirs, 256, |dir| {
            let dir = next.join(dir);
            fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))
        });
        made.into_iter().collect::<Result<()>>()?;
        // The manifest first, alone (recovery trusts a staged file only if
        // the staged manifest lists it); the rest on every core, told in
        // order once written, the first error first.
        let (first, rest) = self.changed.split_at(self.changed.len().min(1));
        for rel in first {
            self.stage_file(rel)?;
            step(observe, Event::Staged(rel))?;
        }
        let written = crate::par::map(rest, 128, |rel| self.stage_file(rel));
        for (rel, result) in rest.iter().zip(written) {
            result?;
            step(observe, Event::Staged(rel))?;
        }
        // Directories that only held removed files go with them.
        for rel in self
            .skip
            .iter()
            .filter(|rel| !self.tree.contains_key(**rel))
        {
            let mut dir = next.join(rel).parent().map(Utf8Path::to_path_buf);
            while let Some(d) = dir.filter(|d| d != next) {
                if fs::remove_dir(&d).is_err() {
                    break;
                }
                dir = d.parent().map(Utf8Path::to_path_buf);
            }
        }
        sync_tree(next)
    }

    /// Writes one new or changed file into the staging directory (its
    /// directory is made before).
    fn stage_file(&self, rel: &Utf8Path) -> Result<()> {
        let target = self.place.next.join(rel);
        fs::write(&target, &self.tree[rel]).with_context(|| format!("writing {target}"))
    }

    /// Removes the staging directory after an ordinary error.
    pub(super) fn discard(&self) {
        let _ = fs::remove_dir_all(&self.place.next);
    }
}

/// Links (or, where linking is refused, copies) every file of `src/rel` that
/// is not in `skip` into `dst/rel`, recreating directories and symlinks.
fn carry(
    src: &Utf8Path,
    dst: &Utf8Path,
    rel: &Utf8Path,
    skip: &BTreeSet<&Utf8Path>,
    dev: u64,
) -> Result<()> {
    let dir = src.join(rel);
    let mut entries: Vec<_> = dir
        .read_dir_utf8()
        .with_context(|| format!("reading {dir}"))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {dir}"))?;
    entries.sort_by(|a, b| a.file_name().cmp(b.file_name()));
    for entry in entries {
        let rel = rel.join(entry.file_name());
        let (from, to) = (src.join(&rel), dst.join(&rel));
        let meta = fs::symlink_metadata(&from).with_context(|| format!("reading {from}"))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            if meta.dev() != dev {
                bail!("{from} is a mount point; masgen replaces the output directory as a whole and cannot carry it over: mount it elsewhere");
            }
            fs::create_dir(&to).with_context(|| format!("creating {to}"))?;
            copy_dir_attributes(&meta, &to);
            carry(src, dst, &rel, skip, dev)?;
        } else if skip.contains(rel.as_path()) {
            continue;
        } else if kind.is_symlink() {
            let target = fs::read_link(&from).with_context(|| format!("reading {from}"))?;
            std::os::unix::fs::symlink(target, &to).with_context(|| format!("creating {to}"))?;
        } else if kind.is_file() {
            if fs::hard_link(&from, &to).is_err() {
                copy_file(&from, &to, &meta)?;
            }
        } else {
            bail!("{from} is not a file, directory or symlink; masgen replaces the output directory as a whole and cannot carry it over: move it away");
        }
    }
    Ok(())
}

/// A copy under a partial name, renamed once complete, so recovery never
/// mistakes a half-copied file for one of the operator's.
fn copy_file(from: &Utf8Path, to: &Utf8Path, meta: &fs::Metadata) -> Result<()> {
    let partial = Utf8PathBuf::from(format!("{to}{PARTIAL}"));
    fs::copy(from, &partial).with_context(|| format!("copying {from}"))?;
    if let Ok(modified) = meta.modified() {
        let _ = fs::File::options()
            .write(true)
            .open(&partial)
            .and_then(|f| f.set_modified(modified));
    }
    fs::rename(&partial, to).with_context(|| format!("renaming {partial} to {to}"))
}

/// Same mode and, where allowed, owner: the directory the operator sees
/// afterwards should look like the one they had.
fn copy_dir_attributes(meta: &fs::Metadata, dir: &Utf8Path) {
    if let Ok(now) = fs::symlink_metadata(dir) {
        if (now.uid(), now.gid()) != (meta.uid(), meta.gid()) {
            let _ = std::os::unix::fs::chown(dir, Some(meta.uid()), Some(meta.gid()));
        }
    }
    let _ = fs::set_permissions(dir, meta.permissions());
}

/// Swaps two directories in one step, where the system has a call for it.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios"
))]
fn exchange(a: &Utf8Path, b: &Utf8Path) -> rustix::io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, a.as_str(), CWD, b.as_str(), RenameFlags::EXCHANGE)
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios"
)))]
fn exchange(_: &Utf8Path, _: &Utf8Path) -> rustix::io::Result<()> {
    Err(rustix::io::Errno::NOSYS)
}

/// One sync for the whole staged tree instead of one per file.
fn sync_tree(dir: &Utf8Path) -> Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let fd = fs::File::open(dir).with_context(|| format!("opening {dir}"))?;
        rustix::fs::syncfs(&fd).with_context(|| format!("syncing {dir}"))?;
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = dir;
        rustix::fs::sync();
    }
    Ok(())
}

/// Deletes what `sibling` holds that is masgen's or also in `out/` (see the
/// module comment). Other files are moved into `out/` when `restore` is set
/// and their path there is free; the paths of the files left are returned,
/// and the sibling stays as long as it holds any.
fn retire(sibling: &Utf8Path, out: &Utf8Path, restore: bool) -> Result<Vec<Utf8PathBuf>> {
    // A partial manifest (interrupted while staging it) lists nothing, and
    // then nothing listed was staged yet.
    let listed = previous_manifest(sibling).unwrap_or_default();
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    walk(sibling, Utf8Path::new(""), &mut files, &mut dirs)?;
    // The manifest goes last: if this is interrupted, the next recovery
    // still knows which of the remaining files are masgen's.
    files.sort_by_key(|rel| rel == MANIFEST);
    let mut kept = Vec::new();
    for rel in files {
        let (here, there) = (sibling.join(&rel), out.join(&rel));
        let disposable = rel.as_str().ends_with(PARTIAL)
            || rel == MANIFEST
            || listed.contains_key(&rel)
            || same_contents(&here, &there);
        if disposable {
            fs::remove_file(&here).with_context(|| format!("removing {here}"))?;
        } else if restore && !exists(&there)? {
            if let Some(dir) = there.parent() {
                fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
            }
            fs::rename(&here, &there).with_context(|| format!("moving {here} to {there}"))?;
        } else {
            kept.push(here);
        }
    }
    for dir in dirs.iter().rev() {
        let _ = fs::remove_dir(sibling.join(dir));
    }
    if kept.is_empty() {
        fs::remove_dir(sibling).with_context(|| format!("removing {sibling}"))?;
    }
    Ok(kept)
}

/// Files (and symlinks) and directories under `root/rel`, parents before children.
fn walk(
    root: &Utf8Path,
    rel: &Utf8Path,
    files: &mut Vec<Utf8PathBuf>,
    dirs: &mut Vec<Utf8PathBuf>,
) -> Result<()> {
    let dir = root.join(rel);
    for entry in dir
        .read_dir_utf8()
        .with_context(|| format!("reading {dir}"))?
    {
        let entry = entry.with_context(|| format!("reading {dir}"))?;
        let rel = rel.join(entry.file_name());
        if entry
            .file_type()
            .with_context(|| format!("reading {}", entry.path()))?
            .is_dir()
        {
            dirs.push(rel.clone());
            walk(root, &rel, files, dirs)?;
        } else {
            files.push(rel);
        }
    }
    Ok(())
}

fn same_contents(a: &Utf8Path, b: &Utf8Path) -> bool {
    let (Ok(ma), Ok(mb)) = (fs::symlink_metadata(a), fs::symlink_metadata(b)) else {
        return false;
    };
    if (ma.dev(), ma.ino()) == (mb.dev(), mb.ino()) {
        return true;
    }
    if ma.file_type().is_symlink() || mb.file_type().is_symlink() {
        return ma.file_type().is_symlink()
            && mb.file_type().is_symlink()
            && fs::read_link(a).ok() == fs::read_link(b).ok();
    }
    ma.is_file() && mb.is_file() && ma.len() == mb.len() && fs::read(a).ok() == fs::read(b).ok()
}

/// Errors of `renameat2(RENAME_EXCHANGE)` that mean the kernel or the file
/// system has no exchange: masgen renames twice instead.
fn exchange_unsupported(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    [Errno::INVAL, Errno::NOSYS, Errno::NOTSUP].contains(&e)
}

fn exists(path: &Utf8Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("reading {path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second build waits for the one holding the lock and goes on
    /// once it is released (it neither fails at once nor writes unlocked).
    #[test]
    fn a_build_waits_for_the_lock_holder() {
        let (_dir, place) = place();
        let held = fs::File::open(&place.parent).unwrap();
        rustix::fs::flock(&held, FlockOperation::NonBlockingLockExclusive).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(held);
        });
        let start = std::time::Instant::now();
        let _lock = place.lock().unwrap();
        assert!(start.elapsed() >= std::time::Duration::from_millis(250));
        release.join().unwrap();
    }

    /// A holder that does not let go is named, after the wait, and
    /// nothing is locked or written.
    #[test]
    fn a_build_gives_up_on_a_holder_that_stays() {
        let (_dir, place) = place();
        let held = fs::File::open(&place.parent).unwrap();
        rustix::fs::flock(&held, FlockOperation::NonBlockingLockExclusive).unwrap();
        let start = std::time::Instant::now();
        let err = place
            .lock_within(std::time::Duration::from_millis(100))
            .unwrap_err()
            .to_string();
        assert!(start.elapsed() >= std::time::Duration::from_millis(100));
        assert!(
            err.contains("another masgen build is writing into"),
            "{err}"
        );
    }

    /// Where the file system has no exchange, the staged tree is renamed
    /// in and the old one aside (retired after); any other error of the
    /// exchange stops the build.
    #[test]
    fn without_an_exchange_the_tree_is_renamed_in() {
        use rustix::io::Errno;
        for e in [Errno::INVAL, Errno::NOSYS, Errno::NOTSUP] {
            assert!(exchange_unsupported(e), "{e}");
        }
        for e in [Errno::NOENT, Errno::ACCESS, Errno::XDEV] {
            assert!(!exchange_unsupported(e), "{e}");
        }
        let (_dir, place) = place();
        fs::write(place.out.join("a"), "old").unwrap();
        fs::create_dir(&place.next).unwrap();
        fs::write(place.next.join("a"), "new").unwrap();
        place.commit_by_renames().unwrap();
        assert_eq!(fs::read_to_string(place.out.join("a")).unwrap(), "new");
        assert_eq!(fs::read_to_string(place.old.join("a")).unwrap(), "old");
        assert!(!place.next.exists());
    }

    /// Where a file cannot be linked it is copied, with its modification
    /// time, and no partial copy stays.
    #[test]
    fn a_file_that_cannot_be_linked_is_copied() {
        let (dir, place) = place();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        let from = place.out.join("a");
        fs::write(&from, "text").unwrap();
        let then = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::options()
            .write(true)
            .open(&from)
            .unwrap()
            .set_modified(then)
            .unwrap();
        let meta = fs::metadata(&from).unwrap();
        let to = root.join("b");
        copy_file(&from, &to, &meta).unwrap();
        assert_eq!(fs::read_to_string(&to).unwrap(), "text");
        assert_eq!(fs::metadata(&to).unwrap().modified().unwrap(), then);
        assert_ne!(fs::metadata(&to).unwrap().ino(), meta.ino());
        assert!(!root.join(format!("b{PARTIAL}")).exists());
    }

    /// What `retire` may drop as a copy of a file in `out/`: the same file,
    /// the same bytes, or symlinks to the same target; not a file of the
    /// same length with other bytes, nor a file and a directory or symlink.
    #[test]
    fn same_contents_is_bytes_or_link_targets() {
        let (dir, _place) = place();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        let w = |name: &str, text: &str| fs::write(root.join(name), text).unwrap();
        w("a", "text");
        w("b", "text");
        w("c", "tent");
        w("d", "longer text");
        fs::create_dir(root.join("dir")).unwrap();
        std::os::unix::fs::symlink("a", root.join("la")).unwrap();
        std::os::unix::fs::symlink("a", root.join("la2")).unwrap();
        std::os::unix::fs::symlink("b", root.join("lb")).unwrap();
        let same = |x: &str, y: &str| same_contents(&root.join(x), &root.join(y));
        for (x, y) in [("a", "a"), ("a", "b"), ("la", "la2"), ("dir", "dir")] {
            assert!(same(x, y), "{x} {y}");
        }
        for (x, y) in [
            ("a", "c"),
            ("a", "d"),
            ("a", "dir"),
            ("dir", "a"),
            ("a", "la"),
            ("la", "a"),
            ("la", "lb"),
            ("a", "missing"),
        ] {
            assert!(!same(x, y), "{x} {y}");
        }
    }

    /// Only a missing path is "not there"; another error is one.
    #[test]
    fn exists_fails_on_errors_other_than_missing() {
        let (dir, place) = place();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        fs::write(root.join("file"), "").unwrap();
        assert!(exists(&place.out).unwrap());
        assert!(!exists(&root.join("missing")).unwrap());
        assert!(exists(&root.join("file/child")).is_err());
    }

    /// `commit` takes the two renames only for an exchange the kernel or
    /// the file system cannot do. EINVAL is made here by staging inside
    /// `out/` (a directory cannot be exchanged with its own child): the
    /// fallback moves `out/` aside, then cannot find the staged tree. Any
    /// other error (here a staged tree that is missing) leaves `out/` alone.
    #[test]
    fn commit_falls_back_to_renames_only_without_an_exchange() {
        let (_dir, place) = place();
        let inside = Place {
            next: place.out.join("sub"),
            ..place.clone()
        };
        fs::create_dir(&inside.next).unwrap();
        let err = format!("{:#}", inside.commit().unwrap_err());
        assert!(
            err.starts_with(&format!("renaming {}", inside.next)),
            "{err}"
        );
        assert!(inside.old.join("sub").is_dir());

        let (_dir2, missing) = super::tests::place();
        let err = format!("{:#}", missing.commit().unwrap_err());
        assert!(err.starts_with("exchanging"), "{err}");
        assert!(missing.out.is_dir() && !missing.old.exists());
    }

    /// Only a refusal names the parent directory that needs write access.
    #[test]
    fn a_refused_staging_directory_names_the_parent() {
        let (_dir, place) = place();
        let why = place.why_not_created(ErrorKind::PermissionDenied);
        assert!(
            why.contains(&format!("needs write access to {}", place.parent)),
            "{why}"
        );
        assert_eq!(place.why_not_created(ErrorKind::StorageFull), "");
    }

    fn place() -> (tempfile::TempDir, Place) {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        fs::create_dir(root.join("out")).unwrap();
        let place = Place::locate(&root.join("out")).unwrap();
        (dir, place)
    }

    fn manifest(files: &[&str]) -> String {
        let files: serde_json::Map<_, _> = files
            .iter()
            .map(|f| (f.to_string(), serde_json::Value::from("x")))
            .collect();
        serde_json::json!({ "files": files }).to_string()
    }

    #[test]
    fn recovery_completes_an_interrupted_two_rename_commit() {
        let (_dir, place) = place();
        // The old tree went aside, the staged (complete) one did not go in.
        fs::write(place.out.join("a.nix"), "old").unwrap();
        fs::write(place.out.join("mine.txt"), "operator").unwrap();
        fs::write(place.out.join(MANIFEST), manifest(&["a.nix"])).unwrap();
        fs::create_dir(&place.next).unwrap();
        fs::write(place.next.join("a.nix"), "new").unwrap();
        fs::hard_link(place.out.join("mine.txt"), place.next.join("mine.txt")).unwrap();
        fs::write(place.next.join(MANIFEST), manifest(&["a.nix"])).unwrap();
        fs::rename(&place.out, &place.old).unwrap();

        place.recover().unwrap();
        assert_eq!(fs::read_to_string(place.out.join("a.nix")).unwrap(), "new");
        assert_eq!(
            fs::read_to_string(place.out.join("mine.txt")).unwrap(),
            "operator"
        );
        assert!(!exists(&place.next).unwrap() && !exists(&place.old).unwrap());
    }

    #[test]
    fn a_copy_identical_to_the_file_in_out_is_disposable_and_a_different_one_is_kept() {
        let (_dir, place) = place();
        fs::write(place.out.join("flake.lock"), "lock").unwrap();
        fs::write(place.out.join("other"), "v2").unwrap();
        fs::create_dir(&place.next).unwrap();
        let meta = fs::metadata(place.out.join("flake.lock")).unwrap();
        copy_file(
            &place.out.join("flake.lock"),
            &place.next.join("flake.lock"),
            &meta,
        )
        .unwrap();
        fs::write(place.next.join("other"), "v1").unwrap();
        fs::write(place.next.join(format!("half{PARTIAL}")), "ha").unwrap();

        let kept = retire(&place.next, &place.out, false).unwrap();
        assert_eq!(kept, [place.next.join("other")]);
        assert!(!exists(&place.next.join("flake.lock")).unwrap());
        assert!(!exists(&place.next.join(format!("half{PARTIAL}"))).unwrap());
        assert_eq!(
            fs::read_to_string(place.out.join("flake.lock")).unwrap(),
            "lock"
        );
    }
}
