//! `masgen diff`: tree against tree, against a git revision (through the real
//! binary and a real repository), and against system roots: one laid out from
//! masgen's own output, one written by hand the way nixpkgs writes it.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command as StdCommand;

use assert_cmd::Command;
use camino::{Utf8Path, Utf8PathBuf};
use masgen::diff::{compare, render, system, Action, Against, Change, Changeset, Status};
use masgen::emit::OutputTree;
use masgen::lower::{HostPhase, Lowered, PASSWORD_CONFIG_PATH};
use support::example_text;

/// Builds a spec the way `masgen build spec.toml -o out` does.
fn build(text: &str) -> (Lowered, OutputTree) {
    let checked = support::checked("spec.toml", text);
    masgen::build_tree_for(&checked, "out").unwrap()
}

fn tree_diff(old: &OutputTree, new: &OutputTree) -> Changeset {
    compare::compare_trees("spec.toml", Against::Tree { path: "out".into() }, old, new).unwrap()
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in the spec");
    text.replacen(from, to, 1)
}

fn config<'a>(c: &'a Changeset, name: &str) -> &'a masgen::diff::ConfigurationChange {
    c.configurations
        .iter()
        .find(|x| x.configuration == name)
        .unwrap_or_else(|| panic!("no configuration {name}"))
}

fn unit<'a>(c: &'a masgen::diff::ConfigurationChange, name: &str) -> &'a masgen::diff::UnitChange {
    c.units
        .iter()
        .find(|u| u.unit == name)
        .unwrap_or_else(|| panic!("{name} is not among the changed units: {:#?}", c.units))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\x1b[") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        rest = &after[after.find('m').map(|j| j + 1).unwrap_or(after.len())..];
    }
    out.push_str(rest);
    out
}

fn masgen_bin() -> Command {
    Command::cargo_bin("masgen").unwrap()
}

const UPSTREAM: &str = r#"
[[mas.upstream_providers]]
id = "01JB3ZKE6WQ0V4P2T8MXN5RYC7"
issuer = "https://sso.example.org/realms/matrix"
human_name = "Keycloak"
client_id = "mas"
client_secret_file = "/run/secrets/mas-keycloak-secret"
token_endpoint_auth_method = "client_secret_basic"
scope = "openid profile email"
discovery_mode = "oidc"
"#;

// ------------------------------------------------------------ tree vs tree

#[test]
fn fresh_gains_an_upstream_provider() {
    let v1 = example_text("fresh.toml");
    let v2 = format!("{v1}{UPSTREAM}");
    let c = tree_diff(&build(&v1).1, &build(&v2).1);
    assert!(c.changed);
    let cfg = config(&c, "matrix");
    let mas = unit(cfg, "matrix-authentication-service.service");
    assert_eq!(mas.action, Action::Restart);
    assert!(mas.reasons.iter().any(|r| r.contains("credentials")));
    assert!(cfg.units.iter().all(|u| u.unit != "matrix-synapse.service"));
    assert!(cfg.units.iter().all(|u| u.unit != "nginx.service"));
    let doctor = unit(cfg, "masgen-mas-doctor.service");
    assert_eq!(
        (doctor.action, doctor.summary.as_str()),
        (Action::None, "changed (not running)")
    );
    assert_eq!(cfg.mas_settings.len(), 1);
    assert_eq!(cfg.mas_settings[0].path, "upstream_oauth2");
    assert_eq!(cfg.warnings.len(), 1);
    assert_eq!(cfg.warnings[0].code, "upstream_provider_added");
    assert!(cfg.warnings[0]
        .message
        .contains("https://matrix.example.org/auth/upstream/callback/01JB3ZKE6WQ0V4P2T8MXN5RYC7"));
    insta::assert_snapshot!("fresh_add_upstream", render::text(&c, false));
    let coloured = render::text(&c, true);
    assert!(coloured.contains("\x1b[32m  + upstream_oauth2"));
    assert_eq!(strip_ansi(&coloured), render::text(&c, false));
}

#[test]
fn prepare_to_final_is_a_phase_change_with_its_warnings() {
    let text = example_text("migrate-keycloak.toml");
    let (_, new) = build(&text);
    // The old tree had only the prepare configuration (as if the spec had
    // been built before the final one existed).
    let old: OutputTree = new
        .iter()
        .filter(|(p, _)| !p.as_str().contains("/final/"))
        .map(|(p, t)| (p.clone(), t.clone()))
        .collect();
    let c = tree_diff(&old, &new);
    assert_eq!(config(&c, "matrix-prepare").status, Status::Unchanged);
    let fin = config(&c, "matrix");
    assert_eq!(fin.baseline.as_deref(), Some("matrix-prepare"));
    let phase = fin.phase_change.as_ref().expect("a phase change");
    assert_eq!(
        (phase.from.as_str(), phase.to.as_str()),
        ("prepare", "final")
    );
    let codes: Vec<&str> = fin.warnings.iter().map(|w| w.code.as_str()).collect();
    assert_eq!(codes, ["delegation_one_way", "logins_move_to_mas"]);
    assert!(fin.warnings[0]
        .message
        .contains("sessions created through MAS break"));
    assert!(fin
        .synapse_settings
        .iter()
        .any(|s| s.path == "matrix_authentication_service" && s.change == Change::Added));
    assert!(fin
        .routes
        .iter()
        .any(|r| r.compat && r.change == Change::Added));
    assert_eq!(unit(fin, "matrix-synapse.service").action, Action::Restart);
    assert_eq!(
        unit(fin, "masgen-syn2mas-migrate.service").summary,
        "removed (not running; a run in progress is stopped)"
    );
    // The final configuration's files are diffed against the prepare ones.
    let settings = c
        .files
        .iter()
        .find(|f| f.path == "hosts/matrix/final/synapse-settings.nix")
        .unwrap();
    assert_eq!(
        settings.compared_with.as_deref(),
        Some("hosts/matrix/prepare/synapse-settings.nix")
    );
    assert!(settings
        .diff
        .starts_with("--- a/hosts/matrix/prepare/synapse-settings.nix\n+++ b/hosts/matrix/final/synapse-settings.nix\n"));
    insta::assert_snapshot!("prepare_to_final", render::text(&c, false));
}

#[test]
fn a_synapse_setting_change_restarts_what_reads_it() {
    let v1 = example_text("fresh.toml");
    let v2 = replace_once(&v1, "port = 8008", "port = 8448");
    let c = tree_diff(&build(&v1).1, &build(&v2).1);
    let cfg = config(&c, "matrix");
    let paths: Vec<&str> = cfg
        .synapse_settings
        .iter()
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(paths, ["listeners[0].port"]);
    assert_eq!(unit(cfg, "matrix-synapse.service").action, Action::Restart);
    // MAS reaches Synapse there, and nginx proxies to it.
    assert_eq!(cfg.mas_settings[0].path, "matrix.endpoint");
    assert_eq!(
        unit(cfg, "matrix-authentication-service.service").action,
        Action::Restart
    );
    let nginx = unit(cfg, "nginx.service");
    assert_eq!(nginx.action, Action::Restart);
    assert!(nginx.summary.contains("enableReload"));
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    insta::assert_snapshot!("synapse_setting", render::text(&c, false));
}

#[test]
fn a_hostname_change_moves_mas_nginx_and_well_known() {
    let v1 = example_text("fresh.toml");
    let v2 = replace_once(
        &replace_once(
            &v1,
            "public_hostname = \"matrix.example.org\"",
            "public_hostname = \"chat.example.org\"",
        ),
        "hostname = \"matrix.example.org\"",
        "hostname = \"chat.example.org\"",
    );
    let c = tree_diff(&build(&v1).1, &build(&v2).1);
    let cfg = config(&c, "matrix");
    let mas: Vec<&str> = cfg.mas_settings.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(mas, ["http.public_base"]);
    assert!(cfg.routes.iter().any(|r| r.server_name == "example.org"
        && r.matcher == "= /.well-known/matrix/client"
        && r.change == Change::Changed));
    let codes: Vec<&str> = cfg.warnings.iter().map(|w| w.code.as_str()).collect();
    assert_eq!(codes, ["login_route_moves", "mas_public_base_changes"]);
    assert_eq!(
        unit(cfg, "acme-chat.example.org.service").action,
        Action::Start
    );
    assert_eq!(
        unit(cfg, "acme-matrix.example.org.service").action,
        Action::Stop
    );
    insta::assert_snapshot!("hostname", render::text(&c, false));
    insta::assert_snapshot!("hostname_markdown", render::markdown(&c));
}

#[test]
fn formats_are_deterministic_and_json_is_versioned() {
    let v1 = example_text("migrate-local.toml");
    let v2 = replace_once(
        &v1,
        "backup_dir = \"/var/backup/masgen\"",
        "backup_dir = \"/srv/backup\"",
    );
    let (a, b) = (build(&v1).1, build(&v2).1);
    let c = tree_diff(&a, &b);
    assert_eq!(render::json(&c), render::json(&tree_diff(&a, &b)));
    let json: serde_json::Value = serde_json::from_str(&render::json(&c)).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(
        json["against"],
        serde_json::json!({"kind": "tree", "path": "out"})
    );
    let prepare = json["configurations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["configuration"] == "matrix-prepare")
        .unwrap();
    assert_eq!(prepare["status"], "changed");
    assert_eq!(
        prepare["units"][0],
        serde_json::json!({
            "unit": "masgen-backup.service",
            "change": "changed",
            "action": "none",
            "summary": "changed (not running)",
            "reasons": ["command"],
        })
    );
    // The Markdown puts the summary first and each file in a collapsed block.
    let md = render::markdown(&c);
    assert!(md.starts_with("### masgen diff: 1 configuration changed"));
    let summary_end = md.find("<details>").unwrap();
    assert!(md[..summary_end]
        .contains("| `masgen-backup.service` | - | changed (not running) | command |"));
    assert!(md[summary_end..].contains("```diff\n--- a/hosts/matrix/prepare/tasks.nix"));
}

// ------------------------------------------------------------ the binary

#[test]
fn no_change_prints_only_the_summary_line_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    fs::write(&spec, example_text("fresh.toml")).unwrap();
    masgen_bin()
        .current_dir(dir.path())
        .args(["build", "spec.toml", "-o", "out"])
        .assert()
        .success();
    for (format, expected) in [
        ("text", "no changes\n"),
        ("markdown", "**masgen diff**: no changes\n"),
    ] {
        masgen_bin()
            .current_dir(dir.path())
            .args(["diff", "spec.toml", "--against", "out", "--format", format])
            .assert()
            .code(0)
            .stdout(expected)
            .stderr("");
    }
    let out = masgen_bin()
        .current_dir(dir.path())
        .args(["diff", "spec.toml", "--against", "out", "--format", "json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["changed"], false);
    assert_eq!(json["files"], serde_json::json!([]));

    // A change to the tree on disk is a change (exit 1); stdout is not a
    // terminal here, so there is no colour even without NO_COLOR.
    fs::write(&spec, format!("{}{UPSTREAM}", example_text("fresh.toml"))).unwrap();
    let out = masgen_bin()
        .current_dir(dir.path())
        .args(["diff", "spec.toml", "--against", "out"])
        .env_remove("NO_COLOR")
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with(
        "masgen diff: spec.toml against the output tree in out: 1 configuration changed"
    ));
    assert!(!text.contains('\x1b'));
}

#[test]
fn errors_exit_2_and_say_what_and_why() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("spec.toml"), example_text("fresh.toml")).unwrap();
    fs::write(dir.path().join("bad.toml"), "version = 1\n[homeserver]\n").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["diff", "spec.toml"],
            "exactly one of --against DIR, --against-rev REV, --system ROOT",
        ),
        (
            &["diff", "spec.toml", "--against", "out", "--system", "/"],
            "exactly one of",
        ),
        (
            &["diff", "bad.toml", "--against", "out"],
            "bad.toml: failed",
        ),
        (
            &["diff", "spec.toml", "--system", "nowhere"],
            "--system nowhere: no such directory",
        ),
        (
            &["diff", "spec.toml", "--against-rev", "HEAD"],
            "is not in a git repository",
        ),
    ];
    for (args, message) in cases {
        let out = masgen_bin()
            .current_dir(dir.path())
            .env("GIT_CEILING_DIRECTORIES", dir.path())
            .args(*args)
            .assert()
            .code(2)
            .get_output()
            .clone();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    // A tree whose manifest lists a file that is gone.
    masgen_bin()
        .current_dir(dir.path())
        .args(["build", "spec.toml", "-o", "out"])
        .assert()
        .success();
    fs::remove_file(dir.path().join("out/flake.nix")).unwrap();
    let out = masgen_bin()
        .current_dir(dir.path())
        .args(["diff", "spec.toml", "--against", "out"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read the output tree in out: flake.nix is listed in its manifest"),
        "{stderr}"
    );
}

fn git(dir: &Path, args: &[&str]) {
    let status = StdCommand::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=masgen test",
            "-c",
            "user.email=masgen@example.invalid",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_AUTHOR_NAME", "masgen test")
        .env("GIT_AUTHOR_EMAIL", "masgen@example.invalid")
        .env("GIT_COMMITTER_NAME", "masgen test")
        .env("GIT_COMMITTER_EMAIL", "masgen@example.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

#[test]
fn against_a_git_revision_through_the_binary() {
    let Some(_) = support::require_tool("git", "masgen diff --against-rev") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    fs::create_dir(repo.join("deploy")).unwrap();
    let spec = repo.join("deploy/matrix.toml");
    git(repo, &["init", "-q"]);
    fs::write(&spec, example_text("fresh.toml")).unwrap();
    git(repo, &["add", "deploy/matrix.toml"]);
    git(repo, &["commit", "-q", "-m", "v1"]);
    fs::write(&spec, format!("{}{UPSTREAM}", example_text("fresh.toml"))).unwrap();
    git(repo, &["commit", "-q", "-a", "-m", "v2: add Keycloak"]);

    // Run from a subdirectory with a relative spec path: git finds the
    // repository from the spec's directory.
    let out = masgen_bin()
        .current_dir(repo.join("deploy"))
        .env("NO_COLOR", "1")
        .args(["diff", "matrix.toml", "--against-rev", "HEAD~1"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout).unwrap();
    insta::assert_snapshot!("git_rev", stdout);

    // HEAD against itself: nothing changed.
    masgen_bin()
        .current_dir(repo)
        .args(["diff", "deploy/matrix.toml", "--against-rev", "HEAD"])
        .assert()
        .code(0)
        .stdout("no changes\n");

    // A revision that does not exist, and an old spec that does not validate.
    let out = masgen_bin()
        .current_dir(repo)
        .args(["diff", "deploy/matrix.toml", "--against-rev", "no-such-rev"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--against-rev no-such-rev: not a commit")
    );
    fs::write(&spec, "version = 1\n[homeserver]\nserver_name = 3\n").unwrap();
    git(repo, &["commit", "-q", "-a", "-m", "v3: broken"]);
    fs::write(&spec, example_text("fresh.toml")).unwrap();
    let out = masgen_bin()
        .current_dir(repo)
        .args(["diff", "deploy/matrix.toml", "--against-rev", "HEAD"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HEAD:deploy/matrix.toml: the old spec does not validate"),
        "{stderr}"
    );
}

// ---------------------------------------------------------- system roots

const STORE_SYNAPSE: &str = "/nix/store/ys1qx8m0b2z4v6n8p0r2t4w6y8a0c2e4-matrix-synapse-1.157.0";
const STORE_HOMESERVER: &str = "/nix/store/hs4f8k2m6p0r4t8w2y6a0c4e8g2j6l0n-homeserver.yaml";
const STORE_MAS_CONFIG: &str = "/nix/store/mc7b3d9f5h1k7m3p9r5t1w7y3a9c5e1g-config.yaml";
const STORE_MAS_PREPARE: &str = "/nix/store/mp2c6e0g4j8l2n6q0s4v8x2z6b0d4f8h-mas-prepare";
const STORE_NGINX: &str = "/nix/store/ng1a5c9e3g7j1l5n9q3s7v1x5z9b3d7f-nginx-1.26.2";
const STORE_NGINX_CONF: &str = "/nix/store/nc8d2f6h0k4m8p2r6t0w4y8a2c6e0g4j-nginx.conf";

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// Lays out a system root the way NixOS would for `phase` of a build:
/// Synapse's and MAS's units (nixpkgs' command lines) with their config
/// files from masgen's renders in a fake store inside the root, nginx with
/// the reference nginx.conf, PostgreSQL, and masgen's task units from the
/// reference renders.
fn system_root(root: &Path, phase: &HostPhase, tree: &OutputTree) {
    let render = Utf8PathBuf::from("render")
        .join(&phase.host)
        .join(phase.phase.name());
    let mut config_paths = vec![STORE_HOMESERVER.to_string()];
    config_paths.extend(phase.synapse.extra_config_files.iter().cloned());
    let args: Vec<String> = config_paths
        .iter()
        .map(|p| format!("  --config-path {p} \\\n"))
        .collect();
    write(
        root,
        "etc/systemd/system/matrix-synapse.service",
        &format!(
            "[Unit]\nDescription=Synapse Matrix homeserver\n\n[Service]\nExecStart={STORE_SYNAPSE}/bin/synapse_homeserver \\\n{}  --keys-directory /var/lib/matrix-synapse\nType=notify\nUser=matrix-synapse\n\n[Install]\nWantedBy=matrix-synapse.target\n",
            args.concat()
        ),
    );
    write(
        root,
        STORE_HOMESERVER,
        &tree[&render.join("homeserver.yaml")],
    );
    if phase.synapse.password_config.is_some() {
        write(
            root,
            "etc/systemd/system/masgen-synapse-password-config.service",
            "[Unit]\nDescription=masgen: write Synapse password_config\n[Service]\nType=oneshot\nRemainAfterExit=true\n",
        );
    }

    let credentials: String = phase
        .mas
        .credentials
        .iter()
        .map(|(k, v)| format!("LoadCredential={k}:{v}\n"))
        .collect();
    write(
        root,
        "etc/systemd/system/matrix-authentication-service.service",
        &format!(
            "[Unit]\nAfter=matrix-synapse.service\n\n[Service]\nDynamicUser=true\n{credentials}ExecStartPre={STORE_MAS_PREPARE}\nExecStart=/nix/store/ma5s-matrix-authentication-service-1.2.0/bin/mas-cli server --config /run/matrix-authentication-service/config.yaml \\\n  \n\n[Install]\nWantedBy=multi-user.target\n"
        ),
    );
    write(
        root,
        STORE_MAS_PREPARE,
        &format!(
            "#!/nix/store/bash/bin/bash\n/nix/store/gt-gettext/bin/envsubst \\\n  '$CREDENTIALS_DIRECTORY' \\\n  < {STORE_MAS_CONFIG} \\\n  > /run/matrix-authentication-service/config.yaml\n/nix/store/ma5s/bin/mas-cli config check --config /run/matrix-authentication-service/config.yaml\n"
        ),
    );
    write(
        root,
        STORE_MAS_CONFIG,
        &tree[&render.join("mas-config.yaml")],
    );
    write(
        root,
        "etc/systemd/system/nginx.service",
        &format!("[Service]\nExecStart={STORE_NGINX}/bin/nginx -c '{STORE_NGINX_CONF}'\nX-StopIfChanged=false\n"),
    );
    write(root, STORE_NGINX_CONF, &tree[&render.join("nginx.conf")]);
    write(
        root,
        "etc/systemd/system/postgresql.service",
        "[Service]\nExecStart=/nix/store/pg16-postgresql-16.6/bin/postgres\n",
    );
    for (path, text) in tree {
        if path.starts_with(render.join("units")) {
            write(
                root,
                &format!("etc/systemd/system/{}", path.file_name().unwrap()),
                text,
            );
        }
    }
}

/// `sys` as the system of every host of `tree` (the examples have one).
fn each_host(sys: system::SystemState, tree: &OutputTree) -> Vec<(String, system::SystemState)> {
    let mut hosts: Vec<String> = masgen::diff::state::configurations(tree)
        .unwrap()
        .into_iter()
        .map(|c| c.host)
        .collect();
    hosts.dedup();
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    vec![(hosts.remove(0), sys)]
}

fn system_diff(root: &Path, new: &OutputTree) -> Changeset {
    let root = Utf8Path::from_path(root).unwrap();
    let configs = masgen::diff::state::configurations(new).unwrap();
    let extra: Vec<String> = configs
        .iter()
        .flat_map(|c| c.synapse_extra_files())
        .collect();
    let sys = system::read(root, &extra).unwrap();
    let mut c = compare::compare_system("spec.toml", &each_host(sys, new), new).unwrap();
    // Stable snapshots: the temporary root shows as ROOT.
    let root_str = root.as_str();
    c.against = Against::System {
        root: "ROOT".into(),
    };
    for cfg in &mut c.configurations {
        if let Some(b) = &mut cfg.baseline {
            *b = b.replace(root_str, "ROOT");
        }
    }
    for n in &mut c.notes {
        *n = n.replace(root_str, "ROOT");
    }
    c
}

#[test]
fn a_system_built_from_our_own_prepare_phase() {
    let (lowered, tree) = build(&example_text("migrate-local.toml"));
    let prepare = lowered
        .phases
        .iter()
        .find(|p| p.configuration == "matrix-prepare")
        .unwrap();
    assert!(prepare
        .synapse
        .extra_config_files
        .contains(&PASSWORD_CONFIG_PATH.to_string()));
    let dir = tempfile::tempdir().unwrap();
    system_root(dir.path(), prepare, &tree);
    let c = system_diff(dir.path(), &tree);

    // The system runs exactly matrix-prepare.
    let same = config(&c, "matrix-prepare");
    assert_eq!(same.status, Status::Unchanged, "{same:#?}");
    assert!(same.unmanaged_settings.is_empty());
    // The runtime password_config file is not in the root: said, not guessed.
    assert!(c
        .notes
        .iter()
        .any(|n| n.starts_with(PASSWORD_CONFIG_PATH) && n.contains("not compared")));

    // Switching it to `matrix` starts delegating.
    let fin = config(&c, "matrix");
    assert_eq!(fin.status, Status::Changed);
    let phase = fin.phase_change.as_ref().unwrap();
    assert_eq!(
        (phase.from.as_str(), phase.to.as_str()),
        ("not delegating", "final")
    );
    assert_eq!(fin.warnings[0].code, "delegation_one_way");
    assert_eq!(unit(fin, "matrix-synapse.service").action, Action::Restart);
    assert_eq!(
        unit(fin, "masgen-synapse-password-config.service").action,
        Action::Stop
    );
    assert_eq!(
        unit(fin, "masgen-syn2mas-migrate.service").summary,
        "removed (not running; a run in progress is stopped)"
    );
    assert_eq!(
        unit(fin, "masgen-mas-doctor.service").summary,
        "added (not started)"
    );
    insta::assert_snapshot!("system_own_prepare", render::text(&c, false));
}

#[test]
fn a_system_with_a_changed_mas_setting_and_a_task_edited_by_hand() {
    let (lowered, tree) = build(&example_text("fresh.toml"));
    let dir = tempfile::tempdir().unwrap();
    system_root(dir.path(), &lowered.phases[0], &tree);
    // MAS's runtime file exists on a live system, substituted: read it, and
    // put ${CREDENTIALS_DIRECTORY} back before comparing.
    let mas = fs::read_to_string(dir.path().join(STORE_MAS_CONFIG.trim_start_matches('/')))
        .unwrap()
        .replace(
            "${CREDENTIALS_DIRECTORY}",
            "/run/credentials/matrix-authentication-service.service",
        )
        .replace("minimum_complexity: 3", "minimum_complexity: 2");
    write(
        dir.path(),
        "/run/matrix-authentication-service/config.yaml",
        &mas,
    );
    let doctor = dir
        .path()
        .join("etc/systemd/system/masgen-mas-doctor.service");
    let text = fs::read_to_string(&doctor)
        .unwrap()
        .replace(" doctor @CONFIG@", " doctor --verbose @CONFIG@");
    fs::write(&doctor, text).unwrap();

    // A drop-in replaces Synapse's ExecStart with one more config file; a
    // masked unit is a symlink to /dev/null.
    write(
        dir.path(),
        "etc/systemd/system/matrix-synapse.service.d/overrides.conf",
        &format!(
            "[Service]\nExecStart=\nExecStart={STORE_SYNAPSE}/bin/synapse_homeserver --config-path {STORE_HOMESERVER} --config-path /etc/matrix/extra.yaml\n"
        ),
    );
    write(
        dir.path(),
        "/etc/matrix/extra.yaml",
        "max_upload_size: \"100M\"\n",
    );
    std::os::unix::fs::symlink(
        "/dev/null",
        dir.path().join("etc/systemd/system/masked.service"),
    )
    .unwrap();

    let c = system_diff(dir.path(), &tree);
    assert!(c
        .notes
        .iter()
        .any(|n| n.contains("masked.service is masked")));
    let cfg = config(&c, "matrix");
    assert_eq!(cfg.unmanaged_settings, ["synapse.max_upload_size"]);
    assert_eq!(
        unit(cfg, "matrix-synapse.service").reasons,
        ["extra config files (--config-path)"]
    );
    let paths: Vec<String> = cfg
        .mas_settings
        .iter()
        .map(|s| format!("{}: {:?} → {:?}", s.path, s.old, s.new))
        .collect();
    assert_eq!(
        paths,
        ["passwords.minimum_complexity: Some(Number(2)) → Some(Number(3))"]
    );
    assert!(
        cfg.synapse_settings.is_empty(),
        "{:?}",
        cfg.synapse_settings
    );
    assert_eq!(
        unit(cfg, "matrix-authentication-service.service").action,
        Action::Restart
    );
    let doctor = unit(cfg, "masgen-mas-doctor.service");
    assert_eq!(
        (doctor.summary.as_str(), doctor.reasons.as_slice()),
        ("changed (not running)", &["command".to_string()][..])
    );
    assert!(cfg.phase_change.is_none());
}

#[test]
fn a_hand_made_system_root() {
    let root = support::repo_root().join("tests/fixtures/system-handmade");
    let root = Utf8PathBuf::from_path_buf(root).unwrap();
    let (_, tree) = build(&example_text("fresh.toml"));
    let sys = system::read(&root, &[]).unwrap();
    let c = compare::compare_system("spec.toml", &each_host(sys, &tree), &tree).unwrap();
    let cfg = config(&c, "matrix");
    assert_eq!(cfg.foreign_units, ["foo.service"]);
    let paths: Vec<&str> = cfg
        .synapse_settings
        .iter()
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "database.args.cp_max",
            "database.args.cp_min",
            "database.args.host",
            "enable_registration",
            "listeners[0].resources[0].compress",
            "matrix_authentication_service"
        ]
    );
    assert!(cfg
        .unmanaged_settings
        .contains(&"synapse.media_store_path".to_string()));
    assert!(cfg
        .warnings
        .iter()
        .any(|w| w.code == "delegation_conflict_on_system"
            && w.message.contains("password_config.enabled")));
    assert_eq!(
        unit(cfg, "matrix-authentication-service.service").summary,
        "added (started)"
    );
    let mut c = c;
    c.against = Against::System {
        root: "tests/fixtures/system-handmade".into(),
    };
    for cfg in &mut c.configurations {
        cfg.baseline = Some("the system at tests/fixtures/system-handmade".into());
    }
    for n in &mut c.notes {
        *n = n.replace(root.as_str(), "tests/fixtures/system-handmade");
    }
    let text = render::text(&c, false);
    let json = render::json(&c);
    for out in [&text, &json, &render::markdown(&c)] {
        assert!(!out.contains("fixture-pepper"), "a secret was printed");
    }
    insta::assert_snapshot!("system_handmade", text);
}

// ------------------------------------------------------------ the schema

/// Field names of the tables under `### <title>` in docs/diff.md (first
/// column, `a`, or `` `a`, `b` ``).
fn documented(doc: &str, title: &str) -> BTreeSet<String> {
    let start = doc
        .find(&format!("### {title}\n"))
        .unwrap_or_else(|| panic!("docs/diff.md has no `### {title}`"));
    let section = &doc[start + 4..];
    let section = &section[..section.find("\n### ").unwrap_or(section.len())];
    let mut out = BTreeSet::new();
    let mut in_fields = false;
    for line in section.lines() {
        if line.starts_with("| field |") {
            in_fields = true;
            continue;
        }
        if !line.starts_with('|') {
            in_fields = false;
            continue;
        }
        if in_fields && line.starts_with("| `") {
            let cell = line[2..].split(" |").next().unwrap();
            for name in cell.split(", ") {
                out.insert(name.trim_matches('`').to_string());
            }
        }
    }
    out
}

fn keys(values: &[&serde_json::Value]) -> BTreeSet<String> {
    values
        .iter()
        .flat_map(|v| v.as_object().unwrap().keys().cloned())
        .collect()
}

/// Every field the JSON carries is documented in docs/diff.md, and every
/// documented field and warning code occurs in at least one of these
/// comparisons.
#[test]
fn docs_describe_every_json_field_and_warning() {
    let doc = fs::read_to_string(support::repo_root().join("docs/diff.md")).unwrap();
    let mut docs: Vec<serde_json::Value> = Vec::new();
    let mut push = |c: &Changeset| docs.push(serde_json::from_str(&render::json(c)).unwrap());

    let keycloak = example_text("migrate-keycloak.toml");
    let (_, full) = build(&keycloak);
    let prepare_only: OutputTree = full
        .iter()
        .filter(|(p, _)| !p.as_str().contains("/final/"))
        .map(|(p, t)| (p.clone(), t.clone()))
        .collect();
    push(&tree_diff(&prepare_only, &full));
    push(&tree_diff(&full, &prepare_only));
    let fresh = example_text("fresh.toml");
    let hostname = replace_once(
        &replace_once(
            &fresh,
            "public_hostname = \"matrix.example.org\"",
            "public_hostname = \"chat.example.org\"",
        ),
        "hostname = \"matrix.example.org\"",
        "hostname = \"chat.example.org\"",
    );
    push(&tree_diff(
        &build(&format!("{fresh}{UPSTREAM}")).1,
        &build(&hostname).1,
    ));
    let no_users = replace_once(
        &keycloak,
        "server_name = \"example.net\"",
        "server_name = \"example.com\"",
    );
    push(&tree_diff(&full, &build(&no_users).1));
    let root =
        Utf8PathBuf::from_path_buf(support::repo_root().join("tests/fixtures/system-handmade"))
            .unwrap();
    let sys = system::read(&root, &[]).unwrap();
    let tree = build(&fresh).1;
    push(&compare::compare_system("spec.toml", &each_host(sys, &tree), &tree).unwrap());

    let configs: Vec<&serde_json::Value> = docs
        .iter()
        .flat_map(|d| d["configurations"].as_array().unwrap())
        .collect();
    let all = |field: &str| -> Vec<&serde_json::Value> {
        configs
            .iter()
            .flat_map(|c| c[field].as_array().unwrap())
            .collect()
    };
    let levels: Vec<(&str, BTreeSet<String>)> = vec![
        ("Top level", keys(&docs.iter().collect::<Vec<_>>())),
        ("*configuration*", keys(&configs)),
        ("*unit*", keys(&all("units"))),
        (
            "*setting*",
            keys(
                &["synapse_settings", "mas_settings", "other_options"]
                    .iter()
                    .flat_map(|f| all(f))
                    .collect::<Vec<_>>(),
            ),
        ),
        ("*vhost*", keys(&all("virtual_hosts"))),
        ("*route*", keys(&all("routes"))),
        (
            "*file*",
            keys(
                &docs
                    .iter()
                    .flat_map(|d| d["files"].as_array().unwrap())
                    .collect::<Vec<_>>(),
            ),
        ),
        ("*warning*", keys(&all("warnings"))),
    ];
    for (title, seen) in levels {
        assert_eq!(
            documented(&doc, title),
            seen,
            "docs/diff.md `### {title}` vs the JSON"
        );
    }
    let codes: BTreeSet<String> = all("warnings")
        .iter()
        .map(|w| w["code"].as_str().unwrap().to_string())
        .collect();
    for code in &codes {
        assert!(
            doc.contains(&format!("| `{code}` |")),
            "warning {code} is not documented"
        );
    }
    assert!(codes.contains("server_name_changes"));
}
