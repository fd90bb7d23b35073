//! `masgen apply` end to end with REAL processes where they can run here: a
//! real PostgreSQL cluster and a real Synapse 1.163 (the venv of
//! scripts/setup-test-deps.sh), started and stopped by the `systemctl` and
//! `nixos-rebuild` stand-ins from the units' own command lines
//! (tests/fixtures/apply/real). Each phase's Synapse runs the rendered
//! `render/matrix/<phase>/homeserver.yaml` with the test substitutions of
//! tests/support/synapse.rs (`write_phase`: loopback and a free port, the
//! test cluster's socket, secrets and data under a temp dir) and, in the
//! final phase, MAS's endpoint moved to the MAS HTTP STAND-IN
//! (tests/fixtures/apply/mas-http-standin). masgen's tasks run their whole
//! command line: the real masgen-mas-run renders MAS's config from the
//! unit's credentials (stand-in secret files) into its runtime directory.
//! Still stand-ins: mas-cli (unless MASGEN_MAS_CLI; see docs/testing.md),
//! MAS's HTTP side, the proxy's routing
//! (the `curl` stand-in sends each gate's request to Synapse or to the MAS
//! stand-in the way the final nginx.conf routes it, then runs the real curl),
//! and the backup script. The gates that ask Synapse (`systemctl is-active`
//! of a real process, `auth_metadata`, `/login` through the proxy) are
//! judged against the real Synapse.
//!
//! The cheap stand-ins of tests/apply.rs cover the rest (resume after a
//! failure at every step, signals, the prompt); this test covers the full
//! path once, in one `apply --yes`.

mod apply_support;
mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use apply_support::{Rig, STEPS};
use masgen::lower::Phase;
use masgen::plan::HostState;
use serde_json::{json, Value};
use support::synapse::{registration_mac, write_phase, PgTarget, SynapseSetup};
use support::{free_port, http_request, PgCluster};

/// Stops the real processes the stand-ins started, even when the test fails.
struct Services<'a>(&'a Rig);

impl Drop for Services<'_> {
    fn drop(&mut self) {
        let pids = self.0.state.join("pids");
        for entry in fs::read_dir(&pids).into_iter().flatten().flatten() {
            if let Ok(pid) = fs::read_to_string(entry.path()) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
        }
    }
}

fn get(port: u16, path: &str) -> (u16, Value) {
    let r = http_request(port, "GET", "localhost", path, &[], "")
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::String(r.body.clone())),
    )
}

fn synapse_port(rig: &Rig) -> u16 {
    fs::read_to_string(rig.state.join("synapse-port"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Each phase's Synapse written out as the host would have it; its command
/// line (nixpkgs' ExecStart) and port go to `real/<phase>.exec|.port`.
fn write_phases(rig: &Rig, py: &Path, pg: &PgTarget, mas_port: u16) -> Vec<SynapseSetup> {
    let spec = fs::read_to_string(rig.work.join("spec.toml")).unwrap();
    let checked = support::checked("spec.toml", &spec);
    let lowered = masgen::lower::lower(&checked.homeserver);
    let real = rig.state.join("real");
    fs::create_dir_all(&real).unwrap();
    fs::write(real.join("mas.port"), mas_port.to_string()).unwrap();
    let mut setups = Vec::new();
    for phase in &lowered.phases {
        let name = phase.phase.name();
        let rendered = rig
            .work
            .join(format!("out/render/matrix/{name}/homeserver.yaml"));
        let mut settings: Value =
            serde_norway::from_str(&fs::read_to_string(&rendered).unwrap()).unwrap();
        if phase.phase == Phase::Final {
            // Test substitution: MAS's listener is the stand-in's port.
            settings["matrix_authentication_service"]["endpoint"] =
                json!(format!("http://127.0.0.1:{mas_port}/auth/"));
        }
        let setup = write_phase(phase, &settings, pg, None);
        setup.generate_keys(py).unwrap();
        let exec = format!(
            "{} -m synapse.app.homeserver {} --keys-directory {}",
            py.display(),
            setup.config_args(&setup.config_files).join(" "),
            setup.data_dir.display()
        );
        fs::write(real.join(format!("{name}.exec")), &exec).unwrap();
        fs::copy(
            &setup.config_files[0],
            real.join(format!("{name}.homeserver.yaml")),
        )
        .unwrap();
        fs::write(real.join(format!("{name}.port")), setup.port.to_string()).unwrap();
        setups.push(setup);
    }
    // /run/secrets as the tasks' credentials see it: Synapse's stand-ins
    // where Synapse reads the file too, a stand-in value otherwise.
    let secrets = real.join("secrets");
    fs::create_dir_all(&secrets).unwrap();
    for f in masgen::secrets::secret_files(&checked.homeserver) {
        let Some(name) = f.path.strip_prefix("/run/secrets/") else {
            continue;
        };
        let from_synapse = setups.iter().find_map(|s| s.secrets.files.get(&f.path));
        match from_synapse {
            Some((path, _)) => {
                fs::copy(path, secrets.join(name)).unwrap();
            }
            None => fs::write(secrets.join(name), format!("stand-in {name}")).unwrap(),
        }
    }
    // masgen-mas-run is the real script.
    let bin = real.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let mas_run = bin.join("masgen-mas-run");
    fs::write(
        &mas_run,
        format!(
            "#!/bin/sh\nexec bash '{}' \"$@\"\n",
            support::repo_root()
                .join("modules/scripts/mas-run.sh")
                .display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&mas_run, fs::Permissions::from_mode(0o755)).unwrap();
    setups
}

/// A directory with `masgen-backup` (the real modules/scripts/backup.sh) and
/// a `pg_dump` pointed at the test cluster, or None (a SKIP note) without
/// root or runuser: the backup stand-in runs then.
fn real_backup(pg: &PgCluster) -> Option<tempfile::TempDir> {
    let why = "the real backup script in the real-process apply test";
    if !support::is_root() || support::find_tool("runuser").is_none() {
        eprintln!("SKIP: {why} needs root and runuser; the masgen-backup stand-in runs instead");
        return None;
    }
    // pg_dump runs as `postgres` (runuser): the wrappers must be reachable,
    // so not under the rig's 0700 temp dir.
    Some(pg.backup_tools())
}

#[test]
fn a_full_migration_against_a_real_synapse() {
    let Some(py) = support::synapse_python() else {
        return;
    };
    let Some(curl) = support::require_tool("curl", "the gates' requests") else {
        return;
    };
    let Some(pg) = PgCluster::start_with_auth("peer") else {
        return;
    };
    // Synapse runs as this user; an ident map lets it in as `matrix-synapse`
    // over the socket, as NixOS' peer authentication would.
    let me = String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout)
        .trim()
        .to_string();
    pg.superuser_sql(
        "CREATE ROLE \"matrix-synapse\" LOGIN;\n\
         CREATE DATABASE \"matrix-synapse\" OWNER \"matrix-synapse\" ENCODING 'UTF8' \
         LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;",
    )
    .unwrap();
    pg.set_ident(&format!("synapse {me} matrix-synapse\n"))
        .unwrap();
    pg.set_hba("local \"matrix-synapse\" \"matrix-synapse\" peer map=synapse\n")
        .unwrap();
    let target = PgTarget {
        socket_dir: pg.socket_dir().to_path_buf(),
        port: pg.port(),
    };

    let rig = Rig::new();
    let _services = Services(&rig);
    let mas_port = free_port();
    let setups = write_phases(&rig, &py, &target, mas_port);
    let real = rig.state.join("real");
    let shim = |args: &[&str]| {
        let out = Command::new(apply_support::shims().join(args[0]))
            .args(&args[1..])
            .current_dir(&rig.work)
            .env("SHIM_STATE", &rig.state)
            .env("SHIM_ROOT", &rig.root)
            .env("SHIM_REAL", &real)
            .env("SHIM_CURL", &curl)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };

    // The host before the migration: Synapse on its own logins (the first
    // phase's config: no delegation), running for real.
    let units = rig.root.join("etc/systemd/system");
    let exec = fs::read_to_string(real.join("prepare.exec")).unwrap();
    fs::write(
        units.join("matrix-synapse.service"),
        format!("[Service]\nExecStart={exec}\n"),
    )
    .unwrap();
    fs::copy(real.join("prepare.port"), rig.state.join("synapse-port")).unwrap();
    fs::remove_file(rig.state.join("active/matrix-synapse.service")).unwrap();
    shim(&["systemctl", "start", "matrix-synapse.service"]);
    assert_eq!(rig.host_state(), HostState::SynapseOnly);

    // A user with a password, registered with the shared secret.
    let port = synapse_port(&rig);
    let secret_path = setups[0]
        .secrets
        .files
        .keys()
        .find(|k| k.contains("registration"));
    let secret = setups[0].secrets.value(secret_path.unwrap()).unwrap();
    let (_, nonce) = get(port, "/_synapse/admin/v1/register");
    let nonce = nonce["nonce"].as_str().unwrap().to_string();
    let body = json!({"nonce": nonce, "username": "alice", "password": "alice's password",
        "admin": false, "mac": registration_mac(&py, &secret, &nonce, "alice", "alice's password")});
    let r = http_request(
        port,
        "POST",
        "localhost",
        "/_synapse/admin/v1/register",
        &[("Content-Type", "application/json")],
        &body.to_string(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);

    // The backup step with the REAL modules/scripts/backup.sh against the
    // real cluster, where it can run (root, for `runuser -u postgres`); the
    // runtime password config it copies is the real Synapse's.
    let runtime = real.join("run");
    fs::create_dir_all(&runtime).unwrap();
    std::os::unix::fs::symlink(
        setups[0].dir.path().join("run/masgen-synapse"),
        runtime.join("masgen-synapse"),
    )
    .unwrap();
    let backup_bin = real_backup(&pg);
    let mut path = format!(
        "{}:{}",
        real.join("bin").display(),
        apply_support::shims().display()
    );
    if let Some(bin) = &backup_bin {
        path = format!("{}:{path}", bin.path().display());
    }
    let apply = |args: &[&str]| {
        let out = rig
            .command(args)
            .env("MASGEN_APPLY_PATH", &path)
            .env("SHIM_REAL", &real)
            .env("SHIM_CURL", &curl)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code().unwrap_or(-1), err)
    };
    let log = |unit: &str| fs::read_to_string(rig.state.join("log").join(unit)).unwrap_or_default();

    // Synapse with the first phase's config (the switch to `-prepare`
    // restarts it with the same files) logs users in itself: password
    // flows, no auth_metadata.
    let (status, flows) = get(port, "/_matrix/client/v3/login");
    assert_eq!(status, 200, "{flows}");
    assert!(
        flows["flows"]
            .as_array()
            .unwrap()
            .contains(&json!({"type": "m.login.password"})),
        "{flows}"
    );
    assert_eq!(get(port, "/_matrix/client/v1/auth_metadata").0, 404);

    // One command: Synapse restarted for phase 1, stopped (for real) before
    // syn2mas, then started with the final config; the final switch's
    // gates ask it.
    let (code, err) = apply(&["--yes"]);
    assert_eq!(code, 0, "{err}\n{}", log("matrix-synapse.service"));
    assert_eq!(rig.host_state(), HostState::Delegated, "{err}");
    let finished: Vec<String> = rig.finished();
    assert_eq!(finished, STEPS, "{err}");
    let calls = rig.calls();
    assert!(
        calls.contains("https://matrix.example.com/_matrix/client/v1/auth_metadata"),
        "the final switch's gate asked Synapse: {calls}"
    );
    // The real masgen-mas-run rendered MAS's config from the unit's
    // credentials (the stand-in mas-cli checks it) and passed it on; syn2mas
    // read the real Synapse's config files.
    let migrate = calls
        .lines()
        .find(|l| l.starts_with("mas-cli syn2mas --config ") && l.ends_with(" migrate"))
        .unwrap_or_else(|| panic!("no rendered syn2mas migrate call:\n{calls}"));
    assert!(
        migrate.contains("/runtime.")
            && migrate.contains("/share/masgen/homeserver.yaml --synapse-config ")
            && migrate.contains("/masgen-synapse-config-0"),
        "{migrate}"
    );
    // Synapse delegates: its own /login is gone (docs/notes.md), its
    // auth_metadata comes from MAS; the user row is still there.
    let port = synapse_port(&rig);
    let (status, resp) = get(port, "/_matrix/client/v3/login");
    assert_eq!(
        (status, &resp["errcode"]),
        (404, &json!("M_UNRECOGNIZED")),
        "{resp}"
    );
    let (status, meta) = get(port, "/_matrix/client/v1/auth_metadata");
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["issuer"], "https://mas-standin.invalid/auth/");
    let users = pg
        .superuser_sql_in("matrix-synapse", "SELECT name FROM users")
        .unwrap();
    assert_eq!(users.trim(), "@alice:example.com");
    // Synapse started three times: before the migration and in phase 1
    // (the first phase's config), then with the final config.
    let starts = |setup: &SynapseSetup| {
        fs::read_to_string(setup.dir.path().join("homeserver.log"))
            .unwrap_or_default()
            .matches("Synapse now listening on TCP port")
            .count()
    };
    assert_eq!((starts(&setups[0]), starts(&setups[1])), (2, 1));
    if backup_bin.is_some() {
        let dump = fs::read_dir(rig._tmp.path().join("backup"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "dump"))
            .expect("a dump");
        let list = Command::new(pg.bin_dir().join("pg_restore"))
            .arg("--list")
            .arg(&dump)
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&list.stdout);
        assert!(list.contains("TABLE public users"), "{list}");
    }
    drop(setups);
}
