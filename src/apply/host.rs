//! Where `masgen apply` runs commands: this machine, or a host over SSH
//! (`ssh TARGET -- sh -c '…'`, the way `nixos-rebuild --target-host` reaches
//! it). Every command is a shell script; the journal is a file on that host.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

/// Lines of a step's output the journal keeps.
const TAIL_LINES: usize = 40;
/// How long a gate check may take (a `curl` to a proxy that never answers).
const CHECK_LIMIT: Duration = Duration::from_secs(300);

pub struct Host {
    /// `user@host` for SSH; `None`: this machine.
    target: Option<String>,
    /// Prepended to PATH for every command (tests put stand-ins there).
    path_prefix: Option<String>,
    /// Where local commands run (the directory holding `out/`).
    workdir: Utf8PathBuf,
    /// Raised by the signal handlers: running checks are stopped too.
    stop: Arc<AtomicBool>,
}

/// How a step's script ended.
pub struct Ran {
    pub code: Option<i32>,
    pub tail: String,
    pub interrupted: bool,
    pub duration: Duration,
}

/// `s` quoted for a POSIX shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Waits for a child started in its own process group. When `stop` is
/// raised or `limit` passes, the group gets SIGTERM, then SIGKILL after
/// 10 s; the flag says whether that happened.
fn wait(
    child: &mut Child,
    stop: &AtomicBool,
    limit: Option<Duration>,
) -> std::io::Result<(ExitStatus, bool)> {
    let pid = rustix::process::Pid::from_child(child);
    let started = Instant::now();
    let mut killed_at: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, killed_at.is_some()));
        }
        let over = limit.is_some_and(|l| started.elapsed() > l);
        if stop.load(Ordering::SeqCst) || over {
            match killed_at {
                None => {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
                    killed_at = Some(Instant::now());
                }
                Some(t) if t.elapsed() > Duration::from_secs(10) => {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `flock -E`: the exit status that says another run holds the lock.
const BUSY: i32 = 75;

/// A run's hold on the host: released when dropped.
pub enum Lock {
    /// The open file holds the flock; closing it releases it.
    Local(#[allow(dead_code)] std::fs::File),
    Remote(Child),
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Lock::Remote(child) = self {
            // Closing stdin ends `cat`, and with it the remote flock.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// An exclusive lock on this machine; `None` when another run holds it.
fn local_lock(path: &Utf8Path) -> Result<Option<std::fs::File>> {
    use rustix::fs::{flock, FlockOperation};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {dir}: {e}"))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {path}: {e}"))?;
    match flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(f)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot lock {path}: {e}")),
    }
}

impl Host {
    pub fn new(
        target: Option<String>,
        path_prefix: Option<String>,
        workdir: Utf8PathBuf,
        stop: Arc<AtomicBool>,
    ) -> Host {
        Host {
            target,
            path_prefix,
            workdir,
            stop,
        }
    }

    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// Locks `path` (flock) on the host for as long as the guard lives;
    /// `None` when another run holds it. Over SSH the lock is held by a
    /// session running `flock` that ends when masgen closes its stdin or
    /// dies, so a lost connection releases it too.
    pub fn lock(&self, path: &Utf8Path) -> Result<Option<Lock>> {
        if self.target.is_none() {
            return local_lock(path).map(|f| f.map(Lock::Local));
        }
        let dir = path.parent().map(|d| d.as_str()).unwrap_or("/");
        let script = format!(
            "mkdir -p {dir} && exec flock -n -E {BUSY} {path} sh -c 'echo locked; exec cat >/dev/null'",
            dir = quote(dir),
            path = quote(path.as_str()),
        );
        let mut child = self
            .command(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot lock {path} on {}", self.describe()))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        if line.trim() == "locked" {
            return Ok(Some(Lock::Remote(child)));
        }
        let out = child.wait_with_output()?;
        match out.status.code() {
            Some(BUSY) => Ok(None),
            _ => anyhow::bail!(
                "cannot lock {path} on {}: {}",
                self.describe(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
    }

    fn command(&self, script: &str) -> Command {
        let mut cmd = match &self.target {
            None => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(script).current_dir(&self.workdir);
                c
            }
            Some(t) => {
                // ssh joins its arguments into one line for the remote shell.
                let mut c = Command::new("ssh");
                c.arg(t).arg("--").arg(format!("sh -c {}", quote(script)));
                c
            }
        };
        if let Some(prefix) = &self.path_prefix {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{prefix}:{path}"));
        }
        cmd
    }

    /// Runs a check (or a journal read/write): its exit status (`None`
    /// when it was stopped: a signal, or longer than CHECK_LIMIT), stdout
    /// and stderr.
    pub fn capture(&self, script: &str) -> Result<(Option<i32>, String, String)> {
        use std::os::unix::process::CommandExt;
        let mut child = self
            .command(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot run `{script}`"))?;
        let drain = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_string(&mut text);
                }
                text
            })
        };
        let out = drain(
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        );
        let err = drain(
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        );
        let (status, stopped) = wait(&mut child, &self.stop, Some(CHECK_LIMIT))?;
        let out = out.join().unwrap_or_default();
        let mut err = err.join().unwrap_or_default();
        if stopped {
            err.push_str(&format!(
                "\n(stopped by masgen: interrupted, or longer than {} s)",
                CHECK_LIMIT.as_secs()
            ));
            return Ok((None, out, err));
        }
        Ok((status.code(), out, err))
    }

    /// Runs a step's script in its own process group, echoing its output
    /// (stdout and stderr merged) to stderr as `echo_prefix` lines. When
    /// `stop` is raised (SIGINT, SIGTERM, SIGHUP), the group gets SIGTERM,
    /// then SIGKILL after 10 s.
    pub fn run(&self, script: &str, stop: &Arc<AtomicBool>, echo_prefix: &str) -> Result<Ran> {
        use std::os::unix::process::CommandExt;
        let started = Instant::now();
        let mut child = self
            .command(&format!("exec 2>&1\n{script}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot run the step's commands: {script}"))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let reader = {
            let out = child.stdout.take().expect("piped");
            let tail = tail.clone();
            let prefix = echo_prefix.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = writeln!(std::io::stderr(), "{prefix}{line}");
                    let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            })
        };
        let (status, interrupted) = wait(&mut child, stop, None)?;
        let _ = reader.join();
        let tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Ran {
            code: status.code(),
            tail: tail.iter().cloned().collect::<Vec<_>>().join("\n"),
            interrupted,
            duration: started.elapsed(),
        })
    }

    /// The text of a file on the host; `None` when it does not exist.
    pub fn read(&self, path: &Utf8Path) -> Result<Option<String>> {
        if self.target.is_none() {
            return match std::fs::read_to_string(path) {
                Ok(t) => Ok(Some(t)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(anyhow::anyhow!("cannot read {path}: {e}")),
            };
        }
        let q = quote(path.as_str());
        let (code, out, err) =
            self.capture(&format!("if [ -e {q} ]; then cat {q}; else exit 3; fi"))?;
        match code {
            Some(0) => Ok(Some(out)),
            Some(3) => Ok(None),
            _ => anyhow::bail!("cannot read {path} on {}: {}", self.describe(), err.trim()),
        }
    }

    /// Appends one line to a file on the host, creating its directory, and
    /// makes it durable before returning.
    pub fn append(&self, path: &Utf8Path, line: &str) -> Result<()> {
        let dir = path.parent().unwrap_or(Utf8Path::new("/"));
        if self.target.is_none() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the journal {path}"))?;
            // A torn last line (a crash mid-write) is ended first, so it
            // does not swallow this entry when the journal is read.
            let torn = std::fs::read(path)
                .map(|b| b.last().is_some_and(|&c| c != b'\n'))
                .unwrap_or(false);
            let text = if torn {
                format!("\n{line}\n")
            } else {
                format!("{line}\n")
            };
            f.write_all(text.as_bytes())?;
            f.sync_data()?;
            return Ok(());
        }
        let q = quote(path.as_str());
        let script = format!(
            "mkdir -p {} && {{ [ -z \"$(tail -c1 {q} 2>/dev/null)\" ] || echo >> {q}; }} && printf '%s\\n' {} >> {q} && sync {q}",
            quote(dir.as_str()),
            quote(line),
        );
        let (code, _, err) = self.capture(&script)?;
        anyhow::ensure!(
            code == Some(0),
            "cannot append to the journal {path} on {}: {}",
            self.describe(),
            err.trim()
        );
        Ok(())
    }

    pub fn describe(&self) -> String {
        match &self.target {
            None => "this machine".into(),
            Some(t) => t.clone(),
        }
    }
}
