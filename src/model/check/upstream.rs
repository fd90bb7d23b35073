//! `[[mas.upstream_providers]]` and their claims imports.
//!
//! The rules mirror MAS v1.22.0 (commit f28451c4e536add8f77940c90556958e5cb23c47):
//! `UpstreamOAuth2Config::validate` in `crates/config/src/sections/upstream_oauth2.rs`
//! (what `mas-cli config check` and MAS's start refuse), plus the endpoints a
//! login needs when discovery is off (`crates/handlers/src/upstream_oauth2/cache.rs`,
//! `callback.rs`). Nothing stricter: see docs/notes.md.

use super::*;

/// A Synapse OIDC provider with where the spec declares it.
struct Declared<'a> {
    path: String,
    oidc: &'a SynapseOidc,
}

pub(super) fn check_upstream(
    c: &mut Checker,
    m: &raw::MasSpec,
    mode: Mode,
    synapse: &Synapse,
) -> Vec<UpstreamProvider> {
    let declared: Vec<Declared> = synapse
        .oidc_providers
        .iter()
        .enumerate()
        .map(|(i, oidc)| Declared {
            path: format!("synapse.oidc_providers[{i}]"),
            oidc,
        })
        .chain(synapse.legacy_oidc.iter().map(|oidc| Declared {
            path: "synapse.oidc_config".into(),
            oidc,
        }))
        .collect();
    let mut ids = BTreeSet::new();
    let mut mapped: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, p) in m.upstream_providers.iter().enumerate() {
        let path = format!("mas.upstream_providers[{i}]");
        check_provider_id(c, &path, p, &mut ids);
        if let Some(idp) = &p.synapse_idp_id {
            if check_mapping(c, &path, p, idp, &declared) {
                mapped.entry(idp.clone()).or_default().push(i);
            }
        }
        check_discovery(c, &path, p);
        check_client_auth(c, &path, p);
        if let Some(pkce) = &p.pkce_method {
            if !["auto", "always", "never"].contains(&pkce.as_str()) {
                c.error(
                    "mas.provider.pkce_method",
                    at(&format!("{path}.pkce_method")),
                    format!("unknown PKCE method `{pkce}`"),
                    "use `auto`, `always` or `never`",
                );
            }
        }
        let claims_imports = p
            .claims_imports
            .as_ref()
            .map(|ci| check_claims(c, &format!("{path}.claims_imports"), ci));
        out.push(UpstreamProvider {
            id: p.id.clone(),
            synapse_idp_id: p.synapse_idp_id.clone(),
            issuer: p.issuer.clone(),
            human_name: p.human_name.clone(),
            brand_name: p.brand_name.clone(),
            client_id: p.client_id.clone(),
            client_secret_file: p.client_secret_file.clone(),
            token_endpoint_auth_method: p.token_endpoint_auth_method.clone(),
            token_endpoint_auth_signing_alg: p.token_endpoint_auth_signing_alg.clone(),
            scope: p
                .scope
                .clone()
                .unwrap_or_else(|| "openid profile email".into()),
            discovery_mode: p.discovery_mode.clone(),
            pkce_method: p.pkce_method.clone(),
            authorization_endpoint: p.authorization_endpoint.clone(),
            token_endpoint: p.token_endpoint.clone(),
            userinfo_endpoint: p.userinfo_endpoint.clone(),
            jwks_uri: p.jwks_uri.clone(),
            fetch_userinfo: p.fetch_userinfo,
            claims_imports,
            more: check_more(c, &path, p),
        });
    }
    check_mapped_once(c, &mapped);
    if mode == Mode::Migrate {
        check_every_provider_mapped(c, synapse, &mapped);
    }
    out
}

fn check_provider_id(
    c: &mut Checker,
    path: &str,
    p: &raw::UpstreamProviderSpec,
    ids: &mut BTreeSet<String>,
) {
    if !is_ulid(&p.id) {
        c.error(
            "mas.provider.id",
            at(&format!("{path}.id")),
            format!("`{}` is not a ULID", p.id),
            "generate one with `masgen ulid` (26 upper-case Crockford base32 characters) and never change it: MAS links users to it",
        );
    } else if !ids.insert(p.id.clone()) {
        c.error(
            "mas.provider.id_duplicate",
            at(&format!("{path}.id")),
            format!("provider id `{}` is used twice", p.id),
            "every provider needs its own ULID",
        );
    }
}

/// Whether `synapse_idp_id` names a declared Synapse provider; warns when the
/// two issuers differ (syn2mas carries subjects of the Synapse provider's issuer).
fn check_mapping(
    c: &mut Checker,
    path: &str,
    p: &raw::UpstreamProviderSpec,
    idp: &str,
    declared: &[Declared],
) -> bool {
    let Some(d) = declared.iter().find(|d| d.oidc.auth_provider == idp) else {
        let known: Vec<_> = declared
            .iter()
            .map(|d| format!("`{}`", d.oidc.auth_provider))
            .collect();
        c.error(
            "mas.provider.synapse_idp_id",
            at(&format!("{path}.synapse_idp_id")),
            format!("`{idp}` names no Synapse provider in this spec"),
            if known.is_empty() {
                "declare the Synapse provider under `[[synapse.oidc_providers]]` (its `idp_id` gets the `oidc-` prefix), or remove `synapse_idp_id`".to_string()
            } else {
                format!(
                    "use `oidc` for `oidc_config` or `oidc-<idp_id>`; declared: {}",
                    known.join(", ")
                )
            },
        );
        return false;
    };
    // A malformed URL has its own error; comparing it would only add noise.
    if let Some(issuer) = p
        .issuer
        .as_ref()
        .filter(|i| is_url(i) && is_url(&d.oidc.issuer))
    {
        let same = issuer.trim_end_matches('/') == d.oidc.issuer.trim_end_matches('/');
        if !same {
            c.diags.push(
                Diagnostic::warning(
                    "mas.provider.issuer_mismatch",
                    at(&format!("{path}.issuer")),
                    format!(
                        "this provider maps Synapse provider `{idp}`, whose issuer is `{}`, but its own issuer is `{issuer}`",
                        d.oidc.issuer
                    ),
                )
                .related(
                    at(&format!("{}.issuer", d.path)),
                    format!("the issuer of Synapse provider `{idp}`"),
                )
                .help("syn2mas carries the subjects Synapse's issuer gave its users: with another issuer they match nobody, and users get new accounts. Use the same issuer, or drop `synapse_idp_id` if this is really a new provider"),
            );
        }
    }
    true
}

fn check_mapped_once(c: &mut Checker, mapped: &BTreeMap<String, Vec<usize>>) {
    for (idp, users) in mapped {
        if users.len() > 1 {
            c.error(
                "mas.provider.synapse_idp_id_twice",
                at(&format!(
                    "mas.upstream_providers[{}].synapse_idp_id",
                    users[1]
                )),
                format!("Synapse provider `{idp}` is mapped by more than one MAS provider"),
                "map each Synapse provider to exactly one MAS provider",
            );
        }
    }
}

fn check_every_provider_mapped(
    c: &mut Checker,
    synapse: &Synapse,
    mapped: &BTreeMap<String, Vec<usize>>,
) {
    for (i, d) in synapse.oidc_providers.iter().enumerate() {
        if d.has_users && !mapped.contains_key(&d.auth_provider) {
            c.error(
                "migrate.provider_unmapped",
                at(&format!("synapse.oidc_providers[{i}]")),
                format!("Synapse provider `{}` has users but no MAS upstream provider maps it; syn2mas would refuse to migrate", d.auth_provider),
                format!("add a `[[mas.upstream_providers]]` with `synapse_idp_id = \"{}\"`, or set `has_users = false` if nobody ever logged in with it", d.auth_provider),
            );
        }
    }
    if let Some(d) = &synapse.legacy_oidc {
        if d.has_users && !mapped.contains_key("oidc") {
            c.error("migrate.provider_unmapped", at("synapse.oidc_config"), "the legacy `oidc_config` provider has users but no MAS provider with `synapse_idp_id = \"oidc\"`", "add a `[[mas.upstream_providers]]` with `synapse_idp_id = \"oidc\"`");
        }
    }
}

/// URLs, `discovery_mode`, and what a provider without discovery must spell out.
fn check_discovery(c: &mut Checker, path: &str, p: &raw::UpstreamProviderSpec) {
    if let Some(issuer) = &p.issuer {
        c.url(&format!("{path}.issuer"), issuer);
    }
    for (key, v) in [
        ("authorization_endpoint", &p.authorization_endpoint),
        ("token_endpoint", &p.token_endpoint),
        ("userinfo_endpoint", &p.userinfo_endpoint),
        ("jwks_uri", &p.jwks_uri),
    ] {
        if let Some(v) = v {
            c.url(&format!("{path}.{key}"), v);
        }
    }
    let mode = p.discovery_mode.as_deref();
    if let Some(d) = mode {
        if !["oidc", "insecure", "disabled"].contains(&d) {
            c.error(
                "mas.provider.discovery_mode",
                at(&format!("{path}.discovery_mode")),
                format!("unknown discovery mode `{d}`"),
                "use `oidc`, `insecure` or `disabled`",
            );
        }
    }
    if p.issuer.is_none() && mode != Some("disabled") {
        c.error(
            "mas.provider.issuer",
            at(path),
            "a provider with discovery needs `issuer`",
            "set `issuer`, or `discovery_mode = \"disabled\"` with explicit endpoints",
        );
    }
    if mode != Some("disabled") {
        return;
    }
    // Without discovery MAS has no other source for these: every login
    // reads them (cache.rs `authorization_endpoint`/`token_endpoint`).
    let mut required = vec![
        (
            "authorization_endpoint",
            &p.authorization_endpoint,
            "every login starts there",
        ),
        (
            "token_endpoint",
            &p.token_endpoint,
            "every login exchanges its code there",
        ),
    ];
    if p.fetch_userinfo == Some(true) {
        required.push((
            "userinfo_endpoint",
            &p.userinfo_endpoint,
            "`fetch_userinfo = true` reads the profile there",
        ));
    }
    for (key, v, why) in required {
        if v.is_none() {
            c.error(
                "mas.provider.endpoints",
                at(path),
                format!("with discovery disabled, `{key}` is required: {why}"),
                format!("set `{key}`"),
            );
        }
    }
    // An OpenID provider answers `openid` with an ID token, which MAS checks
    // against the JWKS (callback.rs); plain OAuth 2.0 (e.g. GitHub) needs none.
    let openid = p
        .scope
        .as_deref()
        .unwrap_or("openid")
        .split_whitespace()
        .any(|s| s == "openid");
    if openid && p.jwks_uri.is_none() {
        c.warn(
            "mas.provider.jwks_uri",
            at(path),
            "with discovery disabled and the `openid` scope, MAS needs `jwks_uri` to verify the ID token the provider returns; logins fail without it",
            "set `jwks_uri`, or drop `openid` from `scope` for a plain OAuth 2.0 provider",
        );
    } else if p.fetch_userinfo == Some(true)
        && p.userinfo_signed_response_alg.is_some()
        && p.jwks_uri.is_none()
    {
        c.error(
            "mas.provider.endpoints",
            at(path),
            "with discovery disabled, a signed userinfo response (`userinfo_signed_response_alg`) needs `jwks_uri` to be verified",
            "set `jwks_uri`",
        );
    }
}

/// Provider keys masgen passes to MAS as they are, with MAS's value sets
/// (`ResponseMode`, `OnBackchannelLogout`).
fn check_more(c: &mut Checker, path: &str, p: &raw::UpstreamProviderSpec) -> Map<String, Value> {
    let mut more = Map::new();
    for (key, v, allowed) in [
        (
            "response_mode",
            &p.response_mode,
            &["query", "form_post"][..],
        ),
        (
            "on_backchannel_logout",
            &p.on_backchannel_logout,
            &["do_nothing", "logout_browser_only", "logout_all"][..],
        ),
        (
            "id_token_signed_response_alg",
            &p.id_token_signed_response_alg,
            &[][..],
        ),
        (
            "userinfo_signed_response_alg",
            &p.userinfo_signed_response_alg,
            &[][..],
        ),
    ] {
        let Some(v) = v else { continue };
        if !allowed.is_empty() && !allowed.contains(&v.as_str()) {
            c.error(
                "mas.provider.value",
                at(&format!("{path}.{key}")),
                format!("unknown `{key}` `{v}`"),
                format!("use one of {}", allowed.join(", ")),
            );
        }
        more.insert(key.into(), Value::String(v.clone()));
    }
    if let Some(f) = p.forward_login_hint {
        more.insert("forward_login_hint".into(), Value::Bool(f));
    }
    if let Some(params) = &p.additional_authorization_parameters {
        let params = params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        more.insert(
            "additional_authorization_parameters".into(),
            Value::Object(params),
        );
    }
    more
}

/// `token_endpoint_auth_method` and the fields each method needs or forbids.
fn check_client_auth(c: &mut Checker, path: &str, p: &raw::UpstreamProviderSpec) {
    let method = p.token_endpoint_auth_method.as_str();
    let (secret, alg) = match method {
        "client_secret_basic" | "client_secret_post" => (true, false),
        "client_secret_jwt" => (true, true),
        "private_key_jwt" => (false, true),
        "none" => (false, false),
        "sign_in_with_apple" => {
            c.error(
                "mas.provider.auth_method",
                at(&format!("{path}.token_endpoint_auth_method")),
                "`sign_in_with_apple` needs MAS's `sign_in_with_apple` block (team, key id, private key), which masgen does not model",
                "use another provider, or configure Sign in with Apple in MAS by hand",
            );
            return;
        }
        other => {
            c.error(
                "mas.provider.auth_method",
                at(&format!("{path}.token_endpoint_auth_method")),
                format!("unknown token endpoint auth method `{other}`"),
                "use one of none, client_secret_basic, client_secret_post, client_secret_jwt, private_key_jwt",
            );
            return;
        }
    };
    match (&p.client_secret_file, secret) {
        (None, true) => c.error(
            "mas.provider.client_secret",
            at(path),
            format!("`{method}` needs a client secret"),
            "set `client_secret_file` to a root-only file holding the secret",
        ),
        (Some(_), false) => c.error(
            "mas.provider.client_secret",
            at(&format!("{path}.client_secret_file")),
            format!("MAS refuses a client secret with `{method}` (\"Unexpected field `client_secret` for the selected authentication method\")"),
            "remove `client_secret_file`, or use `client_secret_basic`/`client_secret_post`",
        ),
        _ => {}
    }
    c.abs_path(&format!("{path}.client_secret_file"), &p.client_secret_file);
    match (&p.token_endpoint_auth_signing_alg, alg) {
        (None, true) => c.error(
            "mas.provider.signing_alg",
            at(&format!("{path}.token_endpoint_auth_method")),
            format!("`{method}` needs `token_endpoint_auth_signing_alg`"),
            if method == "client_secret_jwt" {
                "set it to the algorithm the provider expects, e.g. `HS256`"
            } else {
                "set it to the algorithm the provider expects, e.g. `RS256`"
            },
        ),
        (Some(_), false) => c.error(
            "mas.provider.signing_alg",
            at(&format!("{path}.token_endpoint_auth_signing_alg")),
            format!("MAS refuses `token_endpoint_auth_signing_alg` with `{method}`: only `client_secret_jwt` and `private_key_jwt` sign a client assertion"),
            "remove `token_endpoint_auth_signing_alg`",
        ),
        _ => {}
    }
}

/// `claims_imports` as MAS v1.22.0 reads it (`ClaimsImports`).
pub(super) fn check_claims(c: &mut Checker, path: &str, ci: &raw::ClaimsImportsSpec) -> Value {
    let mut out = Map::new();
    for (name, claim) in [
        ("subject", &ci.subject),
        ("localpart", &ci.localpart),
        ("displayname", &ci.displayname),
        ("email", &ci.email),
        ("account_name", &ci.account_name),
    ] {
        let Some(claim) = claim else { continue };
        let obj = check_claim(c, &format!("{path}.{name}"), name, claim);
        out.insert(name.into(), Value::Object(obj));
    }
    let action = |claim: &Option<raw::ClaimSpec>| {
        claim
            .as_ref()
            .and_then(|c| c.action.clone())
            .unwrap_or_else(|| "ignore".into())
    };
    let localpart = action(&ci.localpart);
    if ci.skip_confirmation == Some(true) {
        out.insert("skip_confirmation".into(), Value::Bool(true));
        if localpart != "require" {
            c.error(
                "mas.claims.skip_confirmation",
                at(&format!("{path}.skip_confirmation")),
                "MAS needs `localpart.action = \"require\"` when `skip_confirmation` is true",
                "set `claims_imports.localpart.action = \"require\"`, or drop `skip_confirmation`",
            );
        }
        for (name, claim) in [("displayname", &ci.displayname), ("email", &ci.email)] {
            if action(claim) == "suggest" {
                c.error(
                    "mas.claims.skip_confirmation",
                    at(&format!("{path}.{name}.action")),
                    format!("MAS refuses `{name}.action = \"suggest\"` when `skip_confirmation` is true: nobody is asked"),
                    "use `ignore`, `force` or `require`",
                );
            }
        }
    }
    let on_conflict = ci.localpart.as_ref().and_then(|l| l.on_conflict.as_deref());
    if matches!(on_conflict, Some("add" | "replace" | "set"))
        && !["force", "require"].contains(&localpart.as_str())
    {
        c.error(
            "mas.claims.on_conflict",
            at(&format!("{path}.localpart.on_conflict")),
            format!("MAS needs `localpart.action` to be `force` or `require` when `on_conflict = \"{}\"`", on_conflict.unwrap_or_default()),
            "set `claims_imports.localpart.action = \"force\"` or `\"require\"`",
        );
    }
    Value::Object(out)
}

fn check_claim(
    c: &mut Checker,
    path: &str,
    name: &str,
    claim: &raw::ClaimSpec,
) -> Map<String, Value> {
    let mut obj = Map::new();
    if let Some(action) = &claim.action {
        if name == "subject" || name == "account_name" {
            c.error(
                "mas.claims.action",
                at(&format!("{path}.action")),
                format!("the {name} claim has no `action`"),
                "remove it; only `template` applies",
            );
        } else if !["ignore", "suggest", "force", "require"].contains(&action.as_str()) {
            c.error(
                "mas.claims.action",
                at(&format!("{path}.action")),
                format!("unknown claim action `{action}`"),
                "use `ignore`, `suggest`, `force` or `require`",
            );
        }
        obj.insert("action".into(), Value::String(action.clone()));
    }
    if let Some(t) = &claim.template {
        obj.insert("template".into(), Value::String(t.clone()));
    }
    if let Some(v) = &claim.on_conflict {
        if name != "localpart" {
            c.error(
                "mas.claims.on_conflict",
                at(&format!("{path}.on_conflict")),
                "`on_conflict` applies to the localpart claim only",
                "move it to `claims_imports.localpart`",
            );
        } else if !["fail", "add", "replace", "set"].contains(&v.as_str()) {
            c.error(
                "mas.claims.on_conflict",
                at(&format!("{path}.on_conflict")),
                format!("unknown value `{v}`"),
                "use `fail`, `add`, `replace` or `set`",
            );
        }
        obj.insert("on_conflict".into(), Value::String(v.clone()));
    }
    if claim.set_email_verification.is_some() {
        // Gone since MAS 0.14 (commit 0513f198d, "Rip out the email
        // verification codes"); MAS 1.22 ignores the key without a word.
        c.error(
            "mas.claims.set_email_verification",
            at(&format!("{path}.set_email_verification")),
            "MAS 1.22 has no `set_email_verification`: it would ignore it",
            "remove it; MAS treats an imported email address as verified",
        );
    }
    obj
}
