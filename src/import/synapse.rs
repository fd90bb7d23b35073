//! `masgen import synapse homeserver.yaml [--config more.yaml …]`: Synapse's
//! own config files, merged as Synapse merges them, into a spec.
//!
//! Merge: Synapse 1.163 `synapse/config/_base.py` `read_config_files` —
//! top-level keys of later files replace earlier ones wholesale; a file that
//! is empty or not a mapping is ignored; `find_config_files` expands a
//! directory to its `*.yaml` files in sorted order.

use std::collections::BTreeMap;

use crate::system;
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Map, Value};

use super::oidc::{import_provider, Origin};
pub use super::synapse_auth::REPLACE_ADVICE;
use super::synapse_auth::{email, legacy_sso, modules, password_providers};
use super::synapse_net::{database, listeners, public_baseurl};
use super::writer::{finish, put, to_toml};
use super::{contains_secret, Ctx, Imported, SECRETS_DIR};

/// A merged Synapse config and, per top-level key, the file that set it.
pub struct Merged {
    pub config: Map<String, Value>,
    pub origin: BTreeMap<String, String>,
    pub files: Vec<String>,
    /// `(file, key, later file)`: keys a later file replaced.
    pub superseded: Vec<(String, String, String)>,
    /// Files outside the Nix store (secrets files a NixOS host adds with
    /// `extraConfigFiles`): they stay extra config files of the spec.
    pub runtime: std::collections::BTreeSet<String>,
}

/// Merges parsed files in order (`name`, data).
pub fn merge(files: Vec<(String, Map<String, Value>)>) -> Merged {
    let mut m = Merged {
        config: Map::new(),
        origin: BTreeMap::new(),
        files: Vec::new(),
        superseded: Vec::new(),
        runtime: Default::default(),
    };
    for (name, data) in files {
        for (k, v) in data {
            if let Some(earlier) = m.origin.get(&k) {
                m.superseded
                    .push((earlier.clone(), k.clone(), name.clone()));
            }
            m.origin.insert(k.clone(), name.clone());
            m.config.insert(k, v);
        }
        m.files.push(name);
    }
    m
}

/// The files a `--config-path` names: itself, or a directory's `*.yaml`
/// files in sorted order.
pub fn expand(path: &Utf8Path) -> anyhow::Result<Vec<Utf8PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out: Vec<Utf8PathBuf> = std::fs::read_dir(path)
        .map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| Utf8PathBuf::from_path_buf(e.path()).ok())
        .filter(|p| p.is_file() && p.as_str().ends_with(".yaml"))
        .collect();
    out.sort();
    Ok(out)
}

pub fn import(files: &[Utf8PathBuf], spec_name: &str) -> anyhow::Result<Imported> {
    let mut parsed = Vec::new();
    for f in files {
        for file in expand(f)? {
            parsed.push((file.to_string(), super::read_yaml(&file)?));
        }
    }
    let merged = merge(parsed);
    let mut ctx = Ctx::new("synapse", merged.files.clone());
    import_merged(&mut ctx, &merged, None)?;
    finish(ctx, spec_name)
}

/// The Synapse version and where it was learnt.
pub struct Version {
    pub version: String,
    pub from: String,
}

/// Maps every top-level key of a merged Synapse config.
pub fn import_merged(ctx: &mut Ctx, m: &Merged, version: Option<Version>) -> anyhow::Result<()> {
    let cfg = &m.config;
    let file = |k: &str| m.origin.get(k).cloned().unwrap_or_default();
    let Some(server_name) = cfg.get("server_name").and_then(Value::as_str) else {
        anyhow::bail!(
            "{}: no `server_name`; Synapse refuses to start without it, and masgen needs it",
            m.files.join(", ")
        );
    };
    put(
        ctx.spec.table("homeserver"),
        "server_name",
        server_name,
        &format!("{}: server_name", file("server_name")),
    );
    ctx.mapped(
        &file("server_name"),
        "server_name",
        &["homeserver.server_name"],
        "",
    );
    match version {
        Some(v) => put(
            ctx.spec.table("synapse"),
            "version",
            v.version.as_str(),
            &v.from,
        ),
        None => {
            put(
                ctx.spec.table("synapse"),
                "version",
                "1.163",
                "ASSUMED: set the release you run",
            );
            ctx.human("-", "synapse.version", "a config file does not say which Synapse runs it: the spec assumes 1.163; set `synapse.version` to what `python -m synapse.app.homeserver --version` prints");
        }
    }
    for (earlier, key, later) in &m.superseded {
        ctx.dropped(
            earlier,
            key,
            &format!("replaced by {later}: Synapse merges top-level keys, later files win"),
        );
    }
    for (key, value) in cfg {
        if key == "server_name" {
            continue;
        }
        if m.runtime.contains(&file(key)) {
            runtime_key(ctx, server_name, key, value, &file(key))?;
        } else {
            top_level(ctx, server_name, key, value, &file(key))?;
        }
    }
    Ok(())
}

/// A key of a runtime file, which stays an extra config file: Synapse keeps
/// reading it there, after masgen's settings (so it wins). Keys masgen
/// models are imported too, and reported where the file would override
/// masgen or break the final phase.
fn runtime_key(
    ctx: &mut Ctx,
    server_name: &str,
    key: &str,
    v: &Value,
    file: &str,
) -> anyhow::Result<()> {
    let stays = format!("stays in {file}, an extra config file of both phases");
    let delegation_forbids = crate::rules::DELEGATION_CONFLICTS
        .iter()
        .any(|c| c.setting.split('.').next() == Some(key))
        || ["oidc_config", "saml2_config", "modules", "password_config"].contains(&key);
    if key == "email" {
        email(ctx, v, file);
        ctx.mapped(file, key, &[], &stays);
    } else if delegation_forbids {
        top_level(ctx, server_name, key, v, file)?;
        ctx.human(file, key, &format!("{stays}, and Synapse reads it after masgen's settings, so it overrides the spec: remove `{key}` from that file before building (the final phase would refuse to start or keep it)"));
    } else {
        ctx.mapped(file, key, &[], &stays);
    }
    Ok(())
}

/// Keys the NixOS module (or masgen) sets itself.
const SET_BY_NIXOS: &[(&str, &str)] = &[
    ("pid_file", "the NixOS module sets it"),
    (
        "log_config",
        "the NixOS module sets it (services.matrix-synapse.settings.log_config)",
    ),
];

pub(super) fn top_level(
    ctx: &mut Ctx,
    server_name: &str,
    key: &str,
    v: &Value,
    file: &str,
) -> anyhow::Result<()> {
    if scalar(ctx, key, v, file) {
        return Ok(());
    }
    match key {
        "public_baseurl" => public_baseurl(ctx, v, file),
        "database" => database(ctx, v, file)?,
        "listeners" => listeners(ctx, v, file),
        "password_config" => password_config(ctx, v, file),
        "oidc_providers" | "oidc_config" => oidc(ctx, server_name, key, v, file),
        "app_service_config_files" => app_services(ctx, v, file),
        "password_providers" => password_providers(ctx, v, file),
        "modules" => modules(ctx, v, file),
        "saml2_config" | "cas_config" | "jwt_config" => legacy_sso(ctx, key, v, file),
        "email" => {
            email(ctx, v, file);
            carry(ctx, key, v, file);
        }
        "matrix_authentication_service" | "experimental_features"
            if system::delegates(&serde_json::json!({ key: v })) =>
        {
            ctx.human(file, key, "this Synapse delegates to MAS already: there is nothing left to migrate; import the configuration from before delegation");
        }
        // A disabled `msc3861` block does nothing, but Synapse 1.136 and
        // newer refuse to start with any non-empty one
        // (synapse/config/experimental.py).
        "experimental_features" if v.get("msc3861").is_some() => {
            ctx.dropped(
                file,
                "experimental_features.msc3861",
                "delegation is off; Synapse 1.136 and newer refuse the block whatever it says (masgen writes the stable `matrix_authentication_service` block in the final phase)",
            );
            let mut rest = v.clone();
            if let Value::Object(m) = &mut rest {
                m.remove("msc3861");
                if !m.is_empty() {
                    carry(ctx, key, &rest, file);
                }
            }
        }
        _ => {
            if let Some((_, why)) = SET_BY_NIXOS.iter().find(|(k, _)| *k == key) {
                ctx.dropped(file, key, why);
            } else if key == "media_store_path"
                && v.as_str() == Some("/var/lib/matrix-synapse/media_store")
            {
                ctx.dropped(file, key, "the NixOS module's default");
            } else {
                carry(ctx, key, v, file);
            }
        }
    }
    Ok(())
}

/// Settings the spec has a key of its own for (secrets as file references);
/// `false` when `key` is not one of them.
fn scalar(ctx: &mut Ctx, key: &str, v: &Value, file: &str) -> bool {
    let from = format!("{file}: {key}");
    let (spec_key, value): (String, Option<toml_edit::Value>) = match key {
        "macaroon_secret_key" | "registration_shared_secret" | "form_secret" => {
            let path = format!("{SECRETS_DIR}/synapse-{}", key.replace('_', "-"));
            let spec_key = format!("{key}_file");
            let comment = format!("{from} (a secret: not copied)");
            put(
                ctx.spec.table("synapse"),
                &spec_key,
                path.as_str(),
                &comment,
            );
            ctx.secret_file(&path, &format!("the value of `{key}` in {file}"));
            let why = format!("a secret: not copied; create {path}");
            ctx.mapped(file, key, &[&format!("synapse.{spec_key}")], &why);
            return true;
        }
        "macaroon_secret_key_path" | "registration_shared_secret_path" | "form_secret_path" => {
            (key.replace("_path", "_file"), v.as_str().map(Into::into))
        }
        "signing_key_path" => (key.into(), v.as_str().map(Into::into)),
        "enable_registration" | "allow_guest_access" | "enable_3pid_changes" => {
            (key.into(), v.as_bool().map(Into::into))
        }
        "enable_registration_captcha" => {
            ("registration_captcha".into(), v.as_bool().map(Into::into))
        }
        "login_via_existing_session" => {
            let on = v.get("enabled").and_then(Value::as_bool).unwrap_or(false);
            (key.into(), Some(on.into()))
        }
        "session_lifetime" | "refresh_token_lifetime" | "nonrefreshable_access_token_lifetime" => {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (key.into(), Some(s.into()))
        }
        _ => return false,
    };
    if let Some(value) = value {
        put(ctx.spec.table("synapse"), &spec_key, value, &from);
    }
    let why = if key == "login_via_existing_session" {
        "only `enabled` is carried"
    } else {
        ""
    };
    ctx.mapped(file, key, &[&format!("synapse.{spec_key}")], why);
    true
}

/// `oidc_providers` and the legacy `oidc_config` (only when `enabled`, as
/// Synapse reads it).
fn oidc(ctx: &mut Ctx, server_name: &str, key: &str, v: &Value, file: &str) {
    let legacy = key == "oidc_config";
    let providers: Vec<(String, &Map<String, Value>)> = if legacy {
        match v.as_object() {
            Some(p) if p.get("enabled").and_then(Value::as_bool) == Some(true) => {
                vec![("oidc_config".into(), p)]
            }
            _ => {
                ctx.dropped(file, key, "not `enabled: true`: Synapse ignores the block");
                vec![]
            }
        }
    } else {
        v.as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, p)| Some((format!("oidc_providers[{i}]"), p.as_object()?)))
            .collect()
    };
    for (path, p) in providers {
        let o = Origin {
            file,
            path,
            legacy,
            jinja: false,
            with_mas: true,
        };
        import_provider(ctx, server_name, p, &o);
    }
}

fn app_services(ctx: &mut Ctx, v: &Value, file: &str) {
    let files = v.as_array().into_iter().flatten().filter_map(Value::as_str);
    for (i, f) in files.enumerate() {
        let t = ctx.spec.push("synapse.app_services");
        let name = Utf8Path::new(f).file_stem().unwrap_or("appservice");
        put(t, "name", name, "the file's name");
        let from = format!("{file}: app_service_config_files[{i}]");
        put(t, "registration_file", f, &from);
    }
    ctx.mapped(
        file,
        "app_service_config_files",
        &["synapse.app_services"],
        "check `encrypted` and `kind` for each bridge or bot",
    );
}

/// A setting masgen does not model: carried verbatim into
/// `synapse.extra_settings` (both phases), or, when it holds a secret, into
/// an extra config file the operator writes.
fn carry(ctx: &mut Ctx, key: &str, v: &Value, file: &str) {
    // The YAML convention for a block that only holds anchors (`x-base: &base`):
    // Synapse reads no such key, and its values already reached the blocks
    // that merge it (`<<: *base`).
    if key.starts_with("x-") {
        ctx.dropped(file, key, "an anchor holder (`x-…`): Synapse reads no such key; the blocks that merge it carry its values");
        return;
    }
    let literal = matches!(v, Value::String(_) | Value::Number(_));
    // Secrets Synapse (1.135, 1.163) also reads from a file (synapse/config/voip.py,
    // captcha.py): the file form, in the escape hatch.
    if literal && ["turn_shared_secret", "recaptcha_private_key"].contains(&key) {
        let path = format!("{SECRETS_DIR}/synapse-{}", key.replace('_', "-"));
        let comment = format!("{file}: {key} (a secret: not copied)");
        put(
            ctx.spec.table("synapse.extra_settings"),
            &format!("{key}_path"),
            path.as_str(),
            &comment,
        );
        ctx.secret_file(&path, &format!("the value of `{key}` in {file}"));
        let why = format!("a secret: not copied; create {path} (Synapse 1.135 and 1.163 read `{key}_path`; older releases may not)");
        ctx.mapped(
            file,
            key,
            &[&format!("synapse.extra_settings.{key}_path")],
            &why,
        );
        return;
    }
    if (crate::spec::is_secret_key(key) && literal) || contains_secret(v) {
        let path = format!("{SECRETS_DIR}/synapse-extra.yaml");
        add_extra_config_file(ctx, &path);
        ctx.secret_file(&path, &format!("a YAML file with these top-level keys copied verbatim from the running config (they hold secrets): {key} (from {file})"));
        ctx.human(file, key, &format!("holds a secret that Synapse has no file setting for: copy the whole `{key}` block into {path} (loaded as an extra config file in both phases)"));
        return;
    }
    let Some(t) = to_toml(v) else {
        ctx.dropped(file, key, "null: Synapse's default applies");
        return;
    };
    put(
        ctx.spec.table("synapse.extra_settings"),
        key,
        t,
        &format!("{file}: {key}"),
    );
    ctx.mapped(
        file,
        key,
        &[&format!("synapse.extra_settings.{key}")],
        "carried verbatim",
    );
}

pub(super) fn add_extra_config_file(ctx: &mut Ctx, path: &str) {
    let t = ctx.spec.table("synapse");
    let arr = t
        .entry("extra_config_files")
        .or_insert_with(|| toml_edit::value(toml_edit::Array::new()))
        .as_array_mut()
        .expect("an array");
    if !arr.iter().any(|x| x.as_str() == Some(path)) {
        arr.push(path);
    }
}

fn password_config(ctx: &mut Ctx, v: &Value, file: &str) {
    let Some(m) = v.as_object() else { return };
    for (k, val) in m {
        let key = format!("password_config.{k}");
        match k.as_str() {
            "enabled" => {
                if let Some(t) = to_toml(val) {
                    put(
                        ctx.spec.table("synapse"),
                        "password_login",
                        t,
                        &format!("{file}: {key}"),
                    );
                }
                ctx.mapped(file, &key, &["synapse.password_login"], "");
            }
            "pepper" => {
                let path = format!("{SECRETS_DIR}/synapse-pepper");
                put(
                    ctx.spec.table("synapse"),
                    "pepper_file",
                    path.as_str(),
                    &format!("{file}: {key} (a secret: not copied)"),
                );
                ctx.secret_file(
                    &path,
                    &format!("the value of `{key}` in {file} (syn2mas needs the same pepper)"),
                );
                ctx.mapped(
                    file,
                    &key,
                    &["synapse.pepper_file"],
                    &format!("a secret: not copied; create {path}"),
                );
            }
            _ => {
                if let Some(t) = to_toml(val) {
                    let pc = ctx.spec.table("synapse.extra_settings.password_config");
                    put(pc, k, t, &format!("{file}: {key}"));
                }
                ctx.mapped(
                    file,
                    &key,
                    &[&format!("synapse.extra_settings.{key}")],
                    "carried verbatim",
                );
            }
        }
    }
}
