//! `cargo bench --bench diagnostics`: time and peak memory of `masgen check`
//! on generated specs full of unknown keys (1 MB and 10 MB), the case that
//! once took quadratic time. `cargo test --all-targets` runs it once on a
//! small spec as a smoke test. Figures: docs/performance.md.

use std::time::{Duration, Instant};

/// A valid spec followed by unknown keys in `[migration]` up to `size` bytes.
fn spec_with_unknown_keys(size: usize) -> (String, usize) {
    let mut text = masgen::starter_spec(false);
    text.push_str("\n[migration]\n");
    let mut keys = 0;
    while text.len() < size {
        text.push_str(&format!("unknown_{keys:07} = \"value\"\n"));
        keys += 1;
    }
    (text, keys)
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

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = match std::env::var("MASGEN_BENCH_SIZES") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) if benching => vec![1_000_000, 10_000_000],
        Err(_) => vec![20_000],
    };
    for size in sizes {
        let (text, keys) = spec_with_unknown_keys(size);
        let bytes = text.len();
        reset_peak();
        let base = peak_kib();
        let start = Instant::now();
        let report = match masgen::check_source(masgen::spec::Source::new("bench.toml", text)) {
            Ok(_) => panic!("a spec with {keys} unknown keys validated"),
            Err(report) => report,
        };
        let printed = report.to_string();
        let took = start.elapsed();
        assert_eq!(report.errors, keys, "every unknown key is counted");
        assert_eq!(report.shown.len(), masgen::diag::MAX_SHOWN.min(keys));
        println!(
            "{bytes} bytes, {keys} unknown keys: check+render {}, {} bytes printed, peak memory +{} MiB",
            secs(took),
            printed.len(),
            peak_kib().saturating_sub(base) / 1024
        );
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
