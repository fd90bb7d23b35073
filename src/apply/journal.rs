//! The journal of `masgen apply`: JSON lines in `<dir>/<host>.jsonl` on the
//! host, appended and synced one at a time. A step is written `started`
//! before it runs and `finished`, `failed`, `warnings` or `interrupted`
//! after, so a run cut off (Ctrl-C, a lost SSH connection, a crash) leaves
//! a `started` without an end, which the next run reports.

use anyhow::Result;
use camino::Utf8PathBuf;
use serde::{Deserialize, Serialize};

use super::host::Host;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// A run begins: the plan it follows is in `detail`.
    RunStarted,
    Started,
    Finished,
    Failed,
    /// Stopped at syn2mas warnings (exit 11) without --accept-warnings.
    Warnings,
    Interrupted,
    /// The gate held before the step ran.
    Skipped,
    /// The operator answered no at the confirmation.
    Declined,
    RunEnded,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// UTC, RFC 3339.
    pub at: String,
    /// The run's id (a ULID), shared by its lines.
    pub run: String,
    pub event: Event,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// What failed, why it was skipped, the plan of a run, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The last lines of the step's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tail: Option<String>,
}

impl Entry {
    pub fn new(run: &str, event: Event, step: Option<&str>) -> Entry {
        Entry {
            at: now(),
            run: run.into(),
            event,
            step: step.map(str::to_string),
            exit_code: None,
            duration_ms: None,
            detail: None,
            output_tail: None,
        }
    }

    pub fn detail(mut self, d: impl Into<String>) -> Entry {
        self.detail = Some(d.into());
        self
    }

    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub struct Journal<'h> {
    host: &'h Host,
    pub path: Utf8PathBuf,
    pub run: String,
}

impl<'h> Journal<'h> {
    pub fn new(host: &'h Host, dir: &str, host_name: &str) -> Journal<'h> {
        Journal {
            host,
            path: Utf8PathBuf::from(dir).join(format!("{host_name}.jsonl")),
            run: ulid::Ulid::new().to_string(),
        }
    }

    pub fn entries(&self) -> Result<Vec<Entry>> {
        let text = self.host.read(&self.path)?.unwrap_or_default();
        // A torn last line (power loss mid-write) is skipped, not fatal.
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// A step some earlier run started and never ended.
    pub fn unfinished(&self) -> Result<Option<Entry>> {
        let mut open: Option<Entry> = None;
        for e in self.entries()? {
            match e.event {
                Event::Started => open = Some(e),
                Event::RunStarted | Event::RunEnded | Event::Skipped | Event::Declined => {}
                _ => {
                    if open.as_ref().is_some_and(|o| o.step == e.step) {
                        open = None;
                    }
                }
            }
        }
        Ok(open)
    }

    pub fn write(&self, e: &Entry) -> Result<()> {
        self.host.append(&self.path, &e.line())
    }
}

/// The current time, UTC, RFC 3339 with milliseconds.
pub fn now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// A torn last line (a crash mid-write) is ended before the next entry,
    /// so the entry after it is read back, locally and through a shell as on
    /// a remote host (`sh` stands in for ssh).
    #[test]
    fn an_entry_after_a_torn_line_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        // A stand-in `ssh HOST -- LINE`: runs LINE with the local shell.
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("ssh"), "#!/bin/sh\nshift 2\nexec sh -c \"$*\"\n").unwrap();
        let mut perms = std::fs::metadata(bin.join("ssh")).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(bin.join("ssh"), perms).unwrap();
        for target in [None, Some("root@host".to_string())] {
            let host = Host::new(
                target.clone(),
                Some(bin.to_string()),
                dir.clone(),
                stop.clone(),
            );
            let name = if target.is_some() { "remote" } else { "local" };
            let journal = Journal::new(&host, dir.as_str(), name);
            std::fs::write(&journal.path, "{\"at\":\"2026-").unwrap();
            journal
                .write(&Entry::new("01J", Event::RunEnded, None))
                .unwrap();
            let entries = journal.entries().unwrap();
            assert_eq!(entries.len(), 1, "{name}: {entries:?}");
        }
    }

    #[test]
    fn now_is_rfc3339_utc() {
        let n = super::now();
        assert_eq!(n.len(), 24, "{n}");
        assert!(n.ends_with('Z') && n.as_bytes()[10] == b'T', "{n}");
        assert!(n.as_str() > "2024-01-01", "{n}");
    }
}
