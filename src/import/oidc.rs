//! Synapse's legacy OIDC providers (`oidc_providers[]`, `oidc_config`) →
//! the spec's `[[synapse.oidc_providers]]` / `[synapse.oidc_config]` (what
//! phase 1 runs) and a MAS upstream provider with `synapse_idp_id` (what
//! syn2mas maps the users to).
//!
//! Field list: Synapse 1.163 `synapse/config/oidc.py`
//! (`OIDC_PROVIDER_CONFIG_SCHEMA`, `_parse_oidc_config_dict`) and
//! `synapse/handlers/oidc.py` (`JinjaOidcMappingProvider.parse_config`).

use serde_json::{Map, Value};
use toml_edit::Table;

use super::writer::{put, to_toml};
use super::{derived_ulid, Ctx, SECRETS_DIR};

/// Where a provider came from, for the report and the spec's comments.
pub struct Origin<'a> {
    pub file: &'a str,
    /// The provider's key path in the input (`oidc_providers[0]`).
    pub path: String,
    /// `oidc_config` (the single legacy block, id `oidc`).
    pub legacy: bool,
    /// Values may hold Jinja2 expressions (an MDAD inventory): those are
    /// reported, never evaluated.
    pub jinja: bool,
    /// Whether to write a MAS upstream provider for it (an MDAD inventory
    /// may map it already).
    pub with_mas: bool,
}

/// Synapse's default mapping provider (both names it accepts).
const DEFAULT_MAPPER: &[&str] = &[
    "synapse.handlers.oidc.JinjaOidcMappingProvider",
    "synapse.handlers.oidc_handler.JinjaOidcMappingProvider",
];

/// Keys the spec's Synapse provider cannot carry yet: phase 1 would lose
/// them, so each one found needs a human.
const NOT_CARRIED: &[&str] = &[
    "idp_icon",
    "idp_brand",
    "client_secret_jwt_key",
    "client_auth_method",
    "pkce_method",
    "id_token_signing_alg_values_supported",
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "skip_verification",
    "backchannel_logout_enabled",
    "backchannel_logout_ignore_sub",
    "user_profile_method",
    "redirect_uri",
    "enable_registration",
    "attribute_requirements",
];

/// Converts one provider; returns Synapse's auth provider id (`oidc-<id>`),
/// or `None` when the provider cannot be written (then the report says why).
pub fn import_provider(
    ctx: &mut Ctx,
    server_name: &str,
    p: &Map<String, Value>,
    o: &Origin,
) -> Option<String> {
    let key = |k: &str| format!("{}.{k}", o.path);
    let from = |k: &str| format!("{}: {}.{k}", o.file, o.path);
    let text = |ctx: &mut Ctx, k: &str| -> Option<String> {
        match p.get(k)? {
            Value::String(s) if o.jinja && super::mdad::is_jinja(s) => {
                ctx.human(o.file, &key(k), "a Jinja2 expression: not evaluated; write the value it gives into the spec yourself");
                None
            }
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    };
    let (Some(issuer), Some(client_id)) = (text(ctx, "issuer"), text(ctx, "client_id")) else {
        ctx.human(o.file, &o.path, "the provider has no literal `issuer` and `client_id`: not imported; add it to the spec by hand (`[[synapse.oidc_providers]]` and a `[[mas.upstream_providers]]` with `synapse_idp_id`)");
        return None;
    };
    let idp_id = if o.legacy { None } else { text(ctx, "idp_id") };
    let auth_provider = match &idp_id {
        None => "oidc".to_string(),
        Some(id) if id == "oidc" => "oidc".to_string(),
        Some(id) => format!("oidc-{id}"),
    };
    let (mut syn, mut mas) = (Table::new(), Table::new());
    let spec_path = if o.legacy {
        "synapse.oidc_config".to_string()
    } else {
        "synapse.oidc_providers[]".to_string()
    };
    let sk = |k: &str| format!("{spec_path}.{k}");
    let mk = |k: &str| format!("mas.upstream_providers[{auth_provider}].{k}");
    if o.with_mas {
        put(
            &mut mas,
            "id",
            derived_ulid(&[server_name, &auth_provider, &issuer]),
            "derived from server_name, Synapse's id and issuer: stable across imports",
        );
        put(
            &mut mas,
            "synapse_idp_id",
            auth_provider.as_str(),
            "syn2mas maps Synapse's links to this provider",
        );
    }

    // Identity and credentials, on both sides.
    if let Some(id) = &idp_id {
        put(&mut syn, "idp_id", id.as_str(), &from("idp_id"));
        ctx.mapped(
            o.file,
            &key("idp_id"),
            &[&sk("idp_id"), &mk("synapse_idp_id")],
            "",
        );
    }
    if let Some(name) = text(ctx, "idp_name") {
        put(&mut syn, "idp_name", name.as_str(), &from("idp_name"));
        put(&mut mas, "human_name", name.as_str(), &from("idp_name"));
        ctx.mapped(
            o.file,
            &key("idp_name"),
            &[&sk("idp_name"), &mk("human_name")],
            "",
        );
    }
    put(&mut syn, "issuer", issuer.as_str(), &from("issuer"));
    put(&mut mas, "issuer", issuer.as_str(), &from("issuer"));
    ctx.mapped(o.file, &key("issuer"), &[&sk("issuer"), &mk("issuer")], "");
    put(
        &mut syn,
        "client_id",
        client_id.as_str(),
        &from("client_id"),
    );
    put(
        &mut mas,
        "client_id",
        client_id.as_str(),
        &from("client_id"),
    );
    ctx.mapped(o.file, &key("client_id"), &[&sk("client_id"), &mk("client_id")], "the same client: register MAS's callback URL (https://<mas>/upstream/callback/<id>) with the identity provider");
    let secret_file = client_secret(
        ctx,
        p,
        o,
        &auth_provider,
        &sk("client_secret_file"),
        &mk("client_secret_file"),
    );
    if let Some(f) = &secret_file {
        put(
            &mut syn,
            "client_secret_file",
            f.as_str(),
            &from("client_secret"),
        );
        put(
            &mut mas,
            "client_secret_file",
            f.as_str(),
            &from("client_secret"),
        );
    }
    let method = match p.get("client_auth_method").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None if secret_file.is_some() => "client_secret_basic".into(),
        None => "none".into(),
    };
    put(
        &mut mas,
        "token_endpoint_auth_method",
        method.as_str(),
        "Synapse's client_auth_method (default client_secret_basic with a secret)",
    );
    if let Some(brand) = text(ctx, "idp_brand") {
        put(&mut mas, "brand_name", brand.as_str(), &from("idp_brand"));
    }

    let scopes: Vec<String> = match p.get("scopes") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        _ => vec!["openid".into()],
    };
    if p.contains_key("scopes") {
        put(
            &mut syn,
            "scopes",
            to_toml(&Value::from(scopes.clone())).expect("strings"),
            &from("scopes"),
        );
        ctx.mapped(o.file, &key("scopes"), &[&sk("scopes"), &mk("scope")], "");
    }
    put(
        &mut mas,
        "scope",
        scopes.join(" "),
        "Synapse's scopes (default `openid`)",
    );
    let discover = p.get("discover").and_then(Value::as_bool);
    if let Some(d) = discover {
        put(&mut syn, "discover", d, &from("discover"));
        ctx.mapped(
            o.file,
            &key("discover"),
            &[&sk("discover"), &mk("discovery_mode")],
            "",
        );
    }
    let skip = p.get("skip_verification").and_then(Value::as_bool) == Some(true);
    let mode = match (discover, skip) {
        (Some(false), _) => "disabled",
        (_, true) => "insecure",
        _ => "oidc",
    };
    put(
        &mut mas,
        "discovery_mode",
        mode,
        "Synapse's discover / skip_verification",
    );
    for k in [
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
    ] {
        if let Some(v) = text(ctx, k) {
            put(&mut mas, k, v.as_str(), &from(k));
        }
    }
    if let Some(m) = text(ctx, "pkce_method") {
        put(&mut mas, "pkce_method", m.as_str(), &from("pkce_method"));
    }
    // Without the `openid` scope Synapse reads the userinfo endpoint
    // (plain OAuth 2.0, e.g. GitHub); MAS must too, and its templates then
    // read `userinfo_claims` (MAS docs/setup/sso.md, GitHub).
    let oauth2_only = !scopes.iter().any(|s| s == "openid");
    if oauth2_only {
        put(
            &mut mas,
            "fetch_userinfo",
            true,
            "no `openid` scope: a plain OAuth 2.0 provider",
        );
    } else if text(ctx, "user_profile_method").as_deref() == Some("userinfo_endpoint") {
        put(
            &mut mas,
            "fetch_userinfo",
            true,
            &from("user_profile_method"),
        );
    }
    if let Some(a) = p.get("allow_existing_users").and_then(Value::as_bool) {
        put(
            &mut syn,
            "allow_existing_users",
            a,
            &from("allow_existing_users"),
        );
        ctx.mapped(
            o.file,
            &key("allow_existing_users"),
            &[&sk("allow_existing_users")],
            "",
        );
    }

    mapping(ctx, p, o, &mut syn, &mut mas, &auth_provider, oauth2_only);
    not_carried(ctx, p, o, &auth_provider);
    for (k, _) in p {
        let known = [
            "idp_id",
            "idp_name",
            "issuer",
            "client_id",
            "client_secret",
            "client_secret_path",
            "scopes",
            "discover",
            "allow_existing_users",
            "user_mapping_provider",
            "enabled",
        ];
        if k == "enabled" && o.legacy {
            ctx.mapped(
                o.file,
                &key("enabled"),
                &["synapse.oidc_config"],
                "the legacy block is on",
            );
        } else if !known.contains(&k.as_str()) && !NOT_CARRIED.contains(&k.as_str()) {
            ctx.human(
                o.file,
                &key(k),
                "not a Synapse OIDC provider setting masgen knows: check it and carry it by hand",
            );
        }
    }

    if o.legacy {
        *ctx.spec.table("synapse.oidc_config") = syn;
    } else {
        *ctx.spec.push("synapse.oidc_providers") = syn;
    }
    if o.with_mas {
        *ctx.spec.push("mas.upstream_providers") = mas;
    }
    Some(auth_provider)
}

/// The client secret as a file reference: an existing `client_secret_path`,
/// or a new file the operator fills from the inline `client_secret`.
fn client_secret(
    ctx: &mut Ctx,
    p: &Map<String, Value>,
    o: &Origin,
    auth_provider: &str,
    syn_key: &str,
    mas_key: &str,
) -> Option<String> {
    let key = |k: &str| format!("{}.{k}", o.path);
    let to = [syn_key, mas_key];
    if let Some(path) = p.get("client_secret_path").and_then(Value::as_str) {
        ctx.mapped(o.file, &key("client_secret_path"), &to, "already a file");
        return Some(path.to_string());
    }
    let v = p.get("client_secret")?;
    let path = format!("{SECRETS_DIR}/synapse-{auth_provider}-client-secret");
    let content = match v.as_str() {
        Some(s) if o.jinja && super::mdad::is_jinja(s) => format!(
            "what the Jinja2 expression `{s}` of `{}` in {} gives (not evaluated)",
            key("client_secret"),
            o.file
        ),
        _ => format!("the value of `{}` in {}", key("client_secret"), o.file),
    };
    ctx.secret_file(&path, &content);
    ctx.mapped(
        o.file,
        &key("client_secret"),
        &to,
        &format!("a secret: not copied; create {path}"),
    );
    Some(path)
}

/// `user_mapping_provider` → the spec's templates and MAS's claims imports.
fn mapping(
    ctx: &mut Ctx,
    p: &Map<String, Value>,
    o: &Origin,
    syn: &mut Table,
    mas: &mut Table,
    idp: &str,
    oauth2_only: bool,
) {
    // MAS's template context names userinfo claims `userinfo_claims`.
    let for_mas = |t: &str| {
        if oauth2_only {
            t.replace("user.", "userinfo_claims.")
        } else {
            t.to_string()
        }
    };
    let base = format!("{}.user_mapping_provider", o.path);
    let empty = Map::new();
    let ump = p
        .get("user_mapping_provider")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let config = ump
        .get("config")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if let Some(m) = ump.get("module").and_then(Value::as_str) {
        if DEFAULT_MAPPER.contains(&m) {
            ctx.mapped(
                o.file,
                &format!("{base}.module"),
                &[],
                "Synapse's default mapping provider",
            );
        } else {
            ctx.human(o.file, &format!("{base}.module"), "a custom mapping provider: masgen cannot carry it, and MAS maps claims with templates only; rewrite it as claims_imports templates");
        }
    }
    let tmpl = |ctx: &mut Ctx, k: &str| -> Option<String> {
        let s = config.get(k)?.as_str()?;
        if o.jinja && super::mdad::is_jinja(s) {
            ctx.human(
                o.file,
                &format!("{base}.config.{k}"),
                "a Jinja2 expression of the playbook (not a `{% raw %}` template): not evaluated",
            );
            return None;
        }
        Some(super::mdad::unraw(s))
    };
    let mk = |k: &str| format!("mas.upstream_providers[{idp}].claims_imports.{k}");
    let mut claims = Table::new();
    claims.set_implicit(true);
    let from = |k: &str| format!("{}: {base}.config.{k}", o.file);
    // The subject links upstream accounts: MAS must compute the same one
    // syn2mas copies from Synapse's user_external_ids.
    let subject = match (tmpl(ctx, "subject_template"), tmpl(ctx, "subject_claim")) {
        (Some(t), _) => Some((t, "subject_template")),
        (None, Some(c)) => Some((format!("{{{{ user.{c} }}}}"), "subject_claim")),
        _ => None,
    };
    let mut sub = Table::new();
    match &subject {
        Some((t, k)) => {
            put(&mut sub, "template", for_mas(t), &from(k));
            ctx.human(o.file, &format!("{base}.config.{k}"), &format!("mapped to {} (the subject syn2mas links by); phase 1's Synapse provider cannot carry it yet: it would fall back to `sub`", mk("subject.template")));
        }
        None => put(
            &mut sub,
            "template",
            for_mas("{{ user.sub }}"),
            "Synapse's default subject claim `sub`",
        ),
    }
    claims.insert("subject", toml_edit::Item::Table(sub));
    for (k, claim, action) in [
        ("localpart_template", "localpart", "force"),
        ("display_name_template", "displayname", "suggest"),
        ("email_template", "email", "suggest"),
    ] {
        let Some(t) = tmpl(ctx, k) else { continue };
        put(syn, k, t.as_str(), &from(k));
        let mut c = Table::new();
        put(&mut c, "action", action, "");
        put(&mut c, "template", for_mas(&t), &from(k));
        if claim == "email" {
            put(
                &mut c,
                "set_email_verification",
                "import",
                "MAS trusts the provider's email_verified claim",
            );
        }
        claims.insert(claim, toml_edit::Item::Table(c));
        ctx.mapped(
            o.file,
            &format!("{base}.config.{k}"),
            &[
                &format!(
                    "{}.{k}",
                    if o.legacy {
                        "synapse.oidc_config"
                    } else {
                        "synapse.oidc_providers[]"
                    }
                ),
                &mk(claim),
            ],
            "",
        );
    }
    for (k, _) in config {
        if [
            "subject_template",
            "subject_claim",
            "localpart_template",
            "display_name_template",
            "email_template",
        ]
        .contains(&k.as_str())
        {
            continue;
        }
        ctx.human(o.file, &format!("{base}.config.{k}"), "the spec's Synapse provider cannot carry it yet (phase 1 would lose it), and MAS has no direct equivalent: carry it by hand");
    }
    for (k, _) in ump {
        if k != "module" && k != "config" {
            ctx.human(
                o.file,
                &format!("{base}.{k}"),
                "unknown mapping provider key",
            );
        }
    }
    mas.insert("claims_imports", toml_edit::Item::Table(claims));
}

/// Provider keys phase 1 cannot carry yet: each one is reported, loudly
/// where losing it weakens security.
fn not_carried(ctx: &mut Ctx, p: &Map<String, Value>, o: &Origin, idp: &str) {
    for k in NOT_CARRIED {
        if !p.contains_key(*k) {
            continue;
        }
        let key = format!("{}.{k}", o.path);
        let mas = match *k {
            "idp_brand" => "mapped to MAS brand_name; ",
            "client_auth_method" => "mapped to MAS token_endpoint_auth_method; ",
            "pkce_method" => "mapped to MAS pkce_method; ",
            "authorization_endpoint" | "token_endpoint" | "userinfo_endpoint" | "jwks_uri" => {
                "mapped to the MAS provider; "
            }
            "skip_verification" => "MAS discovery_mode = \"insecure\"; ",
            "user_profile_method" => "mapped to MAS fetch_userinfo; ",
            _ => "",
        };
        let why = if *k == "attribute_requirements" {
            format!("SECURITY: phase 1's Synapse provider `{idp}` cannot carry attribute_requirements yet, so every account of the identity provider could log in during phase 1, and MAS has no equivalent (use a MAS policy or restrict the client at the identity provider); keep the requirement by hand before switching")
        } else if *k == "client_secret_jwt_key" {
            format!("{mas}a signing key for the client secret: not carried; MAS needs `client_secret_jwt`/`private_key_jwt` set up by hand")
        } else {
            format!("{mas}phase 1's Synapse provider `{idp}` cannot carry it yet: carry it by hand or accept the change")
        };
        ctx.human(o.file, &key, &why);
    }
}
