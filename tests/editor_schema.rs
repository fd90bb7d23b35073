//! The spec's JSON Schema for editors (issue 13, "In the editor"):
//! `masgen schema` prints what docs/masgen-spec.schema.json holds, every
//! example and `masgen init`'s output carry taplo's `#:schema` directive, and
//! the real taplo CLI (npm `@taplo/cli`, as Even Better TOML uses it)
//! accepts every example and rejects bad specs for masgen's own reasons.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::{env, fs};

use assert_cmd::Command as BinCommand;

use masgen::spec::schema::COMMITTED_PATH;

fn masgen(args: &[&str]) -> String {
    let out = BinCommand::cargo_bin("masgen")
        .unwrap()
        .args(args)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(out).unwrap()
}

fn examples() -> Vec<PathBuf> {
    let mut specs: Vec<PathBuf> = fs::read_dir(support::repo_root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    specs.sort();
    assert!(specs.len() >= 4, "{specs:?}");
    specs
}

#[test]
fn committed_schema_is_the_generated_one() {
    let committed = fs::read_to_string(support::repo_root().join(COMMITTED_PATH)).unwrap();
    let printed = masgen(&["schema"]);
    assert!(
        committed == printed,
        "{COMMITTED_PATH} is stale: run `cargo run -q -- schema > {COMMITTED_PATH}` and commit it"
    );
}

/// The schema says what the loader says: unknown keys refused in every
/// table but the escape hatches, descriptions from the doc comments.
#[test]
fn schema_refuses_unknown_keys_except_in_escape_hatches() {
    let schema: serde_json::Value = serde_json::from_str(&masgen(&["schema"])).unwrap();
    let defs = schema["definitions"].as_object().unwrap();
    assert_eq!(schema["additionalProperties"], false);
    for (name, def) in defs {
        if def["type"] == "object" && def.get("properties").is_some() {
            assert_eq!(def["additionalProperties"], false, "{name}");
            assert!(def["description"].is_string(), "{name} has no description");
        }
    }
    let synapse = &defs["SynapseSpec"]["properties"];
    for hatch in ["extra_settings", "final_extra_settings"] {
        assert_eq!(synapse[hatch]["type"], "object", "{hatch}");
        assert!(
            synapse[hatch].get("additionalProperties").is_none(),
            "{hatch}"
        );
    }
    assert!(defs["MasSpec"]["properties"]["extra_settings"]
        .get("additionalProperties")
        .is_none());
    assert!(defs["SynapseOidcSpec"]["properties"]["extra"]
        .get("additionalProperties")
        .is_none());
    // The doc comment of `SynapseSpec::version` is the description.
    assert_eq!(
        synapse["version"]["description"],
        "The Synapse release line; derived from a known `flake.nixpkgs` when omitted."
    );
    // TOML has no null: no optional key may offer one.
    assert!(!masgen(&["schema"]).contains("null"));
}

#[test]
fn examples_and_init_start_with_the_schema_directive() {
    for spec in examples() {
        let text = fs::read_to_string(&spec).unwrap();
        assert!(
            text.starts_with("#:schema ../docs/masgen-spec.schema.json\n"),
            "{}",
            spec.display()
        );
    }
    for args in [&["init"][..], &["init", "--existing"]] {
        let text = masgen(args);
        assert!(
            text.starts_with("#:schema ./masgen-spec.schema.json\n"),
            "{args:?}: {text}"
        );
        assert!(text.contains("masgen schema > masgen-spec.schema.json"));
    }
}

/// taplo from `scripts/setup-test-deps.sh` (`$MASGEN_TAPLO` or its npm
/// prefix), else `taplo` on PATH; SKIP locally, fail in CI.
fn taplo() -> Option<PathBuf> {
    let installed = env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/masgen/taplo/node_modules/.bin/taplo"));
    let name = match env::var_os("MASGEN_TAPLO") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => installed
            .filter(|p| p.exists())
            .unwrap_or_else(|| "taplo".into()),
    };
    support::require_tool(name.to_str().unwrap(), "checking specs against the schema")
}

/// `taplo lint` of `files` (one run: node starts slowly), without any taplo
/// config of the host's; with `schema`, that schema instead of the files'
/// `#:schema` directives.
fn lint(taplo: &Path, files: &[PathBuf], schema: Option<&Path>) -> Output {
    let mut cmd = Command::new(taplo);
    cmd.args(["lint", "--no-auto-config", "--colors", "never"])
        .env_remove("TAPLO_CONFIG")
        .env("RUST_LOG", "error")
        // A cwd far from the file: a directive resolves against the file.
        .current_dir(env::temp_dir());
    if let Some(schema) = schema {
        cmd.arg("--schema")
            .arg(format!("file://{}", schema.display()));
    }
    cmd.args(files);
    cmd.output().expect("run taplo")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn taplo_accepts_every_example_through_its_directive() {
    let Some(taplo) = taplo() else { return };
    let out = lint(&taplo, &examples(), None);
    assert!(out.status.success(), "{}", text(&out));
}

/// What a user gets: `masgen init` and `masgen schema` side by side; taplo
/// finds the schema through the directive and uses it (a bad mode fails).
#[test]
fn taplo_checks_init_output_against_the_schema_beside_it() {
    let Some(taplo) = taplo() else { return };
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("masgen-spec.schema.json"),
        masgen(&["schema"]),
    )
    .unwrap();
    let spec = dir.path().join("spec.toml");
    for args in [&["init"][..], &["init", "--existing"]] {
        let starter = masgen(args);
        fs::write(&spec, &starter).unwrap();
        let out = lint(&taplo, std::slice::from_ref(&spec), None);
        assert!(out.status.success(), "{args:?}:\n{}", text(&out));

        let wrong = starter.replacen("mode = \"", "mode = \"x", 1);
        assert_ne!(wrong, starter);
        fs::write(&spec, &wrong).unwrap();
        let out = lint(&taplo, std::slice::from_ref(&spec), None);
        assert!(!out.status.success(), "{args:?}:\n{}", text(&out));
        assert!(text(&out).contains("is not one of [\"fresh\",\"migrate\"]"));
    }
}

/// Bad specs that masgen refuses (with `code`) and taplo refuses for the
/// same reason (`taplo_says`, at 1-based line `line` of the file).
const BAD: &[(&str, &str, &str, usize)] = &[
    // wrong type
    (
        "02-wrong-type.toml",
        "spec.type",
        r#""8008" is not of type "integer""#,
        15,
    ),
    (
        "115-single-brackets-for-a-list.toml",
        "spec.type",
        r#"is not of type "array""#,
        26,
    ),
    // missing required key (taplo points at the table)
    (
        "03-missing-required-key.toml",
        "spec.type",
        r#""server_name" is a required property"#,
        4,
    ),
    // unknown keys, top level, nested, in an array of tables
    (
        "04-unknown-key-top-level.toml",
        "spec.unknown_key",
        "'homeservr_name' was unexpected",
        1,
    ),
    (
        "05-unknown-key-nested.toml",
        "spec.unknown_key",
        "'bind_address' was unexpected",
        13,
    ),
    (
        "06-unknown-keys-in-array-of-tables.toml",
        "spec.unknown_key",
        "'algorithm' was unexpected",
        27,
    ),
    (
        "57-unknown-account-key.toml",
        "spec.unknown_key",
        "'allow_registration' was unexpected",
        41,
    ),
    // bad enum values and ranges
    (
        "34-mode-upgrade.toml",
        "homeserver.mode",
        r#""upgrade" is not one of ["fresh","migrate"]"#,
        6,
    ),
    (
        "53-token-endpoint-auth-method-unknown.toml",
        "mas.provider.auth_method",
        r#""client_secret" is not one of"#,
        43,
    ),
    (
        "117-bad-password-login-root-cause.toml",
        "synapse.password_login",
        r#""yes" is not valid under any of the schemas"#,
        9,
    ),
    (
        "30-port-zero.toml",
        "value.port",
        "0 is less than the minimum of 1",
        15,
    ),
];

#[test]
fn taplo_rejects_bad_specs_for_masgen_reasons() {
    let Some(taplo) = taplo() else { return };
    let schema = support::repo_root().join(COMMITTED_PATH);
    let dir = support::repo_root().join("tests/bad_specs");
    let files: Vec<PathBuf> = BAD.iter().map(|b| dir.join(b.0)).collect();
    let out = lint(&taplo, &files, Some(&schema));
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    // taplo's errors, each with its file:line:column.
    let errors: Vec<String> = format!("\n{said}")
        .split("\nerror: ")
        .skip(1)
        .map(str::to_string)
        .collect();
    for (name, code, taplo_says, line) in BAD {
        let source = fs::read_to_string(dir.join(name)).unwrap();
        let report = masgen::check_source(masgen::spec::Source::new(*name, source))
            .err()
            .unwrap_or_else(|| panic!("masgen accepts {name}"));
        let codes: Vec<&str> = report.shown.iter().map(|d| d.code).collect();
        assert!(codes.contains(code), "{name}: masgen says {codes:?}");

        let at = format!("/{name}:{line}:");
        let first_line = |e: &String| e.lines().next().unwrap_or_default().to_string();
        assert!(
            errors
                .iter()
                .any(|e| first_line(e).contains(taplo_says) && e.contains(&at)),
            "{name}: taplo does not say `{taplo_says}` at line {line}:\n{said}"
        );
    }
}
