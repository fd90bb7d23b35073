//! `[[mas.upstream_providers]]` and their claims imports.

use super::*;

pub(super) fn check_upstream(
    c: &mut Checker,
    m: &raw::MasSpec,
    mode: Mode,
    synapse: &Synapse,
) -> Vec<UpstreamProvider> {
    let declared: Vec<&SynapseOidc> = synapse
        .oidc_providers
        .iter()
        .chain(synapse.legacy_oidc.iter())
        .collect();
    let mut ids = BTreeSet::new();
    let mut mapped: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, p) in m.upstream_providers.iter().enumerate() {
        let path = format!("mas.upstream_providers[{i}]");
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
        if let Some(idp) = &p.synapse_idp_id {
            if !declared.iter().any(|d| &d.auth_provider == idp) {
                let known: Vec<_> = declared
                    .iter()
                    .map(|d| format!("`{}`", d.auth_provider))
                    .collect();
                c.error(
                    "mas.provider.synapse_idp_id",
                    at(&format!("{path}.synapse_idp_id")),
                    format!("`{idp}` names no Synapse provider in this spec"),
                    if known.is_empty() {
                        "declare the Synapse provider under `[[synapse.oidc_providers]]` (its `idp_id` gets the `oidc-` prefix), or remove `synapse_idp_id`".to_string()
                    } else {
                        format!("use `oidc` for `oidc_config` or `oidc-<idp_id>`; declared: {}", known.join(", "))
                    },
                );
            } else {
                mapped.entry(idp.clone()).or_default().push(i);
            }
        }
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
        let discovery_mode = p.discovery_mode.clone();
        if let Some(d) = &discovery_mode {
            if !["oidc", "insecure", "disabled"].contains(&d.as_str()) {
                c.error(
                    "mas.provider.discovery_mode",
                    at(&format!("{path}.discovery_mode")),
                    format!("unknown discovery mode `{d}`"),
                    "use `oidc`, `insecure` or `disabled`",
                );
            }
        }
        if p.issuer.is_none() && discovery_mode.as_deref() != Some("disabled") {
            c.error(
                "mas.provider.issuer",
                at(&path),
                "a provider with discovery needs `issuer`",
                "set `issuer`, or `discovery_mode = \"disabled\"` with explicit endpoints",
            );
        }
        if discovery_mode.as_deref() == Some("disabled") {
            for (key, v) in [
                ("authorization_endpoint", &p.authorization_endpoint),
                ("token_endpoint", &p.token_endpoint),
                ("jwks_uri", &p.jwks_uri),
            ] {
                // A plain OAuth 2.0 provider (GitHub) sends no id_token to
                // verify: MAS reads the userinfo endpoint instead (MAS
                // docs/setup/sso.md, GitHub example: no jwks_uri).
                let userinfo_only = p.fetch_userinfo == Some(true) && p.userinfo_endpoint.is_some();
                if v.is_none() && !(key == "jwks_uri" && userinfo_only) {
                    c.error(
                        "mas.provider.endpoints",
                        at(&path),
                        format!("with discovery disabled, `{key}` is required"),
                        format!("set `{key}`"),
                    );
                }
            }
        }
        const AUTH_METHODS: &[&str] = &[
            "none",
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
            "private_key_jwt",
            "sign_in_with_apple",
        ];
        if !AUTH_METHODS.contains(&p.token_endpoint_auth_method.as_str()) {
            c.error(
                "mas.provider.auth_method",
                at(&format!("{path}.token_endpoint_auth_method")),
                format!(
                    "unknown token endpoint auth method `{}`",
                    p.token_endpoint_auth_method
                ),
                format!("use one of {}", AUTH_METHODS.join(", ")),
            );
        }
        let needs_secret = matches!(
            p.token_endpoint_auth_method.as_str(),
            "client_secret_basic" | "client_secret_post" | "client_secret_jwt"
        );
        if needs_secret && p.client_secret_file.is_none() {
            c.error(
                "mas.provider.client_secret",
                at(&path),
                format!("`{}` needs a client secret", p.token_endpoint_auth_method),
                "set `client_secret_file` to a root-only file holding the secret",
            );
        }
        c.abs_path(&format!("{path}.client_secret_file"), &p.client_secret_file);
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
            discovery_mode,
            pkce_method: p.pkce_method.clone(),
            authorization_endpoint: p.authorization_endpoint.clone(),
            token_endpoint: p.token_endpoint.clone(),
            userinfo_endpoint: p.userinfo_endpoint.clone(),
            jwks_uri: p.jwks_uri.clone(),
            fetch_userinfo: p.fetch_userinfo,
            claims_imports,
        });
    }
    for (idp, users) in &mapped {
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
    if mode == Mode::Migrate {
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
    out
}

pub(super) fn check_claims(c: &mut Checker, path: &str, ci: &raw::ClaimsImportsSpec) -> Value {
    let mut out = Map::new();
    for (name, claim) in [
        ("subject", &ci.subject),
        ("localpart", &ci.localpart),
        ("displayname", &ci.displayname),
        ("email", &ci.email),
    ] {
        let Some(claim) = claim else { continue };
        let mut obj = Map::new();
        if let Some(action) = &claim.action {
            if name == "subject" {
                c.error(
                    "mas.claims.action",
                    at(&format!("{path}.{name}.action")),
                    "the subject claim has no `action`",
                    "remove it; only `template` applies",
                );
            } else if !["ignore", "suggest", "force", "require"].contains(&action.as_str()) {
                c.error(
                    "mas.claims.action",
                    at(&format!("{path}.{name}.action")),
                    format!("unknown claim action `{action}`"),
                    "use `ignore`, `suggest`, `force` or `require`",
                );
            }
            obj.insert("action".into(), Value::String(action.clone()));
        }
        if let Some(t) = &claim.template {
            obj.insert("template".into(), Value::String(t.clone()));
        }
        if let Some(v) = &claim.set_email_verification {
            if name != "email" {
                c.error(
                    "mas.claims.set_email_verification",
                    at(&format!("{path}.{name}.set_email_verification")),
                    "`set_email_verification` applies to the email claim only",
                    "move it to `claims_imports.email`",
                );
            } else if !["import", "always", "never"].contains(&v.as_str()) {
                c.error(
                    "mas.claims.set_email_verification",
                    at(&format!("{path}.{name}.set_email_verification")),
                    format!("unknown value `{v}`"),
                    "use `import`, `always` or `never`",
                );
            }
            obj.insert("set_email_verification".into(), Value::String(v.clone()));
        }
        out.insert(name.into(), Value::Object(obj));
    }
    Value::Object(out)
}
