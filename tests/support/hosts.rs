//! Hosts on one machine: loopback addresses (all of 127.0.0.0/8 is
//! loopback on Linux) stand for hosts, and a relay stands for the route
//! between two of them, so the server sees the client host's address
//! (tests/conformance_split.rs).

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};

use super::find_tool;

/// A TCP relay from `listen` to `upstream` that connects from `source`:
/// the route from one host to another, for clients (libpq, psycopg2) that
/// cannot choose their source address. Port 0 listens on a free port.
/// Stopped on drop.
pub struct Relay {
    child: Child,
    pub port: u16,
}

pub const RELAY: &str = r#"
import socket, sys, threading
lhost, lport, uhost, uport, source = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((lhost, lport))
srv.listen(64)
print("ready", srv.getsockname()[1], flush=True)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    c, _ = srv.accept()
    u = socket.socket()
    u.bind((source, 0))
    try:
        u.connect((uhost, uport))
    except OSError:
        c.close()
        u.close()
        continue
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
"#;

impl Relay {
    pub fn start(listen: (Ipv4Addr, u16), upstream: (Ipv4Addr, u16), source: Ipv4Addr) -> Relay {
        let mut child = Command::new("/usr/bin/python3")
            .args(["-I", "-c", RELAY])
            .args([listen.0.to_string(), listen.1.to_string()])
            .args([upstream.0.to_string(), upstream.1.to_string()])
            .arg(source.to_string())
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("start the relay");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("relay did not start: {line:?}"))
            .trim()
            .parse()
            .unwrap();
        Relay { child, port }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// psql through `relay` (listening on `host`) as `role` with `password`,
/// printing `<role>@<client address the server sees>`.
pub fn psql_via(relay: &Relay, host: Ipv4Addr, db: &str, role: &str, password: &str) -> Output {
    let pg_psql = find_tool("psql").unwrap();
    Command::new(pg_psql)
        .args(["-X", "-w", "-q", "-A", "-t", "-h", &host.to_string(), "-p"])
        .arg(relay.port.to_string())
        .args(["-U", role, "-d", db, "-c"])
        .arg("SELECT current_user || '@' || host(inet_client_addr())")
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .current_dir("/")
        .output()
        .unwrap()
}

pub fn assert_in(out: &Output, expect: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "expected {expect}: {err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expect);
}

pub fn assert_refused(out: &Output, why: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a refusal ({why})");
    assert!(err.contains(why), "expected `{why}`, got: {err}");
}
