//! A build interrupted at any moment leaves `out/` as the complete old tree
//! or the complete new one, keeps the operator's files, and the next build
//! removes whatever the interruption left (src/write/).
//!
//! - `interrupted_at_every_step_leaves_old_or_new`: the library writer is
//!   stopped at each of its steps in turn, as a `kill -9` would stop it
//!   (no clean-up runs), deterministically;
//! - `kill_9_at_random_moments_leaves_old_or_new`: the real binary is killed
//!   with SIGKILL at random moments, 60 times.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::ops::ControlFlow;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use camino::{Utf8Path, Utf8PathBuf};

use masgen::emit::{OutputTree, MANIFEST};
use masgen::write::{write_tree, write_tree_with, Event, Interrupted};

/// Files of the operator that live in `out/` beside the generated tree;
/// `hosts/matrix/NOTES.md` sits in a generated directory.
const FOREIGN: &[(&str, &str)] = &[
    ("flake.lock", "{ \"version\": 7 }\n"),
    ("README.local", "notes of the operator\n"),
    ("hosts/matrix/NOTES.md", "host notes\n"),
];

/// Every file under `dir` (hidden ones too) with its contents.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// What `out/` must hold when it holds `tree`: the tree plus the foreign files.
fn expected(tree: &BTreeMap<PathBuf, Vec<u8>>) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = tree.clone();
    for (rel, text) in FOREIGN {
        all.insert(PathBuf::from(rel), text.as_bytes().to_vec());
    }
    all
}

fn add_foreign(out: &Path) {
    for (rel, text) in FOREIGN {
        fs::write(out.join(rel), text).unwrap();
    }
}

/// Names in `dir` other than `out` (leftovers of an interrupted build).
fn siblings(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "out")
        .collect();
    names.sort();
    names
}

fn library_tree(example: &str) -> OutputTree {
    let checked = support::checked(example, &support::example_text(example));
    masgen::build_tree(&checked).unwrap().1
}

fn as_files(tree: &OutputTree) -> BTreeMap<PathBuf, Vec<u8>> {
    tree.iter()
        .map(|(k, v)| (k.clone().into_std_path_buf(), v.as_bytes().to_vec()))
        .collect()
}

/// A temp dir with `out/` holding `tree` and the foreign files.
fn out_with(tree: &OutputTree) -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("masgen-crash-")
        .tempdir()
        .unwrap();
    let out = Utf8Path::from_path(dir.path()).unwrap().join("out");
    write_tree(&out, tree, false).unwrap();
    add_foreign(out.as_std_path());
    (dir, out)
}

/// The events of one uninterrupted write of `new` over `old`, as strings.
fn events(old: &OutputTree, new: &OutputTree) -> Vec<String> {
    let (_dir, out) = out_with(old);
    let mut seen = Vec::new();
    write_tree_with(&out, new, false, &mut |e| {
        seen.push(format!("{e:?}"));
        ControlFlow::Continue(())
    })
    .unwrap();
    seen
}

#[test]
fn interrupted_at_every_step_leaves_old_or_new() {
    // migrate → fresh removes the prepare phase; fresh → migrate adds it.
    for (from, to) in [
        ("migrate-local.toml", "fresh.toml"),
        ("fresh.toml", "migrate-keycloak.toml"),
    ] {
        let (old, new) = (library_tree(from), library_tree(to));
        let (want_old, want_new) = (expected(&as_files(&old)), expected(&as_files(&new)));
        assert_ne!(want_old, want_new);
        let seen = events(&old, &new);
        // The order recovery relies on: everything kept is linked, the
        // manifest is staged before any file it lists, one sync, then the
        // exchange, then the old tree goes.
        let staged: Vec<&String> = seen.iter().filter(|e| e.starts_with("Staged")).collect();
        assert_eq!(seen[0], "Carried", "{from} → {to}: {seen:?}");
        assert_eq!(
            *staged[0],
            format!("Staged({MANIFEST:?})"),
            "{from} → {to}: the manifest must be staged first: {seen:?}"
        );
        assert_eq!(
            seen[seen.len() - 3..],
            ["Synced", "Committed", "Retired"],
            "{from} → {to}: {seen:?}"
        );
        let committed_at = seen.iter().position(|e| e == "Committed").unwrap();

        for (stop, event) in seen.iter().enumerate() {
            let (dir, out) = out_with(&old);
            let lock_inode = fs::metadata(out.join("flake.lock")).unwrap().ino();
            let mut n = 0;
            let res = write_tree_with(&out, &new, false, &mut |_| {
                n += 1;
                if n > stop {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            let err = res.expect_err("the observer stops the write");
            assert!(err.downcast_ref::<Interrupted>().is_some(), "{err:#}");
            assert!(err.to_string().contains("interrupted"), "{err:#}");
            let what = format!("{from} → {to}, stopped after {event}");
            let now = contents(out.as_std_path());
            if stop < committed_at {
                assert!(now == want_old, "{what}: out/ is not the old tree");
            } else {
                assert!(now == want_new, "{what}: out/ is not the new tree");
            }

            // The next write finishes the job and leaves nothing behind.
            let report = write_tree(&out, &new, false).unwrap_or_else(|e| panic!("{what}: {e:#}"));
            assert!(report.kept_aside.is_empty(), "{what}: {report:?}");
            assert!(contents(out.as_std_path()) == want_new, "{what}: rebuild");
            assert_eq!(siblings(dir.path()), Vec::<String>::new(), "{what}");
            // The operator's file is the same file, not a copy.
            let inode = fs::metadata(out.join("flake.lock")).unwrap().ino();
            assert_eq!(inode, lock_inode, "{what}: flake.lock was replaced");
        }
    }
}

/// A small xorshift generator: the seed is printed, and `MASGEN_KILL_SEED`
/// replays a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn cli_build(dir: &Path, spec: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_masgen"));
    c.current_dir(dir)
        .env_remove("MASGEN_LOG")
        .arg("build")
        .arg(spec)
        .args(["-o", "out"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

/// The tree the binary writes for `spec` into a fresh directory.
fn cli_tree(spec: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let status = cli_build(dir.path(), spec).status().unwrap();
    assert!(status.success(), "{}", spec.display());
    contents(&dir.path().join("out"))
}

#[test]
fn kill_9_at_random_moments_leaves_old_or_new() {
    let specs = [
        support::repo_root().join("examples/migrate-local.toml"),
        support::repo_root().join("examples/fresh.toml"),
    ];
    let want = [
        expected(&cli_tree(&specs[0])),
        expected(&cli_tree(&specs[1])),
    ];
    assert_ne!(want[0], want[1]);
    let seed = std::env::var("MASGEN_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("MASGEN_KILL_SEED={seed}");
    let mut rng = Rng(seed);

    let work = tempfile::Builder::new()
        .prefix("masgen-kill-")
        .tempdir()
        .unwrap();
    let build = |i: usize| {
        let status = cli_build(work.path(), &specs[i]).status().unwrap();
        assert!(status.success(), "seed {seed}: full build of {i}");
    };
    build(0);
    add_foreign(&work.path().join("out"));
    let mut current = 0;
    // How long one build takes here, to spread the kills over its life.
    let start = Instant::now();
    build(1);
    build(0);
    let span = start.elapsed() / 2;

    let (mut saw_old, mut saw_new, mut leftovers) = (0, 0, 0);
    for attempt in 0..60 {
        let target = 1 - current;
        let delay = span.mul_f64((rng.next() % 1500) as f64 / 1000.0);
        let mut child = cli_build(work.path(), &specs[target]).spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        let what = format!("seed {seed}, attempt {attempt}, killed after {delay:?}");
        let now = contents(&work.path().join("out"));
        if now == want[current] {
            saw_old += 1;
        } else if now == want[target] {
            saw_new += 1;
            current = target;
        } else {
            panic!("{what}: out/ is neither the old nor the new tree");
        }
        let left = siblings(work.path());
        assert!(
            left.iter().all(|n| n.starts_with(".out.masgen-")),
            "{what}: {left:?}"
        );
        leftovers += usize::from(!left.is_empty());
        // Every other time, a complete build (to either spec) recovers.
        if attempt % 2 == 1 {
            let to = (rng.next() % 2) as usize;
            build(to);
            current = to;
            assert!(contents(&work.path().join("out")) == want[to], "{what}");
            assert_eq!(siblings(work.path()), Vec::<String>::new(), "{what}");
        }
    }
    build(1 - current);
    assert!(contents(&work.path().join("out")) == want[1 - current]);
    assert_eq!(siblings(work.path()), Vec::<String>::new());
    println!("old {saw_old}, new {saw_new}, with leftovers {leftovers} (build takes {span:?})");
    // Kills both before and after the exchange, or the test proved little.
    assert!(
        saw_old > 0 && saw_new > 0,
        "seed {seed}: old {saw_old}, new {saw_new}"
    );
}

#[test]
fn files_written_into_out_during_a_build_are_never_deleted() {
    let (old, new) = (
        library_tree("migrate-local.toml"),
        library_tree("fresh.toml"),
    );
    let (dir, out) = out_with(&old);
    // After everything was linked into the staging directory, the operator
    // adds a file and replaces flake.lock (as `nix flake update` does).
    let report = write_tree_with(&out, &new, false, &mut |e| {
        if e == Event::Synced {
            fs::write(out.join("added.txt"), "added while building\n").unwrap();
            let tmp = out.join("flake.lock.tmp");
            fs::write(&tmp, "{ \"version\": 8 }\n").unwrap();
            fs::rename(&tmp, out.join("flake.lock")).unwrap();
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    // The added file is moved into the new out/; the new flake.lock cannot
    // be (the carried one holds its path), so it stays aside, reported.
    assert_eq!(
        fs::read_to_string(out.join("added.txt")).unwrap(),
        "added while building\n"
    );
    let aside = dir.path().join(".out.masgen-next/flake.lock");
    assert_eq!(
        report.kept_aside,
        [Utf8PathBuf::from_path_buf(aside.clone()).unwrap()]
    );
    assert_eq!(fs::read_to_string(&aside).unwrap(), "{ \"version\": 8 }\n");
    let mut want = expected(&as_files(&new));
    want.insert("added.txt".into(), b"added while building\n".to_vec());
    assert!(contents(out.as_std_path()) == want);

    // The next build refuses to go on until the operator has dealt with it.
    let err = write_tree(&out, &old, false).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains(aside.to_str().unwrap()), "{msg}");
    assert!(msg.contains("was not changed"), "{msg}");
    assert!(contents(out.as_std_path()) == want);
    fs::remove_dir_all(dir.path().join(".out.masgen-next")).unwrap();
    write_tree(&out, &old, false).unwrap();
    assert_eq!(siblings(dir.path()), Vec::<String>::new());
}

#[test]
fn an_interrupted_first_build_leaves_no_out_dir_or_the_whole_tree() {
    let new = library_tree("fresh.toml");
    let want = as_files(&new);
    let fresh_dir = || tempfile::tempdir().unwrap();
    let count = {
        let dir = fresh_dir();
        let out = Utf8Path::from_path(dir.path()).unwrap().join("out");
        let mut n = 0;
        write_tree_with(&out, &new, false, &mut |_| {
            n += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
        n
    };
    for stop in 0..count {
        let dir = fresh_dir();
        let out = Utf8Path::from_path(dir.path()).unwrap().join("out");
        let mut n = 0;
        let mut committed = false;
        let res = write_tree_with(&out, &new, false, &mut |e| {
            n += 1;
            committed |= e == Event::Committed;
            if n > stop {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert!(res.is_err(), "stop {stop}");
        if committed {
            assert!(contents(out.as_std_path()) == want, "stop {stop}");
        } else {
            assert!(!out.exists(), "stop {stop}: a partial out/ exists");
        }
        write_tree(&out, &new, false).unwrap_or_else(|e| panic!("stop {stop}: {e:#}"));
        assert!(contents(out.as_std_path()) == want, "stop {stop}");
        assert_eq!(siblings(dir.path()), Vec::<String>::new(), "stop {stop}");
    }
}

#[test]
fn a_symlinked_out_dir_stays_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8Path::from_path(dir.path()).unwrap();
    fs::create_dir(root.join("real")).unwrap();
    std::os::unix::fs::symlink("real", root.join("out")).unwrap();
    let out = root.join("out");
    for spec in ["migrate-local.toml", "fresh.toml"] {
        let tree = library_tree(spec);
        write_tree(&out, &tree, false).unwrap();
        assert!(fs::symlink_metadata(&out).unwrap().is_symlink(), "{spec}");
        assert!(
            contents(root.join("real").as_std_path()) == as_files(&tree),
            "{spec}"
        );
    }
    let mut names: Vec<String> = siblings(dir.path());
    names.retain(|n| n != "real");
    assert_eq!(names, Vec::<String>::new());
}

/// An `-o` that cannot be resolved for another reason than not existing
/// (a symbolic link to itself) is an error, and the link stays: only a
/// missing directory is created.
#[test]
fn an_unresolvable_out_dir_is_an_error_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8Path::from_path(dir.path()).unwrap();
    let out = root.join("out");
    std::os::unix::fs::symlink("out", &out).unwrap();
    let err = write_tree(&out, &library_tree("fresh.toml"), false).expect_err("a link loop");
    assert!(
        format!("{err:#}").contains(&format!("resolving {out}")),
        "{err:#}"
    );
    assert_eq!(fs::read_link(&out).unwrap().to_str(), Some("out"));
    assert_eq!(siblings(dir.path()), Vec::<String>::new());
}

/// A manifest that exists but cannot be read is an error naming it, not a
/// first build: the tree it lists must not be mistaken for foreign files
/// (or, worse, for none).
#[test]
fn an_unreadable_manifest_is_an_error_not_a_first_build() {
    let tree = library_tree("fresh.toml");
    let (_dir, out) = out_with(&tree);
    let manifest = out.join(MANIFEST);
    // Not UTF-8: reading it fails with InvalidData, not NotFound.
    fs::write(&manifest, b"{\"files\": \xff}").unwrap();
    let before = contents(out.as_std_path());
    let err = write_tree(&out, &tree, false).expect_err("an unreadable manifest");
    let msg = format!("{err:#}");
    assert!(msg.contains(&format!("reading {manifest}")), "{msg}");
    assert_eq!(contents(out.as_std_path()), before, "out/ was touched");
}

/// One file written whole: replaced in place, no temporary left beside it,
/// and a failure leaves the old file.
#[test]
fn single_files_are_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
    let spec = root.join("spec.toml");
    masgen::write::write_file(&spec, b"one\n").unwrap();
    masgen::write::write_file(&spec, b"two\n").unwrap();
    assert_eq!(fs::read_to_string(&spec).unwrap(), "two\n");
    assert_eq!(siblings(dir.path()), ["spec.toml"]);
    let err = masgen::write::write_file(&root.join("missing/spec.toml"), b"x").unwrap_err();
    assert!(format!("{err:#}").contains("cannot write"), "{err:#}");
    assert_eq!(siblings(dir.path()), ["spec.toml"]);
}

/// A previous manifest that names a path outside `out/` (hand-edited, or
/// written by something else) is refused before anything is read or
/// removed there, even when the file it names has the listed hash.
#[test]
fn a_manifest_naming_paths_outside_out_is_refused() {
    let tree = library_tree("fresh.toml");
    for escape in ["../victim", "/ABS/victim"] {
        let (dir, out) = out_with(&tree);
        let victim = dir.path().join("victim");
        fs::write(&victim, "not masgen's\n").unwrap();
        let listed = escape.replace("/ABS", dir.path().to_str().unwrap());
        let manifest = out.join(MANIFEST);
        let mut m: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&manifest).unwrap()).unwrap();
        m["files"][&listed] = serde_json::json!(masgen::emit::sha256_hex(b"not masgen's\n"));
        fs::write(&manifest, serde_json::to_string(&m).unwrap()).unwrap();
        let err = write_tree(&out, &tree, false).expect_err("an escaping manifest");
        assert!(format!("{err:#}").contains("escapes"), "{err:#}");
        assert!(victim.exists(), "{listed}: a file outside out/ was removed");
    }
}
