//! `generate = true` on MAS's keys: the host makes a missing key at boot
//! (modules/mas-keys.nix). What masgen checks of such a key: its type, that
//! it needs no password, and that its file survives a reboot.

use super::*;

/// Directories emptied at every boot (tmpfs on NixOS: `/run`, and `/tmp`
/// with `boot.tmp.useTmpfs` or `boot.tmp.cleanOnBoot`).
const VOLATILE: &[&str] = &["/run/", "/var/run/", "/tmp/", "/dev/shm/"];

/// Whether the host makes the encryption key, and the type of each signing
/// key it makes (`None`: the operator provides it).
pub(super) fn check_generated(c: &mut Checker, m: &raw::MasSpec) -> (bool, Vec<Option<KeyType>>) {
    let encryption = m.generate_encryption == Some(true);
    let mut files: Vec<(String, &str)> = Vec::new();
    if let (true, Some(f)) = (encryption, &m.encryption_file) {
        persistent(c, "mas.encryption_file", f);
        files.push(("mas.encryption_file".into(), f));
    }
    let mut keys = Vec::new();
    for (i, k) in m.signing_keys.iter().enumerate() {
        let key_type = signing_key(c, i, k);
        if key_type.is_some() {
            files.push((format!("mas.signing_keys[{i}].key_file"), &k.key_file));
        }
        keys.push(key_type);
    }
    for (i, (path, file)) in files.iter().enumerate() {
        if let Some((first, _)) = files[..i].iter().find(|(_, f)| f == file) {
            c.error(
                "mas.generate.same_file",
                at(path),
                format!("`{file}` is also the file of `{first}`: the host would make one key and give it to both"),
                "give every generated key its own file",
            );
        }
    }
    (encryption, keys)
}

fn signing_key(c: &mut Checker, i: usize, k: &raw::SigningKeySpec) -> Option<KeyType> {
    let path = |name: &str| format!("mas.signing_keys[{i}].{name}");
    let key_type = match k.key_type.as_deref() {
        None | Some("rsa") => KeyType::Rsa,
        Some("ec-p256") => KeyType::EcP256,
        Some(other) => {
            c.error(
                "mas.generate.key_type",
                at(&path("key_type")),
                format!("unknown key type `{other}`"),
                "use `rsa` (RSA 2048, the default) or `ec-p256`",
            );
            KeyType::Rsa
        }
    };
    if k.generate != Some(true) {
        if k.key_type.is_some() {
            c.error(
                "mas.generate.key_type",
                at(&path("key_type")),
                "`key_type` is only read with `generate = true`: MAS reads a key's type from its file",
                "remove `key_type`, or add `generate = true` for the host to make the key",
            );
        }
        return None;
    }
    if k.password_file.is_some() {
        c.error(
            "mas.generate.password",
            at(&path("password_file")),
            "a key the host makes is not encrypted, so it has no password",
            "remove `password_file`, or remove `generate` and make the encrypted key yourself",
        );
    }
    persistent(c, &path("key_file"), &k.key_file);
    Some(key_type)
}

/// A generated key's file must survive a reboot: on a tmpfs the host would
/// make a new key at every boot.
fn persistent(c: &mut Checker, path: &str, file: &str) {
    if VOLATILE.iter().any(|d| file.starts_with(d)) {
        c.error(
            "mas.generate.volatile",
            at(path),
            format!("`{file}` is on a file system emptied at every boot: the host would make a new key at each boot, and MAS could no longer read what it encrypted or signed with the old one"),
            "keep a generated key on persistent storage, e.g. `/var/lib/masgen-keys/`, or make it yourself (`masgen secrets`) and deploy it with sops-nix or agenix",
        );
    }
}
