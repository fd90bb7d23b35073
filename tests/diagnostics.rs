//! The bad-spec corpus: every `tests/bad_specs/*.toml` is fed to the real
//! `masgen check` and must produce exactly the diagnostics listed in [`CASES`]
//! (codes in printed order and the exit status), never a panic, and the same
//! output as its reviewed insta snapshot (`tests/snapshots/`).
//!
//! The codes table makes the test fail meaningfully even when snapshots are
//! updated blindly. Each spec's first line says what it proves.
//!
//! A spec that validation gets wrong is fixed with its entry here, not parked:
//! the former `pending/` list had no entries left and could only pass.

mod support;

use std::process::Output;

use support::check::*;
use support::repo_root;

/// (spec file stem, expected exit status, expected codes in printed order).
/// Errors come first (by line), then warnings (by line).
const CASES: &[(&str, i32, &[&str])] = &[
    // parsing, types, unknown keys, version
    ("01-toml-syntax", 2, &["toml.syntax"]),
    ("02-wrong-type", 2, &["spec.type"]),
    ("03-missing-required-key", 2, &["spec.type"]),
    ("04-unknown-key-top-level", 2, &["spec.unknown_key"]),
    ("05-unknown-key-nested", 2, &["spec.unknown_key"]),
    (
        "06-unknown-keys-in-array-of-tables",
        2,
        &["spec.unknown_key", "spec.unknown_key", "spec.unknown_key"],
    ),
    ("07-version-2", 2, &["spec.version"]),
    // literal secrets
    ("08-literal-client-secret", 2, &["secret.literal"]),
    ("09-literal-smtp-password", 2, &["secret.literal"]),
    ("10-literal-shared-secret", 2, &["secret.literal"]),
    ("11-literal-encryption", 2, &["secret.literal"]),
    ("12-literal-pepper", 2, &["secret.literal"]),
    ("13-pem-in-extra-settings", 2, &["secret.literal"]),
    (
        "14-literal-macaroon-in-synapse-extra",
        2,
        &["secret.literal"],
    ),
    (
        "15-literal-password-nested-mas-extra",
        2,
        &["secret.literal"],
    ),
    // secret paths
    ("16-secret-path-relative", 2, &["value.path"]),
    ("17-secret-path-in-nix-store", 2, &["secret.in_store"]),
    // upstream providers (18 and 19 are listed further down)
    (
        "20-provider-id-duplicate",
        2,
        &["mas.provider.id_duplicate"],
    ),
    // The bad `synapse_idp_id` (line 38) is the cause: printed first.
    (
        "21-synapse-idp-id-undeclared",
        2,
        &["mas.provider.synapse_idp_id", "migrate.provider_unmapped"],
    ),
    (
        "22-synapse-idp-id-missing-prefix",
        2,
        &["mas.provider.synapse_idp_id", "migrate.provider_unmapped"],
    ),
    (
        "23-synapse-idp-id-mapped-twice",
        2,
        &["mas.provider.synapse_idp_id_twice"],
    ),
    (
        "24-migrate-provider-unmapped",
        2,
        &["migrate.provider_unmapped"],
    ),
    (
        "25-migrate-legacy-oidc-unmapped",
        2,
        &["migrate.provider_unmapped"],
    ),
    // hostnames, prefixes, ports
    ("26-invalid-hostname", 2, &["value.hostname"]),
    ("27-path-prefix-no-leading-slash", 2, &["mas.path_prefix"]),
    ("28-path-prefix-matrix", 2, &["mas.path_prefix"]),
    ("29-mas-root-on-synapse-hostname", 2, &["mas.path_prefix"]),
    ("30-port-zero", 2, &["value.port"]),
    ("31-port-too-large", 2, &["value.port"]),
    ("32-same-port-mas-synapse", 2, &["value.port"]),
    // homeserver and Synapse version
    (
        "33-implementation-dendrite",
        2,
        &["homeserver.implementation"],
    ),
    ("34-mode-upgrade", 2, &["homeserver.mode"]),
    ("35-synapse-version-banana", 2, &["synapse.version"]),
    ("36-msc3861-on-1-157", 2, &["synapse.msc3861_removed"]),
    (
        "37-synapse-1-142-0-with-prefix",
        2,
        &["synapse.version.subpath_bug"],
    ),
    // settings a delegating Synapse refuses
    (
        "38-fresh-enable-registration",
        2,
        &["synapse.delegation_conflict"],
    ),
    (
        "39-fresh-oidc-providers",
        2,
        &["synapse.delegation_conflict"],
    ),
    (
        "40-final-extra-password-config",
        2,
        &["synapse.delegation_conflict"],
    ),
    (
        "41-final-extra-enable-registration",
        2,
        &["synapse.delegation_conflict"],
    ),
    // what syn2mas refuses
    ("42-migrate-sqlite", 2, &["migrate.sqlite"]),
    ("43-migrate-guest-access", 2, &["migrate.syn2mas_refuses"]),
    ("44-migrate-3pid-changes", 2, &["migrate.syn2mas_refuses"]),
    (
        "45-migrate-login-via-existing-session",
        2,
        &["migrate.syn2mas_refuses"],
    ),
    (
        "46-migrate-password-only-for-reauth",
        2,
        &["migrate.syn2mas_refuses"],
    ),
    // MAS
    (
        "47-mas-database-shared",
        2,
        &["database.name_user", "mas.database.shared"],
    ),
    ("48-missing-encryption-file", 2, &["mas.secret_missing"]),
    ("49-no-signing-keys", 2, &["mas.signing_keys"]),
    ("50-keys-dir-and-signing-keys", 2, &["mas.signing_keys"]),
    ("51-claims-action-unknown", 2, &["mas.claims.action"]),
    (
        "52-set-email-verification-on-localpart",
        2,
        &["mas.claims.set_email_verification"],
    ),
    (
        "53-token-endpoint-auth-method-unknown",
        2,
        &["mas.provider.auth_method"],
    ),
    (
        "54-client-secret-basic-without-file",
        2,
        &["mas.provider.client_secret"],
    ),
    (
        "55-discovery-disabled-without-endpoints",
        2,
        &["mas.provider.endpoints", "mas.provider.jwks_uri"],
    ),
    ("56-smtp-without-from", 2, &["mas.email.from"]),
    ("57-unknown-account-key", 2, &["spec.unknown_key"]),
    ("58-tls-files-without-certificate", 2, &["proxy.tls.files"]),
    // users
    ("59-duplicate-user", 2, &["user.duplicate"]),
    ("60-bad-localpart", 2, &["user.localpart"]),
    // everything at once: errors by line, then the warning
    (
        "61-several-errors",
        2,
        &[
            "homeserver.implementation",
            "migrate.syn2mas_refuses",
            "value.path",
            "mas.email.from",
            "value.url",
            "migrate.registration",
        ],
    ),
    // warnings only: exit 0
    ("64-warn-no-email", 0, &["mas.email.none"]),
    ("65-warn-saml2-migrate", 0, &["migrate.legacy_sso"]),
    ("66-warn-registration-migrate", 0, &["migrate.registration"]),
    ("67-warn-old-synapse-1-130", 0, &["synapse.version.old"]),
    // nasty inputs
    ("68-empty-file", 2, &["spec.type"]),
    ("69-deep-nesting", 2, &["toml.syntax"]),
    (
        "70-unicode-keys",
        2,
        &["spec.unknown_key", "spec.unknown_key", "spec.unknown_key"],
    ),
    (
        "71-unicode-column",
        2,
        &["spec.unknown_key", "spec.unknown_key"],
    ),
    ("72-crlf-line-endings", 2, &["value.port"]),
    ("73-tab-indented", 2, &["value.port"]),
    ("74-control-characters", 2, &["toml.syntax"]),
    // Not UTF-8: the byte offset and its line and column.
    ("75-invalid-utf8", 2, &["spec.encoding"]),
    ("76-duplicate-key", 2, &["toml.syntax"]),
    // fixed after the first review
    ("18-provider-id-not-ulid", 2, &["mas.provider.id"]),
    ("19-provider-id-lowercase", 2, &["mas.provider.id"]),
    (
        "62-warn-password-providers-migrate",
        0,
        &["migrate.password_providers"],
    ),
    ("63-warn-encrypted-appservice", 0, &["migrate.appservice"]),
    ("77-duplicate-table-header", 2, &["toml.syntax"]),
    (
        "78-literal-smtp-pass-in-synapse-extra",
        2,
        &["secret.literal"],
    ),
    ("79-literal-ldap-bind-password", 2, &["secret.literal"]),
    ("80-dotted-account-key", 2, &["spec.unknown_key"]),
    ("81-same-port-wildcard-address", 2, &["value.port"]),
    ("82-table-given-as-string", 2, &["spec.type"]),
    // file keys the consumer would ignore; help that names a key it reads
    (
        "83-smtp-pass-file-in-synapse-extra",
        2,
        &["secret.file_key_ignored"],
    ),
    (
        "84-macaroon-file-in-synapse-extra",
        2,
        &["secret.file_key_ignored"],
    ),
    (
        "85-captcha-secret-file-in-mas-extra",
        2,
        &["secret.file_key_ignored"],
    ),
    (
        "86-literal-secret-by-suffix",
        2,
        &["secret.literal", "secret.literal"],
    ),
    (
        "87-literal-redis-password-in-synapse-extra",
        2,
        &["secret.literal"],
    ),
    // root causes first; warnings at the place they are about
    (
        "110-version-2-root-cause-first",
        2,
        &["spec.version", "spec.unknown_key", "spec.unknown_key"],
    ),
    (
        "111-warn-host-table-without-base-flake",
        0,
        &["mas.email.none", "host.no_base_flake"],
    ),
    (
        "112-port-out-of-range-root-cause",
        2,
        &["value.port", "value.port", "mas.email.none"],
    ),
    // TOML errors at their cause: where the array or string opens
    ("113-unclosed-array", 2, &["toml.syntax"]),
    ("114-unclosed-multiline-string", 2, &["toml.syntax"]),
    ("115-single-brackets-for-a-list", 2, &["spec.type"]),
    (
        "116-unknown-file-key-in-synapse-extra",
        2,
        &["extra.file_key_ignored"],
    ),
    (
        "117-bad-password-login-root-cause",
        2,
        &[
            "synapse.password_login",
            "synapse.delegation_conflict",
            "mas.email.none",
        ],
    ),
    (
        "88-fresh-password-auth-modules",
        2,
        &[
            "synapse.delegation_conflict",
            "synapse.delegation_conflict",
            "synapse.delegation_conflict",
        ],
    ),
    ("89-warn-tls-none", 0, &["proxy.tls.none"]),
    // MAS 1.22's own upstream provider rules (src/model/check/upstream.rs)
    (
        "90-signing-alg-with-client-secret-basic",
        2,
        &["mas.provider.signing_alg"],
    ),
    (
        "91-private-key-jwt-with-secret-without-alg",
        2,
        &["mas.provider.client_secret", "mas.provider.signing_alg"],
    ),
    (
        "92-claims-skip-confirmation-and-on-conflict",
        2,
        &[
            "mas.claims.skip_confirmation",
            "mas.claims.on_conflict",
            "mas.claims.skip_confirmation",
        ],
    ),
    (
        "93-warn-issuer-mismatch",
        0,
        &["mas.provider.issuer_mismatch"],
    ),
    (
        "94-fetch-userinfo-without-endpoint",
        2,
        &["mas.provider.endpoints"],
    ),
    // password providers wherever they are written (src/model/check/password_auth.rs)
    (
        "95-ldap-config-in-final-extra-settings",
        2,
        &["synapse.delegation_conflict"],
    ),
    (
        "96-warn-ldap-config-in-extra-settings",
        0,
        &["migrate.password_providers"],
    ),
    (
        "97-password-module-in-final-extra-settings",
        2,
        &["synapse.delegation_conflict"],
    ),
    (
        "98-ldap-table-incomplete",
        2,
        &[
            "synapse.ldap",
            "synapse.ldap",
            "synapse.ldap",
            "migrate.password_providers",
        ],
    ),
    (
        "99-warn-ldap-flag-unconfigured",
        0,
        &["migrate.password_providers", "synapse.ldap.unconfigured"],
    ),
    // the pinned nixpkgs (model/nixpkgs.rs)
    ("100-pin-acme-without-email", 2, &["nixpkgs.acme_email"]),
    (
        "101-pin-synapse-older-than-pin",
        2,
        &["nixpkgs.synapse_version"],
    ),
    (
        "102-pin-unknown-without-version",
        2,
        &["synapse.version.required"],
    ),
    (
        "103-pin-acme-email-twice",
        2,
        &["proxy.acme_email_from_host"],
    ),
    // the host's own configuration
    ("104-host-base-config-relative", 2, &["host.base_config"]),
    ("105-host-base-twice", 2, &["host.base_twice"]),
    ("106-warn-pin-end-of-life", 0, &["nixpkgs.end_of_life"]),
    // keys the host makes (`generate = true`, src/model/check/generate.rs)
    (
        "118-generate-key-on-tmpfs",
        2,
        &["mas.generate.volatile", "mas.email.none"],
    ),
    (
        "119-generate-key-type-without-generate",
        2,
        &[
            "mas.generate.key_type",
            "mas.generate.key_type",
            "mas.email.none",
        ],
    ),
    (
        "120-generate-with-password-and-same-file",
        2,
        &[
            "mas.generate.same_file",
            "mas.generate.password",
            "mas.email.none",
        ],
    ),
];

/// Panics (with the output) if masgen panicked or exited with anything but 0 or 2.
fn assert_no_panic(what: &str, out: &Output) {
    let err = stderr(out);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{what}: masgen panicked:\n{err}"
    );
    let code = exit_code(out);
    assert!(
        code == 0 || code == 2,
        "{what}: exit code {code} (want 0 or 2):\n{err}"
    );
}

/// Control characters other than newline and tab, made visible: a spec can
/// hold raw NUL or ESC bytes, which would make a snapshot binary.
fn visible(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                format!("\\u{{{:x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn snapshot_text(out: &Output) -> String {
    format!("exit: {}\n{}", exit_code(out), visible(&stderr(out)))
}

/// One reviewed snapshot of `exit code + stderr` per spec.
#[test]
fn bad_specs() {
    insta::glob!("bad_specs/*.toml", |path| {
        let name = path.file_name().unwrap().to_string_lossy();
        let rel = format!("tests/bad_specs/{name}");
        let out = check(&rel);
        assert_no_panic(&rel, &out);
        insta::assert_snapshot!(snapshot_text(&out));
    });
}

/// Exit status and codes of every spec, against the table. Reports every
/// mismatch at once.
#[test]
fn bad_specs_match_the_codes_table() {
    let dir = repo_root().join("tests/bad_specs");
    let stems = spec_stems(&dir);
    let mut failures = Vec::new();
    for stem in &stems {
        if !CASES.iter().any(|(s, ..)| s == stem) {
            failures.push(format!("{stem}.toml has no entry in CASES"));
        }
    }
    for (stem, want_exit, want_codes) in CASES {
        if !stems.contains(&stem.to_string()) {
            failures.push(format!(
                "CASES lists {stem}, but tests/bad_specs/{stem}.toml is missing"
            ));
            continue;
        }
        let rel = format!("tests/bad_specs/{stem}.toml");
        let out = check(&rel);
        assert_no_panic(&rel, &out);
        let err = stderr(&out);
        let got = printed_codes(&err, &rel);
        if exit_code(&out) != *want_exit || got != *want_codes {
            failures.push(format!(
                "{rel}: want exit {want_exit} and codes {want_codes:?}, got exit {} and codes {got:?}:\n{err}",
                exit_code(&out)
            ));
        }
        // Every diagnostic says what to do, and ends with the summary line.
        let diagnostics = got.len();
        let helps = err
            .lines()
            .filter(|l| l.trim_start().starts_with("= help: "))
            .count();
        if helps != diagnostics {
            failures.push(format!(
                "{rel}: {diagnostics} diagnostic(s) but {helps} help line(s)"
            ));
        }
        if diagnostics > 0
            && !err
                .lines()
                .last()
                .is_some_and(|l| l.starts_with(&format!("{rel}: ")))
        {
            failures.push(format!("{rel}: no summary line at the end:\n{err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every spec's first line says what it proves.
#[test]
fn bad_specs_say_what_they_prove() {
    let dir = repo_root().join("tests/bad_specs");
    for stem in spec_stems(&dir) {
        let bytes = std::fs::read(dir.join(format!("{stem}.toml"))).unwrap();
        assert!(
            bytes.starts_with(b"# proves: "),
            "tests/bad_specs/{stem}.toml must start with `# proves: ...`"
        );
    }
}

/// `masgen build` of a spec with errors exits 2 and creates nothing.
#[test]
fn build_of_a_bad_spec_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (stem, want_exit, _) in CASES.iter().filter(|(_, exit, _)| *exit == 2) {
        let spec = repo_root().join(format!("tests/bad_specs/{stem}.toml"));
        let out_dir = tmp.path().join(stem);
        let out = masgen()
            .current_dir(tmp.path())
            .arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(&out_dir)
            .output()
            .expect("run masgen build");
        assert_no_panic(&format!("build {stem}"), &out);
        if exit_code(&out) != *want_exit {
            failures.push(format!(
                "build {stem}: exit {} (want {want_exit}):\n{}",
                exit_code(&out),
                stderr(&out)
            ));
        }
        if out_dir.exists() {
            failures.push(format!("build {stem}: created {}", out_dir.display()));
        }
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "build left files behind: {left:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Inputs too big (or too empty) to keep in the repository, written to a
/// temporary directory and checked from there by file name.
#[test]
fn generated_nasty_inputs() {
    let tmp = tempfile::tempdir().unwrap();

    // A truly empty file (0 bytes).
    std::fs::write(tmp.path().join("empty.toml"), "").unwrap();
    let out = check_in(tmp.path(), "empty.toml");
    assert_no_panic("empty.toml", &out);
    assert_eq!(printed_codes(&stderr(&out), "empty.toml"), ["spec.type"]);
    insta::assert_snapshot!("generated-empty-0-bytes", snapshot_text(&out));

    // 2 MB: 20,000 extra settings, then a bad path on the very last line.
    let mut big = fresh_spec();
    big.push_str("\n[synapse.extra_settings]\n");
    for i in 0..20_000 {
        big.push_str(&format!("k{i:05} = \"{}\"\n", "x".repeat(88)));
    }
    big.push_str("\n[migration]\nbackup_dir = \"relative/backups\"\n");
    assert!(big.len() >= 2_000_000, "{} bytes", big.len());
    std::fs::write(tmp.path().join("big.toml"), &big).unwrap();
    let out = check_in(tmp.path(), "big.toml");
    assert_no_panic("big.toml", &out);
    assert_eq!(
        printed_codes(&stderr(&out), "big.toml"),
        ["value.path", "mas.email.none"]
    );
    insta::assert_snapshot!("generated-2mb-many-lines", snapshot_text(&out));

    // 2 MB on one line, with a literal secret at its end.
    let mut line = fresh_spec();
    line.push_str("\n[synapse.extra_settings]\nblob = { data = \"");
    line.push_str(&"A".repeat(2_000_000));
    line.push_str("\", password = \"hunter2\" }\n");
    std::fs::write(tmp.path().join("line.toml"), &line).unwrap();
    let out = check_in(tmp.path(), "line.toml");
    assert_no_panic("line.toml", &out);
    assert_eq!(exit_code(&out), 2);
    assert_eq!(
        printed_codes(&stderr(&out), "line.toml"),
        ["secret.literal"]
    );
    // The key after the 2 MB string: its line is the last, its column counts
    // the characters before it.
    let want = format!(
        "--> line.toml:{}:{}\n",
        line.lines().count(),
        "blob = { data = \"".len() + 2_000_000 + "\", ".len() + 1
    );
    assert!(stderr(&out).contains(&want), "want {want}");
}

/// A 2 MB line must not be echoed whole (with a 2 MB caret padding): the
/// diagnostic shows a window around the column.
#[test]
fn long_source_lines_are_shortened() {
    let tmp = tempfile::tempdir().unwrap();
    let mut line = fresh_spec();
    line.push_str("\n[synapse.extra_settings]\nblob = { data = \"");
    line.push_str(&"A".repeat(2_000_000));
    line.push_str("\", password = \"hunter2\" }\n");
    std::fs::write(tmp.path().join("line.toml"), &line).unwrap();
    let out = check_in(tmp.path(), "line.toml");
    assert!(
        out.stderr.len() < 10_000,
        "{} bytes of stderr",
        out.stderr.len()
    );
}
