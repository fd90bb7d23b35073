//! Order-keeping parallel map over the cores of the machine, for the
//! independent parts of a fleet's build (each homeserver's spec, files and
//! plan; each file's hash or comparison with the disk).
//!
//! The results come back in the order of the input, so whatever is made
//! from them is byte-for-byte what a sequential loop makes; a closure's
//! failure is a value like any other, and the caller picks the first one in
//! input order, as a sequential loop that stops at the first error would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Below this many items a map runs on the calling thread: a thread costs
/// more than it saves for a handful of small items (one homeserver, the
/// tests' trees).
const MIN_PARALLEL: usize = 2;

/// How many threads to use: the cores the process may run on, at most
/// `items`. `MASGEN_THREADS` overrides it (1 = sequential, e.g. to compare).
fn threads(items: usize) -> usize {
    let cores = std::env::var("MASGEN_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    cores.min(items).max(1)
}

/// `(a(), b())` with the two at once: `a` on a thread of its own, `b` on
/// the calling thread (it may borrow mutably); a panic in either is the
/// caller's.
pub fn both<A: Send, B>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    std::thread::scope(|s| {
        let a = s.spawn(a);
        let b = b();
        let a = a.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        (a, b)
    })
}

/// `items.iter().map(f).collect()`, with the items handed out `chunk` at a
/// time to one thread per core (a busy core takes fewer chunks).
pub fn map<T: Sync, R: Send>(items: &[T], chunk: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let chunk = chunk.max(1);
    let n = threads(items.len().div_ceil(chunk));
    if n <= 1 || items.len() < MIN_PARALLEL {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, Vec<R>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| loop {
                let start = next.fetch_add(chunk, Ordering::Relaxed);
                if start >= items.len() {
                    break;
                }
                let end = (start + chunk).min(items.len());
                let part: Vec<R> = items[start..end].iter().map(&f).collect();
                done.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((start, part));
            });
        }
    });
    let mut parts = done.into_inner().unwrap_or_else(|e| e.into_inner());
    parts.sort_unstable_by_key(|(start, _)| *start);
    parts.into_iter().flat_map(|(_, part)| part).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The results keep the input's order whatever the chunk size, also
    /// when items take different times.
    #[test]
    fn results_keep_the_input_order() {
        let items: Vec<u64> = (0..1000).collect();
        for chunk in [1, 3, 64, 5000] {
            let out = map(&items, chunk, |&i| {
                if i % 7 == 0 {
                    std::thread::yield_now();
                }
                i * 2
            });
            assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        }
        assert!(map(&[] as &[u8], 4, |&b| b).is_empty());
    }

    /// More than one thread really runs when there is more than one item
    /// and more than one core: each item waits (up to 10 s, for a loaded
    /// machine) until another thread than its own has taken an item.
    #[test]
    fn work_is_shared_between_threads() {
        // The machine's cores, not `threads`: that is what is tested.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cores < 2 || std::env::var_os("MASGEN_THREADS").is_some() {
            eprintln!("SKIP: one core only, or MASGEN_THREADS set");
            return;
        }
        let seen = Mutex::new(std::collections::HashSet::new());
        let items: Vec<u32> = (0..8).collect();
        let start = std::time::Instant::now();
        map(&items, 1, |_| loop {
            let me = std::thread::current().id();
            let mut ids = seen.lock().unwrap();
            ids.insert(me);
            if ids.len() > 1 || start.elapsed().as_secs() >= 10 {
                break;
            }
            drop(ids);
            std::thread::sleep(std::time::Duration::from_millis(1));
        });
        assert!(seen.lock().unwrap().len() > 1, "one thread did it all");
    }

    #[test]
    fn both_gives_both_results_and_passes_a_panic_on() {
        let mut seen = Vec::new();
        let (a, b) = both(
            || 1 + 1,
            || {
                seen.push("b");
                "two"
            },
        );
        assert_eq!((a, b, seen), (2, "two", vec!["b"]));
        let caught = std::panic::catch_unwind(|| both(|| panic!("in a"), || ()));
        assert!(caught.is_err());
    }
}
