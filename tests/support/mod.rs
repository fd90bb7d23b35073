//! Shared helpers for masgen integration tests: the example specs and
//! validating spec texts, locating external tools, throwaway PostgreSQL
//! clusters and nginx instances, a recording HTTP upstream, and a Nix 2.8
//! wrapper. Include with `mod support;`.
//!
//! Tools that are missing make a test SKIP locally (helpers return `None`)
//! but FAIL in CI (`CI` set), so CI can never silently skip coverage.
#![allow(dead_code)]

pub mod nixos;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

const SETUP_HINT: &str = "install it with scripts/setup-test-deps.sh";

// ---------------------------------------------------------------- basics

/// True when running in CI (`CI` set to anything but "", "false" or "0").
pub fn in_ci() -> bool {
    match std::env::var("CI") {
        Ok(v) => {
            let v = v.trim().to_ascii_lowercase();
            !(v.is_empty() || v == "false" || v == "0")
        }
        Err(_) => false,
    }
}

/// Panics in CI, prints a SKIP line locally. Returns `None` for `?`/`let-else`.
fn unavailable<T>(what: &str, why: &str) -> Option<T> {
    if in_ci() {
        panic!("{what} is required for {why}; {SETUP_HINT}");
    }
    eprintln!("SKIP: {what} is not available (needed for {why}); {SETUP_HINT}");
    None
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Shared read-only docs/schemas: `$MASGEN_SHARED_DIR` or `<repo>/../shared`.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("MASGEN_SHARED_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => {
            let d = repo_root().join("..").join("shared");
            d.canonicalize().unwrap_or(d)
        }
    }
}

pub fn is_root() -> bool {
    // /proc/self is owned by the effective uid; avoids a libc dependency.
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// True when running as root. Otherwise panics in CI and prints a SKIP line
/// locally (tests that run processes as other OS users need root).
/// Usage: `if !require_root("a PostgreSQL cluster") { return; }`
pub fn require_root(why: &str) -> bool {
    if is_root() {
        return true;
    }
    if in_ci() {
        panic!("root is required for {why} in CI (CI is set)");
    }
    eprintln!("SKIP: not root (needed for {why})");
    false
}

/// The permission bits of `path` (`0o7777` part of the mode).
pub fn mode_of(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Polls until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

// ----------------------------------------------------------------- specs

/// Every `examples/*.toml`, sorted; panics when there is none.
pub fn example_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(repo_root().join("examples"))
        .expect("read examples/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no examples/*.toml");
    paths
}

/// Every `examples/*.toml` as (file name, text), sorted by file name.
pub fn example_specs() -> Vec<(String, String)> {
    example_paths()
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read_to_string(&p).expect("read example"),
            )
        })
        .collect()
}

/// Every `examples/*.toml` as (file name, validated spec), sorted by file
/// name; panics when one does not validate.
pub fn checked_examples() -> Vec<(String, masgen::Checked)> {
    example_specs()
        .into_iter()
        .map(|(name, text)| {
            let checked = checked(&name, &text);
            (name, checked)
        })
        .collect()
}

/// The examples and the fleet's homeserver split across three hosts
/// (`fleet/example-net.toml`), validated.
pub fn checked_examples_and_split() -> Vec<(String, masgen::Checked)> {
    let mut all = checked_examples();
    let name = "fleet/example-net.toml";
    all.push((name.to_string(), checked(name, &example_text(name))));
    all
}

/// The text of `examples/<name>`.
pub fn example_text(name: &str) -> String {
    fs::read_to_string(repo_root().join("examples").join(name)).expect("read example")
}

/// Validates spec `text` read from `name`; panics with the rendered
/// diagnostics when it does not validate.
pub fn checked(name: &str, text: &str) -> masgen::Checked {
    masgen::check_source(masgen::spec::Source::new(name, text)).unwrap_or_else(|diags| {
        panic!(
            "{name} does not validate:\n{}",
            diags
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

// ----------------------------------------------------------------- tools

const PG_TOOLS: &[&str] = &[
    "initdb",
    "pg_ctl",
    "postgres",
    "psql",
    "pg_isready",
    "pg_config",
    "pg_dump",
    "pg_dumpall",
    "pg_restore",
    "createdb",
    "createuser",
    "dropdb",
    "dropuser",
];

fn is_executable(p: &Path) -> bool {
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `/usr/lib/postgresql/<ver>/bin`, newest version first (Debian keeps the
/// server binaries out of PATH).
fn pg_bin_dirs() -> Vec<PathBuf> {
    let mut vers: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    vers.sort_by_key(|(v, _)| std::cmp::Reverse(*v));
    vers.into_iter().map(|(_, p)| p).collect()
}

/// Finds an executable without failing: PATH, the sbin dirs, and for
/// PostgreSQL tools the versioned Debian bin dir first (so psql/pg_ctl/
/// initdb all come from the same version, not the pg_wrapper scripts).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    let mut dirs = Vec::new();
    if PG_TOOLS.contains(&name) {
        dirs.extend(pg_bin_dirs());
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// Finds `name`, or SKIPs locally / panics in CI.
/// Usage: `let Some(nginx) = require_tool("nginx", "proxy tests") else { return };`
pub fn require_tool(name: &str, why: &str) -> Option<PathBuf> {
    match find_tool(name) {
        Some(p) => Some(p),
        None => unavailable(&format!("`{name}`"), why),
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$;{}".contains(c)) {
            s.push_str(&format!(" '{}'", a.replace('\'', r"'\''")));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

/// Runs `cmd` and panics, with its stdout and stderr, unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd` (optionally feeding `stdin`); Err quotes the command and its
/// stderr/stdout.
fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<Output, String> {
    let shown = describe(cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("`{shown}`: {e}"))?;
    if let Some(input) = stdin {
        // Write from a thread so a chatty child cannot deadlock us.
        let mut pipe = child.stdin.take().expect("piped stdin");
        let input = input.to_owned();
        thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("`{shown}`: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "`{shown}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

fn runuser() -> PathBuf {
    find_tool("runuser").unwrap_or_else(|| PathBuf::from("/usr/sbin/runuser"))
}

/// `program` run as OS user `user` (via runuser) when we are root and the
/// user differs; otherwise run directly.
fn command_as(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(u) if is_root() && u != "root" => {
            let mut c = Command::new(runuser());
            c.arg("-u").arg(u).arg("--").arg(program);
            c
        }
        _ => Command::new(program),
    }
}

fn user_ids(name: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).arg(name).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn current_user_name() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".into())
}

/// Makes sure OS user `name` exists (`useradd --system --no-create-home`).
/// Returns false (after SKIP/panic as usual) when it cannot be created
/// because we are not root.
pub fn ensure_os_user(name: &str) -> bool {
    // Parallel test threads may ask for the same user at once.
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if user_ids(name).is_some() {
        return true;
    }
    if !is_root() {
        return unavailable::<()>(
            &format!("OS user `{name}`"),
            "tests that run processes as that user (run as root to create it)",
        )
        .is_some();
    }
    let useradd = find_tool("useradd").unwrap_or_else(|| PathBuf::from("/usr/sbin/useradd"));
    let shell = if Path::new("/usr/sbin/nologin").exists() {
        "/usr/sbin/nologin"
    } else {
        "/bin/false"
    };
    let res = run(
        Command::new(useradd).args([
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            shell,
            name,
        ]),
        None,
    );
    if user_ids(name).is_none() {
        panic!("could not create OS user `{name}`: {res:?}");
    }
    true
}

fn chown_to(path: &Path, user: &str) {
    let (uid, gid) = user_ids(user).unwrap_or_else(|| panic!("no OS user `{user}`"));
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {} to {user}: {e}", path.display()));
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

// -------------------------------------------------------------------- nix

/// Debian's nix-instantiate 2.8. Every call passes `--store dummy://`: the
/// default local store wants a writable /nix/var/nix (root or a daemon)
/// even for `--parse`, whereas the dummy store needs no state at all, is
/// safe for parallel threads, and still computes store paths for `./file`
/// references, `builtins.toFile` and `builtins.path`.
#[derive(Clone, Debug)]
pub struct NixTool {
    bin: PathBuf,
}

pub fn nix_instantiate() -> Option<NixTool> {
    require_tool("nix-instantiate", "parsing/evaluating generated Nix").map(|bin| NixTool { bin })
}

impl NixTool {
    pub fn path(&self) -> &Path {
        &self.bin
    }

    /// A `nix-instantiate --store dummy://` command; add your own args.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--store").arg("dummy://");
        // No <nixpkgs> or daemon lookups leaking in from the host.
        c.env_remove("NIX_PATH").env_remove("NIX_REMOTE");
        c
    }

    fn stdout(&self, args: &[&std::ffi::OsStr]) -> Result<String, String> {
        let out = run(self.command().args(args), None)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn parse_file(&self, file: &Path) -> Result<(), String> {
        self.stdout(&["--parse".as_ref(), file.as_os_str()])
            .map(drop)
    }

    pub fn parse_str(&self, expr: &str) -> Result<(), String> {
        self.stdout(&["--parse".as_ref(), "-E".as_ref(), expr.as_ref()])
            .map(drop)
    }

    pub fn eval_json_file(&self, file: &Path) -> Result<Value, String> {
        let args = ["--eval", "--strict", "--json"].map(std::ffi::OsStr::new);
        let mut all: Vec<&std::ffi::OsStr> = args.to_vec();
        all.push(file.as_os_str());
        parse_json(&self.stdout(&all)?)
    }

    pub fn eval_json_expr(&self, expr: &str) -> Result<Value, String> {
        let args = ["--eval", "--strict", "--json", "-E", expr].map(std::ffi::OsStr::new);
        parse_json(&self.stdout(&args)?)
    }
}

/// Evaluates `expr`, a function of `{ modulesDir, harness }` (both strings:
/// the repository's modules/ and tests/support/module_harness.nix, the stub
/// `lib`/`pkgs` a module is evaluated with alone), strictly to JSON.
pub fn eval_module_case(nix: &NixTool, expr: &str) -> Value {
    let out = run_ok(
        nix.command()
            .args(["--eval", "--strict", "--json", "--argstr", "modulesDir"])
            .arg(repo_root().join("modules"))
            .arg("--argstr")
            .arg("harness")
            .arg(repo_root().join("tests/support/module_harness.nix"))
            .arg("-E")
            .arg(expr),
    );
    serde_json::from_slice(&out.stdout).expect("nix-instantiate printed JSON")
}

fn parse_json(s: &str) -> Result<Value, String> {
    serde_json::from_str(s).map_err(|e| format!("invalid JSON from nix-instantiate ({e}): {s}"))
}

// ---------------------------------------------------------------- synapse

/// The venv python with `matrix-synapse` installed: `$MASGEN_SYNAPSE_PYTHON`,
/// else `${MASGEN_SYNAPSE_VENV:-$HOME/.cache/masgen/synapse-venv}/bin/python`.
pub fn synapse_python() -> Option<PathBuf> {
    static CACHE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let res = CACHE.get_or_init(|| {
        let py = match std::env::var_os("MASGEN_SYNAPSE_PYTHON") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => {
                let venv = match std::env::var_os("MASGEN_SYNAPSE_VENV") {
                    Some(v) if !v.is_empty() => PathBuf::from(v),
                    _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                        .join(".cache/masgen/synapse-venv"),
                };
                venv.join("bin/python")
            }
        };
        run(Command::new(&py).args(["-c", "import synapse"]), None)
            .map(|_| py.clone())
            .map_err(|e| format!("a Python with matrix-synapse at {} ({e})", py.display()))
    });
    match res {
        Ok(p) => Some(p.clone()),
        Err(what) => unavailable(what, "running Synapse"),
    }
}

/// A Python with a Synapse older than 1.136 (the MSC3861 era), from
/// `MASGEN_SYNAPSE_OLD_PYTHON` or the venv `scripts/setup-test-deps.sh` makes.
pub fn old_synapse_python() -> Option<PathBuf> {
    let py = match std::env::var_os("MASGEN_SYNAPSE_OLD_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cache/masgen/synapse-1.135-venv/bin/python"),
    };
    match run(
        Command::new(&py).args(["-c", "import synapse, authlib"]),
        None,
    ) {
        Ok(_) => Some(py),
        Err(e) => unavailable(
            &format!(
                "a Python with matrix-synapse 1.135 and authlib at {} ({e})",
                py.display()
            ),
            "loading the MSC3861 form in an old Synapse",
        ),
    }
}

// --------------------------------------------------------------- postgres

/// A throwaway PostgreSQL cluster in a temp dir, reachable only through a
/// unix socket in that dir. As root it runs as the `postgres` OS user
/// (PostgreSQL refuses to run as root). Stopped on drop, even on panic.
pub struct PgCluster {
    dir: tempfile::TempDir,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    /// OS user running the server (and owning the superuser role).
    os_user: String,
}

impl PgCluster {
    /// Cluster with `local all all peer` (like NixOS' default).
    pub fn start() -> Option<PgCluster> {
        Self::start_with_auth("peer")
    }

    /// Cluster whose initial pg_hba.conf uses `local_auth` ("peer", "trust",
    /// ...) for every local connection.
    pub fn start_with_auth(local_auth: &str) -> Option<PgCluster> {
        let why = "running a throwaway PostgreSQL";
        let pg_ctl = require_tool("pg_ctl", why)?;
        let bin_dir = pg_ctl.parent().expect("pg_ctl has a parent").to_path_buf();
        for t in ["initdb", "postgres", "psql"] {
            if !is_executable(&bin_dir.join(t)) {
                return unavailable(&format!("`{}`", bin_dir.join(t).display()), why);
            }
        }
        let os_user = if is_root() {
            if !ensure_os_user("postgres") {
                return None;
            }
            "postgres".to_owned()
        } else {
            current_user_name()
        };

        let dir = tempfile::Builder::new()
            .prefix("masgen-pg-")
            .tempdir()
            .expect("create temp dir");
        let data_dir = dir.path().join("data");
        let socket_dir = dir.path().join("sock");
        fs::create_dir(&socket_dir).expect("create socket dir");
        // Other OS users (peer-auth tests) must reach the socket.
        set_mode(dir.path(), 0o755);
        set_mode(&socket_dir, 0o755);
        if is_root() {
            chown_to(dir.path(), &os_user);
            chown_to(&socket_dir, &os_user);
        }

        let initdb = run(
            command_as(Some(&os_user), &bin_dir.join("initdb"))
                .arg("-D")
                .arg(&data_dir)
                .arg("-U")
                .arg(&os_user)
                .arg(format!("--auth-local={local_auth}"))
                .args([
                    "--auth-host=reject",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ])
                .current_dir("/"),
            None,
        );
        if let Err(e) = initdb {
            panic!("initdb failed: {e}");
        }

        let port = free_port();
        let conf = format!(
            "\n# masgen test cluster\n\
             listen_addresses = ''\n\
             port = {port}\n\
             unix_socket_directories = '{}'\n\
             unix_socket_permissions = 0777\n\
             max_connections = 50\n\
             shared_buffers = 32MB\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
            socket_dir.display()
        );
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(data_dir.join("postgresql.conf"))
            .expect("open postgresql.conf");
        f.write_all(conf.as_bytes()).expect("write postgresql.conf");

        let cluster = PgCluster {
            dir,
            data_dir,
            socket_dir,
            bin_dir,
            port,
            os_user,
        };
        let log = cluster.log_path();
        let started = run(
            command_as(Some(&cluster.os_user), &cluster.bin_dir.join("pg_ctl"))
                .arg("start")
                .args(["-w", "-t", "60", "-s", "-D"])
                .arg(&cluster.data_dir)
                .arg("-l")
                .arg(&log)
                .current_dir("/"),
            None,
        );
        if let Err(e) = started {
            panic!("pg_ctl start failed: {e}\n--- log ---\n{}", cluster.log());
        }
        Some(cluster)
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }
    /// A script running `pg_dump` against this cluster (a unit's would use
    /// /run/postgresql:5432), for masgen-backup's `PG_DUMP`.
    pub fn pg_dump_script(&self) -> String {
        format!(
            "#!/bin/sh\nexec '{}' -h '{}' -p '{}' \"$@\"\n",
            self.bin_dir.join("pg_dump").display(),
            self.socket_dir.display(),
            self.port
        )
    }
    /// A directory every user may read (pg_dump runs as `postgres` through
    /// runuser) with that `pg_dump` and `masgen-backup`, the real
    /// modules/scripts/backup.sh using it.
    pub fn backup_tools(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let exe = |name: &str, text: String| {
            let p = dir.path().join(name);
            fs::write(&p, text).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let pg_dump = exe("pg_dump", self.pg_dump_script());
        let script = repo_root().join("modules/scripts/backup.sh");
        exe(
            "masgen-backup",
            format!(
                "#!/bin/sh\nPG_DUMP='{}' exec bash '{}' \"$@\"\n",
                pg_dump.display(),
                script.display()
            ),
        );
        dir
    }
    /// OS user running the server; also the name of the superuser role.
    pub fn superuser(&self) -> &str {
        &self.os_user
    }
    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }
    /// The server log, for assertion messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// libpq URI over the socket (e.g. for Synapse/MAS configs).
    pub fn uri(&self, db: &str, role: &str) -> String {
        let host = self.socket_dir.display().to_string().replace('/', "%2F");
        format!("postgresql://{role}@{host}:{}/{db}", self.port)
    }

    /// Runs `sql` (fed on stdin, so several statements and CREATE DATABASE
    /// work) with psql as OS user `os_user`, connecting as `role` to `db`.
    /// Output is unaligned, tuples only, `|`-separated, trailing newline
    /// trimmed.
    pub fn psql_as(
        &self,
        os_user: &str,
        db: &str,
        role: &str,
        sql: &str,
    ) -> Result<String, String> {
        if !is_root() && os_user != current_user_name() {
            return Err(format!(
                "cannot run psql as OS user `{os_user}` without root"
            ));
        }
        let mut cmd = command_as(Some(os_user), &self.bin_dir.join("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", role, "-d", db, "-f", "-"])
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS")
            .env("PGCONNECT_TIMEOUT", "10")
            .current_dir("/");
        let out = run(&mut cmd, Some(sql))?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_owned())
    }

    /// `sql` as the superuser in database `postgres`.
    pub fn superuser_sql(&self, sql: &str) -> Result<String, String> {
        self.superuser_sql_in("postgres", sql)
    }

    pub fn superuser_sql_in(&self, db: &str, sql: &str) -> Result<String, String> {
        self.psql_as(&self.os_user, db, &self.os_user, sql)
    }

    /// Installs pg_hba.conf and reloads. A `local all <superuser> peer` line
    /// is prepended so the helpers keep working. Err if PostgreSQL reports
    /// errors in the file (pg_hba_file_rules).
    pub fn set_hba(&self, content: &str) -> Result<(), String> {
        let text = format!(
            "# added by tests/support so the helpers keep working\n\
             local all {} peer\n{content}\n",
            self.os_user
        );
        self.write_conf_file("pg_hba.conf", &text)?;
        self.reload()?;
        let errs = self.superuser_sql(
            "SELECT line_number || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL",
        )?;
        if errs.is_empty() {
            Ok(())
        } else {
            Err(format!("pg_hba.conf errors:\n{errs}\n--- file ---\n{text}"))
        }
    }

    /// Installs pg_ident.conf and reloads. Err if PostgreSQL reports errors
    /// in the file (pg_ident_file_mappings, PostgreSQL >= 15).
    pub fn set_ident(&self, content: &str) -> Result<(), String> {
        self.write_conf_file("pg_ident.conf", content)?;
        self.reload()?;
        let errs = self
            .superuser_sql(
                "SELECT line_number || ': ' || error FROM pg_ident_file_mappings WHERE error IS NOT NULL",
            )
            .unwrap_or_default();
        if errs.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "pg_ident.conf errors:\n{errs}\n--- file ---\n{content}"
            ))
        }
    }

    fn write_conf_file(&self, name: &str, content: &str) -> Result<(), String> {
        let path = self.data_dir.join(name);
        fs::write(&path, content).map_err(|e| format!("write {}: {e}", path.display()))?;
        if is_root() {
            chown_to(&path, &self.os_user);
        }
        Ok(())
    }

    /// Listens on TCP at `addresses` (listen_addresses, e.g.
    /// "127.0.0.1,127.0.0.2") as well as the socket: a restart. Host
    /// connections still need pg_hba lines (initdb's `host` lines reject).
    pub fn listen_tcp(&self, addresses: &str) -> Result<(), String> {
        self.superuser_sql(&format!(
            "ALTER SYSTEM SET listen_addresses = '{}'",
            addresses.replace('\'', "''")
        ))?;
        run(
            command_as(Some(&self.os_user), &self.bin_dir.join("pg_ctl"))
                .args(["restart", "-w", "-t", "60", "-s", "-m", "fast", "-D"])
                .arg(&self.data_dir)
                .arg("-l")
                .arg(self.log_path())
                .current_dir("/"),
            None,
        )
        .map(|_| ())
        .map_err(|e| format!("pg_ctl restart: {e}\n--- log ---\n{}", self.log()))
    }

    /// Reloads the config and waits until new backends see it: the
    /// postmaster reloads asynchronously on SIGHUP, so poll
    /// pg_conf_load_time() (inherited by each new backend) until it moves.
    pub fn reload(&self) -> Result<(), String> {
        let before = self.superuser_sql("SELECT pg_conf_load_time()")?;
        self.superuser_sql("SELECT pg_reload_conf()")?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.superuser_sql("SELECT pg_conf_load_time()")? != before {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "PostgreSQL did not reload its config\n{}",
                    self.log()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = command_as(Some(&self.os_user), &self.bin_dir.join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-w", "-s", "-D"])
            .arg(&self.data_dir)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// -------------------------------------------------------- recording upstream

/// Tiny HTTP/1.1 server on 127.0.0.1 answering every request with 200 and
/// `{"upstream", "method", "path", "headers", "body"}` (header names
/// lowercased, repeated headers joined with ", ", path = request-target as
/// received). Stops on drop.
pub struct RecordingUpstream {
    name: String,
    port: u16,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<Value>>>,
    thread: Option<JoinHandle<()>>,
}

impl RecordingUpstream {
    pub fn start(name: &str) -> RecordingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, requests, name) = (stop.clone(), requests.clone(), name.to_owned());
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let (requests, name) = (requests.clone(), name.clone());
                    // One thread per connection so a stalled client cannot block others.
                    thread::spawn(move || {
                        let _ = serve_one(stream, &name, &requests);
                    });
                }
            })
        };
        RecordingUpstream {
            name: name.to_owned(),
            port,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    /// Every request seen so far, in the same JSON shape as the responses.
    pub fn requests(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(stream: TcpStream, name: &str, log: &Mutex<Vec<Value>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(()); // e.g. the wake-up connection from Drop
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();

    let mut headers = Map::new();
    let mut content_length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
            if k == "content-length" {
                content_length = v.parse().unwrap_or(0);
            }
            let merged = match headers.get(&k).and_then(Value::as_str) {
                Some(old) => format!("{old}, {v}"),
                None => v,
            };
            headers.insert(k, Value::String(merged));
        }
    }
    let mut body = vec![0u8; content_length.min(1 << 20)];
    reader.read_exact(&mut body)?;

    let record = json!({
        "upstream": name,
        "method": method,
        "path": path,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(record.clone());
    let payload = record.to_string();
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    )?;
    if method != "HEAD" {
        out.write_all(payload.as_bytes())?;
    }
    out.flush()?;
    let _ = out.shutdown(Shutdown::Both);
    Ok(())
}

// ------------------------------------------------------------------ nginx

pub mod check;
pub mod compare;
pub mod hosts;
mod nginx;
pub mod routing;
pub mod schema;
pub mod synapse;
pub mod task_units;
pub mod units;
#[allow(unused_imports)]
pub use nginx::*;

// ------------------------------------------------------------ http client

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased, in order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.body))
    }
}

/// GET `path` from 127.0.0.1:`port` with the given Host header. Panics on
/// I/O errors.
pub fn http_get(port: u16, host_header: &str, path: &str) -> (u16, String) {
    let r = http_request(port, "GET", host_header, path, &[], "")
        .unwrap_or_else(|e| panic!("GET http://127.0.0.1:{port}{path} (Host: {host_header}): {e}"));
    (r.status, r.body)
}

/// One HTTP/1.1 request with `Connection: close` to 127.0.0.1:`port`.
pub fn http_request(
    port: u16,
    method: &str,
    host_header: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<HttpResponse, String> {
    let to = (std::net::Ipv4Addr::LOCALHOST, port);
    http_request_to(to, method, host_header, path, headers, body)
}

/// [`http_request`] to any IPv4 address (say, another loopback address
/// standing for another host).
pub fn http_request_to(
    to: (std::net::Ipv4Addr, u16),
    method: &str,
    host_header: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<HttpResponse, String> {
    let io = |e: std::io::Error| e.to_string();
    let mut s = TcpStream::connect(to).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(io)?;

    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            format!(
                "no header terminator in response: {:?}",
                String::from_utf8_lossy(&raw)
            )
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_str = String::from_utf8_lossy(&data[..eol]);
        let size_hex = size_str.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|e| format!("bad chunk size {size_hex:?}: {e}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
}
