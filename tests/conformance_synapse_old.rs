//! Synapse older than 1.136 delegates through `experimental_features.msc3861`,
//! which masgen emits for such versions. A real Synapse 1.135.2 (PyPI, in its
//! own venv) loads the final configuration masgen renders, and refuses it once
//! a setting delegation forbids is added: the same table as for new Synapse.
//!
//! Only Synapse's config loader runs here (with SQLite instead of the spec's
//! PostgreSQL, which the loader never connects to): MAS, which would answer
//! the introspection endpoint, is not available.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use support::*;

/// Points every `/run/secrets/...` path at a file under `dir` (mode 0600).
fn move_secrets(value: &mut Value, dir: &Path) {
    match value {
        Value::String(s) if s.starts_with("/run/secrets/") => {
            let path = dir.join(s.trim_start_matches("/run/secrets/"));
            fs::write(&path, "secret-from-the-test").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            *s = path.to_string_lossy().into_owned();
        }
        Value::Array(items) => items.iter_mut().for_each(|v| move_secrets(v, dir)),
        Value::Object(map) => map.values_mut().for_each(|v| move_secrets(v, dir)),
        _ => {}
    }
}

fn load(python: &Path, config: &Value, dir: &Path) -> (bool, String) {
    let file = dir.join("homeserver.yaml");
    fs::write(&file, serde_norway::to_string(config).unwrap()).unwrap();
    let out = Command::new(python)
        .args(["-m", "synapse.config", "-c"])
        .arg(&file)
        .current_dir(dir)
        .output()
        .expect("run python -m synapse.config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text.contains("Config parses OK!"), text)
}

#[test]
fn msc3861_form_loads_in_synapse_1_135_and_conflicts_are_refused() {
    let Some(python) = old_synapse_python() else {
        return;
    };
    // No supported branch ships a Synapse this old: the msc3861 form is
    // reached by pinning a nixpkgs masgen does not know (taken as written).
    let text = example_text("fresh.toml")
        .replace("version = \"1.157\"", "version = \"1.135\"")
        .replace(
            "nixpkgs = \"github:NixOS/nixpkgs/nixos-unstable\"",
            "nixpkgs = \"github:NixOS/nixpkgs/nixos-25.05\"",
        );
    assert!(text.contains("\"1.135\"") && text.contains("nixos-25.05"));
    let checked = checked("fresh-1.135.toml", &text);
    let lowered = masgen::lower::lower(&checked.homeserver);
    let phase = &lowered.phases[0];

    // MSC3861 needs authlib, which nixpkgs brings with the `oidc` extra.
    assert!(
        phase.synapse.extras.iter().any(|e| e == "oidc"),
        "{:?}",
        phase.synapse.extras
    );
    let settings = &phase.synapse.settings;
    assert!(settings.get("matrix_authentication_service").is_none());
    assert_eq!(
        settings["experimental_features"]["msc3861"]["enabled"],
        json!(true)
    );

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut config = settings.clone();
    move_secrets(&mut config, dir);
    // Paths nixpkgs' module would add, and SQLite for the loader alone.
    let obj = config.as_object_mut().unwrap();
    obj.insert(
        "database".into(),
        json!({"name": "sqlite3", "args": {"database": dir.join("homeserver.db")}}),
    );
    obj.insert("media_store_path".into(), json!(dir.join("media")));
    obj.insert("signing_key_path".into(), json!(dir.join("signing.key")));
    obj.insert("pid_file".into(), json!(dir.join("homeserver.pid")));
    obj.insert("report_stats".into(), json!(false));
    let file = dir.join("homeserver.yaml");
    fs::write(&file, serde_norway::to_string(&config).unwrap()).unwrap();
    let keys = Command::new(&python)
        .args(["-m", "synapse.app.homeserver", "-c"])
        .arg(&file)
        .arg("--generate-keys")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        keys.status.success(),
        "{}",
        String::from_utf8_lossy(&keys.stderr)
    );

    let (ok, out) = load(&python, &config, dir);
    assert!(ok, "Synapse 1.135 refused masgen's MSC3861 config:\n{out}");

    let mut failures = Vec::new();
    for conflict in masgen::rules::DELEGATION_CONFLICTS {
        let mut bad = config.clone();
        let mut at = &mut bad;
        let parts: Vec<&str> = conflict.setting.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            at = at
                .as_object_mut()
                .unwrap()
                .entry(part.to_string())
                .or_insert(json!({}));
        }
        let example: Value = serde_json::from_str(conflict.example).unwrap();
        at.as_object_mut()
            .unwrap()
            .insert(parts[parts.len() - 1].to_string(), example);
        add_prerequisites(&mut bad, conflict.setting, dir);
        let (ok, out) = load(&python, &bad, dir);
        // Refused because of delegation, not for some unrelated reason:
        // MSC3861.check_config_conflicts raises "… cannot be enabled (or
        // set) when OAuth delegation is enabled" (synapse/config/experimental.py
        // @ v1.135.2).
        match out
            .lines()
            .find(|l| l.contains("when OAuth delegation is enabled"))
        {
            Some(why) if !ok => eprintln!(
                "ok: Synapse 1.135 refuses `{}`: {}",
                conflict.setting,
                why.trim()
            ),
            _ => failures.push(format!(
                "`{}` = {}: {}:\n{out}",
                conflict.setting,
                conflict.example,
                if ok {
                    "ACCEPTED with MSC3861 on"
                } else {
                    "refused for another reason"
                }
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// What some of the table's examples need besides the conflicting setting,
/// so that Synapse 1.135's loader reaches the delegation check (the same
/// pieces as `conflict_prerequisites` in tests/conformance_synapse.rs):
/// - `user_consent`: its `template_dir` must exist ("Could not find template
///   directory"); it points into the temp dir, with one template.
/// - `jwt_config.enabled`: JWTConfig reads `secret` and `algorithm`
///   unconditionally (KeyError); Synapse has no file form for the secret.
/// - `oidc_providers`: its `client_secret_path` must name a readable file.
fn add_prerequisites(config: &mut Value, setting: &str, dir: &Path) {
    match setting {
        "user_consent" => {
            let templates = dir.join("privacy-templates");
            fs::create_dir_all(templates.join("en")).unwrap();
            fs::write(templates.join("en/1.0.html"), "<html>consent</html>\n").unwrap();
            config["user_consent"]["template_dir"] = json!(templates);
        }
        "jwt_config.enabled" => {
            config["jwt_config"]["secret"] = json!("masgen-test-jwt-secret");
            config["jwt_config"]["algorithm"] = json!("HS256");
        }
        _ => move_secrets(config, dir),
    }
}
