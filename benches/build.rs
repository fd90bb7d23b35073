//! `cargo bench`: time per run and peak memory of the compiler stages
//! on the bundled examples (no criterion: a plain loop with `Instant`).

use std::time::Instant;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // once as a smoke test.
    let benching = std::env::args().any(|a| a == "--bench");
    let iterations: u32 = std::env::var("MASGEN_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 200 } else { 1 });
    let mut paths: Vec<_> = std::fs::read_dir("examples")
        .expect("run from the repository root")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.display().to_string();
        let start = Instant::now();
        let mut bytes = 0usize;
        for _ in 0..iterations {
            let checked = masgen::check_source(masgen::spec::Source::new(&name, text.clone()))
                .unwrap_or_else(|d| panic!("{name}: {d:?}"));
            let (_, tree) = masgen::build_tree(&checked).unwrap();
            bytes = tree.values().map(String::len).sum();
        }
        let per = start.elapsed() / iterations;
        println!(
            "{name}: check+build {per:?} per run, {bytes} bytes of output ({iterations} runs)"
        );
    }
    // Peak memory of the whole run (Linux), the other number that matters.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
            println!(
                "peak resident memory: {}",
                line.trim_start_matches("VmHWM:").trim()
            );
        }
    }
}
