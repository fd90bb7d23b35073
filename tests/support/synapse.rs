//! A Synapse config on disk, the way a NixOS host would have it, for
//! Synapse's loader and a real Synapse (tests/conformance_synapse.rs on
//! masgen's settings, tests/conformance_nixpkgs.rs on nixpkgs' own
//! homeserver.yaml): stand-in secret files with canary contents, the
//! runtime password-config file, PostgreSQL over a socket, and the
//! substitutions `write_config` lists.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use masgen::lower::{HostPhase, PasswordConfigOut, PASSWORD_CONFIG_PATH};
use serde_json::{json, Value};

use super::{free_port, http_request_to};

// ----------------------------------------------------------- secret files

/// Stand-ins for the host's secret files, in a temp dir. Each gets a unique
/// canary content so a leak into generated files can be detected.
pub struct Secrets {
    pub dir: PathBuf,
    /// Original path (`/run/secrets/…`) → (stand-in path, canary strings in it).
    pub files: BTreeMap<String, (PathBuf, Vec<String>)>,
}

pub fn write_mode(path: &Path, content: &str, mode: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create dir");
    }
    // Files may be re-written (0400 ones too): remove first.
    let _ = fs::remove_file(path);
    fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

impl Secrets {
    pub fn new(dir: PathBuf) -> Secrets {
        fs::create_dir_all(&dir).expect("create secrets dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod");
        Secrets {
            dir,
            files: BTreeMap::new(),
        }
    }

    /// The stand-in for `original`, created (mode 0600) on first use. `key`
    /// is the settings key that points at it and decides the file's format.
    pub fn file(&mut self, original: &str, key: &str) -> PathBuf {
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

    pub fn canaries(&self) -> Vec<String> {
        self.files
            .values()
            .flat_map(|(_, c)| c.iter().cloned())
            .collect()
    }

    /// Content of the stand-in, trimmed the way Synapse trims `*_path` secrets.
    pub fn value(&self, original: &str) -> Option<String> {
        let (p, _) = self.files.get(original)?;
        Some(fs::read_to_string(p).ok()?.trim().to_string())
    }
}

/// Small stable hash (FNV-1a) so canaries differ per file but not per run.
pub fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Rewrites every string value starting with `/run/secrets/` to its
/// stand-in (creating it), and `/var/lib/matrix-synapse/…` (nixpkgs' dataDir)
/// into the test's data dir.
pub fn rewrite_paths(v: &mut Value, key: &str, secrets: &mut Secrets, data_dir: &Path) {
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
pub fn insert_path(settings: &mut Value, path: &str, value: Value) {
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

pub fn merge(base: &mut Value, extra: &Value) {
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
pub struct PgTarget {
    pub socket_dir: PathBuf,
    pub port: u16,
}

/// One phase's Synapse config written to a temp dir, the way the NixOS host
/// would have it, with the test substitutions described in `write_phase`.
pub struct SynapseSetup {
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    /// homeserver.yaml first, then the extra config files in order.
    pub config_files: Vec<PathBuf>,
    pub secrets: Secrets,
    pub port: u16,
    /// The listener's address (127.0.0.1 unless `listen_on` moved it).
    pub addr: Ipv4Addr,
}

/// Defaults nixpkgs' `services.matrix-synapse` module adds to every
/// homeserver.yaml (nixos/modules/services/matrix/synapse.nix, `settings`
/// option defaults; nulls are filtered out by the module), with its
/// `dataDir` (/var/lib/matrix-synapse) and /run paths moved to the temp dir.
pub fn nixpkgs_defaults(dir: &Path, data_dir: &Path) -> Value {
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
pub fn write_phase(
    phase: &HostPhase,
    settings: &Value,
    pg: &PgTarget,
    test_extra: Option<Value>,
) -> SynapseSetup {
    let defaults = |dir: &Path, data_dir: &Path| nixpkgs_defaults(dir, data_dir);
    write_config(
        &defaults,
        settings,
        &phase.synapse.extra_config_files,
        phase.synapse.password_config.as_ref(),
        pg,
        test_extra,
    )
}

/// Like [`write_phase`], for any settings: `base(dir, data_dir)` is merged
/// under `settings` (masgen's settings get nixpkgs' defaults; nixpkgs' own
/// homeserver.yaml needs none), then the same substitutions apply; `pid_file`
/// and `log_config` always point into the temp dir.
pub fn write_config(
    base: &dyn Fn(&Path, &Path) -> Value,
    settings: &Value,
    extra_config_files: &[String],
    password_config: Option<&PasswordConfigOut>,
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

    let mut s = base(&root, &data_dir);
    merge(&mut s, settings);
    s["pid_file"] = json!(root.join("matrix-synapse.pid"));
    s["log_config"] = json!(root.join("log_config.yaml"));
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
    for f in extra_config_files {
        if f == PASSWORD_CONFIG_PATH {
            let pc = password_config.expect("password-config.yaml is listed, so it is set");
            config_files.push(write_password_config(pc, &root, &mut secrets));
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
        addr: Ipv4Addr::LOCALHOST,
    }
}

/// Every absolute path left in the settings is under one of `roots`: the
/// test never reads or writes the host's own files, and a secret path the
/// rewrite missed (say, outside `/run/secrets/`) shows up here by name.
pub fn assert_paths_inside(v: &Value, roots: &[&Path]) {
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
pub fn write_password_config(
    pc: &PasswordConfigOut,
    root: &Path,
    secrets: &mut Secrets,
) -> PathBuf {
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
    pub fn config_args(&self, files: &[PathBuf]) -> Vec<String> {
        files
            .iter()
            .flat_map(|f| ["--config-path".to_string(), f.display().to_string()])
            .collect()
    }

    /// Moves the listener to `addr:port` (homeserver.yaml rewritten), for a
    /// test that stands hosts for loopback addresses.
    pub fn listen_on(&mut self, addr: Ipv4Addr, port: u16) {
        let path = &self.config_files[0];
        let text = fs::read_to_string(path).expect("read homeserver.yaml");
        let mut s: Value = serde_norway::from_str(&text).expect("homeserver.yaml");
        s["listeners"][0]["port"] = json!(port);
        s["listeners"][0]["bind_addresses"] = json!([addr.to_string()]);
        write_mode(path, &serde_norway::to_string(&s).expect("yaml"), 0o644);
        self.addr = addr;
        self.port = port;
    }

    pub fn python(&self, py: &Path) -> Command {
        let mut c = Command::new(py);
        // nixpkgs: WorkingDirectory = dataDir.
        c.current_dir(&self.data_dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null());
        c
    }

    /// nixpkgs' preStart: `synapse_homeserver --config-path <homeserver.yaml>
    /// --keys-directory <dataDir> --generate-keys` (main file only).
    pub fn generate_keys(&self, py: &Path) -> Result<(), String> {
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
    pub fn load(&self, py: &Path, read: Option<&str>) -> Result<String, String> {
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

    pub fn start(&self, py: &Path) -> SynapseProcess {
        let mut p = self.spawn(py);
        p.wait_healthy(Duration::from_secs(180));
        p
    }

    /// Starts Synapse without waiting for it (see `start`).
    pub fn spawn(&self, py: &Path) -> SynapseProcess {
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
        SynapseProcess {
            child,
            addr: self.addr,
            port: self.port,
            dir: self.dir.path().to_path_buf(),
        }
    }
}

/// A running Synapse, killed on drop (even when the test panics).
pub struct SynapseProcess {
    pub child: Child,
    pub addr: Ipv4Addr,
    pub port: u16,
    pub dir: PathBuf,
}

impl SynapseProcess {
    pub fn logs(&self) -> String {
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

    pub fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "Synapse exited with {status} before /health:\n{}",
                    self.logs()
                );
            }
            let to = (self.addr, self.port);
            if let Ok(r) = http_request_to(to, "GET", "localhost", "/health", &[], "") {
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

    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
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
        let r = http_request_to(
            (self.addr, self.port),
            method,
            "localhost",
            path,
            &headers,
            &body_text,
        )
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

/// A loader-only target: the loader never connects to the database.
pub fn no_pg() -> PgTarget {
    PgTarget {
        socket_dir: PathBuf::from("/nonexistent/masgen-test-postgres"),
        port: 5432,
    }
}

// ------------------------------------------------ a running Synapse, checked

/// HMAC-SHA1 (hex) of the shared-secret registration API, computed with the
/// venv's Python (no SHA-1 crate in masgen's dependency tree):
/// HMAC(secret, nonce \0 user \0 password \0 "admin"|"notadmin").
pub fn registration_mac(
    py: &Path,
    secret: &str,
    nonce: &str,
    user: &str,
    password: &str,
) -> String {
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

/// Shared-secret registration, password login, whoami. Returns the user id.
pub fn register_login_whoami(py: &Path, syn: &SynapseProcess, secret: &str, what: &str) -> String {
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
pub fn assert_delegated_endpoints(syn: &SynapseProcess, what: &str) {
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
