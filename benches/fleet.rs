//! `cargo bench --bench fleet`: time and peak memory of `check`, `build`,
//! a rebuild with nothing changed, `plan` and `diff` on generated fleets of
//! 1, 10, 100 and 1,000 homeservers (half fresh, half migrating, from
//! examples/fleet/), in process; `scripts/bench-fleet.sh` measures whole
//! processes with `/usr/bin/time -v`. `cargo test --all-targets` runs it on
//! fleets of 1 and 3 as a smoke test. Figures: docs/performance.md.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};

/// The `i`-th homeserver of a generated fleet: the fleet example's fresh or
/// migrating spec with its own server name and host.
pub fn spec_text(i: usize) -> String {
    let (file, server, host) = if i % 2 == 0 {
        ("example-org.toml", "example.org", "matrix-org")
    } else {
        ("example-com.toml", "example.com", "matrix-com")
    };
    let text = std::fs::read_to_string(Path::new("examples/fleet").join(file))
        .expect("run from the repository root");
    text.replace(server, &format!("hs{i}.example"))
        .replace(host, &format!("hs{i}"))
}

fn write_fleet(dir: &Path, n: usize) -> Vec<Utf8PathBuf> {
    (0..n)
        .map(|i| {
            let path = dir.join(format!("hs{i}.toml"));
            std::fs::write(&path, spec_text(i)).unwrap();
            Utf8PathBuf::from_path_buf(path).unwrap()
        })
        .collect()
}

/// Peak resident memory since the last reset, in KiB (Linux; 0 elsewhere).
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Resets the peak to the current resident size (Linux >= 4.0).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Runs `f`, returning its result, wall time and peak memory (MiB) reached.
fn measure<T>(f: impl FnOnce() -> T) -> (T, Duration, f64) {
    reset_peak();
    let start = Instant::now();
    let value = f();
    let took = start.elapsed();
    (value, took, peak_kib() as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn bench(n: usize) {
    let work = tempfile::tempdir().unwrap();
    let specs = write_fleet(work.path(), n);
    let out = Utf8PathBuf::from_path_buf(work.path().join("out")).unwrap();

    let (fleet, check, check_mem) = measure(|| masgen::fleet::load(&specs).unwrap());
    assert!(fleet.is_ok(), "the generated fleet validates");
    let members = fleet.checked();
    let ((files, bytes), build, build_mem) = measure(|| {
        let (_, tree) = masgen::fleet::build_tree(&members, &masgen::flake_ref(&out)).unwrap();
        masgen::write::write_tree(&out, &tree, false).unwrap();
        (tree.len(), tree.values().map(String::len).sum::<usize>())
    });
    let (report, rebuild, _) = measure(|| {
        let (_, tree) = masgen::fleet::build_tree(&members, &masgen::flake_ref(&out)).unwrap();
        masgen::write::write_tree(&out, &tree, false).unwrap()
    });
    assert!(
        report.is_clean(),
        "a rebuild with nothing changed writes nothing"
    );
    let (steps, plan, plan_mem) = measure(|| plan_all(&members));
    let (changed, diff, diff_mem) = measure(|| diff_against(&members, &out));
    assert!(!changed, "the fleet's own tree has no changes");
    let copy = copy_tree(&out, &work.path().join("copy"));
    println!(
        "{n:5} homeservers: check {} ({check_mem:.0} MiB) | build {} ({build_mem:.0} MiB; {files} files, {:.1} MB) | rebuild unchanged {} | plan {} ({steps} steps, {plan_mem:.0} MiB) | diff {} ({diff_mem:.0} MiB) | cp -r of the output {}",
        ms(check),
        ms(build),
        bytes as f64 / 1e6,
        ms(rebuild),
        ms(plan),
        ms(diff),
        ms(copy),
    );
}

/// Every homeserver's plan from where its mode starts, rendered as text.
fn plan_all(members: &[&masgen::Checked]) -> usize {
    let opts = masgen::plan::Options {
        out_dir: "./out".into(),
        ..Default::default()
    };
    let mut steps = 0;
    for c in members {
        let from = match c.homeserver.mode {
            masgen::model::Mode::Fresh => masgen::plan::HostState::Fresh,
            masgen::model::Mode::Migrate => masgen::plan::HostState::SynapseOnly,
        };
        let p = masgen::plan::plan(&c.homeserver, from, "bench", &opts).unwrap();
        steps += p.steps.len();
        std::hint::black_box(masgen::plan::render_text(&p, false));
    }
    steps
}

/// `masgen diff --against out` of the whole fleet; whether anything changed.
fn diff_against(members: &[&masgen::Checked], out: &Utf8Path) -> bool {
    use masgen::diff;
    let (_, mut tree) = masgen::fleet::build_tree(members, &masgen::flake_ref(out)).unwrap();
    let (old, _) = diff::input::read_tree_sharing(out, &mut tree).unwrap();
    let against = diff::Against::Tree {
        path: out.to_string(),
    };
    let c = diff::compare::compare_trees("bench", against, &old, &tree).unwrap();
    std::hint::black_box(diff::render::text(&c, false));
    c.changed
}

/// `cp -r out copy`, the yardstick for writing the tree.
fn copy_tree(from: &Utf8Path, to: &PathBuf) -> Duration {
    let start = Instant::now();
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
    start.elapsed()
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = match std::env::var("MASGEN_BENCH_FLEETS") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) if benching => vec![1, 10, 100, 1000],
        Err(_) => vec![1, 3],
    };
    for n in sizes {
        bench(n);
    }
}
