//! `masgen secrets`: the secret files a spec names, and the making of those
//! masgen can make (random keys) into a directory the operator encrypts
//! with sops-nix or agenix. An existing file is never overwritten; the
//! pepper and secrets that come from elsewhere (an identity provider, an
//! SMTP relay) are only listed.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::process::Command;

use anyhow::{bail, Context, Result};
use camino::Utf8Path;

use crate::model::{EmailTransport, Homeserver, Mas, Synapse};

/// What a secret file holds, and so how masgen makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// MAS `secrets.encryption_file`: 32 random bytes as 64 hex characters
    /// and nothing else. MAS hex-decodes the whole file, so a trailing
    /// newline makes it refuse the key (MAS @1b7b43b5,
    /// crates/config/src/sections/secrets.rs, `SecretsConfig::encryption`).
    MasEncryption,
    /// A random token (32 bytes as 64 hex characters, no newline): the
    /// Synapse↔MAS shared secret, Synapse's macaroon, registration and
    /// form secrets.
    Token,
    /// A MAS signing key, PEM (PKCS#8) RSA 2048 bits, the size MAS itself
    /// generates (`PrivateKey::generate_rsa`, crates/keystore/src/lib.rs).
    Rsa,
    /// A MAS signing key, PEM (PKCS#8) EC on P-256 (ES256).
    EcP256,
    /// Not made by masgen: why, and where it comes from.
    External(String),
    /// Made by the host itself when missing (`generate = true`:
    /// `masgen-mas-keys.service`, before MAS): not made here, not deployed.
    OnHost(crate::model::KeyType),
}

/// One secret file the spec names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// The spec key naming it, e.g. `mas.encryption_file`.
    pub key: String,
    /// Where the host reads it.
    pub path: String,
    pub kind: Kind,
    /// The user that must be able to read it on the host: `root` for files
    /// MAS gets as systemd credentials, `matrix-synapse` for files Synapse
    /// opens itself (`*_path` settings).
    pub owner: &'static str,
}

impl SecretFile {
    /// Its file name in the output directory (and its sops/agenix name).
    pub fn name(&self) -> &str {
        Utf8Path::new(&self.path).file_name().unwrap_or(&self.path)
    }

    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::MasEncryption => "MAS encryption key: 64 hex characters, no newline".into(),
            Kind::Token => "random token: 64 hex characters, no newline".into(),
            Kind::Rsa => "MAS signing key: RSA 2048, PEM".into(),
            Kind::EcP256 => "MAS signing key: EC P-256, PEM".into(),
            Kind::External(why) => why.clone(),
            Kind::OnHost(t) => format!(
                "`generate = true`: the host makes this {} key at boot when it is missing (masgen-mas-keys.service)",
                t.name()
            ),
        }
    }
}

/// A signing key's algorithm from its `kid`: `ec…`, `…p256…` or `…es256…`
/// is EC P-256, anything else RSA (MAS needs at least one RSA key).
pub fn key_kind(kid: &str) -> Kind {
    let kid = kid.to_ascii_lowercase();
    if kid.starts_with("ec")
        || kid.contains("p256")
        || kid.contains("p-256")
        || kid.contains("es256")
    {
        Kind::EcP256
    } else {
        Kind::Rsa
    }
}

/// Every secret file the spec names, once per path, in spec order: one
/// function per part of the spec that names secret files.
pub fn secret_files(hs: &Homeserver) -> Vec<SecretFile> {
    let mut files = Collected(Vec::new());
    mas_keys(&mut files, &hs.mas);
    synapse_secrets(&mut files, &hs.synapse);
    provider_secrets(&mut files, hs);
    email_password(&mut files, &hs.mas);
    user_passwords(&mut files, hs);
    files.0
}

/// The secret files found so far, in the order the spec names them.
struct Collected(Vec<SecretFile>);

impl Collected {
    fn add(&mut self, key: String, path: &str, kind: Kind, owner: &'static str) {
        if let Some(same) = self.0.iter_mut().find(|f| f.path == path) {
            // One file, two readers: Synapse's needs win.
            if owner == "matrix-synapse" {
                same.owner = owner;
            }
            return;
        }
        self.0.push(SecretFile {
            key,
            path: path.to_string(),
            kind,
            owner,
        });
    }
}

/// A file only the operator can make; `s` says what it must hold.
fn ext(s: &str) -> Kind {
    Kind::External(s.to_string())
}

/// MAS's `secrets` section and the secret it shares with Synapse.
fn mas_keys(files: &mut Collected, mas: &Mas) {
    let encryption = if mas.generate_encryption {
        Kind::OnHost(crate::model::KeyType::Encryption)
    } else {
        Kind::MasEncryption
    };
    files.add(
        "mas.encryption_file".into(),
        &mas.encryption_file,
        encryption,
        "root",
    );
    // Synapse reads it too (`secret_path`), as matrix-synapse.
    files.add(
        "mas.shared_secret_file".into(),
        &mas.shared_secret_file,
        Kind::Token,
        "matrix-synapse",
    );
    for (i, k) in mas.signing_keys.iter().enumerate() {
        let key = format!("mas.signing_keys[{i}].key_file");
        match (&k.password_file, k.generate) {
            (_, Some(t)) => files.add(key, &k.key_file, Kind::OnHost(t), "root"),
            (None, None) => files.add(key, &k.key_file, key_kind(&k.kid), "root"),
            (Some(p), None) => {
                let why = "an encrypted signing key: make it with `openssl genpkey … -aes-256-cbc -pass file:<password_file>`";
                files.add(key, &k.key_file, ext(why), "root");
                let pkey = format!("mas.signing_keys[{i}].password_file");
                files.add(
                    pkey,
                    p,
                    ext("the password of an encrypted signing key"),
                    "root",
                );
            }
        }
    }
    if let Some(dir) = &mas.keys_dir {
        let why = "a directory of PEM keys: put at least one RSA key in it";
        files.add("mas.keys_dir".into(), dir, ext(why), "root");
    }
}

/// Synapse's own secrets (it opens them itself, as matrix-synapse), and the
/// pepper MAS needs to check migrated passwords.
fn synapse_secrets(files: &mut Collected, s: &Synapse) {
    for (key, file) in [
        (
            "synapse.macaroon_secret_key_file",
            &s.macaroon_secret_key_file,
        ),
        (
            "synapse.registration_shared_secret_file",
            &s.registration_shared_secret_file,
        ),
        ("synapse.form_secret_file", &s.form_secret_file),
    ] {
        if let Some(f) = file {
            files.add(key.into(), f, Kind::Token, "matrix-synapse");
        }
    }
    if let Some(f) = &s.pepper_file {
        let why = "Synapse's own `password_config.pepper`, byte for byte (no trailing newline); masgen never makes it";
        files.add("synapse.pepper_file".into(), f, ext(why), "root");
    }
}

/// Client secrets of identity providers: Synapse's (legacy `oidc_config`
/// and `oidc_providers`) and MAS's `upstream_oauth2` providers.
fn provider_secrets(files: &mut Collected, hs: &Homeserver) {
    let s = &hs.synapse;
    let legacy = s
        .legacy_oidc
        .iter()
        .map(|p| ("synapse.oidc_config".to_string(), p));
    let providers = (s.oidc_providers.iter().enumerate())
        .map(|(i, p)| (format!("synapse.oidc_providers[{i}]"), p));
    for (at, p) in legacy.chain(providers) {
        if let Some(f) = &p.client_secret_file {
            let why = format!(
                "the client secret `{}` has at the identity provider",
                p.client_id
            );
            files.add(
                format!("{at}.client_secret_file"),
                f,
                Kind::External(why),
                "matrix-synapse",
            );
        }
    }
    for (i, p) in hs.mas.upstream_providers.iter().enumerate() {
        if let Some(f) = &p.client_secret_file {
            let why = format!(
                "the client secret `{}` has at the identity provider",
                p.client_id
            );
            files.add(
                format!("mas.upstream_providers[{i}].client_secret_file"),
                f,
                Kind::External(why),
                "root",
            );
        }
    }
}

/// MAS's `email` section: the SMTP relay's password.
fn email_password(files: &mut Collected, mas: &Mas) {
    if let Some(email) = &mas.email {
        if let EmailTransport::Smtp {
            password_file: Some(f),
            ..
        } = &email.transport
        {
            files.add(
                "mas.email.password_file".into(),
                f,
                ext("the SMTP relay's password"),
                "root",
            );
        }
    }
}

/// The initial passwords of the spec's `[[users]]`.
fn user_passwords(files: &mut Collected, hs: &Homeserver) {
    for (i, u) in hs.users.iter().enumerate() {
        if let Some(f) = &u.password_file {
            let why = format!("the initial password of `{}`", u.localpart);
            files.add(
                format!("users[{i}].password_file"),
                f,
                Kind::External(why),
                "root",
            );
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    /// It existed; `problem` says when its content cannot be what it should.
    Kept {
        problem: Option<String>,
    },
    /// masgen does not make it.
    External,
    /// The host makes it (`generate = true`); skipped here.
    OnHost,
}

/// Makes every missing secret masgen can make in `dir` (created 0700 when
/// missing; files 0600, created with `O_EXCL`, so never overwritten).
pub fn create_missing(files: &[SecretFile], dir: &Utf8Path) -> Result<Vec<Outcome>> {
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    for f in files {
        if let Some(other) = names.insert(f.name(), &f.path) {
            bail!(
                "{} and {} have the same file name `{}`; give them different names in the spec",
                other,
                f.path,
                f.name()
            );
        }
    }
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {dir}"))?;
    }
    let mut outcomes = Vec::new();
    for f in files {
        let target = dir.join(f.name());
        let outcome = match &f.kind {
            Kind::External(_) => Outcome::External,
            Kind::OnHost(_) => Outcome::OnHost,
            _ if target.exists() || target.is_symlink() => Outcome::Kept {
                problem: check_existing(f, &target),
            },
            kind => {
                let content = generate(kind)?;
                write_new(&target, &content)?;
                Outcome::Created
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The content of a new secret of `kind`.
pub fn generate(kind: &Kind) -> Result<Vec<u8>> {
    match kind {
        Kind::MasEncryption | Kind::Token => Ok(random_hex(32)?.into_bytes()),
        Kind::Rsa => openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ]),
        Kind::EcP256 => openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ]),
        Kind::External(why) => bail!("masgen does not make this secret: {why}"),
        Kind::OnHost(t) => bail!("the host makes this {} key itself", t.name()),
    }
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut r| r.read_exact(&mut buf))
        .context("cannot read /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs `openssl` (keys never touch the disk before their own file).
fn openssl(args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .context("cannot run `openssl` (install OpenSSL to make signing keys)")?;
    if !out.status.success() {
        bail!(
            "`openssl {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

fn write_new(path: &Utf8Path, content: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {path}"))?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {path}"))
}

/// Why an existing file cannot be what its kind needs, if it cannot.
fn check_existing(f: &SecretFile, path: &Utf8Path) -> Option<String> {
    let content = std::fs::read(path).ok()?;
    match f.kind {
        Kind::MasEncryption => {
            let ok = content.len() == 64 && content.iter().all(u8::is_ascii_hexdigit);
            (!ok).then(|| {
                let newline = if content.ends_with(b"\n") {
                    " (it ends in a newline: `openssl rand -hex 32 | tr -d '\\n'`)"
                } else {
                    ""
                };
                format!(
                    "MAS reads exactly 64 hex characters, this has {} bytes{newline}",
                    content.len()
                )
            })
        }
        Kind::Rsa | Kind::EcP256 if !content.starts_with(b"-----BEGIN ") => {
            Some("not a PEM file".into())
        }
        _ => None,
    }
}

/// sops-nix and agenix declarations for the files, relative to a
/// `secrets/` directory of the operator's configuration, with the commands
/// that encrypt them from `dir`.
pub fn deploy_lines(files: &[SecretFile], dir: &Utf8Path) -> String {
    // A key the host makes is not deployed: sops-nix or agenix would put
    // another file in its place.
    let files: Vec<&SecretFile> = files
        .iter()
        .filter(|f| !matches!(f.kind, Kind::OnHost(_)))
        .collect();
    let mut s = String::new();
    s.push_str(&format!(
        "# sops-nix: encrypt each file with `sops --encrypt {dir}/NAME > secrets/NAME`\n"
    ));
    for f in &files {
        s.push_str(&format!(
            "sops.secrets.\"{name}\" = {{ format = \"binary\"; sopsFile = ./secrets/{name}; path = \"{path}\"; owner = \"{owner}\"; mode = \"0400\"; }};\n",
            name = f.name(),
            path = f.path,
            owner = f.owner,
        ));
    }
    s.push_str(&format!(
        "\n# agenix: encrypt each file with `age --encrypt -R recipients.txt -o secrets/NAME.age {dir}/NAME`\n"
    ));
    for f in files {
        s.push_str(&format!(
            "age.secrets.\"{name}\" = {{ file = ./secrets/{name}.age; path = \"{path}\"; owner = \"{owner}\"; mode = \"0400\"; }};\n",
            name = f.name(),
            path = f.path,
            owner = f.owner,
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_kind_follows_the_kid() {
        for kid in ["ec-p256", "EC", "key-p256", "es256-2024"] {
            assert_eq!(key_kind(kid), Kind::EcP256, "{kid}");
        }
        for kid in ["rsa", "rsa-2024", "main", "secret"] {
            assert_eq!(key_kind(kid), Kind::Rsa, "{kid}");
        }
    }

    #[test]
    fn tokens_are_64_hex_characters_without_newline() {
        let a = generate(&Kind::MasEncryption).unwrap();
        let b = generate(&Kind::Token).unwrap();
        for t in [&a, &b] {
            assert_eq!(t.len(), 64);
            assert!(t.iter().all(u8::is_ascii_hexdigit));
        }
        assert_ne!(a, b);
        assert!(generate(&Kind::External("x".into())).is_err());
    }
}
