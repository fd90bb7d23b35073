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

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use masgen::lower::{HostPhase, Phase};
use masgen::rules::DELEGATION_CONFLICTS;
use serde_json::{json, Value};
use support::synapse::*;
use support::*;

// ------------------------------------------------------------------ specs

/// Only one Synapse (or Synapse loader) at a time in this test binary.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A PostgreSQL cluster with peer authentication, the current OS user's name
/// (Synapse runs as it here; an ident map lets it in as `matrix-synapse`),
/// and where Synapse reaches the cluster.
fn peer_postgres() -> Option<(PgCluster, String, PgTarget)> {
    let pg = PgCluster::start_with_auth("peer")?;
    let me = String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout)
        .trim()
        .to_string();
    let target = PgTarget {
        socket_dir: pg.socket_dir().to_path_buf(),
        port: pg.port(),
    };
    Some((pg, me, target))
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
    let Some((pg, me, target)) = peer_postgres() else {
        return;
    };
    let _serial = serial();

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
    require_ldap_plugin(&py);
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

/// `ldap_config` (a table entry) makes Synapse import matrix-synapse-ldap3
/// before its delegation check: the venv of scripts/setup-test-deps.sh has it.
fn require_ldap_plugin(py: &Path) {
    let ok = Command::new(py)
        .args(["-c", "import ldap_auth_provider"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import ldap_auth_provider: run scripts/setup-test-deps.sh (it installs matrix-synapse-ldap3 into the Synapse venv)",
        py.display()
    );
}

fn phase_of(lowered: &masgen::lower::Lowered, phase: Phase) -> &HostPhase {
    lowered
        .phases
        .iter()
        .find(|p| p.phase == phase)
        .expect("phase")
}

/// The escape-hatch form of the table: each entry written in
/// `[synapse.extra_settings]` of a migrating spec is accepted, stays in phase
/// 1 (what the homeserver does today), never reaches the final phase, and the
/// final phase still loads in the real Synapse with delegation on.
#[test]
fn escape_hatch_conflicts_never_reach_the_final_phase() {
    let base = example_text("migrate-local.toml");
    let mut finals = Vec::new();
    for c in DELEGATION_CONFLICTS {
        let value = example_value(c);
        let text = spec_with_setting(&base, "extra_settings", c.setting, &value);
        let lowered = masgen::lower::lower(&checked("migrate-local.toml", &text).homeserver);
        let prepare = phase_of(&lowered, Phase::Prepare);
        // With a pepper, `password_config` lives in the runtime file.
        let runtime = prepare
            .synapse
            .password_config
            .as_ref()
            .map(|pc| json!({"password_config": pc.settings}));
        let kept = [Some(&prepare.synapse.settings), runtime.as_ref()]
            .into_iter()
            .flatten()
            .any(|s| masgen::rules::lookup(s, c.setting) == Some(&value));
        assert!(kept, "`{}` is not kept in phase 1", c.setting);
        let final_phase = phase_of(&lowered, Phase::Final);
        let left = masgen::rules::conflicts_in(&final_phase.synapse.settings);
        assert!(
            left.is_empty(),
            "`{}` from extra_settings reaches the final phase: {:?}",
            c.setting,
            left.iter().map(|c| c.setting).collect::<Vec<_>>()
        );
        assert!(
            final_phase.dropped.iter().any(|d| d.setting == c.setting),
            "no note says `{}` is dropped: {:?}",
            c.setting,
            final_phase.dropped
        );
        finals.push((c.setting, final_phase.clone()));
    }

    let Some(py) = synapse_python() else { return };
    let _serial = serial();
    let mut signing_key = None;
    for (setting, phase) in finals {
        let setup = write_phase(&phase, &phase.synapse.settings, &no_pg(), None);
        match &signing_key {
            None => {
                setup.generate_keys(&py).unwrap();
                signing_key = Some(
                    fs::read_to_string(setup.data_dir.join("homeserver.signing.key")).unwrap(),
                );
            }
            Some(key) => write_mode(&setup.data_dir.join("homeserver.signing.key"), key, 0o600),
        }
        let out = setup.load(&py, Some("mas.enabled")).unwrap_or_else(|e| {
            panic!("`{setting}` in extra_settings: Synapse refuses the final phase:\n{e}")
        });
        assert!(out.contains("mas.enabled: True"), "{out}");
        eprintln!("ok: `{setting}` in extra_settings: final phase loads with delegation on");
    }
}

/// An LDAP provider written in any of its forms — `ldap_config` or the LDAP
/// module in `extra_settings`, or `[synapse.ldap]` — works in phase 1 (Synapse's
/// loader loads matrix-synapse-ldap3 from it) and is gone from the final phase
/// (the loader, with delegation on, sees no password provider and no module).
#[test]
fn ldap_works_in_phase_1_and_is_gone_from_the_final_phase() {
    let ldap = json!({
        "enabled": true,
        "uri": "ldap://ldap.example.net:389",
        "base": "ou=users,dc=example,dc=net",
        "attributes": {"uid": "uid", "mail": "mail", "name": "cn"},
        "bind_dn": "cn=synapse,dc=example,dc=net",
        "bind_password_file": "/run/secrets/synapse-ldap-bind",
    });
    let base = example_text("migrate-local.toml");
    let module = json!([{"module": "ldap_auth_provider.LdapAuthProviderModule", "config": ldap}]);
    let mut table: toml::Table = toml::from_str(&base).unwrap();
    table["synapse"]
        .as_table_mut()
        .unwrap()
        .insert("ldap".into(), toml::Value::try_from(&ldap).unwrap());
    let forms = [
        (
            "extra_settings.ldap_config",
            spec_with_setting(&base, "extra_settings", "ldap_config", &ldap),
            "authproviders.password_providers",
        ),
        (
            "extra_settings.modules",
            spec_with_setting(&base, "extra_settings", "modules", &module),
            "modules.loaded_modules",
        ),
        (
            "[synapse.ldap]",
            toml::to_string(&table).unwrap(),
            "modules.loaded_modules",
        ),
    ];
    let mut phases = Vec::new();
    for (form, text, read) in forms {
        let checked = checked("migrate-local.toml", &text);
        assert!(
            checked
                .warnings
                .iter()
                .any(|w| w.code == "migrate.password_providers"),
            "{form}: no warning that the provider stops working"
        );
        assert!(checked.homeserver.synapse.password_auth_in_use(), "{form}");
        let lowered = masgen::lower::lower(&checked.homeserver);
        let prepare = phase_of(&lowered, Phase::Prepare).clone();
        let final_phase = phase_of(&lowered, Phase::Final).clone();
        assert!(
            prepare
                .synapse
                .extras
                .iter()
                .any(|e| e == "matrix-synapse-ldap3"),
            "{form}: phase 1 lacks the LDAP plugin: {:?}",
            prepare.synapse.extras
        );
        let yaml = serde_json::to_string(&final_phase.synapse.settings).unwrap();
        assert!(
            !yaml.contains("ldap"),
            "{form}: LDAP reaches the final phase:\n{yaml}"
        );
        assert!(!final_phase.dropped.is_empty(), "{form}: no note");
        phases.push((form, read, prepare, final_phase));
    }

    let Some(py) = synapse_python() else { return };
    require_ldap_plugin(&py);
    let _serial = serial();
    for (form, read, prepare, final_phase) in phases {
        let setup = write_phase(&prepare, &prepare.synapse.settings, &no_pg(), None);
        setup.generate_keys(&py).unwrap();
        let out = setup
            .load(&py, Some(read))
            .unwrap_or_else(|e| panic!("{form}: Synapse refuses phase 1:\n{e}"));
        assert!(
            out.contains("ldap_auth_provider.LdapAuthProvider"),
            "{form}: phase 1 {read}:\n{out}"
        );
        let key = fs::read_to_string(setup.data_dir.join("homeserver.signing.key")).unwrap();
        let setup = write_phase(&final_phase, &final_phase.synapse.settings, &no_pg(), None);
        write_mode(&setup.data_dir.join("homeserver.signing.key"), &key, 0o600);
        let out = setup
            .load(&py, Some(read))
            .unwrap_or_else(|e| panic!("{form}: Synapse refuses the final phase:\n{e}"));
        assert!(
            out.contains(&format!("{read}: []")),
            "{form}: final phase {read}:\n{out}"
        );
        eprintln!("ok: LDAP as {form}: loaded in phase 1, gone from the final phase");
    }
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

/// A password-auth module passes Synapse's config loader (it only imports
/// the class) but a delegating Synapse refuses to start with it: the module
/// registers password auth callbacks, and Synapse raises "Cannot use password
/// auth provider callbacks when OAuth delegation is enabled"
/// (synapse/module_api/__init__.py). So the LDAP module written in
/// `extra_settings` must not reach the final phase; masgen's final phase of
/// that spec starts.
#[test]
fn password_module_stops_a_delegating_synapse() {
    let module = json!([{
        "module": "ldap_auth_provider.LdapAuthProviderModule",
        "config": {
            "enabled": true,
            "uri": "ldap://127.0.0.1:1",
            "base": "ou=users,dc=example,dc=net",
            "attributes": {"uid": "uid", "mail": "mail", "name": "cn"},
        },
    }]);
    let text = spec_with_setting(
        &example_text("migrate-local.toml"),
        "extra_settings",
        "modules",
        &module,
    );
    let lowered = masgen::lower::lower(&checked("migrate-local.toml", &text).homeserver);
    let final_phase = phase_of(&lowered, Phase::Final).clone();
    assert!(
        final_phase.synapse.settings.get("modules").is_none(),
        "the LDAP module reaches the final phase: {}",
        final_phase.synapse.settings
    );

    let Some(py) = synapse_python() else { return };
    require_ldap_plugin(&py);
    let Some((pg, me, target)) = peer_postgres() else {
        return;
    };
    let _serial = serial();
    let args = &final_phase.synapse.settings["database"]["args"];
    let (db, role) = (
        args["database"].as_str().unwrap().to_string(),
        args["user"].as_str().unwrap().to_string(),
    );
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

    // The final phase with the module put back: Synapse exits.
    let mut with_module = final_phase.synapse.settings.clone();
    insert_path(&mut with_module, "modules", module);
    let setup = write_phase(&final_phase, &with_module, &target, None);
    setup.generate_keys(&py).unwrap();
    let mut syn = setup.spawn(&py);
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = syn.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "Synapse still runs with a password module and delegation:\n{}",
            syn.logs()
        );
        thread::sleep(Duration::from_millis(250));
    };
    let logs = syn.logs();
    assert!(!status.success(), "{logs}");
    assert!(
        logs.contains(
            "Cannot use password auth provider callbacks when OAuth delegation is enabled"
        ),
        "Synapse stopped for another reason ({status}):\n{logs}"
    );
    eprintln!("ok: a delegating Synapse refuses the LDAP module ({status})");
    drop(syn);

    // masgen's final phase of the same spec starts.
    let setup = write_phase(&final_phase, &final_phase.synapse.settings, &target, None);
    setup.generate_keys(&py).unwrap();
    let syn = setup.start(&py);
    drop(syn);
    eprintln!("ok: masgen's final phase without the module starts");
}
