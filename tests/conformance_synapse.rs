//! Conformance: what masgen writes for Synapse is what a real Synapse
//! (matrix-synapse 1.163.2 from PyPI, see scripts/setup-test-deps.sh) accepts,
//! for every example spec (examples/*.toml) and every phase.
//!
//! * `loader_accepts_every_phase`: Synapse's own loader
//!   (`python -m synapse.config -c homeserver.yaml -c extra…`, i.e.
//!   `synapse/config/__main__.py`, which runs `HomeServerConfig.load_config`
//!   over every config section) accepts each phase's settings, and reads back
//!   what the phase means (delegation on/off, the pepper from the runtime file).
//! * `synapse_starts_and_serves_every_example`: Synapse really starts against
//!   PostgreSQL. Prepare phase: the login flows are the ones the spec's TOML
//!   names (read in the test, not taken from masgen's output), and
//!   shared-secret registration, password login and `whoami` work. Final
//!   phase: Synapse starts with delegation on although MAS is not running
//!   (MAS is not packaged anywhere reachable from this test environment: not
//!   on crates.io, PyPI, Debian or npm), answers 404 `M_UNRECOGNIZED` on
//!   `/_matrix/client/v3/login` and the shared-secret register API — which
//!   is why nginx must send the compat routes to MAS — and 401 on MAS's API.
//! * `conflicts_table_matches_real_synapse`: every entry of
//!   `masgen::rules::DELEGATION_CONFLICTS` is refused by masgen's validation
//!   in every example, and by Synapse's loader in one delegating config
//!   (`one_final_phase` says why one is enough).
//! * `secret_contents_never_reach_generated_files`: canary secret contents
//!   appear nowhere in masgen's output, yet Synapse reads them from the files.
//!
//! Every Synapse process of this file runs under one mutex (`serial()`): a
//! Synapse start is CPU-heavy and the suite must stay fast on 2 cores.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use masgen::lower::{HostPhase, Phase, PASSWORD_CONFIG_PATH};
use masgen::rules::DELEGATION_CONFLICTS;
use serde_json::{json, Value};
use support::*;

// ------------------------------------------------------------------ specs

/// Only one Synapse (or Synapse loader) at a time in this test binary.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

// ----------------------------------------------------------- secret files

/// Stand-ins for the host's secret files, in a temp dir. Each gets a unique
/// canary content so a leak into generated files can be detected.
struct Secrets {
    dir: PathBuf,
    /// Original path (`/run/secrets/…`) → (stand-in path, canary strings in it).
    files: BTreeMap<String, (PathBuf, Vec<String>)>,
}

fn write_mode(path: &Path, content: &str, mode: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create dir");
    }
    // Files may be re-written (0400 ones too): remove first.
    let _ = fs::remove_file(path);
    fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

impl Secrets {
    fn new(dir: PathBuf) -> Secrets {
        fs::create_dir_all(&dir).expect("create secrets dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod");
        Secrets {
            dir,
            files: BTreeMap::new(),
        }
    }

    /// The stand-in for `original`, created (mode 0600) on first use. `key`
    /// is the settings key that points at it and decides the file's format.
    fn file(&mut self, original: &str, key: &str) -> PathBuf {
        if let Some((p, _)) = self.files.get(original) {
            return p.clone();
        }
        let rel = original.trim_start_matches('/').replace('/', "__");
        let path = self.dir.join(&rel);
        let tag: String = original
            .rsplit('/')
            .next()
            .unwrap_or("x")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let canary = format!("masgen-canary-{tag}-{:x}", fxhash(original));
        let (content, canaries) = match key {
            // Synapse generates it (nixpkgs' preStart runs --generate-keys).
            "signing_key_path" => {
                self.files.insert(original.into(), (path.clone(), vec![]));
                return path;
            }
            "app_service_config_files" => {
                let (a, h) = (format!("{canary}-as"), format!("{canary}-hs"));
                (
                    format!(
                        "id: {tag}\nurl: null\nas_token: {a}\nhs_token: {h}\nsender_localpart: {tag}-bot\nnamespaces:\n  users: []\n  aliases: []\n  rooms: []\n"
                    ),
                    vec![a, h],
                )
            }
            // libpq passfile: host:port:db:user:password.
            "passfile" => (format!("*:*:*:*:{canary}\n"), vec![canary]),
            // Extra Synapse config files from the spec: any YAML mapping.
            "extra_config_file" => (format!("masgen_test_canary: {canary}\n"), vec![canary]),
            // The pepper: the module strips one trailing newline; MAS reads it
            // verbatim, so a shared pepper file has none.
            "pepper" => (canary.clone(), vec![canary]),
            _ => (format!("{canary}\n"), vec![canary]),
        };
        write_mode(&path, &content, 0o600);
        self.files.insert(original.into(), (path.clone(), canaries));
        path
    }

    fn canaries(&self) -> Vec<String> {
        self.files
            .values()
            .flat_map(|(_, c)| c.iter().cloned())
            .collect()
    }

    /// Content of the stand-in, trimmed the way Synapse trims `*_path` secrets.
    fn value(&self, original: &str) -> Option<String> {
        let (p, _) = self.files.get(original)?;
        Some(fs::read_to_string(p).ok()?.trim().to_string())
    }
}

/// Small stable hash (FNV-1a) so canaries differ per file but not per run.
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Rewrites every string value starting with `/run/secrets/` to its
/// stand-in (creating it), and `/var/lib/matrix-synapse/…` (nixpkgs' dataDir)
/// into the test's data dir.
fn rewrite_paths(v: &mut Value, key: &str, secrets: &mut Secrets, data_dir: &Path) {
    match v {
        Value::String(s) if s.starts_with("/run/secrets/") => {
            *s = secrets.file(s, key).display().to_string();
        }
        Value::String(s) if s.starts_with("/var/lib/matrix-synapse/") => {
            let rel = s.trim_start_matches("/var/lib/matrix-synapse/");
            *s = data_dir.join(rel).display().to_string();
        }
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                rewrite_paths(v, k, secrets, data_dir);
            }
        }
        // List elements keep the list's key (`app_service_config_files`).
        Value::Array(a) => {
            for v in a {
                rewrite_paths(v, key, secrets, data_dir);
            }
        }
        _ => {}
    }
}

/// Dotted-path insert (creating objects on the way).
fn insert_path(settings: &mut Value, path: &str, value: Value) {
    let mut cur = settings;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        let obj = cur.as_object_mut().expect("settings object");
        cur = obj.entry(p.to_string()).or_insert_with(|| json!({}));
        if !cur.is_object() {
            *cur = json!({});
        }
    }
    cur.as_object_mut()
        .expect("settings object")
        .insert(parts[parts.len() - 1].to_string(), value);
}

fn merge(base: &mut Value, extra: &Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                match b.get_mut(k) {
                    Some(bv) if bv.is_object() && v.is_object() => merge(bv, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, e) => *b = e.clone(),
    }
}

// ------------------------------------------------------ a Synapse on disk

/// Where the test's Synapse finds PostgreSQL.
#[derive(Clone)]
struct PgTarget {
    socket_dir: PathBuf,
    port: u16,
}

/// One phase's Synapse config written to a temp dir, the way the NixOS host
/// would have it, with the test substitutions described in `write_phase`.
struct SynapseSetup {
    dir: tempfile::TempDir,
    data_dir: PathBuf,
    /// homeserver.yaml first, then the extra config files in order.
    config_files: Vec<PathBuf>,
    secrets: Secrets,
    port: u16,
}

/// Defaults nixpkgs' `services.matrix-synapse` module adds to every
/// homeserver.yaml (nixos/modules/services/matrix/synapse.nix, `settings`
/// option defaults; nulls are filtered out by the module), with its
/// `dataDir` (/var/lib/matrix-synapse) and /run paths moved to the temp dir.
fn nixpkgs_defaults(dir: &Path, data_dir: &Path) -> Value {
    json!({
        "enable_registration": false,
        "enable_metrics": false,
        "report_stats": false,
        "signing_key_path": data_dir.join("homeserver.signing.key"),
        "pid_file": dir.join("matrix-synapse.pid"),
        "log_config": dir.join("log_config.yaml"),
        "media_store_path": data_dir.join("media_store"),
        "presence": {"enabled": true},
        "url_preview_enabled": true,
        "url_preview_ip_range_blacklist": [
            "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
            "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16",
            "192.88.99.0/24", "198.18.0.0/15", "198.51.100.0/24", "2001:db8::/32",
            "203.0.113.0/24", "224.0.0.0/4", "::1/128", "fc00::/7", "fe80::/10",
            "fec0::/10", "ff00::/8"
        ],
        "url_preview_ip_range_whitelist": [],
        "url_preview_url_blacklist": [],
        "max_upload_size": "50M",
        "max_image_pixels": "32M",
        "dynamic_thumbnails": false,
        "turn_uris": [],
        "turn_shared_secret": "",
        "trusted_key_servers": [{
            "server_name": "matrix.org",
            "verify_keys": {"ed25519:auto": "Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw"}
        }],
        "app_service_config_files": [],
        "redis": {"enabled": false},
    })
}

/// Writes `settings` (a phase's `synapse.settings`, possibly modified by the
/// caller) plus the phase's extra config files.
///
/// Test substitutions, and why:
/// * nixpkgs' module defaults are merged under masgen's settings (masgen's
///   values win, as option defaults do on NixOS), with paths in the temp dir;
/// * `url_preview_enabled: false`: nixpkgs turns it on and installs the
///   `url-preview` extra (lxml); the test venv has no lxml;
/// * `log_config`: nixpkgs' default logs to journald through the `systemd`
///   extra; here a file handler in the temp dir;
/// * the listener: port → a free port, `bind_addresses` → 127.0.0.1 (tests
///   bind only to loopback);
/// * `database.args.host`/`port` → the test cluster's socket dir and port
///   (`/run/postgresql` on NixOS); user and database names are masgen's;
/// * every string starting with `/run/secrets/` → a stand-in file (mode
///   0600, canary content) under the temp dir; `/var/lib/matrix-synapse/…`
///   → the temp data dir;
/// * `/run/masgen-synapse/password-config.yaml` → a temp file written the way
///   modules/synapse-secrets.nix writes it (see `write_password_config`);
/// * `test_extra`: an additional config file appended last (say why at the
///   call site).
fn write_phase(
    phase: &HostPhase,
    settings: &Value,
    pg: &PgTarget,
    test_extra: Option<Value>,
) -> SynapseSetup {
    let dir = tempfile::Builder::new()
        .prefix("masgen-synapse-")
        .tempdir()
        .expect("temp dir");
    let root = dir.path().to_path_buf();
    let data_dir = root.join("data");
    fs::create_dir_all(&data_dir).expect("data dir");
    let mut secrets = Secrets::new(root.join("secrets"));

    let mut s = nixpkgs_defaults(&root, &data_dir);
    merge(&mut s, settings);
    s["url_preview_enabled"] = json!(false);
    let port = free_port();
    let listeners = s["listeners"].as_array_mut().expect("listeners");
    assert_eq!(listeners.len(), 1, "masgen writes one listener");
    listeners[0]["port"] = json!(port);
    listeners[0]["bind_addresses"] = json!(["127.0.0.1"]);
    if s["database"]["name"] == "psycopg2" {
        s["database"]["args"]["host"] = json!(pg.socket_dir);
        s["database"]["args"]["port"] = json!(pg.port);
    }
    rewrite_paths(&mut s, "", &mut secrets, &data_dir);
    assert_paths_inside(&s, &[&root, &pg.socket_dir]);

    write_mode(
        &root.join("log_config.yaml"),
        &format!(
            "version: 1\nformatters:\n  precise:\n    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s'\nhandlers:\n  file:\n    class: logging.FileHandler\n    formatter: precise\n    filename: {}\nroot:\n  level: INFO\n  handlers: [file]\ndisable_existing_loggers: false\n",
            root.join("homeserver.log").display()
        ),
        0o644,
    );

    let hs_yaml = root.join("homeserver.yaml");
    write_mode(&hs_yaml, &serde_norway::to_string(&s).expect("yaml"), 0o644);
    let mut config_files = vec![hs_yaml];
    for f in &phase.synapse.extra_config_files {
        if f == PASSWORD_CONFIG_PATH {
            config_files.push(write_password_config(phase, &root, &mut secrets));
        } else {
            let path = if f.starts_with("/run/secrets/") {
                secrets.file(f, "extra_config_file")
            } else {
                let p = root.join("extra").join(f.trim_start_matches('/'));
                write_mode(&p, "masgen_test_extra: true\n", 0o600);
                p
            };
            config_files.push(path);
        }
    }
    if let Some(extra) = test_extra {
        let p = root.join("test-extra.yaml");
        write_mode(&p, &serde_norway::to_string(&extra).expect("yaml"), 0o600);
        config_files.push(p);
    }
    SynapseSetup {
        dir,
        data_dir,
        config_files,
        secrets,
        port,
    }
}

/// Every absolute path left in the settings is under one of `roots`: the
/// test never reads or writes the host's own files, and a secret path the
/// rewrite missed (say, outside `/run/secrets/`) shows up here by name.
fn assert_paths_inside(v: &Value, roots: &[&Path]) {
    match v {
        Value::String(s) if s.starts_with('/') => assert!(
            roots.iter().any(|r| Path::new(s).starts_with(r)),
            "path `{s}` in the Synapse settings was not moved into the test's temp dir"
        ),
        Value::Object(m) => m.values().for_each(|v| assert_paths_inside(v, roots)),
        Value::Array(a) => a.iter().for_each(|v| assert_paths_inside(v, roots)),
        _ => {}
    }
}

/// The runtime file of modules/synapse-secrets.nix: directory 0700, file
/// 0400, content `{"password_config": <settings> + {"pepper": <pepper file
/// with one trailing newline stripped>}}` as JSON (jq's output).
fn write_password_config(phase: &HostPhase, root: &Path, secrets: &mut Secrets) -> PathBuf {
    let pc = phase
        .synapse
        .password_config
        .as_ref()
        .expect("password-config.yaml is listed, so password_config is Some");
    let mut block = pc.settings.as_object().cloned().unwrap_or_default();
    assert!(!block.contains_key("pepper"), "the module asserts this");
    let pepper_file = secrets.file(&pc.pepper_file, "pepper");
    let pepper = fs::read_to_string(&pepper_file).expect("read pepper");
    let pepper = pepper.strip_suffix('\n').unwrap_or(&pepper);
    block.insert("pepper".into(), json!(pepper));
    let dir = root.join("run/masgen-synapse");
    fs::create_dir_all(&dir).expect("runtime dir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod");
    let path = dir.join("password-config.yaml");
    let text = serde_json::to_string_pretty(&json!({"password_config": block})).unwrap() + "\n";
    write_mode(&path, &text, 0o400);
    path
}

impl SynapseSetup {
    fn config_args(&self, files: &[PathBuf]) -> Vec<String> {
        files
            .iter()
            .flat_map(|f| ["--config-path".to_string(), f.display().to_string()])
            .collect()
    }

    fn python(&self, py: &Path) -> Command {
        let mut c = Command::new(py);
        // nixpkgs: WorkingDirectory = dataDir.
        c.current_dir(&self.data_dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null());
        c
    }

    /// nixpkgs' preStart: `synapse_homeserver --config-path <homeserver.yaml>
    /// --keys-directory <dataDir> --generate-keys` (main file only).
    fn generate_keys(&self, py: &Path) -> Result<(), String> {
        let out = self
            .python(py)
            .args(["-m", "synapse.app.homeserver"])
            .args(self.config_args(&self.config_files[..1]))
            .arg("--keys-directory")
            .arg(&self.data_dir)
            .arg("--generate-keys")
            .output()
            .expect("run synapse --generate-keys");
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "--generate-keys failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ))
        }
    }

    /// `python -m synapse.config [read KEY] -c … -c …`. Ok(stdout) when it
    /// prints "Config parses OK!"; Err(stderr + stdout) otherwise.
    fn load(&self, py: &Path, read: Option<&str>) -> Result<String, String> {
        let mut cmd = self.python(py);
        cmd.args(["-m", "synapse.config"]);
        if let Some(key) = read {
            cmd.args(["read", key]);
        }
        for f in &self.config_files {
            cmd.arg("-c").arg(f);
        }
        let out = cmd.output().expect("run python -m synapse.config");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() && stdout.contains("Config parses OK!") {
            Ok(stdout)
        } else {
            Err(format!("exit {}\n{stderr}{stdout}", out.status))
        }
    }

    fn start(&self, py: &Path) -> SynapseProcess {
        let stdio = fs::File::create(self.dir.path().join("stdio.log")).expect("stdio.log");
        // nixpkgs' ExecStart: every config file as --config-path, then --keys-directory.
        let child = self
            .python(py)
            .args(["-m", "synapse.app.homeserver"])
            .args(self.config_args(&self.config_files))
            .arg("--keys-directory")
            .arg(&self.data_dir)
            .stdout(stdio.try_clone().expect("dup"))
            .stderr(stdio)
            .spawn()
            .expect("spawn synapse");
        let mut p = SynapseProcess {
            child,
            port: self.port,
            dir: self.dir.path().to_path_buf(),
        };
        p.wait_healthy(Duration::from_secs(180));
        p
    }
}

/// A running Synapse, killed on drop (even when the test panics).
struct SynapseProcess {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl SynapseProcess {
    fn logs(&self) -> String {
        let read = |n: &str| fs::read_to_string(self.dir.join(n)).unwrap_or_default();
        let tail = |s: String| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(60)..].join("\n")
        };
        format!(
            "--- stdio.log ---\n{}\n--- homeserver.log (tail) ---\n{}",
            tail(read("stdio.log")),
            tail(read("homeserver.log"))
        )
    }

    fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "Synapse exited with {status} before /health:\n{}",
                    self.logs()
                );
            }
            if let Ok(r) = http_request(self.port, "GET", "localhost", "/health", &[], "") {
                if r.status == 200 && r.body.trim() == "OK" {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "Synapse did not answer /health in {timeout:?}:\n{}",
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    fn request(&self, method: &str, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let body_text = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let r = http_request(self.port, method, "localhost", path, &headers, &body_text)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.logs()));
        let json = serde_json::from_str(&r.body).unwrap_or(Value::String(r.body.clone()));
        (r.status, json)
    }
}

impl Drop for SynapseProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HMAC-SHA1 (hex) of the shared-secret registration API, computed with the
/// venv's Python (no SHA-1 crate in masgen's dependency tree):
/// HMAC(secret, nonce \0 user \0 password \0 "admin"|"notadmin").
fn registration_mac(py: &Path, secret: &str, nonce: &str, user: &str, password: &str) -> String {
    let out = Command::new(py)
        .args([
            "-c",
            "import hmac, hashlib, sys\n\
             msg = b'\\x00'.join(a.encode() for a in sys.argv[2:])\n\
             print(hmac.new(sys.argv[1].encode(), msg, hashlib.sha1).hexdigest())",
            secret,
            nonce,
            user,
            password,
            "notadmin",
        ])
        .output()
        .expect("python hmac");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A loader-only target: the loader never connects to the database.
fn no_pg() -> PgTarget {
    PgTarget {
        socket_dir: PathBuf::from("/nonexistent/masgen-test-postgres"),
        port: 5432,
    }
}

// ------------------------------------------------------------------ tests

#[test]
fn loader_accepts_every_phase() {
    let Some(py) = synapse_python() else { return };
    let _serial = serial();
    for (name, checked) in checked_examples() {
        let lowered = masgen::lower::lower(&checked.homeserver);
        for phase in &lowered.phases {
            let what = format!("{name} {}", phase.phase.name());
            let setup = write_phase(phase, &phase.synapse.settings, &no_pg(), None);
            setup
                .generate_keys(&py)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(
                setup.data_dir.join("homeserver.signing.key").exists()
                    || checked.homeserver.synapse.signing_key_path.is_some(),
                "{what}: --generate-keys made no signing key"
            );
            let delegated = phase.phase == Phase::Final;
            let out = setup
                .load(&py, Some("mas.enabled"))
                .unwrap_or_else(|e| panic!("{what}: Synapse's loader refuses the config:\n{e}"));
            let expect = format!("mas.enabled: {}", if delegated { "True" } else { "False" });
            assert!(
                out.contains(&expect),
                "{what}: expected `{expect}` in:\n{out}"
            );

            // The pepper reaches Synapse through the runtime file, exactly.
            if let Some(pc) = &phase.synapse.password_config {
                let out = setup
                    .load(&py, Some("auth.password_pepper"))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let pepper = setup
                    .secrets
                    .value(&pc.pepper_file)
                    .expect("pepper stand-in");
                assert!(
                    out.contains(&format!("auth.password_pepper: {pepper}\n")),
                    "{what}: Synapse read another pepper:\n{out}"
                );
            }
            eprintln!("ok: Synapse loader accepts {what}");
        }
    }
}

#[test]
fn synapse_starts_and_serves_every_example() {
    let Some(py) = synapse_python() else { return };
    // PostgreSQL with peer authentication like NixOS' default. NixOS runs
    // Synapse as OS user `matrix-synapse`; here the venv lives under /root
    // (0700), so Synapse runs as the current user and an ident map lets that
    // user in as role `matrix-synapse` — still peer auth over the socket.
    let Some(pg) = PgCluster::start_with_auth("peer") else {
        return;
    };
    let _serial = serial();
    let me = String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout)
        .trim()
        .to_string();
    let target = PgTarget {
        socket_dir: pg.socket_dir().to_path_buf(),
        port: pg.port(),
    };

    for (name, checked) in checked_examples() {
        let lowered = masgen::lower::lower(&checked.homeserver);
        let args = &lowered.phases[0].synapse.settings["database"]["args"];
        let (db, role) = (
            args["database"].as_str().expect("db name").to_string(),
            args["user"].as_str().expect("db user").to_string(),
        );
        // A fresh database per example (C collation, as Synapse requires).
        pg.superuser_sql(&format!(
            "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE);\n\
             DROP ROLE IF EXISTS \"{role}\";\n\
             CREATE ROLE \"{role}\" LOGIN;\n\
             CREATE DATABASE \"{db}\" OWNER \"{role}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;"
        ))
        .unwrap();
        pg.set_ident(&format!("synapse {me} {role}\n")).unwrap();
        pg.set_hba(&format!("local \"{db}\" \"{role}\" peer map=synapse\n"))
            .unwrap();

        let mut prepared_user = None;
        for phase in &lowered.phases {
            let what = format!("{name} {}", phase.phase.name());
            let t0 = Instant::now();
            // Shared-secret registration needs a secret. migrate-local sets
            // registration_shared_secret_file; for the others the test adds
            // one in an extra config file (test-extra.yaml).
            let has_secret = phase
                .synapse
                .settings
                .get("registration_shared_secret_path")
                .is_some();
            let test_secret = "masgen-test-registration-secret";
            let extra = (!has_secret).then(|| json!({"registration_shared_secret": test_secret}));
            let setup = write_phase(phase, &phase.synapse.settings, &target, extra);
            setup
                .generate_keys(&py)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let syn = setup.start(&py);
            eprintln!("{what}: Synapse healthy after {:?}", t0.elapsed());

            match phase.phase {
                Phase::Prepare => {
                    let secret = match phase
                        .synapse
                        .settings
                        .get("registration_shared_secret_path")
                    {
                        Some(p) => setup
                            .secrets
                            .value(p.as_str().unwrap())
                            .expect("registration secret stand-in"),
                        None => test_secret.to_string(),
                    };
                    check_login_flows(&example_text(&name), &syn, &what);
                    let user_id = register_login_whoami(&py, &syn, &secret, &what);
                    assert_eq!(
                        user_id,
                        format!("@alice:{}", checked.homeserver.server_name)
                    );
                    prepared_user = Some(user_id);
                }
                Phase::Final => {
                    assert_delegated_endpoints(&syn, &what);
                    if let Some(user) = &prepared_user {
                        // The prepare phase's user is still in Synapse's
                        // database; this final Synapse upgraded it in place.
                        let n = pg
                            .superuser_sql_in(
                                &db,
                                &format!("SELECT count(*) FROM users WHERE name = '{user}'"),
                            )
                            .unwrap();
                        assert_eq!(n, "1", "{what}: user row");
                    }
                }
            }
            drop(syn);
            eprintln!("ok: Synapse runs {what} ({:?})", t0.elapsed());
        }
    }
}

/// What the spec says Synapse offers today (phase 1), read from the spec's
/// TOML itself, not from masgen's lowered output: a lowering bug must not
/// move the expectation along with the config.
struct TodayLogin {
    /// `synapse.password_login` (docs/guide.md: `true` when absent in a
    /// migration). `"only_for_reauth"` keeps passwords for re-auth only, so
    /// Synapse offers no `m.login.password` flow.
    password: bool,
    /// Synapse's id of each `synapse.oidc_providers` entry, and of the
    /// legacy `synapse.oidc_config` block: `oidc-<idp_id>`, except the id
    /// `oidc` itself (synapse/config/oidc.py, `_parse_oidc_config_dict`).
    sso_ids: std::collections::BTreeSet<String>,
    /// `mas.upstream_providers[].synapse_idp_id`: the Synapse providers
    /// syn2mas carries links from.
    mas_links: Vec<String>,
}

fn today_login(spec_text: &str) -> TodayLogin {
    let doc: toml::Table = toml::from_str(spec_text).expect("example is TOML");
    let synapse = doc
        .get("synapse")
        .and_then(|v| v.as_table())
        .cloned()
        .unwrap_or_default();
    // This reader knows only the spec's own keys; an escape hatch that
    // changes login would need to be read here too.
    if let Some(extra) = synapse.get("extra_settings").and_then(|v| v.as_table()) {
        for key in ["password_config", "oidc_providers", "oidc_config"] {
            assert!(
                !extra.contains_key(key),
                "extend today_login: extra_settings.{key}"
            );
        }
    }
    let password = match synapse.get("password_login").cloned() {
        None | Some(toml::Value::Boolean(true)) => true,
        Some(toml::Value::Boolean(false)) => false,
        Some(toml::Value::String(s)) if s == "only_for_reauth" => false,
        Some(other) => panic!("synapse.password_login = {other}"),
    };
    let idp = |t: &toml::Value| {
        let id = t.get("idp_id").and_then(|v| v.as_str()).unwrap_or("oidc");
        if id == "oidc" {
            id.to_string()
        } else {
            format!("oidc-{id}")
        }
    };
    let mut sso_ids: std::collections::BTreeSet<String> = synapse
        .get("oidc_providers")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().map(idp).collect())
        .unwrap_or_default();
    if let Some(legacy) = synapse.get("oidc_config") {
        sso_ids.insert(idp(legacy));
    }
    let mas_links = doc
        .get("mas")
        .and_then(|m| m.get("upstream_providers"))
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|p| p.get("synapse_idp_id")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    TodayLogin {
        password,
        sso_ids,
        mas_links,
    }
}

/// Phase 1: Synapse offers exactly what the spec says it does today:
/// password login when the spec keeps it, and SSO through each of its OIDC
/// providers, among them every provider a MAS upstream names in
/// `synapse_idp_id` (syn2mas carries those users' links).
fn check_login_flows(spec_text: &str, syn: &SynapseProcess, what: &str) {
    let want = today_login(spec_text);
    let (status, flows) = syn.request("GET", "/_matrix/client/v3/login", None, &Value::Null);
    assert_eq!(status, 200, "{what}: GET /login: {flows}");
    let flows = flows["flows"].as_array().cloned().unwrap_or_default();
    let has = |t: &str| flows.iter().find(|f| f["type"] == t).cloned();
    assert_eq!(
        has("m.login.password").is_some(),
        want.password,
        "{what}: password flow vs the spec's password_login: {flows:?}"
    );
    let served: std::collections::BTreeSet<String> = has("m.login.sso")
        .and_then(|sso| sso["identity_providers"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        served, want.sso_ids,
        "{what}: SSO providers Synapse serves vs the spec's: {flows:?}"
    );
    for link in &want.mas_links {
        assert!(
            served.contains(link),
            "{what}: synapse_idp_id `{link}` names no provider Synapse serves: {served:?}"
        );
    }
}

/// Shared-secret registration, password login, whoami. Returns the user id.
fn register_login_whoami(py: &Path, syn: &SynapseProcess, secret: &str, what: &str) -> String {
    let (status, nonce) = syn.request("GET", "/_synapse/admin/v1/register", None, &Value::Null);
    assert_eq!(status, 200, "{what}: GET register nonce: {nonce}");
    let nonce = nonce["nonce"].as_str().expect("nonce").to_string();
    let password = "correct horse battery staple";
    let mac = registration_mac(py, secret, &nonce, "alice", password);
    let (status, reg) = syn.request(
        "POST",
        "/_synapse/admin/v1/register",
        None,
        &json!({"nonce": nonce, "username": "alice", "password": password, "admin": false, "mac": mac}),
    );
    assert_eq!(
        status,
        200,
        "{what}: shared-secret registration: {reg}\n{}",
        syn.logs()
    );
    let user_id = reg["user_id"].as_str().expect("user_id").to_string();

    let (status, login) = syn.request(
        "POST",
        "/_matrix/client/v3/login",
        None,
        &json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": password,
        }),
    );
    assert_eq!(
        status,
        200,
        "{what}: password login: {login}\n{}",
        syn.logs()
    );
    let token = login["access_token"].as_str().expect("access_token");
    let (status, who) = syn.request(
        "GET",
        "/_matrix/client/v3/account/whoami",
        Some(token),
        &Value::Null,
    );
    assert_eq!(status, 200, "{what}: whoami: {who}");
    assert_eq!(who["user_id"], json!(user_id), "{what}: whoami");
    user_id
}

/// With delegation on, Synapse does not serve the login API (the compat
/// route must go to MAS) nor shared-secret registration: Synapse 1.163
/// answers each with 404 `M_UNRECOGNIZED`, its answer for a path no servlet
/// is registered on. It mounts the `/_synapse/mas` API for MAS, which
/// answers 401 `M_MISSING_TOKEN` without MAS's shared secret.
fn assert_delegated_endpoints(syn: &SynapseProcess, what: &str) {
    for (method, path, body) in [
        ("GET", "/_matrix/client/v3/login", Value::Null),
        (
            "POST",
            "/_matrix/client/v3/login",
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "x"}),
        ),
        (
            "POST",
            "/_matrix/client/v3/refresh",
            json!({"refresh_token": "x"}),
        ),
        ("POST", "/_matrix/client/v3/logout", json!({})),
        ("GET", "/_synapse/admin/v1/register", Value::Null),
    ] {
        let (status, resp) = syn.request(method, path, None, &body);
        eprintln!("{what}: {method} {path} -> {status} {resp}");
        assert_eq!(
            (status, &resp["errcode"]),
            (404, &json!("M_UNRECOGNIZED")),
            "{what}: a delegating Synapse still serves {method} {path}: {resp}"
        );
    }
    let (status, resp) = syn.request(
        "GET",
        "/_synapse/mas/is_localpart_available?localpart=bob",
        None,
        &Value::Null,
    );
    eprintln!("{what}: GET /_synapse/mas/is_localpart_available -> {status} {resp}");
    assert_eq!(
        (status, &resp["errcode"]),
        (401, &json!("M_MISSING_TOKEN")),
        "{what}: /_synapse/mas does not ask for MAS's secret: {resp}"
    );
}

/// Values some of the table's examples need besides the conflicting setting
/// itself, so that Synapse's loader gets as far as the delegation check
/// (`MasConfig` is read last) instead of failing on a missing piece. Keyed by
/// the table's `setting`; each is a suggested better `example` for
/// src/rules.rs (see docs/testing.md).
fn conflict_prerequisites(setting: &str) -> Value {
    match setting {
        // ConsentConfig: "Could not find template directory" for the
        // example's relative `res/templates/privacy`. An absolute dir in
        // nixpkgs' dataDir instead; `write_consent_templates` creates it.
        "user_consent" => json!({"user_consent": {"template_dir": CONSENT_TEMPLATES}}),
        // JWTConfig reads `secret` and `algorithm` unconditionally (KeyError);
        // Synapse has no file form for the JWT secret.
        "jwt_config.enabled" => {
            json!({"jwt_config": {"secret": "masgen-test-jwt-secret", "algorithm": "HS256"}})
        }
        _ => json!({}),
    }
}

const CONSENT_TEMPLATES: &str = "/var/lib/matrix-synapse/privacy-templates";

/// The consent template dir of `conflict_prerequisites`, in the test's dataDir.
fn write_consent_templates(setup: &SynapseSetup) {
    let dir = setup.data_dir.join("privacy-templates/en");
    fs::create_dir_all(&dir).expect("template dir");
    fs::write(dir.join("1.0.html"), "<html>consent</html>\n").expect("template");
}

/// The table's example as JSON, with inline secrets moved to files: a spec
/// may not hold literal secrets (masgen refuses them with `secret.literal`
/// before it looks at anything else), so `"client_secret": "x"` becomes
/// `"client_secret_path": "/run/secrets/…"` (Synapse supports both).
fn example_value(c: &masgen::rules::DelegationConflict) -> Value {
    fn walk(v: &mut Value, setting: &str) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(_)) = m.get("client_secret") {
                    m.remove("client_secret");
                    m.insert(
                        "client_secret_path".into(),
                        json!(format!(
                            "/run/secrets/masgen-test-{}",
                            setting.replace('.', "-")
                        )),
                    );
                }
                for v in m.values_mut() {
                    walk(v, setting);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|v| walk(v, setting)),
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(c.example).expect(c.setting);
    walk(&mut v, c.setting);
    v
}

#[test]
fn conflicts_table_matches_real_synapse() {
    // masgen side first: cheap and independent of Synapse.
    for c in DELEGATION_CONFLICTS {
        let value = example_value(c);
        for (spec, spec_text) in example_specs() {
            let table = delegating_table(&spec_text);
            let text = spec_with_setting(&spec_text, table, c.setting, &value);
            let codes: Vec<&str> = match masgen::check_source(masgen::spec::Source::new(
                spec.as_str(),
                text.clone(),
            )) {
                Ok(_) => vec![],
                Err(diags) => diags
                    .iter()
                    .filter(|d| d.severity == masgen::diag::Severity::Error)
                    .map(|d| d.code)
                    .collect(),
            };
            assert!(
                codes.contains(&"synapse.delegation_conflict"),
                "masgen accepts `{}` = {} in [synapse.{table}] of {spec} (errors: {codes:?}):\n{text}",
                c.setting,
                c.example
            );
        }
    }

    let Some(py) = synapse_python() else { return };
    let _serial = serial();
    let final_phase = &one_final_phase();

    // Control: the untouched final config loads.
    let setup = write_phase(final_phase, &final_phase.synapse.settings, &no_pg(), None);
    setup.generate_keys(&py).unwrap();
    setup
        .load(&py, None)
        .unwrap_or_else(|e| panic!("control config refused:\n{e}"));

    let signing_key = fs::read(setup.data_dir.join("homeserver.signing.key")).unwrap();

    let mut failures = Vec::new();
    for c in DELEGATION_CONFLICTS {
        let mut settings = final_phase.synapse.settings.clone();
        insert_path(&mut settings, c.setting, example_value(c));
        merge(&mut settings, &conflict_prerequisites(c.setting));
        let setup = write_phase(final_phase, &settings, &no_pg(), None);
        write_consent_templates(&setup);
        // The control's signing key (what --generate-keys made) saves a
        // Synapse run per entry.
        write_mode(
            &setup.data_dir.join("homeserver.signing.key"),
            &String::from_utf8(signing_key.clone()).unwrap(),
            0o600,
        );
        match setup.load(&py, None) {
            Ok(out) => failures.push(format!(
                "`{}` = {}: Synapse ACCEPTS it with delegation on:\n{out}",
                c.setting, c.example
            )),
            Err(e) if e.contains("when OAuth delegation is enabled") => {
                let why = e
                    .lines()
                    .find(|l| l.contains("when OAuth delegation is enabled"))
                    .unwrap_or_default()
                    .trim();
                eprintln!("ok: Synapse refuses `{}` = {}: {why}", c.setting, c.example);
            }
            Err(e) => failures.push(format!(
                "`{}` = {}: Synapse refuses it for another reason than delegation:\n{e}",
                c.setting, c.example
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The escape hatch whose settings reach the delegating config: a
/// migration's `final_extra_settings`, a fresh install's `extra_settings`
/// (its only config delegates).
fn delegating_table(spec_text: &str) -> &'static str {
    let doc: toml::Table = toml::from_str(spec_text).expect("example is TOML");
    match doc["homeserver"]["mode"].as_str() {
        Some("migrate") => "final_extra_settings",
        Some("fresh") => "extra_settings",
        other => panic!("homeserver.mode = {other:?}"),
    }
}

/// The final phase the Synapse half of the conflict tests loads: that of
/// migrate-local. One is enough, and running the table against every
/// example would cost a loader run per entry and example (~3 s each on 2
/// cores): Synapse's refusal (`MasConfig.check_config_conflicts`) depends
/// only on the inserted setting and on delegation being on. Every example's
/// final phase turns delegation on the same way (checked here), and the
/// loader accepts each of them untouched (`loader_accepts_every_phase`).
fn one_final_phase() -> HostPhase {
    let mut form = None;
    for (name, checked) in checked_examples() {
        let lowered = masgen::lower::lower(&checked.homeserver);
        let last = lowered.phases.last().expect("a phase");
        assert_eq!(last.phase, Phase::Final, "{name}");
        let mas = &last.synapse.settings["matrix_authentication_service"];
        assert_eq!(mas["enabled"], json!(true), "{name}: {mas}");
        let keys: Vec<&String> = mas.as_object().expect("a map").keys().collect();
        let keys = format!("{keys:?}");
        assert_eq!(
            form.get_or_insert_with(|| keys.clone()),
            &keys,
            "{name}: delegation is turned on differently"
        );
    }
    let checked = checked("migrate-local.toml", &example_text("migrate-local.toml"));
    let lowered = masgen::lower::lower(&checked.homeserver);
    lowered
        .phases
        .into_iter()
        .find(|p| p.phase == Phase::Final)
        .expect("final phase")
}

/// The spec text with `setting` (dotted) = `value` added under
/// `[synapse.<table>]` (dotted paths become nested tables).
fn spec_with_setting(text: &str, table: &str, setting: &str, value: &Value) -> String {
    let mut doc: toml::Table = toml::from_str(text).expect("example is TOML");
    let synapse = doc
        .entry("synapse")
        .or_insert_with(|| toml::Value::Table(Default::default()))
        .as_table_mut()
        .expect("[synapse] table");
    let mut cur = synapse
        .entry(table)
        .or_insert_with(|| toml::Value::Table(Default::default()))
        .as_table_mut()
        .expect("table");
    let parts: Vec<&str> = setting.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .expect("nested table");
    }
    cur.insert(
        parts[parts.len() - 1].to_string(),
        toml::Value::try_from(value).expect("JSON example as TOML"),
    );
    toml::to_string(&doc).expect("serialize spec")
}

#[test]
fn secret_contents_never_reach_generated_files() {
    for (name, _) in checked_examples() {
        // The spec with its secret paths moved to real files holding canary
        // contents, so masgen *could* read them: it must only refer to them.
        let secrets_dir = tempfile::Builder::new()
            .prefix("masgen-secrets-")
            .tempdir()
            .unwrap();
        let prefix = format!("{}/", secrets_dir.path().display());
        let text = example_text(&name).replace("/run/secrets/", &prefix);
        let checked = checked(&name, &text);
        // Create a canary file at every secret path the spec mentions.
        let mut canaries = Vec::new();
        for line in text.lines() {
            let mut rest = line;
            while let Some(i) = rest.find(&prefix) {
                let tail = &rest[i..];
                let end = tail.find('"').unwrap_or(tail.len());
                let path = &tail[..end];
                let canary = format!("masgen-canary-{:x}", fxhash(path));
                write_mode(Path::new(path), &format!("{canary}\n"), 0o600);
                canaries.push(canary);
                rest = &tail[end..];
            }
        }
        assert!(!canaries.is_empty(), "{name}: no secret paths found");

        let (lowered, tree) = masgen::build_tree(&checked).expect("build_tree");
        for (path, content) in &tree {
            for canary in &canaries {
                assert!(
                    !content.contains(canary.as_str()),
                    "{name}: {path} contains the CONTENT of a secret file ({canary})"
                );
            }
        }
        // …and the renders do point at the files (by path).
        for phase in &lowered.phases {
            let hs = tree
                .get(&camino::Utf8PathBuf::from(format!(
                    "render/{}/{}/homeserver.yaml",
                    phase.host,
                    phase.phase.name()
                )))
                .expect("rendered homeserver.yaml");
            assert!(hs.contains(&prefix), "{name}: no secret path in {hs}");
            let yaml = serde_norway::to_string(&phase.synapse.settings).unwrap();
            for canary in &canaries {
                assert!(!yaml.contains(canary.as_str()));
            }
        }
    }

    // And the other half: Synapse does read the contents through the files,
    // for every example and phase: each `*_path` secret Synapse's loader
    // exposes, read back with `python -m synapse.config read`.
    let Some(py) = synapse_python() else { return };
    let _serial = serial();
    let mut read = 0;
    for (name, checked) in checked_examples() {
        let lowered = masgen::lower::lower(&checked.homeserver);
        for phase in &lowered.phases {
            let what = format!("{name} {}", phase.phase.name());
            let setup = write_phase(phase, &phase.synapse.settings, &no_pg(), None);
            let hs_yaml = fs::read_to_string(&setup.config_files[0]).unwrap();
            for canary in setup.secrets.canaries() {
                assert!(
                    !hs_yaml.contains(&canary),
                    "{what}: homeserver.yaml (the Nix store file) holds secret content {canary}"
                );
            }
            let mut keys_made = false;
            for (setting, attribute) in SECRETS_SYNAPSE_READS {
                let Some(file) = phase.synapse.settings.get(*setting) else {
                    continue;
                };
                if !keys_made {
                    setup.generate_keys(&py).unwrap();
                    keys_made = true;
                }
                let out = setup
                    .load(&py, Some(attribute))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let secret = setup
                    .secrets
                    .value(file.as_str().expect("a path"))
                    .expect("stand-in");
                // `key.macaroon_secret_key` is bytes in Synapse.
                assert!(
                    out.contains(&format!("{attribute}: {secret}\n"))
                        || out.contains(&format!("{attribute}: b'{secret}'\n")),
                    "{what}: Synapse read another {setting}:\n{out}"
                );
                read += 1;
            }
            // OIDC client secrets: the loader keeps each provider as an attrs
            // class whose repr shows `client_secret='…'`.
            let providers = phase.synapse.settings["oidc_providers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let files: Vec<&str> = providers
                .iter()
                .filter_map(|p| p["client_secret_path"].as_str())
                .collect();
            if !files.is_empty() {
                setup.generate_keys(&py).unwrap();
                let out = setup
                    .load(&py, Some("oidc.oidc_providers"))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                for file in files {
                    let secret = setup.secrets.value(file).expect("stand-in");
                    assert!(
                        out.contains(&format!("client_secret='{secret}'")),
                        "{what}: Synapse read another OIDC client secret:\n{out}"
                    );
                    read += 1;
                }
            }
        }
    }
    // migrate-local's registration secret, fresh's macaroon key,
    // migrate-keycloak's OIDC client secret.
    assert!(read >= 3, "only {read} secrets read back");
}

/// Secret file settings masgen emits and the loader attribute Synapse reads
/// each into (synapse/config/registration.py, key.py). The pepper is read
/// back in `loader_accepts_every_phase`, OIDC client secrets below; MAS's
/// shared secret is read when used, not by the loader.
const SECRETS_SYNAPSE_READS: &[(&str, &str)] = &[
    (
        "registration_shared_secret_path",
        "registration.registration_shared_secret",
    ),
    ("macaroon_secret_key_path", "key.macaroon_secret_key"),
    ("form_secret_path", "key.form_secret"),
];

/// Synapse enables CAS whenever the section is present
/// (`cas_config.get("enabled", True)`), so `cas_config = { server_url = … }`
/// without `enabled` makes a delegating Synapse refuse to start. Regression
/// test: masgen once flagged only an explicit `cas_config.enabled = true`.
#[test]
fn implicitly_enabled_cas_is_a_conflict() {
    let value = json!({"server_url": "https://cas.example.com/cas"});
    let mut accepted = Vec::new();
    for (name, spec_text) in example_specs() {
        let table = delegating_table(&spec_text);
        let text = spec_with_setting(&spec_text, table, "cas_config", &value);
        let codes: Vec<&str> = match masgen::check_source(masgen::spec::Source::new(&name, text)) {
            Ok(_) => vec![],
            Err(diags) => diags.iter().map(|d| d.code).collect(),
        };
        if !codes.contains(&"synapse.delegation_conflict") {
            accepted.push(format!("{name} [synapse.{table}] (codes {codes:?})"));
        }
    }

    // Real Synapse: refused with delegation on.
    if let Some(py) = synapse_python() {
        let _serial = serial();
        let final_phase = &one_final_phase();
        let mut settings = final_phase.synapse.settings.clone();
        insert_path(&mut settings, "cas_config", value);
        let setup = write_phase(final_phase, &settings, &no_pg(), None);
        setup.generate_keys(&py).unwrap();
        let err = setup
            .load(&py, None)
            .expect_err("Synapse accepts implicit CAS with delegation");
        assert!(
            err.contains("SSO cannot be enabled when OAuth delegation is enabled"),
            "{err}"
        );
    }
    assert!(
        accepted.is_empty(),
        "masgen accepts `cas_config = {{ server_url = … }}` in {accepted:?}"
    );
}
