//! `masgen import`: realistic inputs → a spec that `masgen check` accepts
//! and that builds, with the report of every input key (snapshots), and
//! clear errors for bad input. Secrets in the inputs are marked
//! `…must-never-be-printed`: they must appear in neither spec nor report.

mod support;

use camino::Utf8PathBuf;
use masgen::import::{self, Imported};

const FIX: &str = "tests/fixtures/import";

fn p(rel: &str) -> Utf8PathBuf {
    Utf8PathBuf::from(format!("{FIX}/{rel}"))
}

/// Checks, builds and scans an import; returns it for the snapshots.
fn verified(imported: Imported) -> Imported {
    let source = masgen::spec::Source::new("spec.toml", imported.spec.clone());
    let checked = match masgen::check_source(source) {
        Ok(c) => c,
        Err(d) => panic!("the imported spec fails check: {d:?}"),
    };
    let (_, tree) = masgen::build_tree(&checked).expect("the imported spec builds");
    assert!(tree.keys().any(|k| k.ends_with("flake.nix")));
    let report = import::render_text(&imported.report);
    let json = import::render_json(&imported.report);
    for text in [&imported.spec, &report, &json] {
        assert!(
            !text.contains("never-be-printed"),
            "a secret leaked:\n{text}"
        );
    }
    imported
}

/// The reference render of Synapse's settings for one phase's configuration.
fn rendered_homeserver(i: &Imported, phase: &str) -> serde_json::Value {
    let source = masgen::spec::Source::new("spec.toml", i.spec.clone());
    let Ok(checked) = masgen::check_source(source) else {
        panic!("the imported spec checks")
    };
    let (_, tree) = masgen::build_tree(&checked).expect("builds");
    let (_, text) = tree
        .iter()
        .find(|(k, _)| {
            k.starts_with("render/")
                && k.as_str().contains(&format!("/{phase}/"))
                && k.ends_with("homeserver.yaml")
        })
        .unwrap_or_else(|| {
            panic!(
                "no {phase} homeserver.yaml in {:?}",
                tree.keys().collect::<Vec<_>>()
            )
        });
    serde_norway::from_str(text).expect("YAML")
}

fn snap(name: &str, i: &Imported) {
    insta::assert_snapshot!(format!("{name}_spec"), i.spec);
    insta::assert_snapshot!(format!("{name}_report"), import::render_text(&i.report));
}

#[test]
fn synapse_oidc_config() {
    let i = verified(
        import::synapse::import(&[p("synapse-oidc-config/homeserver.yaml")], "spec.toml").unwrap(),
    );
    assert!(i.spec.contains("synapse_idp_id = \"oidc\""));
    snap("synapse_oidc_config", &i);
}

#[test]
fn synapse_providers_merged_later_file_wins() {
    let files = [
        p("synapse-providers/homeserver.yaml"),
        p("synapse-providers/secrets.yaml"),
    ];
    let i = verified(import::synapse::import(&files, "spec.toml").unwrap());
    // The GitHub secret came from secrets.yaml, which replaced oidc_providers.
    assert!(i
        .spec
        .contains("/run/secrets/synapse-oidc-github-client-secret"));
    assert!(i
        .report
        .items
        .iter()
        .any(|x| x.key == "oidc_providers" && x.why.contains("replaced by")));
    // attribute_requirements is never dropped silently: phase 1 keeps it,
    // and the report says loudly that MAS has no equivalent.
    assert!(i
        .report
        .items
        .iter()
        .any(|x| x.key.ends_with("attribute_requirements")
            && x.status == import::Status::NeedsHuman
            && x.why.contains("SECURITY")));
    let prepare = rendered_homeserver(&i, "prepare");
    let keycloak = &prepare["oidc_providers"][1];
    assert_eq!(keycloak["idp_id"], "keycloak");
    assert_eq!(
        keycloak["attribute_requirements"],
        serde_json::json!([{"attribute": "groups", "value": "matrix-users"}])
    );
    assert_eq!(keycloak["client_auth_method"], "client_secret_post");
    assert_eq!(keycloak["backchannel_logout_enabled"], true);
    assert_eq!(
        keycloak["user_mapping_provider"]["config"]["confirm_localpart"],
        true
    );
    let github = &prepare["oidc_providers"][0];
    assert_eq!(
        github["user_mapping_provider"]["config"]["subject_claim"],
        "id"
    );
    assert_eq!(github["userinfo_endpoint"], "https://api.github.com/user");
    assert!(rendered_homeserver(&i, "final")
        .get("oidc_providers")
        .is_none());
    snap("synapse_providers", &i);
    insta::assert_snapshot!(
        "synapse_providers_report_json",
        import::render_json(&i.report)
    );
}

#[test]
fn provider_ulids_are_stable_across_imports() {
    let files = [
        p("synapse-providers/homeserver.yaml"),
        p("synapse-providers/secrets.yaml"),
    ];
    let a = import::synapse::import(&files, "spec.toml").unwrap();
    let b = import::synapse::import(&files, "spec.toml").unwrap();
    assert_eq!(a.spec, b.spec);
}

#[test]
fn mdad_inventory() {
    let i = verified(import::mdad::import(&p("mdad/vars.yml"), "spec.toml").unwrap());
    assert!(i.spec.contains("hostname = \"auth.example.net\""));
    assert!(i.spec.contains("synapse_idp_id = \"oidc-keycloak\""));
    assert!(i
        .report
        .items
        .iter()
        .any(|x| x.key == "exim_relay_sender_address" && x.why.contains("Jinja2")));
    snap("mdad", &i);
}

#[test]
fn nixos_system_root() {
    let i = verified(import::nixos::import(&p("nixos"), "spec.toml").unwrap());
    assert!(i.spec.contains("version = \"1.157.0\""));
    assert!(i.spec.contains("/run/secrets/synapse-email.yaml"));
    snap("nixos", &i);
}

#[test]
fn anchors_and_merge_keys_resolve() {
    let i = verified(import::synapse::import(&[p("bad/anchors.yaml")], "spec.toml").unwrap());
    assert_eq!(
        i.spec
            .matches("\nissuer = \"https://sso.example.org/realms/matrix\"")
            .count(),
        4
    );
    assert!(!i.spec.contains("<<"));
}

#[test]
fn malformed_yaml_names_file_line_column() {
    let err = import::synapse::import(&[p("bad/malformed.yaml")], "spec.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("tests/fixtures/import/bad/malformed.yaml:"),
        "{err}"
    );
    assert!(err.contains("malformed.yaml:5:"), "{err}");
}

#[test]
fn non_synapse_homeserver_is_refused() {
    let err = import::mdad::import(&p("bad/mdad-conduwuit.yml"), "spec.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("conduwuit") && err.contains("only Synapse"),
        "{err}"
    );
}

#[test]
fn remote_database_is_refused_without_the_password() {
    let err = import::synapse::import(&[p("bad/remote-db.yaml")], "spec.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("db.internal.example.org") && err.contains("unix socket"),
        "{err}"
    );
}

#[test]
fn cli_writes_the_spec_and_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spec.toml");
    let res = assert_cmd::Command::cargo_bin("masgen")
        .unwrap()
        .args(["import", "mdad", &format!("{FIX}/mdad/vars.yml"), "-o"])
        .arg(&out)
        .args(["--format", "json"])
        .assert()
        .success();
    let stderr = String::from_utf8(res.get_output().stderr.clone()).unwrap();
    let report: serde_json::Value = serde_json::from_str(&stderr).expect("a JSON report");
    assert_eq!(report["source"], "mdad");
    assert_cmd::Command::cargo_bin("masgen")
        .unwrap()
        .arg("check")
        .arg(&out)
        .assert()
        .success();
}

/// The issue's bar: importing a NixOS host and building gives a `-prepare`
/// configuration whose Synapse settings equal what the host runs, apart from
/// what masgen documents it adds (docs/guide.md, "What phase 1 changes").
#[test]
fn nixos_import_phase1_equals_the_running_synapse() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    let root = format!("{FIX}/nixos");
    assert_cmd::Command::cargo_bin("masgen")
        .unwrap()
        .args(["import", "nixos", "--system", &root, "-o"])
        .arg(&spec)
        .assert()
        .success();
    let out = assert_cmd::Command::cargo_bin("masgen")
        .unwrap()
        .arg("diff")
        .arg(&spec)
        .args(["--system", &root, "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let diff: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let prepare = diff["configurations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["configuration"] == "matrix-prepare")
        .expect("a -prepare configuration");
    let changes: Vec<String> = prepare["synapse_settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {} {} {}", c["change"], c["path"], c["old"], c["new"]))
        .collect();
    // What masgen adds or normalises, each equal in effect or documented.
    let documented = [
        r#""added" "allow_guest_access" null false"#,
        r#""added" "database.args.cp_max" null 10"#,
        r#""added" "database.args.cp_min" null 5"#,
        r#""removed" "database.args.host" "/run/postgresql" null"#,
        r#""changed" "listeners[0].resources[0].compress" true false"#,
    ];
    for c in &changes {
        assert!(
            documented.contains(&c.as_str()),
            "phase 1 changes the running Synapse: {c}\nall: {changes:#?}"
        );
    }
    // Settings of the host the spec does not set: only those the NixOS
    // module sets itself (the import drops them as such).
    let unmanaged: Vec<&str> = prepare["unmanaged_settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        unmanaged,
        [
            "synapse.log_config",
            "synapse.media_store_path",
            "synapse.pid_file"
        ]
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("never-be-printed"));
}

/// A provider's `extra` carries what the spec has no key for; a key the
/// spec has its own field for is refused (two values would be ambiguous),
/// and a literal secret in it is refused like anywhere else in the spec.
#[test]
fn provider_extra_cannot_repeat_a_typed_key_or_hold_a_secret() {
    let i =
        import::synapse::import(&[p("synapse-oidc-config/homeserver.yaml")], "spec.toml").unwrap();
    let check = |extra: &str| {
        let text = i.spec.replace(
            "\n[mas]\n",
            &format!("\n[synapse.oidc_config.extra]\n{extra}\n\n[mas]\n"),
        );
        match masgen::check_source(masgen::spec::Source::new("spec.toml", text)) {
            Ok(_) => vec![],
            Err(d) => d
                .iter()
                .filter(|d| d.severity == masgen::diag::Severity::Error)
                .map(|d| d.code)
                .collect::<Vec<_>>(),
        }
    };
    assert_eq!(
        check("attribute_requirements = [{ attribute = \"groups\", value = \"staff\" }]"),
        Vec::<&str>::new()
    );
    assert_eq!(
        check("issuer = \"https://elsewhere.example/\""),
        ["synapse.oidc.extra_typed"]
    );
    assert_eq!(
        check("user_mapping_provider = { config = { localpart_template = \"{{ user.x }}\" } }"),
        ["synapse.oidc.extra_typed"]
    );
    assert_eq!(check("client_secret = \"literal\""), ["secret.literal"]);
}

/// Synapse itself (1.163 venv, `synapse.config.oidc._parse_oidc_provider_configs`)
/// reads the `-prepare` render's providers exactly as it reads the running
/// config's: every parsed field equal, templates rendering the same for a
/// sample user. The operator's secret file is stood in for by the inline
/// value it must hold (as the import report tells them).
#[test]
fn synapse_parses_the_phase1_providers_like_the_running_ones() {
    let Some(py) = support::synapse_python() else {
        return;
    };
    for (files, n) in [
        (
            vec![
                p("synapse-providers/homeserver.yaml"),
                p("synapse-providers/secrets.yaml"),
            ],
            2,
        ),
        (vec![p("synapse-oidc-config/homeserver.yaml")], 1),
        (vec![p("bad/anchors.yaml")], 2),
    ] {
        let i = verified(import::synapse::import(&files, "spec.toml").unwrap());
        let prepare = rendered_homeserver(&i, "prepare");
        let dir = tempfile::tempdir().unwrap();
        let render = dir.path().join("prepare.json");
        std::fs::write(&render, prepare.to_string()).unwrap();
        let secret = dir.path().join("secret-file");
        std::fs::write(&secret, "a-secret-file-value\n").unwrap();
        let out = std::process::Command::new(&py)
            .arg("-c")
            .arg(COMPARE_PROVIDERS)
            .arg(&render)
            .arg(&secret)
            .args(&files)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("EQUAL {n}")),
            "{files:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

const COMPARE_PROVIDERS: &str = r#"
import json, sys, attr, yaml
from synapse.config.oidc import _parse_oidc_provider_configs
render, secret, *files = sys.argv[1:]
running = {}
for f in files:
    running.update(yaml.safe_load(open(f)))
phase1 = json.load(open(render))
def providers(cfg):
    out = list(cfg.get("oidc_providers") or [])
    if (cfg.get("oidc_config") or {}).get("enabled"):
        out.append(cfg["oidc_config"])
    return out
inline = {p.get("idp_id", "oidc"): p.get("client_secret") for p in providers(running)}
for cfg in (running, phase1):
    for p in providers(cfg):
        path = p.get("client_secret_path")
        if path and path.startswith("/run/secrets/synapse-oidc"):
            del p["client_secret_path"]
            p["client_secret"] = inline[p.get("idp_id", "oidc")]
        elif path:
            p["client_secret_path"] = secret
user = {"sub": "s1", "id": 42, "login": "octo", "preferred_username": "alice",
        "name": "alice", "email": "a@example.org", "picture": "mxc://x/y"}
def norm(c):
    d = attr.asdict(c, recurse=False)
    m = d.pop("user_mapping_provider_config")
    d.pop("user_mapping_provider_class")
    for k, v in attr.asdict(m, recurse=False).items():
        d["map." + k] = v.render(user=user) if hasattr(v, "render") else v
    return d
def parse(cfg):
    keys = {k: cfg[k] for k in ("oidc_providers", "oidc_config") if k in cfg}
    return [norm(c) for c in _parse_oidc_provider_configs(keys)]
a, b = parse(running), parse(phase1)
for x, y in zip(a, b):
    for k in sorted(set(x) | set(y)):
        if x.get(k) != y.get(k):
            print("DIFF", x["idp_id"], k, repr(x.get(k)), repr(y.get(k)))
            sys.exit(1)
print("EQUAL", len(a)) if len(a) == len(b) else sys.exit(1)
"#;

/// Bad input writes nothing: no spec file appears, the error names the file.
#[test]
fn a_refused_import_writes_no_spec() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spec.toml");
    let res = assert_cmd::Command::cargo_bin("masgen")
        .unwrap()
        .args([
            "import",
            "synapse",
            &format!("{FIX}/bad/remote-db.yaml"),
            "-o",
        ])
        .arg(&out)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&res.get_output().stderr).to_string();
    assert!(stderr.contains("remote-db.yaml"), "{stderr}");
    assert!(!stderr.contains("password"), "{stderr}");
    assert!(!out.exists());
}

/// A `--config-path` directory stands for its `*.yaml` files in sorted
/// order, as Synapse's `find_config_files` reads it; other files are skipped.
#[test]
fn a_config_directory_is_read_in_sorted_order() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf.d");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(conf.join("20-late.yaml"), "enable_registration: false\n").unwrap();
    std::fs::write(
        conf.join("10-early.yaml"),
        "enable_registration: true\nmax_upload_size: 10M\n",
    )
    .unwrap();
    std::fs::write(conf.join("99-ignored.yml"), "max_upload_size: 1G\n").unwrap();
    let files = [
        p("synapse-providers/homeserver.yaml"),
        Utf8PathBuf::from_path_buf(conf).unwrap(),
    ];
    let i = verified(import::synapse::import(&files, "spec.toml").unwrap());
    assert!(i.spec.contains("enable_registration = false"), "{}", i.spec);
    assert!(i.spec.contains("max_upload_size = \"10M\""), "{}", i.spec);
    assert!(i.report.items.iter().any(|x| x.key == "enable_registration"
        && x.file.ends_with("10-early.yaml")
        && x.status == import::Status::Dropped));
}

/// A re-import does not silently replace a spec the operator may have
/// edited; `--force` does.
#[test]
fn an_existing_spec_is_replaced_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spec.toml");
    std::fs::write(&out, "# my edits\n").unwrap();
    let run = |force: bool| {
        let mut cmd = assert_cmd::Command::cargo_bin("masgen").unwrap();
        cmd.args(["import", "mdad", &format!("{FIX}/mdad/vars.yml"), "-o"])
            .arg(&out);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    let refused = run(false);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "# my edits\n");
    assert!(run(true).status.success());
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("[homeserver]"));
}

/// A Synapse that already delegates (either form) has nothing left to
/// migrate: import says so at the key; a disabled `msc3861` block is dropped.
#[test]
fn an_already_delegating_synapse_needs_a_human() {
    let dir = tempfile::tempdir().unwrap();
    let base = "server_name: example.org\nreport_stats: false\n";
    for (name, block, delegating) in [
        (
            "stable",
            "matrix_authentication_service:\n  enabled: true\n  endpoint: http://localhost:8080/\n",
            true,
        ),
        (
            "msc3861",
            "experimental_features:\n  msc3861:\n    enabled: true\n",
            true,
        ),
        (
            "off",
            "experimental_features:\n  msc3861:\n    enabled: false\n  msc3266_enabled: true\n",
            false,
        ),
    ] {
        let path = Utf8PathBuf::from_path_buf(dir.path().join(format!("{name}.yaml"))).unwrap();
        std::fs::write(&path, format!("{base}{block}")).unwrap();
        let imported = import::synapse::import(&[path], "spec.toml").unwrap();
        let report = import::render_text(&imported.report);
        assert_eq!(
            report.contains("delegates to MAS already"),
            delegating,
            "{name}:\n{report}"
        );
        if !delegating {
            // The disabled block is dropped (Synapse 1.163 refuses it), the
            // rest of `experimental_features` is carried.
            assert!(!imported.spec.contains("msc3861"), "{}", imported.spec);
            assert!(
                imported.spec.contains("msc3266_enabled"),
                "{}",
                imported.spec
            );
        }
    }
}
