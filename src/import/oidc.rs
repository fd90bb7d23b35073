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

/// Provider keys the spec has no key of its own for: carried verbatim in
/// the provider's `extra` table, so phase 1 runs them as today.
const VERBATIM: &[&str] = &[
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

/// One provider being converted: the input, and the two tables written.
struct Conv<'a> {
    ctx: &'a mut Ctx,
    p: &'a Map<String, Value>,
    o: &'a Origin<'a>,
    /// Synapse's auth provider id (`oidc`, `oidc-<idp_id>`).
    idp: String,
    syn: Table,
    mas: Table,
    /// The Synapse provider's `extra` (verbatim settings), with the input
    /// key each top-level entry came from.
    extra: Map<String, Value>,
    extra_from: Map<String, Value>,
}

impl Conv<'_> {
    /// The input key path of a provider field.
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.o.path)
    }

    /// The comment naming where a value came from.
    fn from(&self, k: &str) -> String {
        format!("{}: {}.{k}", self.o.file, self.o.path)
    }

    /// The spec key of the Synapse provider's field.
    fn sk(&self, k: &str) -> String {
        let t = if self.o.legacy {
            "synapse.oidc_config"
        } else {
            "synapse.oidc_providers[]"
        };
        format!("{t}.{k}")
    }

    /// The spec key of the MAS provider's field.
    fn mk(&self, k: &str) -> String {
        format!("mas.upstream_providers[{}].{k}", self.idp)
    }

    fn mapped(&mut self, k: &str, to: &[&str], why: &str) {
        let key = self.key(k);
        self.ctx.mapped(self.o.file, &key, to, why);
    }

    fn human(&mut self, k: &str, why: &str) {
        let key = self.key(k);
        self.ctx.human(self.o.file, &key, why);
    }

    /// A literal string field; a Jinja2 expression is reported, not used.
    fn text(&mut self, k: &str) -> Option<String> {
        match self.p.get(k)? {
            Value::String(s) if self.o.jinja && super::mdad::is_jinja(s) => {
                self.human(k, "a Jinja2 expression: not evaluated; write the value it gives into the spec yourself");
                None
            }
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// Keeps a provider setting (`path` inside the provider) for phase 1.
    fn keep(&mut self, path: &[&str], v: &Value) {
        let mut m = &mut self.extra;
        for seg in &path[..path.len() - 1] {
            let next = m
                .entry(seg.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            m = next.as_object_mut().expect("objects on the way");
        }
        m.insert(path[path.len() - 1].to_string(), v.clone());
        let from = self.from(&path.join("."));
        self.extra_from
            .entry(path[0].to_string())
            .or_insert(Value::String(from));
    }

    /// Reports a kept setting that still needs a human (for MAS).
    fn kept_human(&mut self, k: &str, why: &str) {
        let (key, sk) = (self.key(k), self.sk(&format!("extra.{k}")));
        self.ctx
            .item(self.o.file, &key, super::Status::NeedsHuman, &[sk], why);
    }

    /// The same value on both sides, under their own names.
    fn both(&mut self, k: &str, mas_key: &str, v: &str, why: &str) {
        let from = self.from(k);
        put(&mut self.syn, k, v, &from);
        put(&mut self.mas, mas_key, v, &from);
        let (sk, mk) = (self.sk(k), self.mk(mas_key));
        self.mapped(k, &[&sk, &mk], why);
    }
}

/// Converts one provider; returns Synapse's auth provider id (`oidc-<id>`),
/// or `None` when the provider cannot be written (then the report says why).
pub fn import_provider(
    ctx: &mut Ctx,
    server_name: &str,
    p: &Map<String, Value>,
    o: &Origin,
) -> Option<String> {
    let mut c = Conv {
        ctx,
        p,
        o,
        idp: String::new(),
        syn: Table::new(),
        mas: Table::new(),
        extra: Map::new(),
        extra_from: Map::new(),
    };
    let (Some(issuer), Some(client_id)) = (c.text("issuer"), c.text("client_id")) else {
        c.ctx.human(o.file, &o.path, "the provider has no literal `issuer` and `client_id`: not imported; add it to the spec by hand (`[[synapse.oidc_providers]]` and a `[[mas.upstream_providers]]` with `synapse_idp_id`)");
        return None;
    };
    let idp_id = if o.legacy { None } else { c.text("idp_id") };
    c.idp = match &idp_id {
        Some(id) if id != "oidc" => format!("oidc-{id}"),
        _ => "oidc".to_string(),
    };
    if o.with_mas {
        let id = derived_ulid(&[server_name, &c.idp, &issuer]);
        put(
            &mut c.mas,
            "id",
            id,
            "derived from server_name, Synapse's id and issuer: stable across imports",
        );
        let idp = c.idp.clone();
        put(
            &mut c.mas,
            "synapse_idp_id",
            idp,
            "syn2mas maps Synapse's links to this provider",
        );
    }
    if let Some(id) = &idp_id {
        let from = c.from("idp_id");
        put(&mut c.syn, "idp_id", id.as_str(), &from);
        let (sk, mk) = (c.sk("idp_id"), c.mk("synapse_idp_id"));
        c.mapped("idp_id", &[&sk, &mk], "");
    }
    if let Some(name) = c.text("idp_name") {
        c.both("idp_name", "human_name", &name, "");
    }
    c.both("issuer", "issuer", &issuer, "");
    c.both("client_id", "client_id", &client_id, "the same client: register MAS's callback URL (https://<mas>/upstream/callback/<id>) with the identity provider");
    credentials(&mut c);
    let oauth2_only = transport(&mut c);
    mapping(&mut c, oauth2_only);
    verbatim(&mut c);
    unknown_keys(&mut c);
    write_extra(&mut c);

    let (syn, mas, idp) = (c.syn, c.mas, c.idp);
    if o.legacy {
        *ctx.spec.table("synapse.oidc_config") = syn;
    } else {
        *ctx.spec.push("synapse.oidc_providers") = syn;
    }
    if o.with_mas {
        *ctx.spec.push("mas.upstream_providers") = mas;
    }
    Some(idp)
}

/// The client secret (a file reference on both sides), the token endpoint
/// auth method and the brand.
fn credentials(c: &mut Conv) {
    let secret_file = client_secret(c);
    if let Some(f) = &secret_file {
        let from = c.from("client_secret");
        put(&mut c.syn, "client_secret_file", f.as_str(), &from);
        put(&mut c.mas, "client_secret_file", f.as_str(), &from);
    }
    // Synapse's default: client_secret_basic with a secret, else none.
    let method = match c.p.get("client_auth_method").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None if secret_file.is_some() => "client_secret_basic".into(),
        None => "none".into(),
    };
    put(
        &mut c.mas,
        "token_endpoint_auth_method",
        method,
        "Synapse's client_auth_method (default client_secret_basic with a secret)",
    );
    if let Some(brand) = c.text("idp_brand") {
        let from = c.from("idp_brand");
        put(&mut c.mas, "brand_name", brand, &from);
    }
}

/// The client secret as a file reference: an existing `client_secret_path`,
/// or a new file the operator fills from the inline `client_secret`.
fn client_secret(c: &mut Conv) -> Option<String> {
    let (sk, mk) = (c.sk("client_secret_file"), c.mk("client_secret_file"));
    if let Some(path) = c.p.get("client_secret_path").and_then(Value::as_str) {
        c.mapped("client_secret_path", &[&sk, &mk], "already a file");
        return Some(path.to_string());
    }
    let v = c.p.get("client_secret")?;
    let path = format!("{SECRETS_DIR}/synapse-{}-client-secret", c.idp);
    let key = c.key("client_secret");
    let content = match v.as_str() {
        Some(s) if c.o.jinja && super::mdad::is_jinja(s) => format!(
            "what the Jinja2 expression `{s}` of `{key}` in {} gives (not evaluated)",
            c.o.file
        ),
        _ => format!("the value of `{key}` in {}", c.o.file),
    };
    c.ctx.secret_file(&path, &content);
    c.mapped(
        "client_secret",
        &[&sk, &mk],
        &format!("a secret: not copied; create {path}"),
    );
    Some(path)
}

/// Scopes, discovery, endpoints, PKCE, userinfo; whether the provider is
/// plain OAuth 2.0 (no `openid` scope).
fn transport(c: &mut Conv) -> bool {
    let scopes: Vec<String> = match c.p.get("scopes") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        _ => vec!["openid".into()],
    };
    if c.p.contains_key("scopes") {
        let from = c.from("scopes");
        put(
            &mut c.syn,
            "scopes",
            to_toml(&Value::from(scopes.clone())).expect("strings"),
            &from,
        );
        let (sk, mk) = (c.sk("scopes"), c.mk("scope"));
        c.mapped("scopes", &[&sk, &mk], "");
    }
    put(
        &mut c.mas,
        "scope",
        scopes.join(" "),
        "Synapse's scopes (default `openid`)",
    );
    let discover = c.p.get("discover").and_then(Value::as_bool);
    if let Some(d) = discover {
        let from = c.from("discover");
        put(&mut c.syn, "discover", d, &from);
        let (sk, mk) = (c.sk("discover"), c.mk("discovery_mode"));
        c.mapped("discover", &[&sk, &mk], "");
    }
    let skip = c.p.get("skip_verification").and_then(Value::as_bool) == Some(true);
    let mode = match (discover, skip) {
        (Some(false), _) => "disabled",
        (_, true) => "insecure",
        _ => "oidc",
    };
    put(
        &mut c.mas,
        "discovery_mode",
        mode,
        "Synapse's discover / skip_verification",
    );
    for k in [
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "pkce_method",
    ] {
        if let Some(v) = c.text(k) {
            let from = c.from(k);
            put(&mut c.mas, k, v, &from);
        }
    }
    // Without the `openid` scope Synapse reads the userinfo endpoint
    // (plain OAuth 2.0, e.g. GitHub); MAS must too, and its templates then
    // read `userinfo_claims` (MAS docs/setup/sso.md, GitHub).
    let oauth2_only = !scopes.iter().any(|s| s == "openid");
    if oauth2_only {
        put(
            &mut c.mas,
            "fetch_userinfo",
            true,
            "no `openid` scope: a plain OAuth 2.0 provider",
        );
    } else if c.text("user_profile_method").as_deref() == Some("userinfo_endpoint") {
        let from = c.from("user_profile_method");
        put(&mut c.mas, "fetch_userinfo", true, &from);
    }
    if let Some(a) = c.p.get("allow_existing_users").and_then(Value::as_bool) {
        let from = c.from("allow_existing_users");
        put(&mut c.syn, "allow_existing_users", a, &from);
        let sk = c.sk("allow_existing_users");
        c.mapped("allow_existing_users", &[&sk], "");
    }
    oauth2_only
}

/// The mapping provider's templates Synapse and MAS both use.
const TEMPLATES: &[(&str, &str, &str)] = &[
    ("localpart_template", "localpart", "force"),
    ("display_name_template", "displayname", "suggest"),
    ("email_template", "email", "suggest"),
];

/// `user_mapping_provider` → the spec's templates and MAS's claims imports.
fn mapping(c: &mut Conv, oauth2_only: bool) {
    // MAS's template context names userinfo claims `userinfo_claims`.
    let for_mas = |t: &str| {
        if oauth2_only {
            t.replace("user.", "userinfo_claims.")
        } else {
            t.to_string()
        }
    };
    let base = "user_mapping_provider";
    let empty = Map::new();
    let ump = c.p.get(base).and_then(Value::as_object).unwrap_or(&empty);
    let config = ump
        .get("config")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    mapping_keys(c, ump, config);
    let tmpl = |c: &mut Conv, k: &str| -> Option<String> {
        let s = config.get(k)?.as_str()?;
        if c.o.jinja && super::mdad::is_jinja(s) {
            c.human(
                &format!("{base}.config.{k}"),
                "a Jinja2 expression of the playbook (not a `{% raw %}` template): not evaluated",
            );
            return None;
        }
        Some(super::mdad::unraw(s))
    };
    let mut claims = Table::new();
    claims.set_implicit(true);
    // The subject links upstream accounts: MAS must compute the same one
    // syn2mas copies from Synapse's user_external_ids.
    let subject = match (tmpl(c, "subject_template"), tmpl(c, "subject_claim")) {
        (Some(t), _) => Some((t, "subject_template")),
        (None, Some(claim)) => Some((format!("{{{{ user.{claim} }}}}"), "subject_claim")),
        _ => None,
    };
    let mut sub = Table::new();
    match &subject {
        Some((t, k)) => {
            let from = c.from(&format!("{base}.config.{k}"));
            put(&mut sub, "template", for_mas(t), &from);
            let v = config.get(*k).cloned().unwrap_or_default();
            c.keep(&[base, "config", k], &v);
            let sk = c.sk(&format!("extra.{base}.config.{k}"));
            let mk = c.mk("claims_imports.subject.template");
            c.mapped(
                &format!("{base}.config.{k}"),
                &[&sk, &mk],
                "the subject syn2mas links by",
            );
        }
        None => put(
            &mut sub,
            "template",
            for_mas("{{ user.sub }}"),
            "Synapse's default subject claim `sub`",
        ),
    }
    claims.insert("subject", toml_edit::Item::Table(sub));
    for (k, claim, action) in TEMPLATES {
        let Some(t) = tmpl(c, k) else { continue };
        let from = c.from(&format!("{base}.config.{k}"));
        put(&mut c.syn, k, t.as_str(), &from);
        let mut one = Table::new();
        put(&mut one, "action", *action, "");
        put(&mut one, "template", for_mas(&t), &from);
        claims.insert(claim, toml_edit::Item::Table(one));
        let (sk, mk) = (c.sk(k), c.mk(&format!("claims_imports.{claim}")));
        c.mapped(&format!("{base}.config.{k}"), &[&sk, &mk], "");
    }
    c.mas
        .insert("claims_imports", toml_edit::Item::Table(claims));
}

/// The mapping provider's module and the config keys neither side carries.
fn mapping_keys(c: &mut Conv, ump: &Map<String, Value>, config: &Map<String, Value>) {
    let base = "user_mapping_provider";
    if let Some(m) = ump.get("module").and_then(Value::as_str) {
        if DEFAULT_MAPPER.contains(&m) {
            c.mapped(
                &format!("{base}.module"),
                &[],
                "Synapse's default mapping provider",
            );
        } else {
            c.keep(&[base, "module"], &Value::String(m.to_string()));
            c.kept_human(&format!("{base}.module"), "a custom mapping provider, kept for phase 1 (the host must still have it installed); MAS maps claims with templates only: rewrite it as claims_imports templates");
        }
    }
    for k in config.keys() {
        let known = ["subject_template", "subject_claim"].contains(&k.as_str())
            || TEMPLATES.iter().any(|(t, _, _)| t == k);
        if !known {
            let v = config.get(k).cloned().unwrap_or_default();
            c.keep(&[base, "config", k], &v);
            c.kept_human(&format!("{base}.config.{k}"), "kept for phase 1; MAS has no direct equivalent: check the MAS provider's claims_imports");
        }
    }
    for k in ump.keys() {
        if k != "module" && k != "config" {
            c.human(&format!("{base}.{k}"), "unknown mapping provider key");
        }
    }
}

/// Provider keys the spec has no key of its own for: kept verbatim for
/// phase 1, with what (if anything) MAS does with them.
fn verbatim(c: &mut Conv) {
    for k in VERBATIM {
        let Some(v) = c.p.get(*k).cloned() else {
            continue;
        };
        if super::contains_secret(&v) || (c.o.jinja && super::mdad::jinja_inside(&v)) {
            c.human(k, "holds an inline secret or a Jinja2 expression: not copied; put the key in a file (`key_file`) and add the setting to the provider's `extra` by hand");
            continue;
        }
        c.keep(&[k], &v);
        let idp = c.idp.clone();
        let why = match *k {
            "attribute_requirements" => format!("kept for phase 1; SECURITY: MAS has no equivalent of attribute_requirements, so after the switch every account of `{idp}`'s identity provider can log in: restrict the client at the identity provider (or with a MAS policy) before the final switch"),
            "backchannel_logout_enabled" | "backchannel_logout_ignore_sub" => "kept for phase 1; MAS handles back-channel logout itself (`on_backchannel_logout`): set it on the MAS provider by hand".into(),
            "client_secret_jwt_key" => "kept for phase 1; MAS needs `client_secret_jwt`/`private_key_jwt` (or `sign_in_with_apple`) set up by hand".into(),
            "idp_icon" | "id_token_signing_alg_values_supported" | "redirect_uri" | "enable_registration" => "kept for phase 1; no MAS equivalent is written: check the MAS provider".into(),
            _ => String::new(),
        };
        if why.is_empty() {
            let sk = c.sk(&format!("extra.{k}"));
            let mas = match *k {
                "idp_brand" => "MAS: brand_name",
                "client_auth_method" => "MAS: token_endpoint_auth_method",
                "pkce_method" => "MAS: pkce_method",
                "skip_verification" => "MAS: discovery_mode = \"insecure\"",
                "user_profile_method" => "MAS: fetch_userinfo",
                _ => "MAS: the same endpoint",
            };
            c.mapped(k, &[&sk], mas);
        } else {
            c.kept_human(k, &why);
        }
    }
}

/// The kept settings as the provider's `extra` table.
fn write_extra(c: &mut Conv) {
    if c.extra.is_empty() {
        return;
    }
    let mut t = Table::new();
    for (k, v) in &c.extra {
        let from = c.extra_from.get(k).and_then(Value::as_str).unwrap_or("");
        if let Some(x) = to_toml(&super::mdad::unraw_all(v)) {
            put(&mut t, k, x, from);
        }
    }
    c.syn.insert("extra", toml_edit::Item::Table(t));
}

/// Keys Synapse's schema does not list (or the legacy block's `enabled`).
fn unknown_keys(c: &mut Conv) {
    const KNOWN: &[&str] = &[
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
    ];
    let keys: Vec<String> = c.p.keys().cloned().collect();
    for k in keys {
        if k == "enabled" && c.o.legacy {
            c.mapped(
                "enabled",
                &["synapse.oidc_config"],
                "the legacy block is on",
            );
        } else if !KNOWN.contains(&k.as_str()) && !VERBATIM.contains(&k.as_str()) {
            c.human(
                &k,
                "not a Synapse OIDC provider setting masgen knows (Synapse 1.163's schema lists no such key): not carried; check it",
            );
        }
    }
}
