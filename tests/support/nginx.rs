//! nginx for the tests: which binary, `nginx -t`, and a foreground nginx in
//! a temp dir, fed either server blocks (wrapped in a small test `http {}`)
//! or a whole nginx.conf such as the one nixpkgs generates.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use super::{find_tool, is_executable, run, unavailable};

/// nixpkgs writes `http2 on;`, a directive of nginx 1.25.1 and later.
const MIN_VERSION: (u32, u32, u32) = (1, 25, 1);

/// Stands for the test's temp dir in a whole nginx.conf given to
/// [`Nginx::start_conf`] / [`nginx_test_conf`].
pub const NGINX_DIR: &str = "@NGINX_DIR@";

/// nginx's version as (major, minor, patch), from `nginx -v`.
pub fn nginx_version(nginx: &Path) -> (u32, u32, u32) {
    let out = Command::new(nginx).arg("-v").output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    let v = text
        .split('/')
        .nth(1)
        .unwrap_or("0.0.0")
        .split_whitespace()
        .next()
        .unwrap_or("0.0.0");
    let mut it = v.split('.').map(|n| n.parse().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

/// The nginx the tests run: `$MASGEN_NGINX`, else the Debian 13 nginx that
/// `scripts/setup-test-deps.sh` unpacks under
/// `${MASGEN_NGINX_DIR:-~/.cache/masgen/nginx}`, else `nginx` on PATH. It
/// must be >= 1.25.1 (nixpkgs' `http2 on;`); an older one counts as
/// missing (SKIP locally, failure in CI).
pub fn nginx_bin() -> Option<PathBuf> {
    static CACHE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let res = CACHE.get_or_init(|| {
        let unpacked = match std::env::var_os("MASGEN_NGINX_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/masgen/nginx"),
        }
        .join("usr/sbin/nginx");
        let bin = match std::env::var_os("MASGEN_NGINX") {
            Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
            _ if is_executable(&unpacked) => Some(unpacked),
            _ => find_tool("nginx"),
        };
        let Some(bin) = bin else {
            return Err("`nginx`".to_string());
        };
        let v = nginx_version(&bin);
        if v < MIN_VERSION {
            return Err(format!(
                "nginx >= 1.25.1 (`{}` is {}.{}.{})",
                bin.display(),
                v.0,
                v.1,
                v.2
            ));
        }
        Ok(bin)
    });
    match res {
        Ok(p) => Some(p.clone()),
        Err(what) => unavailable(what, "running nginx with nixpkgs' `http2 on;`"),
    }
}

/// The directory with nginx's `mime.types`, `fastcgi.conf` and
/// `uwsgi_params`: `etc/nginx` beside the unpacked package, else /etc/nginx.
pub fn nginx_conf_dir(bin: &Path) -> PathBuf {
    let beside = bin
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(|root| root.join("etc/nginx"));
    match beside {
        Some(d) if d.join("mime.types").exists() => d,
        _ => PathBuf::from("/etc/nginx"),
    }
}

/// An nginx running in the foreground from a temp dir. Killed on drop.
///
/// Runs with `master_process off`, so the single process can be killed
/// without orphaning workers; as root it therefore never switches user.
pub struct Nginx {
    dir: tempfile::TempDir,
    child: Child,
}

fn write_nginx_conf(dir: &Path, server_blocks: &str) -> PathBuf {
    let d = dir.display();
    let servers = dir.join("servers.conf");
    fs::write(&servers, server_blocks).expect("write servers.conf");
    let conf = format!(
        "daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         \x20 default_type application/octet-stream;\n\
         \x20 access_log {d}/access.log;\n\
         {}\
         \x20 server_names_hash_bucket_size 128;\n\
         \x20 include {};\n\
         }}\n",
        temp_paths(dir),
        servers.display()
    );
    let path = dir.join("nginx.conf");
    fs::write(&path, conf).expect("write nginx.conf");
    path
}

/// `*_temp_path` directives for an `http {}` block, under `dir` (the
/// compiled-in defaults are system directories).
pub fn temp_paths(dir: &Path) -> String {
    ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|t| format!("  {t}_temp_path {}/{t}_temp;\n", dir.display()))
        .collect()
}

fn write_whole_conf(dir: &Path, conf: &str) -> PathBuf {
    let path = dir.join("nginx.conf");
    let text = conf.replace(NGINX_DIR, &dir.display().to_string());
    fs::write(&path, text).expect("write nginx.conf");
    path
}

fn nginx_base_cmd(bin: &Path, dir: &Path, conf: &Path) -> Command {
    let mut c = Command::new(bin);
    // -e: otherwise nginx first opens /var/log/nginx/error.log.
    c.arg("-c")
        .arg(conf)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"));
    c
}

fn nginx_tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("masgen-nginx-")
        .tempdir()
        .expect("create temp dir")
}

/// `nginx -t` on a config built from `server_blocks`. `None` = nginx
/// missing (SKIP locally, panic in CI); `Some(Err)` carries nginx's stderr.
pub fn nginx_test_config(server_blocks: &str) -> Option<Result<(), String>> {
    let bin = nginx_bin()?;
    let dir = nginx_tmpdir();
    let conf = write_nginx_conf(dir.path(), server_blocks);
    Some(run(nginx_base_cmd(&bin, dir.path(), &conf).arg("-t"), None).map(drop))
}

/// `nginx -t` on a whole nginx.conf (`@NGINX_DIR@` = a temp dir).
pub fn nginx_test_conf(conf: &str) -> Option<Result<(), String>> {
    let bin = nginx_bin()?;
    let dir = nginx_tmpdir();
    let conf = write_whole_conf(dir.path(), conf);
    Some(run(nginx_base_cmd(&bin, dir.path(), &conf).arg("-t"), None).map(drop))
}

impl Nginx {
    /// `None` = nginx missing locally. Panics (with nginx's stderr) if the
    /// config is rejected or nginx does not come up.
    pub fn start(server_blocks: &str) -> Option<Nginx> {
        Self::try_start(server_blocks).map(|r| r.unwrap_or_else(|e| panic!("{e}")))
    }

    /// Like `start`, but config/start failures are returned as `Some(Err)`.
    pub fn try_start(server_blocks: &str) -> Option<Result<Nginx, String>> {
        let bin = nginx_bin()?;
        let dir = nginx_tmpdir();
        let conf = write_nginx_conf(dir.path(), server_blocks);
        Some(Self::spawn(&bin, dir, &conf))
    }

    /// A whole nginx.conf, `@NGINX_DIR@` replaced by the temp dir. It must
    /// say `daemon off; master_process off;` and write its pid to
    /// `@NGINX_DIR@/nginx.pid` (the helper waits for that file).
    pub fn start_conf(conf: &str) -> Option<Result<Nginx, String>> {
        let bin = nginx_bin()?;
        let dir = nginx_tmpdir();
        let conf = write_whole_conf(dir.path(), conf);
        Some(Self::spawn(&bin, dir, &conf))
    }

    fn spawn(bin: &Path, dir: tempfile::TempDir, conf: &Path) -> Result<Nginx, String> {
        run(nginx_base_cmd(bin, dir.path(), conf).arg("-t"), None)?;
        let out = fs::File::create(dir.path().join("stdio.log")).expect("create stdio.log");
        let child = nginx_base_cmd(bin, dir.path(), conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .map_err(|e| format!("spawn nginx: {e}"))?;
        let mut nginx = Nginx { dir, child };
        // nginx writes its pid file only after all listen sockets are bound.
        // (`nginx -t` above leaves a pid file too, hence the content check.)
        let pid_file = nginx.dir.path().join("nginx.pid");
        let want = nginx.child.id().to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        while fs::read_to_string(&pid_file).unwrap_or_default().trim() != want {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                return Err(format!(
                    "nginx exited with {status}:\n{}\n{}",
                    nginx.stdio_log(),
                    nginx.error_log()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("nginx did not start:\n{}", nginx.error_log()));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
    fn stdio_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("stdio.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for `cn` (openssl must be installed).
pub fn self_signed(cert: &Path, key: &Path, cn: &str) {
    fs::create_dir_all(cert.parent().unwrap()).unwrap();
    fs::create_dir_all(key.parent().unwrap()).unwrap();
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// nixpkgs' nginx.conf (from a NixOS evaluation) made runnable by the nginx
/// under test, for [`nginx_test_conf`] / [`Nginx::start_conf`].
/// Substitutions, and why:
/// * `include` of a file the evaluation generated (recommendedProxySettings'
///   `proxy_set_header` lines) → that file's text, inline;
/// * `include` of a package's file (`<nginx>/conf/fastcgi.conf`,
///   `uwsgi_params`, mailcap's `mime.types`) → the same file of the nginx
///   under test: the packages of the evaluation are stand-ins;
/// * `pid /run/nginx/nginx.pid` → the temp dir; `master_process off;` first
///   (one process, which the test can kill); `access_log` and `*_temp_path`
///   in `http {}` (the compiled-in defaults are system directories);
/// * each certificate path of `certs` → its stand-in (self-signed);
/// * `X25519MLKEM768` dropped from `ssl_conf_command Groups`: the OpenSSL
///   here (Debian 12: 3.0) predates that group (OpenSSL 3.5).
pub fn runnable_nixpkgs_conf(
    eval: &super::nixos::NixosEval,
    bin: &Path,
    certs: &[(String, String)],
) -> String {
    let what = &eval.configuration;
    let conf = eval
        .nginx_conf
        .as_deref()
        .unwrap_or_else(|| panic!("{what}: no nginx.conf in nixpkgs' evaluation"));
    let conf_dir = nginx_conf_dir(bin);
    let mut out = String::from("master_process off;\n");
    for line in conf.lines() {
        let t = line.trim();
        if let Some(path) = t
            .strip_prefix("include ")
            .map(|p| p.trim_end_matches(';').trim())
            .filter(|p| p.starts_with("/nix/store/"))
        {
            match eval.file(path).and_then(|f| f.text.as_deref()) {
                Some(text) => out.push_str(text),
                None => {
                    let name = Path::new(path).file_name().unwrap().to_string_lossy();
                    let local = conf_dir.join(&*name);
                    assert!(local.exists(), "{what}: no stand-in for {path}");
                    out.push_str(&format!("include {};", local.display()));
                }
            }
        } else if t.starts_with("pid ") {
            out.push_str(&format!("pid {NGINX_DIR}/nginx.pid;"));
        } else if t == "http {" {
            out.push_str(line);
            out.push('\n');
            out.push_str(&format!("  access_log {NGINX_DIR}/access.log;\n"));
            out.push_str(&temp_paths(Path::new(NGINX_DIR)));
            continue;
        } else {
            out.push_str(&line.replace("X25519MLKEM768:", ""));
        }
        out.push('\n');
    }
    for (from, to) in certs {
        out = out.replace(&format!(" {from};"), &format!(" {to};"));
    }
    out
}

/// nixpkgs' `listen` lines moved to loopback for a test client without TLS:
/// port 443 (with `ssl`) → plain 127.0.0.1:`port`, port 80 → 127.0.0.1:`port80`,
/// IPv6 lines dropped.
pub fn loopback_listen(conf: &str, port: u16, port80: u16) -> String {
    let mut out = String::new();
    for line in conf.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("listen ") {
            if rest.starts_with('[') {
                continue;
            }
            let p = if rest.contains(" ssl") { port } else { port80 };
            out.push_str(&format!("    listen 127.0.0.1:{p};\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
