//! `masgen secrets SPEC --out DIR`: the files it makes are what their
//! consumers read (`openssl` parses the PEM keys as RSA 2048 / EC P-256,
//! Synapse's config loader reads the tokens, the MAS encryption key has
//! MAS's exact format), it never overwrites and never makes the pepper, and
//! its sops-nix / agenix lines are Nix.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{mode_of, require_tool, run_ok};

fn secrets(spec: &Path, dir: &Path) -> Output {
    Command::new(assert_cmd::cargo::cargo_bin("masgen"))
        .arg("secrets")
        .arg(spec)
        .arg("--out")
        .arg(dir)
        .env_remove("MASGEN_LOG")
        .output()
        .unwrap()
}

fn example(name: &str) -> PathBuf {
    support::repo_root().join("examples").join(name)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every file under `dir` with its contents, sorted.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// MAS's rule for `secrets.encryption_file`: the whole file hex-decodes to
/// exactly 32 bytes (MAS @1b7b43b5, crates/config/src/sections/secrets.rs,
/// `hex::decode_to_slice` into `[u8; 32]`): a stand-in for `mas-cli config
/// check`, which cannot run here.
fn mas_accepts_encryption(content: &[u8]) -> bool {
    content.len() == 64 && content.iter().all(u8::is_ascii_hexdigit)
}

#[test]
fn makes_the_missing_secrets_in_their_formats() {
    let Some(openssl) = require_tool("openssl", "parsing the generated PEM keys") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("secrets");
    let out = secrets(&example("migrate-keycloak.toml"), &out_dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(mode_of(&out_dir), 0o700);

    let files = contents(&out_dir);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "mas-ec.pem",
            "mas-encryption",
            "mas-rsa.pem",
            "mas-synapse-secret"
        ],
        "the pepper and the identity providers' client secrets are not made"
    );
    for (name, content) in &files {
        assert_eq!(mode_of(&out_dir.join(name)), 0o600, "{name}");
        assert!(!content.is_empty());
    }
    let file = |n: &str| files.iter().find(|(f, _)| f == n).unwrap().1.clone();
    assert!(mas_accepts_encryption(&file("mas-encryption")));
    assert!(mas_accepts_encryption(&file("mas-synapse-secret")));
    assert_ne!(file("mas-encryption"), file("mas-synapse-secret"));

    // openssl reads each key as the algorithm its kid names.
    let pkey = |name: &str| -> String {
        text(
            &run_ok(
                Command::new(&openssl)
                    .args(["pkey", "-noout", "-text", "-in"])
                    .arg(out_dir.join(name)),
            )
            .stdout,
        )
    };
    let rsa = pkey("mas-rsa.pem");
    assert!(rsa.contains("Private-Key: (2048 bit"), "{rsa}");
    assert!(rsa.contains("modulus:"), "{rsa}");
    let ec = pkey("mas-ec.pem");
    assert!(ec.contains("NIST CURVE: P-256"), "{ec}");

    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("not made:") && stderr.contains("synapse.pepper_file"),
        "{stderr}"
    );
}

#[test]
fn never_overwrites_and_checks_what_it_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("secrets");
    let spec = example("fresh.toml");
    // What `openssl rand -hex 32 > file` writes: one newline too many for MAS.
    fs::create_dir(&out_dir).unwrap();
    let mine = format!("{}\n", "ab".repeat(32));
    fs::write(out_dir.join("mas-encryption"), &mine).unwrap();

    let out = secrets(&spec, &out_dir);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning: kept") && stderr.contains("ends in a newline"),
        "{stderr}"
    );
    assert_eq!(
        fs::read_to_string(out_dir.join("mas-encryption")).unwrap(),
        mine
    );
    let first = contents(&out_dir);
    assert!(first.len() > 2, "the other secrets are made: {first:?}");

    // A second run changes nothing.
    fs::write(out_dir.join("mas-encryption"), "cd".repeat(32)).unwrap();
    let before = contents(&out_dir);
    let out = secrets(&spec, &out_dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(contents(&out_dir), before);
    assert!(
        !text(&out.stderr).contains("created"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_invalid_spec_makes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("secrets");
    let bad = support::repo_root().join("tests/bad_specs/08-literal-client-secret.toml");
    let out = secrets(&bad, &out_dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(!out_dir.exists());
    assert!(out.stdout.is_empty());
}

#[test]
fn deploy_lines_are_nix() {
    let Some(nix) = support::nix_instantiate() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = secrets(&example("migrate-keycloak.toml"), &dir.path().join("s"));
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    for prefix in ["sops.secrets.", "age.secrets."] {
        let body: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with(prefix))
            .collect();
        assert_eq!(
            body.len(),
            7,
            "{prefix}: one line per secret file:\n{stdout}"
        );
        let module = format!("{{ ... }}: {{\n{}\n}}\n", body.join("\n"));
        let file = dir.path().join("module.nix");
        fs::write(&file, &module).unwrap();
        nix.parse_file(&file)
            .unwrap_or_else(|e| panic!("{e}\n{module}"));
    }
    assert!(
        stdout.contains("sops.secrets.\"mas-synapse-secret\"")
            && stdout.contains("owner = \"matrix-synapse\""),
        "Synapse reads the shared secret itself: {stdout}"
    );
}

/// Synapse's own config loader reads the tokens masgen made, as the
/// delegation secret (`matrix_authentication_service.secret_path`), the
/// registration shared secret and the macaroon key.
#[test]
fn synapse_reads_the_tokens() {
    let Some(py) = support::synapse_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("secrets");
    let out = secrets(&example("migrate-local.toml"), &out_dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = |n: &str| fs::read_to_string(out_dir.join(n)).unwrap();
    let shared = token("mas-synapse-secret");
    let registration = token("synapse-registration");

    let config = dir.path().join("homeserver.yaml");
    fs::write(
        &config,
        format!(
            "server_name: example.org\nreport_stats: false\n\
             signing_key_path: {dir}/signing.key\nmedia_store_path: {dir}/media\n\
             database: {{name: sqlite3, args: {{database: {dir}/db.sqlite}}}}\n\
             registration_shared_secret_path: {reg}\nmacaroon_secret_key_path: {reg}\n\
             matrix_authentication_service: {{enabled: true, endpoint: 'http://127.0.0.1:8080/', secret_path: {shared}}}\n",
            dir = dir.path().display(),
            reg = out_dir.join("synapse-registration").display(),
            shared = out_dir.join("mas-synapse-secret").display(),
        ),
    )
    .unwrap();
    run_ok(
        Command::new(&py)
            .args(["-m", "synapse.app.homeserver", "--generate-keys", "-c"])
            .arg(&config)
            .current_dir(dir.path()),
    );
    let script = "import sys\n\
        from synapse.config.homeserver import HomeServerConfig\n\
        c = HomeServerConfig.load_config('', ['-c', sys.argv[1]])\n\
        print(c.mas.secret()); print(c.registration.registration_shared_secret); print(c.key.macaroon_secret_key.decode())\n";
    let read = run_ok(
        Command::new(&py)
            .args(["-c", script])
            .arg(&config)
            .current_dir(dir.path()),
    );
    let read = text(&read.stdout);
    let lines: Vec<&str> = read.lines().collect();
    assert_eq!(
        lines,
        [
            shared.as_str(),
            registration.as_str(),
            registration.as_str()
        ]
    );
}

/// Keys with `generate = true` are the host's to make: `masgen secrets`
/// makes none of them, says so for each, and gives sops-nix / agenix no line
/// for them (a deployed file would take the generated key's place).
#[test]
fn keys_the_host_generates_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("secrets");
    let out = secrets(&example("mas-own-host.toml"), &out_dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let names: Vec<String> = contents(&out_dir).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["mas-synapse-secret"]);
    let stderr = text(&out.stderr);
    for (key, path) in [
        ("mas.encryption_file", "/var/lib/masgen-keys/mas-encryption"),
        (
            "mas.signing_keys[0].key_file",
            "/var/lib/masgen-keys/mas-rsa.pem",
        ),
        (
            "mas.signing_keys[1].key_file",
            "/var/lib/masgen-keys/mas-ec-p256.pem",
        ),
    ] {
        assert!(
            stderr.contains(&format!("skipped: {path} for {key}: `generate = true`")),
            "{key}: {stderr}"
        );
    }
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("masgen-keys"), "{stdout}");
    assert!(stdout.contains("mas-synapse-secret"), "{stdout}");
}
