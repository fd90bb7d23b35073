//! `cargo bench --bench diagnostics`: time and peak memory of `masgen check`
//! on generated specs full of unknown keys (1 MB and 10 MB), the case that
//! once took quadratic time: the text report (50 shown, with excerpts) and
//! the JSON report (every diagnostic), with the keys on many lines and on
//! one line. `cargo test --all-targets` runs it once on a small spec as a
//! smoke test. Figures: docs/performance.md.

use std::time::{Duration, Instant};

/// A valid spec with unknown keys in `migration` up to `size` bytes: one a
/// line in a `[migration]` table after it, or all in one inline table on
/// one line before it (root keys come before the first table).
fn spec_with_unknown_keys(size: usize, one_line: bool) -> (String, usize) {
    let starter = masgen::starter_spec(false);
    let mut text = String::from(if one_line {
        "migration = { "
    } else {
        "\n[migration]\n"
    });
    let mut keys = 0;
    while text.len() + starter.len() < size {
        if one_line {
            text.push_str(&format!("unknown_{keys:07} = \"value\", "));
        } else {
            text.push_str(&format!("unknown_{keys:07} = \"value\"\n"));
        }
        keys += 1;
    }
    if one_line {
        text.push_str("last = 1 }\n");
        (text + &starter, keys + 1)
    } else {
        (starter + &text, keys)
    }
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
        for one_line in [false, true] {
            for all in [false, true] {
                run(size, one_line, all);
            }
        }
    }
}

/// One measurement: `check_source` and printing its report, as text (the
/// first 50) or, with `all`, as JSON Lines (every diagnostic).
fn run(size: usize, one_line: bool, all: bool) {
    let (text, keys) = spec_with_unknown_keys(size, one_line);
    let bytes = text.len();
    reset_peak();
    let base = peak_kib();
    let start = Instant::now();
    let mut source = masgen::spec::Source::new("bench.toml", text);
    if all {
        source = source.all_diagnostics();
    }
    let report = match masgen::check_source(source) {
        Ok(_) => panic!("a spec with {keys} unknown keys validated"),
        Err(report) => report,
    };
    let printed = if all {
        masgen::diag::format::json_lines(&report)
    } else {
        report.to_string()
    };
    let took = start.elapsed();
    // With the keys in an inline table, the table's key counts as well.
    let unknown = keys + usize::from(one_line);
    assert!(report.errors >= keys, "every unknown key is counted");
    let shown = if all {
        report.errors
    } else {
        masgen::diag::MAX_SHOWN
    };
    assert_eq!(report.shown.len(), shown.min(unknown));
    println!(
        "{bytes} bytes, {keys} unknown keys{}, {}: check+render {}, {} bytes printed, peak memory +{} MiB",
        if one_line { " on one line" } else { "" },
        if all { "JSON, all" } else { "text, 50" },
        secs(took),
        printed.len(),
        peak_kib().saturating_sub(base) / 1024
    );
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
