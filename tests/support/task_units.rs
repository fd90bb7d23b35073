//! masgen's task units run the way systemd would run them, for the tests
//! that run them against PostgreSQL (tests/tasks_postgres.rs,
//! tests/conformance_split.rs): the reference `.service` files parsed, their
//! ExecStart= argv run as the unit's User= with UMask=, Environment=, a
//! credentials directory of LoadCredential= copies and `%d` / `%%` / `$$`
//! expanded; a temp dir of stand-ins for the host's files; and the
//! `mas-cli` stand-in (`FAKE_MAS_CLI`).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

use super::{find_tool, in_ci, repo_root, require_tool, PgCluster};

/// Where the reference renders put store paths (src/emit/render.rs; not
/// exported by the crate). Every `/run/current-system` word of a unit must be
/// one of these, or `HostDir::rewrite` fails the test.
pub const STORE_BIN: &str = "/run/current-system/sw/bin";
pub const STORE_MAS_CONFIG: &str = "/run/current-system/sw/share/masgen/mas-config.yaml";
pub const STORE_SYNAPSE_CONFIG: &str = "/run/current-system/sw/share/masgen/homeserver.yaml";
// ------------------------------------------------------------------ basics

/// Panics in CI, prints a SKIP line locally (like tests/support).
pub fn unavailable<T>(what: &str, why: &str) -> Option<T> {
    if in_ci() {
        panic!("{what} is required for {why} (CI is set)");
    }
    eprintln!("SKIP: {what} is not available (needed for {why})");
    None
}

pub fn ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").arg(flag).arg(user).output().unwrap();
        assert!(out.status.success(), "id {flag} {user}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// Writes `content` with `mode`, owned by `owner` (None: root).
pub fn write_owned(path: &Path, content: &str, mode: u32, owner: Option<&str>) {
    fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    set_owner_mode(path, mode, owner);
}

pub fn mkdir_owned(path: &Path, mode: u32, owner: Option<&str>) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    set_owner_mode(path, mode, owner);
}

pub fn set_owner_mode(path: &Path, mode: u32, owner: Option<&str>) {
    let (uid, gid) = owner.map(ids).unwrap_or((0, 0));
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
// ------------------------------------------------------------ unit files

/// The [Service] keys of a rendered unit this test acts on.
#[derive(Debug)]
pub struct Unit {
    pub text: String,
    /// ExecStart= words, unquoted; specifiers and `$` not yet expanded.
    pub exec_start: Vec<String>,
    /// LoadCredential= name -> source path (specifiers expanded).
    pub credentials: BTreeMap<String, String>,
    pub user: Option<String>,
    pub dynamic_user: bool,
    pub runtime_directory: Option<String>,
    pub runtime_directory_mode: Option<String>,
    pub umask: Option<String>,
    /// Environment= assignments (comments, i.e. `#| ` lines, skipped).
    pub environment: BTreeMap<String, String>,
}

impl Unit {
    pub fn parse(text: &str) -> Unit {
        let mut unit = Unit {
            text: text.to_owned(),
            exec_start: Vec::new(),
            credentials: BTreeMap::new(),
            user: None,
            dynamic_user: false,
            runtime_directory: None,
            runtime_directory_mode: None,
            umask: None,
            environment: BTreeMap::new(),
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
                "Environment" => {
                    for word in split_exec_words(value) {
                        let (k, v) = word
                            .split_once('=')
                            .unwrap_or_else(|| panic!("bad Environment={value}"));
                        unit.environment.insert(k.to_owned(), v.to_owned());
                    }
                }
                _ => {}
            }
        }
        assert_eq!(exec_starts, 1, "one ExecStart= expected:\n{text}");
        unit
    }

    /// The argv systemd would exec: specifiers (`%d` = `creds`) and `$$`
    /// expanded.
    pub fn argv(&self, creds: Option<&Path>) -> Vec<String> {
        self.exec_start
            .iter()
            .map(|w| expand_dollars(&expand_specifiers(w, creds)))
            .collect()
    }
}

/// Splits an Exec line into words like systemd (EXTRACT_UNQUOTE |
/// EXTRACT_CUNESCAPE): double or single quotes, C escapes.
pub fn split_exec_words(line: &str) -> Vec<String> {
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
pub fn expand_specifiers(word: &str, creds: Option<&Path>) -> String {
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
pub fn expand_dollars(word: &str) -> String {
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

/// Stand-ins for the files a NixOS host has, in a temp dir readable by the
/// service users (its root is 0755, like /).
pub struct HostDir {
    pub dir: TempDir,
    /// Original path (a word of a unit) -> local path.
    pub paths: BTreeMap<String, PathBuf>,
}

impl HostDir {
    pub fn new(prefix: &str) -> HostDir {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        set_owner_mode(dir.path(), 0o755, None);
        HostDir {
            dir,
            paths: BTreeMap::new(),
        }
    }

    /// `mas-cli` of the system profile: the stand-in, run by `python`, using
    /// `psql`.
    pub fn install_fake_mas_cli(&mut self, python: &Path, psql: &Path) {
        let path = self.root().join("bin/mas-cli");
        let script = format!(
            "#!{} -I\nPSQL = {}\n{FAKE_MAS_CLI}",
            python.display(),
            serde_json::to_string(psql.to_str().unwrap()).unwrap()
        );
        write_owned(&path, &script, 0o555, None);
        self.paths.insert(format!("{STORE_BIN}/mas-cli"), path);
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, original: &str) -> &Path {
        self.paths
            .get(original)
            .unwrap_or_else(|| panic!("no stand-in for {original}"))
    }

    /// Replaces every word naming a host path by its stand-in; fails on
    /// host paths this test does not know.
    pub fn rewrite(&self, argv: &[String]) -> Vec<String> {
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
    pub fn credentials_dir(&self, unit: &Unit, name: &str, owner: &str) -> PathBuf {
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

    /// A modules/scripts/*.sh `script` as the system profile's `tool`.
    pub fn install_script(&mut self, tool: &str, script: &str) -> PathBuf {
        let bin = self.root().join("bin");
        mkdir_owned(&bin, 0o755, None);
        let path = bin.join(tool);
        write_owned(&path, &shell_application(script), 0o555, None);
        self.paths
            .insert(format!("{STORE_BIN}/{tool}"), path.clone());
        path
    }

    /// `pg_dump` pointed at the test cluster (the unit's would use
    /// /run/postgresql:5432), for masgen-backup's `PG_DUMP`.
    pub fn pg_dump_wrapper(&self, pg: &PgCluster) -> PathBuf {
        let wrapper = self.root().join("bin/pg_dump");
        write_owned(&wrapper, &pg.pg_dump_script(), 0o555, None);
        wrapper
    }

    /// Runs the unit's ExecStart= as its User=, the way systemd would, once
    /// per `attempt` (a fresh RuntimeDirectory= and credentials directory
    /// named after it). Returns the output, the runtime and credentials
    /// directories.
    pub fn run_unit(&self, unit: &Unit, attempt: &str) -> (Output, PathBuf, PathBuf) {
        let user = unit.user.as_deref().expect("User=");
        let runtime = self.root().join(format!("runtime-{attempt}")).join(
            unit.runtime_directory
                .as_deref()
                .expect("RuntimeDirectory="),
        );
        let mode = u32::from_str_radix(unit.runtime_directory_mode.as_deref().unwrap(), 8).unwrap();
        mkdir_owned(runtime.parent().unwrap(), 0o755, None);
        mkdir_owned(&runtime, mode, Some(user));
        let creds = self.credentials_dir(unit, attempt, user);
        let argv = self.rewrite(&unit.argv(Some(&creds)));
        let env = [
            ("RUNTIME_DIRECTORY", runtime.as_path()),
            ("CREDENTIALS_DIRECTORY", creds.as_path()),
        ];
        let out = run_as_unit(unit, Some(user), &argv, &env);
        (out, runtime, creds)
    }
}

/// A modules/scripts/*.sh file as pkgs.writeShellApplication wraps it.
pub fn shell_application(script: &str) -> String {
    let body =
        fs::read_to_string(repo_root().join("modules/scripts").join(script)).expect("read script");
    format!("#!/bin/bash\nset -o errexit\nset -o nounset\nset -o pipefail\n\n{body}")
}

/// Runs `argv` as systemd would: environment cleared, UMask= applied, cwd
/// `/`, as `user` (None: root).
pub fn run_as_unit(
    unit: &Unit,
    user: Option<&str>,
    argv: &[String],
    env: &[(&str, &Path)],
) -> Output {
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
    cmd.envs(&unit.environment);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap_or_else(|e| panic!("run {argv:?}: {e}"))
}

// ------------------------------------------------------------ fake mas-cli

/// A python3 the MAS user can run that has PyYAML (the stand-in parses the
/// YAML configs like mas-cli does).
pub fn python_with_yaml(user: &str) -> Option<PathBuf> {
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
/// `syn2mas ... check` and `syn2mas ... migrate [--dry-run]` it:
/// 1. checks the argv: `--config F` (global) anywhere, `--synapse-config F`
///    only between `syn2mas` and its subcommand, `--dry-run` only after
///    `migrate`; prints it;
/// 2. reads the MAS config(s), merged in order (one `--config` per name in
///    `MASGEN_MAS_EXTRA_CONFIGS`, in `$CREDENTIALS_DIRECTORY`, must be among
///    them): no `$CREDENTIALS_DIRECTORY` left, the rendered file private to
///    this user, every `*_file` inside $CREDENTIALS_DIRECTORY and readable;
/// 3. connects to MAS's database with `database.uri` (peer auth as itself,
///    or the uri's host, port and password) and prints the client and
///    server addresses the server sees (`local` over the socket);
/// 4. merges the Synapse config files (top-level keys, as Synapse does),
///    checks the pepper equals MAS's version-1 password secret (syn2mas
///    requires that), connects with `database.args` (host, port, user,
///    database, password, sslmode), prints the client address and counts
///    Synapse's users. It migrates nothing.
pub const FAKE_MAS_CLI: &str = r#"
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
    elif state == "syn2mas" and a in ("migrate", "check"):
        state = a
    elif state == "migrate" and a == "--dry-run" and not dry_run:
        dry_run = True
    else:
        fail("unexpected argument %r in state %s" % (a, state))
    i += 1
if state not in ("migrate", "check"):
    fail("this stand-in only does `syn2mas ... check` and `syn2mas ... migrate [--dry-run]`")
if not configs or not synapse_configs:
    fail("need --config and --synapse-config")

creds = os.environ.get("CREDENTIALS_DIRECTORY") or fail("no CREDENTIALS_DIRECTORY")
for name in os.environ.get("MASGEN_MAS_EXTRA_CONFIGS", "").split():
    if os.path.join(creds, name) not in configs[1:]:
        fail("MASGEN_MAS_EXTRA_CONFIGS names %s, which is not a --config" % name)

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

FROM = "SELECT coalesce(host(inet_client_addr()) || ' -> ' || host(inet_server_addr()), 'local')"

def psql(args, what, pgenv={}):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    env.update(pgenv)
    r = subprocess.run([PSQL, "-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1"] + args,
                       capture_output=True, text=True, env=env, cwd="/")
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        fail("cannot connect to the %s database" % what, 1)
    return r.stdout.splitlines()

lines = psql(["-d", mas["database"]["uri"], "-c",
              "SELECT current_user || '@' || current_database()", "-c", FROM], "MAS")
out("MAS-DB", lines[0])
out("MAS-DB-FROM", lines[1])

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
pgenv = {"PGPASSWORD": a["password"]} if "password" in a else {}
if "sslmode" in a:
    pgenv["PGSSLMODE"] = a["sslmode"]
lines = psql(conn + ["-c", "SELECT current_user || '@' || current_database()",
                     "-c", FROM, "-c", "SELECT count(*) FROM users"], "Synapse", pgenv)
out("SYNAPSE-DB", lines[0])
out("SYNAPSE-DB-FROM", lines[1])
out("SYNAPSE-USERS", lines[2])
out("DRY-RUN" if dry_run else state.upper(), "done")
"#;

/// scripts/database-file.sh as masgen-{synapse,mas}-database.service run
/// it: the service's database section, lib.nix's `filter`, the password
/// file as the `password` credential; writes `out`.
pub fn database_file(
    out: &Path,
    settings: &Value,
    filter: &str,
    password: &Path,
) -> Result<(), String> {
    let work = tempfile::tempdir().unwrap();
    let settings_file = work.path().join("settings.json");
    fs::write(&settings_file, settings.to_string()).unwrap();
    let creds = work.path().join("credentials");
    fs::create_dir(&creds).unwrap();
    fs::copy(password, creds.join("password")).unwrap();
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    let run = Command::new("bash")
        .arg(repo_root().join("modules/scripts/database-file.sh"))
        .arg(out)
        .arg(&settings_file)
        .arg(filter)
        .env("CREDENTIALS_DIRECTORY", &creds)
        .output()
        .unwrap();
    match run.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&run.stderr).into_owned()),
    }
}

/// masgen-postgres-passwords.service (modules/postgres-access.nix): its
/// script as `postgres` over the cluster's socket, with copies of its
/// LoadCredential= sources. `plan` is lib.nix's `postgresPasswordPlan`;
/// `sources` maps each password file to its stand-in.
pub fn run_postgres_passwords(pg: &PgCluster, plan: &Value, sources: &BTreeMap<String, PathBuf>) {
    let mut unit = Unit::parse("[Service]\nExecStart=true\nUMask=0077\n");
    for c in plan["loadCredential"].as_array().unwrap() {
        let (name, path) = c.as_str().unwrap().split_once(':').unwrap();
        unit.credentials.insert(name.into(), path.into());
    }
    let mut host = HostDir::new("masgen-postgres-passwords-");
    host.paths.extend(sources.clone());
    let creds = host.credentials_dir(&unit, "postgres-passwords", "postgres");
    let words: Vec<&str> = plan["words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    let path = format!("{}:/usr/bin:/bin", pg.bin_dir().display());
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--", "env"])
        .arg(format!("PATH={path}"))
        .arg(format!("CREDENTIALS_DIRECTORY={}", creds.display()))
        .arg(format!("PGHOST={}", pg.socket_dir().display()))
        .arg(format!("PGPORT={}", pg.port()))
        .arg("bash")
        .arg(repo_root().join("modules/scripts/postgres-passwords.sh"))
        .args(&words)
        .current_dir("/")
        .output()
        .unwrap();
    assert!(out.status.success(), "postgres-passwords.sh: {out:?}");
}
