//! masgen's backup and syn2mas oneshot units, run against a real PostgreSQL.
//!
//! For the prepare phase of `examples/migrate-local.toml`, the reference
//! `.service` files (`masgen::emit::render_unit`) are parsed and their
//! ExecStart= argv is run the way systemd would run it: as the unit's User=
//! (runuser), with UMask=0077, a fresh RuntimeDirectory= owned by that user,
//! a credentials directory holding copies of every LoadCredential= source,
//! and `%d` / `%%` / `$$` expanded. The cluster uses peer authentication
//! (like NixOS), with the two databases owned by the roles the services use
//! and the pg_hba/pg_ident lines of modules/syn2mas-access.nix, evaluated
//! from modules/lib.nix with nix-instantiate.
//!
//! What could not run here, and what stands in for it:
//! - MAS itself (`mas-cli`) is not available: a stand-in (`FAKE_MAS_CLI`)
//!   checks the argv it gets, reads the rendered MAS config and the Synapse
//!   config files with the unit's permissions, and connects to both
//!   databases with the settings it finds there. It does not migrate
//!   anything: whether syn2mas accepts this data and config is not tested.
//! - systemd does not run the units: the test plays its part (see above);
//!   DynamicUser= is played by a static system user of the same name, and the
//!   unit's ordering (After=/Requires=/Conflicts=) is not exercised.
//! - The Nix store paths (`/run/current-system/sw/...` in the renders) are
//!   replaced by modules/scripts/*.sh (wrapped like writeShellApplication)
//!   and by the phase's settings written as YAML; the PostgreSQL socket of
//!   the configs (`/run/postgresql`) is pointed at the test cluster, and the
//!   secret files (`/run/secrets/...`) are dummies in a temp dir.
//!
//! Needs root (runuser, system users); a missing tool SKIPs locally and
//! fails in CI.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use masgen::lower::tasks::{BACKUP, MAS_USER, SYN2MAS_DRY_RUN};
use masgen::lower::{HostPhase, Phase, PASSWORD_CONFIG_PATH};
use masgen::model::Homeserver;
use serde_json::{json, Value};
use support::*;
use tempfile::TempDir;

const SPEC: &str = "migrate-local.toml";

/// Where the reference renders put store paths (src/emit/render.rs; not
/// exported by the crate). Every `/run/current-system` word of a unit must be
/// one of these, or `rewrite` fails the test.
const STORE_BIN: &str = "/run/current-system/sw/bin";
const STORE_MAS_CONFIG: &str = "/run/current-system/sw/share/masgen/mas-config.yaml";
const STORE_SYNAPSE_CONFIG: &str = "/run/current-system/sw/share/masgen/homeserver.yaml";

/// The socket directory the lowered Synapse/MAS database settings use.
const NIXOS_PG_SOCKET: &str = "/run/postgresql";

/// Synapse's `users` rows in the test database.
const SYNAPSE_USERS: [&str; 3] = [
    "@alice:example.com",
    "@bob:example.com",
    "@bot.reminders:example.com",
];

/// Dummy contents of the host's secret files (the pepper without a trailing
/// newline: MAS reads it verbatim, see modules/synapse-secrets.nix).
const SECRETS: [(&str, &str); 5] = [
    (
        "/run/secrets/mas-encryption",
        "0000111122223333444455556666777788889999aaaabbbbccccddddeeeeffff",
    ),
    (
        "/run/secrets/mas-rsa.pem",
        "-----BEGIN RSA PRIVATE KEY-----\ndummy\n-----END RSA PRIVATE KEY-----\n",
    ),
    ("/run/secrets/mas-synapse-secret", "dummy-shared-secret"),
    ("/run/secrets/synapse-pepper", "dummy-pepper"),
    ("/run/secrets/synapse-registration", "dummy-registration"),
];

// ------------------------------------------------------------------ basics

/// Panics in CI, prints a SKIP line locally (like tests/support).
fn unavailable<T>(what: &str, why: &str) -> Option<T> {
    if in_ci() {
        panic!("{what} is required for {why} (CI is set)");
    }
    eprintln!("SKIP: {what} is not available (needed for {why})");
    None
}

fn ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").arg(flag).arg(user).output().unwrap();
        assert!(out.status.success(), "id {flag} {user}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// Writes `content` with `mode`, owned by `owner` (None: root).
fn write_owned(path: &Path, content: &str, mode: u32, owner: Option<&str>) {
    fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    set_owner_mode(path, mode, owner);
}

fn mkdir_owned(path: &Path, mode: u32, owner: Option<&str>) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    set_owner_mode(path, mode, owner);
}

fn set_owner_mode(path: &Path, mode: u32, owner: Option<&str>) {
    let (uid, gid) = owner.map(ids).unwrap_or((0, 0));
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ------------------------------------------------------------- the spec

/// The validated spec and its prepare phase.
fn prepare_phase() -> (Homeserver, HostPhase) {
    let checked = checked(SPEC, &example_text(SPEC));
    let lowered = masgen::lower::lower(&checked.homeserver);
    let phase = lowered
        .phases
        .into_iter()
        .find(|p| p.phase == Phase::Prepare)
        .expect("a migrate spec has a prepare phase");
    assert!(
        phase.syn2mas_access.is_some(),
        "prepare phase enables syn2masAccess"
    );
    (checked.homeserver, phase)
}

fn rendered_unit(phase: &HostPhase, name: &str) -> Unit {
    let task = phase
        .tasks
        .get(name)
        .unwrap_or_else(|| panic!("no task {name} in {:?}", phase.tasks.keys()));
    let text = masgen::emit::render_unit(name, task, phase);
    Unit::parse(&text)
}

// ------------------------------------------------------------ unit files

/// The [Service] keys of a rendered unit this test acts on.
#[derive(Debug)]
struct Unit {
    text: String,
    /// ExecStart= words, unquoted; specifiers and `$` not yet expanded.
    exec_start: Vec<String>,
    /// LoadCredential= name -> source path (specifiers expanded).
    credentials: BTreeMap<String, String>,
    user: Option<String>,
    dynamic_user: bool,
    runtime_directory: Option<String>,
    runtime_directory_mode: Option<String>,
    umask: Option<String>,
}

impl Unit {
    fn parse(text: &str) -> Unit {
        let mut unit = Unit {
            text: text.to_owned(),
            exec_start: Vec::new(),
            credentials: BTreeMap::new(),
            user: None,
            dynamic_user: false,
            runtime_directory: None,
            runtime_directory_mode: None,
            umask: None,
        };
        let mut section = "";
        let mut exec_starts = 0;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                section = line;
                continue;
            }
            if section != "[Service]" {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("bad unit line {line:?}"));
            match key {
                "ExecStart" => {
                    exec_starts += 1;
                    unit.exec_start = split_exec_words(value);
                }
                "LoadCredential" => {
                    let (name, path) = value
                        .split_once(':')
                        .unwrap_or_else(|| panic!("bad LoadCredential={value}"));
                    let path = expand_specifiers(path, None);
                    assert!(
                        unit.credentials.insert(name.to_owned(), path).is_none(),
                        "credential {name} loaded twice"
                    );
                }
                "User" => unit.user = Some(value.to_owned()),
                "DynamicUser" => unit.dynamic_user = matches!(value, "yes" | "true" | "1" | "on"),
                "RuntimeDirectory" => unit.runtime_directory = Some(value.to_owned()),
                "RuntimeDirectoryMode" => unit.runtime_directory_mode = Some(value.to_owned()),
                "UMask" => unit.umask = Some(value.to_owned()),
                _ => {}
            }
        }
        assert_eq!(exec_starts, 1, "one ExecStart= expected:\n{text}");
        unit
    }

    /// The argv systemd would exec: specifiers (`%d` = `creds`) and `$$`
    /// expanded.
    fn argv(&self, creds: Option<&Path>) -> Vec<String> {
        self.exec_start
            .iter()
            .map(|w| expand_dollars(&expand_specifiers(w, creds)))
            .collect()
    }
}

/// Splits an Exec line into words like systemd (EXTRACT_UNQUOTE |
/// EXTRACT_CUNESCAPE): double or single quotes, C escapes.
fn split_exec_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return words;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => match chars.next() {
                    Some('n') => word.push('\n'),
                    Some('t') => word.push('\t'),
                    Some(e @ ('\\' | '"' | '\'' | ' ')) => word.push(e),
                    other => panic!("unsupported escape \\{other:?} in {line:?}"),
                },
                (_, c) => word.push(c),
            }
        }
        assert!(quote.is_none(), "unterminated quote in {line:?}");
        words.push(word);
    }
}

/// `%%` -> `%`, `%d` -> the credentials directory; any other specifier is
/// unexpected in masgen's units.
fn expand_specifiers(word: &str, creds: Option<&Path>) -> String {
    let mut out = String::new();
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('d') => {
                let creds = creds.unwrap_or_else(|| panic!("%d in {word:?} without credentials"));
                out.push_str(creds.to_str().unwrap());
            }
            other => panic!("unexpected specifier %{other:?} in {word:?}"),
        }
    }
    out
}

/// `$$` -> `$`; a bare `$` would be an environment variable reference, which
/// masgen never means to write.
fn expand_dollars(word: &str) -> String {
    let mut out = String::new();
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        if c == '$' {
            assert_eq!(chars.next(), Some('$'), "unescaped `$` in {word:?}");
        }
        out.push(c);
    }
    out
}

// ----------------------------------------------------------- the "system"

/// Stand-ins for the files a NixOS host of the prepare phase has, in a temp
/// dir readable by the service users (its root is 0755, like /).
struct Host {
    dir: TempDir,
    /// Original path (a word of a unit) -> local path.
    paths: BTreeMap<String, PathBuf>,
}

impl Host {
    fn new(phase: &HostPhase, hs: &Homeserver, pg: &PgCluster) -> Host {
        let dir = tempfile::Builder::new()
            .prefix("masgen-tasks-")
            .tempdir()
            .unwrap();
        set_owner_mode(dir.path(), 0o755, None);
        let root = dir.path();
        let mut paths = BTreeMap::new();

        // The host's secret files: root-only, as on the host.
        let secrets = root.join("secrets");
        mkdir_owned(&secrets, 0o700, None);
        for (original, content) in SECRETS {
            let local = secrets.join(Path::new(original).file_name().unwrap());
            write_owned(&local, content, 0o400, None);
            paths.insert(original.to_owned(), local);
        }

        // Scripts and tools of the system profile.
        let bin = root.join("bin");
        mkdir_owned(&bin, 0o755, None);
        for (tool, script) in [
            ("masgen-mas-run", "mas-run.sh"),
            ("masgen-backup", "backup.sh"),
        ] {
            let path = bin.join(tool);
            write_owned(&path, &shell_application(script), 0o555, None);
            paths.insert(format!("{STORE_BIN}/{tool}"), path);
        }

        // The store's config files, world-readable.
        let store = root.join("store");
        mkdir_owned(&store, 0o755, None);
        let mas_config = store.join("mas-config.yaml");
        write_owned(&mas_config, &mas_config_yaml(phase, pg), 0o444, None);
        paths.insert(STORE_MAS_CONFIG.to_owned(), mas_config);
        let homeserver = store.join("homeserver.yaml");
        write_owned(&homeserver, &synapse_config_yaml(phase, pg), 0o444, None);
        paths.insert(STORE_SYNAPSE_CONFIG.to_owned(), homeserver);

        // What masgen-synapse-password-config.service writes at boot.
        let run_dir = root.join("run-masgen-synapse");
        mkdir_owned(&run_dir, 0o700, Some("matrix-synapse"));
        let password_config = run_dir.join("password-config.yaml");
        write_owned(
            &password_config,
            &password_config_json(phase),
            0o400,
            Some("matrix-synapse"),
        );
        paths.insert(PASSWORD_CONFIG_PATH.to_owned(), password_config);

        // The backup directory does not exist yet.
        paths.insert(hs.backup_dir.clone(), root.join("var/backup/masgen"));

        Host { dir, paths }
    }

    /// `mas-cli` of the system profile: the stand-in, run by `python`, using
    /// `psql`.
    fn install_fake_mas_cli(&mut self, python: &Path, psql: &Path) {
        let path = self.root().join("bin/mas-cli");
        let script = format!(
            "#!{} -I\nPSQL = {}\n{FAKE_MAS_CLI}",
            python.display(),
            serde_json::to_string(psql.to_str().unwrap()).unwrap()
        );
        write_owned(&path, &script, 0o555, None);
        self.paths.insert(format!("{STORE_BIN}/mas-cli"), path);
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, original: &str) -> &Path {
        self.paths
            .get(original)
            .unwrap_or_else(|| panic!("no stand-in for {original}"))
    }

    /// Replaces every word naming a host path by its stand-in; fails on
    /// host paths this test does not know.
    fn rewrite(&self, argv: &[String]) -> Vec<String> {
        argv.iter()
            .map(|w| match self.paths.get(w) {
                Some(p) => p.to_str().unwrap().to_owned(),
                None => {
                    for prefix in ["/run/", "/var/", "/nix/", "/etc/"] {
                        assert!(!w.starts_with(prefix), "no stand-in for {w} in {argv:?}");
                    }
                    w.clone()
                }
            })
            .collect()
    }

    /// What systemd does for LoadCredential=: a directory owned by the
    /// service user (0500) with a 0400 copy of each source.
    fn credentials_dir(&self, unit: &Unit, name: &str, owner: &str) -> PathBuf {
        let creds = self.root().join("credentials").join(name);
        mkdir_owned(&creds, 0o700, None);
        for (cred, source) in &unit.credentials {
            let target = creds.join(cred);
            fs::copy(self.path(source), &target)
                .unwrap_or_else(|e| panic!("copy credential {cred} from {source}: {e}"));
            set_owner_mode(&target, 0o400, Some(owner));
        }
        set_owner_mode(&creds, 0o500, Some(owner));
        creds
    }
}

/// A modules/scripts/*.sh file as pkgs.writeShellApplication wraps it.
fn shell_application(script: &str) -> String {
    let body =
        fs::read_to_string(repo_root().join("modules/scripts").join(script)).expect("read script");
    format!("#!/bin/bash\nset -o errexit\nset -o nounset\nset -o pipefail\n\n{body}")
}

/// The MAS settings as YAML, with the database socket pointed at the test
/// cluster.
fn mas_config_yaml(phase: &HostPhase, pg: &PgCluster) -> String {
    let mut settings = phase.mas.settings.clone();
    let uri = settings["database"]["uri"]
        .as_str()
        .expect("MAS database.uri")
        .to_owned();
    let from = format!("host={NIXOS_PG_SOCKET}");
    assert_eq!(uri.matches(&from).count(), 1, "{uri}");
    settings["database"]["uri"] = json!(uri.replace(
        &from,
        &format!("host={}&port={}", pg.socket_dir().display(), pg.port())
    ));
    serde_norway::to_string(&settings).unwrap()
}

/// The Synapse settings as YAML, with database host/port pointed at the test
/// cluster.
fn synapse_config_yaml(phase: &HostPhase, pg: &PgCluster) -> String {
    let mut settings = phase.synapse.settings.clone();
    let args = &mut settings["database"]["args"];
    // No `host`: libpq's default socket, NixOS's /run/postgresql.
    assert!(args.get("host").is_none(), "{args}");
    args["host"] = json!(pg.socket_dir());
    args["port"] = json!(pg.port());
    serde_norway::to_string(&settings).unwrap()
}

/// The file modules/synapse-secrets.nix writes: jq's pretty JSON of
/// `{password_config: settings + {pepper: <pepper file, one "\n" stripped>}}`.
fn password_config_json(phase: &HostPhase) -> String {
    let pc = phase
        .synapse
        .password_config
        .as_ref()
        .expect("the spec has a pepper");
    let pepper = SECRETS
        .iter()
        .find(|(p, _)| *p == pc.pepper_file)
        .unwrap_or_else(|| panic!("no dummy for {}", pc.pepper_file))
        .1;
    let mut settings = pc.settings.clone();
    settings["pepper"] = json!(pepper.strip_suffix('\n').unwrap_or(pepper));
    let mut out = serde_json::to_string_pretty(&json!({ "password_config": settings })).unwrap();
    out.push('\n');
    out
}

/// Runs `argv` as systemd would: environment cleared, UMask= applied, cwd
/// `/`, as `user` (None: root).
fn run_as_unit(unit: &Unit, user: Option<&str>, argv: &[String], env: &[(&str, &Path)]) -> Output {
    let umask = unit.umask.as_deref().expect("masgen units set UMask=");
    let runuser = require_tool("runuser", "running units as their User=").unwrap();
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new(runuser);
            c.args(["-u", u, "--", "/bin/sh"]);
            c
        }
        None => Command::new("/bin/sh"),
    };
    cmd.arg("-c")
        .arg(format!("umask {umask} && exec \"$@\""))
        .arg("sh")
        .args(argv)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .current_dir("/")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap_or_else(|e| panic!("run {argv:?}: {e}"))
}

// --------------------------------------------------------------- postgres

/// The cluster as NixOS would have it before the migration: peer auth, the
/// Synapse database (C collation) and MAS's, each owned by the role of the
/// service, and a `users` table created by Synapse's own role.
fn start_cluster(hs: &Homeserver) -> Option<PgCluster> {
    let why = "running masgen's task units against PostgreSQL";
    if !require_root(why) {
        return None;
    }
    require_tool("runuser", why)?;
    let synapse = &hs.synapse.database;
    let mas = &hs.mas.database;
    // Peer auth: OS user = role, as on the host.
    for user in [synapse.user.as_str(), mas.user.as_str()] {
        if !ensure_os_user(user) {
            return None;
        }
    }
    let pg = PgCluster::start()?;
    let su = |sql: &str| {
        pg.superuser_sql(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    su(&format!(
        r#"CREATE ROLE "{0}" LOGIN; CREATE ROLE "{1}" LOGIN;"#,
        synapse.user, mas.user
    ));
    su(&format!(
        r#"CREATE DATABASE "{}" OWNER "{}" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';"#,
        synapse.name, synapse.user
    ));
    su(&format!(
        r#"CREATE DATABASE "{}" OWNER "{}";"#,
        mas.name, mas.user
    ));
    assert_eq!(
        su(&format!(
            "SELECT datcollate || ' ' || datctype FROM pg_database WHERE datname = '{}'",
            synapse.name
        )),
        "C C"
    );
    let rows: Vec<String> = SYNAPSE_USERS
        .iter()
        .enumerate()
        .map(|(i, u)| format!("('{u}', 'hash{i}', {})", 1_700_000_000_000u64 + i as u64))
        .collect();
    pg.psql_as(
        &synapse.user,
        &synapse.name,
        &synapse.user,
        &format!(
            "CREATE TABLE users (name text NOT NULL UNIQUE, password_hash text, creation_ts bigint, \
             admin smallint DEFAULT 0 NOT NULL, deactivated smallint DEFAULT 0 NOT NULL);\n\
             INSERT INTO users (name, password_hash, creation_ts) VALUES {};",
            rows.join(", ")
        ),
    )
    .unwrap_or_else(|e| panic!("create Synapse's users table: {e}"));
    Some(pg)
}

/// pg_hba/pg_ident lines of modules/syn2mas-access.nix, from lib.nix's
/// `syn2masAccessLines` with the values the generated configuration passes
/// (synapseDatabase/synapseRole from the spec; masUser left at the module
/// default, `matrix-authentication-service` = MAS_USER).
fn syn2mas_access_lines(nix: &NixTool, hs: &Homeserver) -> (String, String) {
    let out = run_ok(
        nix.command()
            .args(["--eval", "--strict", "--json"])
            .arg("--argstr")
            .arg("lib")
            .arg(repo_root().join("modules/lib.nix"))
            .args(["--argstr", "db", &hs.synapse.database.name])
            .args(["--argstr", "role", &hs.synapse.database.user])
            .args(["--argstr", "masUser", MAS_USER])
            .arg("-E")
            .arg(
                r#"{ lib, db, role, masUser }:
                let l = import (/. + lib); in
                l.syn2masAccessLines { synapseDatabase = db; synapseRole = role; inherit masUser; }
                // { plain = builtins.all l.isPlainPgName [ db role masUser ]; }"#,
            ),
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON from nix-instantiate");
    // The module asserts this; the lines below are only valid if it holds.
    assert_eq!(v["plain"], true, "{v}");
    (
        v["authentication"].as_str().unwrap().to_owned(),
        v["identMap"].as_str().unwrap().to_owned(),
    )
}

/// The only default rule of this host (nixpkgs adds it with lib.mkAfter).
const DEFAULT_HBA: &str = "local all all peer\n";

// ------------------------------------------------------------ fake mas-cli

/// A python3 the MAS user can run that has PyYAML (the stand-in parses the
/// YAML configs like mas-cli does).
fn python_with_yaml(user: &str) -> Option<PathBuf> {
    let runuser = find_tool("runuser")?;
    let mut candidates = vec![PathBuf::from("/usr/bin/python3")];
    candidates.extend(find_tool("python3"));
    candidates
        .into_iter()
        .find(|py| {
            Command::new(&runuser)
                .args(["-u", user, "--"])
                .arg(py)
                .args(["-I", "-c", "import yaml"])
                .current_dir("/")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .or_else(|| {
            unavailable(
                &format!(
                    "a python3 with PyYAML that OS user `{user}` can run (Debian: python3-yaml)"
                ),
                "the mas-cli stand-in",
            )
        })
}

/// Stand-in for `mas-cli` (MAS is not available here). For
/// `syn2mas ... migrate --dry-run` it:
/// 1. checks the argv: `--config F` (global) anywhere, `--synapse-config F`
///    only between `syn2mas` and `migrate`, then `--dry-run`; prints it;
/// 2. reads the MAS config(s): no `$CREDENTIALS_DIRECTORY` left, the
///    rendered file private to this user, every `*_file` inside
///    $CREDENTIALS_DIRECTORY and readable;
/// 3. connects to MAS's database with `database.uri` (peer auth as itself);
/// 4. merges the Synapse config files (top-level keys, as Synapse does),
///    checks the pepper equals MAS's version-1 password secret (syn2mas
///    requires that), connects with `database.args` (host, port, user,
///    database) and counts Synapse's users.
const FAKE_MAS_CLI: &str = r#"
import json, os, pwd, stat, subprocess, sys
import yaml

def fail(msg, code=64):
    print("mas-cli stand-in: " + msg, file=sys.stderr, flush=True)
    sys.exit(code)

def out(*parts):
    print(*parts, flush=True)

argv = sys.argv[1:]
out("ARGV", json.dumps(argv, separators=(",", ":")))
out("USER", pwd.getpwuid(os.getuid()).pw_name)

configs, synapse_configs, state, dry_run = [], [], "top", False
i = 0
while i < len(argv):
    a = argv[i]
    if a in ("--config", "--synapse-config"):
        if i + 1 >= len(argv):
            fail(a + " needs a value")
        if a == "--synapse-config" and state != "syn2mas":
            fail("--synapse-config is an option of `syn2mas`, got it in state " + state)
        (configs if a == "--config" else synapse_configs).append(argv[i + 1])
        i += 2
        continue
    if state == "top" and a == "syn2mas":
        state = "syn2mas"
    elif state == "syn2mas" and a == "migrate":
        state = "migrate"
    elif state == "migrate" and a == "--dry-run" and not dry_run:
        dry_run = True
    else:
        fail("unexpected argument %r in state %s" % (a, state))
    i += 1
if state != "migrate" or not dry_run:
    fail("this stand-in only does `syn2mas ... migrate --dry-run`")
if not configs or not synapse_configs:
    fail("need --config and --synapse-config")

creds = os.environ.get("CREDENTIALS_DIRECTORY") or fail("no CREDENTIALS_DIRECTORY")

def load(path):
    with open(path) as f:
        raw = f.read()
    if "CREDENTIALS_DIRECTORY" in raw:
        fail(path + " still refers to $CREDENTIALS_DIRECTORY")
    return yaml.safe_load(raw)

def deep_merge(base, extra):
    for k, v in extra.items():
        if isinstance(base.get(k), dict) and isinstance(v, dict):
            deep_merge(base[k], v)
        else:
            base[k] = v

mas = {}
for c in configs:
    deep_merge(mas, load(c))
st = os.stat(configs[0])
if stat.S_IMODE(st.st_mode) != 0o600 or st.st_uid != os.getuid():
    fail("rendered config %s: mode %o uid %d" % (configs[0], stat.S_IMODE(st.st_mode), st.st_uid))

def files(v, path):
    if isinstance(v, dict):
        for k, x in v.items():
            p = path + "." + k if path else k
            if k.endswith("_file"):
                yield p, x
            else:
                yield from files(x, p)
    elif isinstance(v, list):
        for n, x in enumerate(v):
            yield from files(x, "%s[%d]" % (path, n))

secrets = {}
for p, f in sorted(files(mas, "")):
    if not isinstance(f, str) or os.path.dirname(f) != creds:
        fail("%s = %r is not in the credentials directory %s" % (p, f, creds))
    with open(f, "rb") as fh:
        secrets[p] = fh.read()
    out("MAS-FILE", p, os.path.basename(f), len(secrets[p]))

def psql(args, what):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    r = subprocess.run([PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"] + args,
                       capture_output=True, text=True, env=env, cwd="/")
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        fail("cannot connect to the %s database" % what, 1)
    return r.stdout.splitlines()

for line in psql(["-d", mas["database"]["uri"], "-c",
                  "SELECT current_user || '@' || current_database()"], "MAS"):
    out("MAS-DB", line)

synapse = {}
for c in synapse_configs:
    d = load(c)
    if not isinstance(d, dict):
        fail(c + " is not a mapping")
    synapse.update(d)

v1 = [s for s in mas["passwords"]["schemes"] if s["version"] == 1]
pepper = synapse.get("password_config", {}).get("pepper")
if len(v1) != 1 or pepper is None:
    fail("need one MAS version-1 password scheme and a Synapse pepper")
with open(v1[0]["secret_file"], "rb") as fh:
    if fh.read() != pepper.encode():
        fail("Synapse's pepper does not match MAS's version-1 secret")
out("PEPPER", "match")

db = synapse["database"]
if db.get("name") != "psycopg2":
    fail("Synapse database is not PostgreSQL: %r" % db.get("name"))
a = db["args"]
conn = ["-U", a["user"], "-d", a.get("database") or a["dbname"]]
if "host" in a:
    conn += ["-h", str(a["host"])]
if "port" in a:
    conn += ["-p", str(a["port"])]
lines = psql(conn + ["-c", "SELECT current_user || '@' || current_database()",
                     "-c", "SELECT count(*) FROM users"], "Synapse")
out("SYNAPSE-DB", lines[0])
out("SYNAPSE-USERS", lines[1])
out("DRY-RUN", "done")
"#;

// ------------------------------------------------------------------ tests

/// Runs masgen-syn2mas-dry-run's ExecStart= as MAS's user, the way systemd
/// would, once per call (fresh RuntimeDirectory= and credentials).
fn run_dry_run(host: &Host, unit: &Unit, attempt: &str) -> (Output, PathBuf, PathBuf) {
    let user = unit.user.as_deref().expect("User=");
    let runtime = host.root().join(format!("runtime-{attempt}")).join(
        unit.runtime_directory
            .as_deref()
            .expect("RuntimeDirectory="),
    );
    let mode = u32::from_str_radix(unit.runtime_directory_mode.as_deref().unwrap(), 8).unwrap();
    mkdir_owned(runtime.parent().unwrap(), 0o755, None);
    mkdir_owned(&runtime, mode, Some(user));
    let creds = host.credentials_dir(unit, &format!("{SYN2MAS_DRY_RUN}-{attempt}"), user);
    let argv = host.rewrite(&unit.argv(Some(&creds)));
    let out = run_as_unit(
        unit,
        Some(user),
        &argv,
        &[
            ("RUNTIME_DIRECTORY", &runtime),
            ("CREDENTIALS_DIRECTORY", &creds),
        ],
    );
    (out, runtime, creds)
}

#[test]
fn syn2mas_dry_run_unit_reads_synapse_db_through_the_ident_map() {
    let (hs, phase) = prepare_phase();
    let unit = rendered_unit(&phase, SYN2MAS_DRY_RUN);
    assert_eq!(unit.user.as_deref(), Some(MAS_USER), "{}", unit.text);
    assert!(unit.dynamic_user, "{}", unit.text);

    let Some(nix) = nix_instantiate() else { return };
    let why = "running masgen-mas-run";
    if require_tool("envsubst", why).is_none() {
        return;
    }
    let Some(pg) = start_cluster(&hs) else { return };
    let Some(python) = python_with_yaml(MAS_USER) else {
        return;
    };
    let (access_hba, access_ident) = syn2mas_access_lines(&nix, &hs);
    // The lines the module produces for this spec (cf. tests/modules.rs).
    assert_eq!(
        access_hba,
        "local matrix-synapse matrix-synapse peer map=masgen-syn2mas\n"
    );

    let mut host = Host::new(&phase, &hs, &pg);
    host.install_fake_mas_cli(&python, &pg.bin_dir().join("psql"));

    // Every credential the unit loads, and nothing else.
    assert_eq!(
        unit.credentials,
        BTreeMap::from(
            [
                ("encryption", "/run/secrets/mas-encryption"),
                ("signing-key-0", "/run/secrets/mas-rsa.pem"),
                ("matrix-secret", "/run/secrets/mas-synapse-secret"),
                ("synapse-pepper", "/run/secrets/synapse-pepper"),
                ("masgen-synapse-config-0", PASSWORD_CONFIG_PATH),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        ),
        "{}",
        unit.text
    );

    let secret_len = |original: &str| {
        SECRETS
            .iter()
            .find(|(p, _)| *p == original)
            .unwrap()
            .1
            .len()
    };
    let expected_stdout = |runtime: &Path, creds: &Path, tail: &[String]| -> Vec<String> {
        let argv = json!([
            "syn2mas",
            "--config",
            runtime.join("config.yaml"),
            "--synapse-config",
            host.path(STORE_SYNAPSE_CONFIG),
            "--synapse-config",
            creds.join("masgen-synapse-config-0"),
            "migrate",
            "--dry-run"
        ]);
        let mut lines = vec![format!("ARGV {argv}"), format!("USER {MAS_USER}")];
        for (key, cred, original) in [
            (
                "matrix.secret_file",
                "matrix-secret",
                "/run/secrets/mas-synapse-secret",
            ),
            (
                "passwords.schemes[0].secret_file",
                "synapse-pepper",
                "/run/secrets/synapse-pepper",
            ),
            (
                "secrets.encryption_file",
                "encryption",
                "/run/secrets/mas-encryption",
            ),
            (
                "secrets.keys[0].key_file",
                "signing-key-0",
                "/run/secrets/mas-rsa.pem",
            ),
        ] {
            lines.push(format!("MAS-FILE {key} {cred} {}", secret_len(original)));
        }
        lines.push(format!("MAS-DB {0}@{0}", MAS_USER));
        lines.push("PEPPER match".to_owned());
        lines.extend(tail.iter().cloned());
        lines
    };

    // Control: peer auth alone (no syn2mas-access lines). MAS's own database
    // works, Synapse's is refused.
    pg.set_ident("").unwrap();
    pg.set_hba(DEFAULT_HBA).unwrap();
    let (out, runtime, creds) = run_dry_run(&host, &unit, "without-access");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        text(&out.stdout).lines().collect::<Vec<_>>(),
        expected_stdout(&runtime, &creds, &[]),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(r#"Peer authentication failed for user "matrix-synapse""#),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot connect to the Synapse database"),
        "{stderr}"
    );

    // With the module's lines (mkBefore: ahead of the default rule).
    pg.set_ident(&access_ident).unwrap();
    pg.set_hba(&format!("{access_hba}{DEFAULT_HBA}")).unwrap();
    let (out, runtime, creds) = run_dry_run(&host, &unit, "with-access");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout).lines().collect::<Vec<_>>(),
        expected_stdout(
            &runtime,
            &creds,
            &[
                "SYNAPSE-DB matrix-synapse@matrix-synapse".to_owned(),
                format!("SYNAPSE-USERS {}", SYNAPSE_USERS.len()),
                "DRY-RUN done".to_owned(),
            ]
        ),
        "stderr:\n{}",
        text(&out.stderr)
    );
    // masgen-mas-run left the rendered config private to the MAS user.
    let rendered = runtime.join("config.yaml");
    assert_eq!(mode_of(&rendered), 0o600);
    assert_eq!(fs::metadata(&rendered).unwrap().uid(), ids(MAS_USER).0);
    let rendered_text = fs::read_to_string(&rendered).unwrap();
    assert!(
        rendered_text.contains(&format!("{}/encryption", creds.display())),
        "{rendered_text}"
    );
    // The originals stayed out of reach: only the copies were read.
    for (original, _) in SECRETS {
        assert!(!rendered_text.contains(original), "{rendered_text}");
    }
}

#[test]
fn backup_unit_dumps_the_synapse_database() {
    let (hs, phase) = prepare_phase();
    let unit = rendered_unit(&phase, BACKUP);
    // Runs as root, with no credentials or runtime directory.
    assert_eq!(unit.user, None, "{}", unit.text);
    assert!(!unit.dynamic_user);
    assert!(unit.credentials.is_empty(), "{}", unit.text);
    assert_eq!(unit.runtime_directory, None);

    let Some(pg) = start_cluster(&hs) else { return };
    // backup.sh runs pg_dump as `postgres` (PG_DUMP_AS unset, as in the unit).
    assert_eq!(pg.superuser(), "postgres");
    let host = Host::new(&phase, &hs, &pg);

    // pg_dump would use /run/postgresql:5432; point it at the test cluster.
    let wrapper = host.root().join("bin/pg_dump");
    write_owned(
        &wrapper,
        &format!(
            "#!/bin/sh\nexec '{}' -h '{}' -p '{}' \"$@\"\n",
            pg.bin_dir().join("pg_dump").display(),
            pg.socket_dir().display(),
            pg.port()
        ),
        0o555,
        None,
    );

    let argv = host.rewrite(&unit.argv(None));
    let backup_dir = host.path(&hs.backup_dir).to_path_buf();
    assert_eq!(
        argv[1..],
        [
            hs.synapse.database.name.clone(),
            backup_dir.to_str().unwrap().to_owned(),
            host.path(PASSWORD_CONFIG_PATH).to_str().unwrap().to_owned(),
        ]
    );
    let out = run_as_unit(&unit, None, &argv, &[("PG_DUMP", &wrapper)]);
    assert!(out.status.success(), "{out:?}\n{}", pg.log());

    let stdout = text(&out.stdout);
    let dump = PathBuf::from(stdout.lines().last().expect("dump path").trim());
    assert_eq!(dump.parent(), Some(backup_dir.as_path()), "{stdout}");
    let name = dump.file_name().unwrap().to_str().unwrap();
    let base = name
        .strip_suffix(".dump")
        .unwrap_or_else(|| panic!("unexpected dump name {name}"));
    assert!(base.starts_with("matrix-synapse-"), "{name}");
    let meta = fs::metadata(&dump).unwrap();
    assert!(meta.len() > 0);
    assert_eq!(meta.uid(), 0, "root-owned");
    assert_eq!(mode_of(&dump), 0o600);
    assert_eq!(mode_of(&backup_dir), 0o700);

    // A custom-format dump of Synapse's database, with its owner.
    let pg_restore = pg.bin_dir().join("pg_restore");
    let list = text(&run_ok(Command::new(&pg_restore).arg("--list").arg(&dump)).stdout);
    for entry in [
        "TABLE public users matrix-synapse",
        "TABLE DATA public users matrix-synapse",
    ] {
        assert!(list.contains(entry), "{entry} not in:\n{list}");
    }
    assert!(list.contains("dbname: matrix-synapse"), "{list}");
    // ... holding exactly the rows of `users`.
    let data = text(
        &run_ok(
            Command::new(&pg_restore)
                .args(["--data-only", "--table=users", "-f", "-"])
                .arg(&dump),
        )
        .stdout,
    );
    let copy = data
        .split_once("COPY public.users ")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .and_then(|(_, rest)| rest.split_once("\n\\.\n"))
        .unwrap_or_else(|| panic!("no COPY block in:\n{data}"))
        .0;
    let names: Vec<&str> = copy
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(names, SYNAPSE_USERS);

    // The Synapse config file the unit names is copied beside the dump.
    let config_dir = backup_dir.join(format!("{base}-config"));
    assert_eq!(mode_of(&config_dir), 0o700);
    let copied: Vec<String> = fs::read_dir(&config_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(copied, ["01-password-config.yaml"]);
    let copy = config_dir.join("01-password-config.yaml");
    assert_eq!(mode_of(&copy), 0o600);
    assert_eq!(
        fs::read_to_string(&copy).unwrap(),
        password_config_json(&phase)
    );
}
