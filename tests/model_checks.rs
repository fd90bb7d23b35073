//! Model checks that the bad-spec corpus does not reach, found by
//! `cargo mutants` (docs/testing.md, "Mutation testing"): each test edits
//! one key of an example and expects validation to refuse exactly that, and
//! a control with a good value to pass.

mod support;

use support::check::{diags, errors, set, with};
use support::example_text;

fn has(text: String, code: &str) -> bool {
    diags(&text).iter().any(|d| d.1 == code)
}

/// Optional file keys are absolute paths on the host, like the required ones.
#[test]
fn optional_file_keys_must_be_absolute() {
    for (name, path) in [
        ("fresh.toml", "mas.email.password_file"),
        ("fresh.toml", "mas.keys_dir"),
        ("fresh.toml", "mas.signing_keys[0].password_file"),
        ("fresh.toml", "users[0].password_file"),
    ] {
        let bad = errors(with(name, path, "relative/file".into()));
        let want = (
            "value.path".to_string(),
            "`relative/file` is not an absolute path".to_string(),
        );
        assert!(bad.contains(&want), "{name}: {path}: {bad:?}");
        let good = errors(with(name, path, "/run/secrets/masgen-test".into()));
        assert!(
            good.iter().all(|(code, _)| code != "value.path"),
            "{name}: {path}: {good:?}"
        );
    }
}

/// Synapse, MAS and nginx run on hosts of the spec; naming a host without
/// a `[hosts]` table is refused, naming the homeserver's own is fine.
#[test]
fn services_run_on_hosts_of_the_spec() {
    for path in ["synapse.host", "mas.host", "proxy.host"] {
        let bad = errors(with("fresh.toml", path, "elsewhere".into()));
        assert!(
            bad.iter().any(|(code, _)| code == "host.unknown"),
            "{path}: {bad:?}"
        );
        let same = errors(with("fresh.toml", path, "matrix".into()));
        assert_eq!(same, Vec::<(String, String)>::new(), "{path}");
    }
}

/// Over the unix socket PostgreSQL maps the service's OS user to the role of
/// the same name (peer authentication): another role cannot log in.
#[test]
fn postgres_role_must_match_the_service_user() {
    let bad = errors(with(
        "migrate-local.toml",
        "synapse.database.user",
        "someone-else".into(),
    ));
    assert!(
        bad.iter().any(|(code, _)| code == "database.peer_user"),
        "{bad:?}"
    );
    let good = errors(with(
        "migrate-local.toml",
        "synapse.database.user",
        "matrix-synapse".into(),
    ));
    assert_eq!(good, Vec::<(String, String)>::new());
}

/// Two listeners clash on the same port when their addresses are equal or
/// either is a wildcard; distinct loopback addresses do not clash.
#[test]
fn listener_ports_clash_only_on_shared_addresses() {
    let text = |synapse: &str, mas: &str| {
        let t = with(
            "mas-own-host.toml",
            "synapse.listener.address",
            synapse.into(),
        );
        let t = set(&t, "synapse.listener.port", 8090.into());
        set(&t, "mas.listener.address", mas.into())
    };
    for (synapse, mas) in [
        ("127.0.0.1", "127.0.0.1"),
        ("0.0.0.0", "127.0.0.1"),
        ("127.0.0.1", "::"),
    ] {
        assert!(has(text(synapse, mas), "value.port"), "{synapse} / {mas}");
    }
    assert!(!has(text("127.0.0.1", "127.0.0.2"), "value.port"));
}

/// MAS's minimum password complexity is a zxcvbn score, 0 to 4.
#[test]
fn password_complexity_is_a_zxcvbn_score() {
    for (v, ok) in [(-1, false), (0, true), (4, true), (5, false)] {
        let t = with("fresh.toml", "mas.passwords.minimum_complexity", v.into());
        assert_eq!(!has(t, "mas.passwords.minimum_complexity"), ok, "{v}");
    }
}

/// Turning MAS's passwords off warns only when a migration carries users
/// who log in with passwords today.
#[test]
fn disabled_mas_passwords_warn_only_in_a_migration() {
    let t = with("migrate-local.toml", "mas.passwords.enabled", false.into());
    assert!(has(t, "mas.passwords.disabled"));
    let t = with("fresh.toml", "mas.passwords.enabled", false.into());
    let t = set(&t, "synapse.password_login", true.into());
    assert!(!has(t, "mas.passwords.disabled"));
}

/// `tls = "files"` needs both files; one alone is refused.
#[test]
fn tls_files_needs_both_files() {
    for key in ["proxy.certificate_file", "proxy.certificate_key_file"] {
        assert!(
            has(with("mas-own-host.toml", key, "".into()), "proxy.tls.files"),
            "{key}"
        );
    }
    assert!(!has(example_text("mas-own-host.toml"), "proxy.tls.files"));
}

/// An `oidc_providers` entry with the id `oidc` is the same provider as the
/// legacy `oidc_config` block (Synapse keeps `oidc` unprefixed): refused at
/// the legacy block.
#[test]
fn legacy_oidc_block_and_provider_oidc_collide() {
    let mut text = with(
        "migrate-keycloak.toml",
        "synapse.oidc_providers[0].idp_id",
        "oidc".into(),
    );
    text.push_str(
        "\n[synapse.oidc_config]\nissuer = \"https://sso.example.net/realms/other\"\nclient_id = \"synapse\"\nclient_secret_file = \"/run/secrets/other\"\n",
    );
    let line = text
        .lines()
        .position(|l| l == "[synapse.oidc_config]")
        .expect("appended")
        + 1;
    let dups: Vec<usize> = diags(&text)
        .into_iter()
        .filter(|d| d.1 == "synapse.oidc.duplicate")
        .map(|d| d.3)
        .collect();
    assert_eq!(dups, [line], "{text}");
}

/// Two `oidc_providers` entries with the same `idp_id` are refused at the
/// second one; distinct ids are fine.
#[test]
fn oidc_providers_need_distinct_ids() {
    let with_second = |id: &str| {
        let mut text = example_text("migrate-keycloak.toml");
        text.push_str(&format!(
            "\n[[synapse.oidc_providers]]\nidp_id = \"{id}\"\nidp_name = \"Other\"\nissuer = \"https://other.example.net/\"\nclient_id = \"synapse\"\nclient_secret_file = \"/run/secrets/other\"\n"
        ));
        text
    };
    let text = with_second("keycloak");
    let second = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("idp_id = \"keycloak\""))
        .map(|(i, _)| i + 1)
        .nth(1)
        .expect("second provider");
    let dups: Vec<usize> = diags(&text)
        .into_iter()
        .filter(|d| d.1 == "synapse.oidc.duplicate")
        .map(|d| d.3)
        .collect();
    assert_eq!(dups, [second], "{text}");
    assert!(!has(with_second("other"), "synapse.oidc.duplicate"));
}

/// Inline tables inside arrays are read like any other table: a literal
/// secret or a non-finite number there is refused at its own path.
#[test]
fn secrets_and_numbers_inside_arrays_of_inline_tables() {
    let base = example_text("migrate-local.toml");
    assert!(!base.contains("[synapse.extra_settings]"));
    let text = format!(
        "{base}\n[synapse.extra_settings]\nfoo = [{{ bar = nan }}]\nbaz = [[{{ client_secret = \"hunter2\" }}]]\n"
    );
    let errors = errors(text);
    assert!(
        errors
            .iter()
            .any(|(code, message)| code == "value.non_finite"
                && message.contains("synapse.extra_settings.foo[0].bar")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|(code, message)| code == "secret.literal"
            && message.contains("synapse.extra_settings.baz[0][0].client_secret")),
        "{errors:?}"
    );
    assert!(
        !errors
            .iter()
            .any(|(_, message)| message.contains("hunter2")),
        "{errors:?}"
    );
}

/// Unknown keys past the first `MAX_SHOWN` are counted, exactly, and not
/// shown.
#[test]
fn unknown_keys_past_the_cap_are_counted_exactly() {
    let cap = masgen::diag::MAX_SHOWN;
    let mut text = example_text("migrate-local.toml");
    for i in 0..cap + 3 {
        text = set(&text, &format!("mas.zz{i:03}"), toml::Value::Integer(1));
    }
    let report = match masgen::check_source(masgen::spec::Source::new("spec.toml", text)) {
        Ok(_) => panic!("unknown keys must be refused"),
        Err(report) => report,
    };
    let shown: Vec<_> = report
        .iter()
        .filter(|d| d.code == "spec.unknown_key")
        .collect();
    assert_eq!(shown.len(), cap, "{report}");
    assert!(shown[0].message.contains("mas.zz000"), "{report}");
    assert_eq!(report.errors, cap + 3, "{report}");
    assert_eq!(report.omitted(), 3, "{report}");
}

/// A database name is a plain PostgreSQL identifier: letters, digits, `-`
/// and `_` are fine, anything else is refused.
#[test]
fn database_names_are_plain_identifiers() {
    let named = |name: &str| {
        let text = with(
            "migrate-local.toml",
            "synapse.database.name",
            toml::Value::String(name.into()),
        );
        set(
            &text,
            "synapse.database.user",
            toml::Value::String(name.into()),
        )
    };
    for good in ["matrix_synapse", "matrix-synapse", "synapse2"] {
        let errors = errors(named(good));
        assert!(
            !errors.iter().any(|(code, _)| code == "database.name"),
            "{good}: {errors:?}"
        );
    }
    for bad in ["matrix.synapse", "matrix synapse", ""] {
        let errors = errors(named(bad));
        assert!(
            errors.iter().any(|(code, _)| code == "database.name"),
            "{bad:?}: {errors:?}"
        );
    }
}

/// MAS's path prefix is plain URL path segments: an empty segment or a
/// character that needs escaping is refused, a plain one is fine.
#[test]
fn mas_path_prefixes_need_no_escaping() {
    let prefixed = |p: &str| {
        with(
            "migrate-local.toml",
            "mas.path_prefix",
            toml::Value::String(p.into()),
        )
    };
    let escaping = |errors: &[(String, String)]| {
        errors
            .iter()
            .any(|(code, m)| code == "mas.path_prefix" && m.contains("need escaping"))
    };
    for good in ["/auth", "/auth/v1", "/a-b_c.d~e"] {
        let errors = errors(prefixed(good));
        assert!(!escaping(&errors), "{good}: {errors:?}");
    }
    for bad in ["/auth x", "/auth//x", "/a%20b"] {
        let errors = errors(prefixed(bad));
        assert!(escaping(&errors), "{bad}: {errors:?}");
    }
}

/// Every way of configuring LDAP installs Synapse's LDAP plugin in phase 1:
/// the flag, `[synapse.ldap]`, or settings in `extra_settings.ldap_config`.
#[test]
fn every_ldap_form_installs_the_plugin() {
    let base = example_text("migrate-local.toml");
    let ldap = "uri = \"ldap://ldap.example.net:389\"\nbase = \"ou=users,dc=example,dc=net\"\n\
                attributes = { uid = \"uid\", mail = \"mail\", name = \"cn\" }\n";
    for (form, extra) in [
        ("[synapse.ldap]", format!("\n[synapse.ldap]\n{ldap}")),
        (
            "extra_settings.ldap_config",
            format!("\n[synapse.extra_settings.ldap_config]\nenabled = true\n{ldap}"),
        ),
        (
            "an LDAP password provider",
            "\n[[synapse.password_providers]]\nmodule = \"ldap_auth_provider.LdapAuthProviderModule\"\n".into(),
        ),
    ] {
        let checked = support::checked("ldap.toml", &(base.clone() + &extra));
        assert!(checked.homeserver.synapse.ldap, "{form}");
    }
    // `ldap = true` alone (its settings in a file the spec does not show).
    let flag = base.replace("[synapse]\n", "[synapse]\nldap = true\n");
    assert_ne!(flag, base);
    assert!(support::checked("flag.toml", &flag).homeserver.synapse.ldap);
    let plain = support::checked("plain.toml", &base);
    assert!(!plain.homeserver.synapse.ldap);
}

/// Host names become NixOS configuration names: the homeserver's host and
/// every `[hosts]` table must be one (letters, digits, `-`, `_`).
#[test]
fn host_names_are_configuration_names() {
    let bad = errors(with(
        "fresh.toml",
        "homeserver.host",
        "matrix.example".into(),
    ));
    assert!(
        bad.iter().any(|(code, _)| code == "homeserver.host"),
        "{bad:?}"
    );
    let split = example_text("fleet/example-net.toml");
    let mut doc: toml::Table = toml::from_str(&split).unwrap();
    let hosts = doc["hosts"].as_table_mut().unwrap();
    let db = hosts.remove("db-net").unwrap();
    hosts.insert("db.net".into(), db);
    let text = toml::to_string(&doc)
        .unwrap()
        .replace("\"db-net\"", "\"db.net\"");
    let bad = diags(&text);
    assert!(
        bad.iter()
            .any(|d| d.0 && d.1 == "homeserver.host" && d.2.contains("`db.net`")),
        "{bad:?}"
    );
    assert_eq!(errors(split), Vec::<(String, String)>::new());
}

/// Each user's task unit is named from its localpart; two localparts that
/// name the same unit (`bot.reminders`, `bot-reminders`) are refused, two
/// that do not are fine.
#[test]
fn two_users_cannot_share_a_task_unit() {
    let base = example_text("fresh.toml");
    let second = |localpart: &str| {
        format!("{base}\n[[users]]\nlocalpart = \"{localpart}\"\nkind = \"bot\"\n")
    };
    let clash = |text: String| {
        errors(text)
            .iter()
            .any(|(code, _)| code == "user.task_name")
    };
    assert!(clash(format!(
        "{}\n[[users]]\nlocalpart = \"bot-reminders\"\nkind = \"bot\"\n",
        second("bot.reminders")
    )));
    assert!(!clash(second("reminders")));
    assert_eq!(errors(second("reminders")), Vec::<(String, String)>::new());
}

/// Where a database is: a `[hosts]` name other than the service's is that
/// host's PostgreSQL over TCP (a role of any name, with a password); the
/// service's own host, or a socket directory, is the local socket; anything
/// else (a DNS name, an address, even with `local = true`) is a server
/// masgen does not manage and is refused.
#[test]
fn database_hosts_are_sockets_or_hosts_of_the_spec() {
    let split = example_text("fleet/example-net.toml");
    let edit = |f: &dyn Fn(&mut toml::Table)| {
        let mut doc: toml::Table = toml::from_str(&split).unwrap();
        f(doc["mas"]["database"].as_table_mut().unwrap());
        toml::to_string(&doc).unwrap()
    };
    let local = |db: &mut toml::Table| {
        db.remove("password_file");
        db.remove("ssl_mode");
    };
    // MAS's own host: its socket.
    let own = edit(&|db| {
        local(db);
        db.insert("host".into(), "auth-net".into());
    });
    assert_eq!(errors(own.clone()), Vec::<(String, String)>::new());
    let c = support::checked("own.toml", &own);
    assert_eq!(c.homeserver.mas.database.host, "/run/postgresql");
    assert!(c.homeserver.mas.database.server.is_none());
    // A socket directory stays what it is.
    let dir = edit(&|db| {
        local(db);
        db.insert("host".into(), "/var/run/postgresql".into());
    });
    let c = support::checked("dir.toml", &dir);
    assert_eq!(c.homeserver.mas.database.host, "/var/run/postgresql");
    // Not a host of the spec: refused, whether or not it claims to be local.
    for (host, claim) in [("db.example.com", None), ("127.0.0.1", Some(true))] {
        let text = edit(&|db| {
            local(db);
            db.insert("host".into(), host.into());
            if let Some(l) = claim {
                db.insert("local".into(), l.into());
            }
        });
        assert!(has(text, "database.remote_unsupported"), "{host}");
    }
    // Over TCP the role logs in with its password: any name will do.
    let role = edit(&|db| {
        db.insert("user".into(), "mas_role".into());
    });
    assert!(!has(role, "database.peer_user"));
}

/// `base_config` names a file in a directory below `/`: the directory
/// becomes a `path:` flake input, the file is imported from it.
#[test]
fn base_config_is_a_file_in_a_directory() {
    let base = |file: &str| {
        let mut doc: toml::Table = toml::from_str(&example_text("fresh.toml")).unwrap();
        let host = doc["hosts"]["matrix"].as_table_mut().unwrap();
        host.remove("base_flake");
        host.remove("base_module");
        host.insert("base_config".into(), file.into());
        toml::to_string(&doc).unwrap()
    };
    for bad in [
        "/configuration.nix",
        "/etc/nixos/",
        "/",
        "/etc/nixos/a b.nix",
    ] {
        assert!(has(base(bad), "host.base_config"), "{bad}");
    }
    assert_eq!(
        errors(base("/etc/nixos/configuration.nix")),
        Vec::<(String, String)>::new()
    );
}

/// `mas.extra_settings` reach MAS's config (the sections masgen writes
/// itself are refused: `mas.managed_setting`).
#[test]
fn mas_extra_settings_reach_the_config() {
    let text = example_text("fresh.toml")
        + "\n[mas.extra_settings.rate_limiting.login.per_ip]\nburst = 7\nper_second = 0.05\n";
    let checked = support::checked("extra.toml", &text);
    let (_, tree) = masgen::build_tree_for(&checked, "./out").unwrap();
    let config = &tree[camino::Utf8Path::new("render/matrix/final/mas-config.yaml")];
    assert!(config.contains("burst: 7"), "{config}");
    let managed = example_text("fresh.toml")
        + "\n[mas.extra_settings.http]\npublic_base = \"https://x.example/\"\n";
    assert!(has(managed, "mas.managed_setting"));
}

/// nginx is the only proxy masgen configures.
#[test]
fn the_proxy_is_nginx() {
    assert!(has(
        with("fresh.toml", "proxy.kind", "caddy".into()),
        "proxy.kind"
    ));
    assert!(!has(
        with("fresh.toml", "proxy.kind", "nginx".into()),
        "proxy.kind"
    ));
}

/// NixOS creates a fresh install's Synapse database (named like its owner,
/// ensureDBOwnership); a migration's database exists and may be named
/// anything.
#[test]
fn only_a_created_database_is_named_like_its_owner() {
    let named = |spec: &str| {
        let text = with(spec, "synapse.database.name", "synapse".into());
        set(&text, "synapse.database.user", "matrix-synapse".into())
    };
    assert!(has(named("fresh.toml"), "database.name_user"));
    assert_eq!(
        errors(named("migrate-local.toml")),
        Vec::<(String, String)>::new()
    );
}

fn warns(text: String, code: &str) -> bool {
    diags(&text).iter().any(|d| !d.0 && d.1 == code)
}

/// Synapse's own keys: its secret files are absolute paths; an existing
/// Synapse keeps password login unless the spec says otherwise (a fresh
/// one delegates from the start); `extra_config_files` are loaded in the
/// final phase too, which a migration is warned about.
#[test]
fn synapse_keys_of_a_migration() {
    for key in ["synapse.pepper_file", "synapse.form_secret_file"] {
        assert!(
            has(
                with("migrate-local.toml", key, "relative/file".into()),
                "value.path"
            ),
            "{key}"
        );
    }
    let mut doc: toml::Table = toml::from_str(&example_text("migrate-local.toml")).unwrap();
    doc["synapse"]
        .as_table_mut()
        .unwrap()
        .remove("password_login");
    let c = support::checked("m.toml", &toml::to_string(&doc).unwrap());
    assert_eq!(
        c.homeserver.synapse.password_login,
        masgen::model::PasswordLogin::Enabled
    );
    let files = toml::Value::from(vec![toml::Value::from("/etc/synapse/extra.yaml")]);
    assert!(warns(
        with(
            "migrate-local.toml",
            "synapse.extra_config_files",
            files.clone()
        ),
        "synapse.extra_config_files.final"
    ));
    assert!(!warns(
        with("fresh.toml", "synapse.extra_config_files", files),
        "synapse.extra_config_files.final"
    ));
}

/// An OIDC provider's `idp_id` is Synapse's (letters, digits, `._-~`), and
/// its `extra` settings reach homeserver.yaml.
#[test]
fn synapse_oidc_provider_keys() {
    let bad = with(
        "migrate-keycloak.toml",
        "synapse.oidc_providers[0].idp_id",
        "key cloak".into(),
    );
    assert!(has(bad, "synapse.oidc.idp_id"));
    let extra = with(
        "migrate-keycloak.toml",
        "synapse.oidc_providers[0].extra.user_profile_method",
        "userinfo_endpoint".into(),
    );
    let c = support::checked("k.toml", &extra);
    let (_, tree) = masgen::build_tree_for(&c, "./out").unwrap();
    let yaml = &tree[camino::Utf8Path::new("render/matrix/prepare/homeserver.yaml")];
    assert!(
        yaml.contains("user_profile_method: userinfo_endpoint"),
        "{yaml}"
    );
}

/// `synapse.extra_settings` may not set what masgen writes: the delegation
/// block, the database, the server name, the listeners.
#[test]
fn synapse_escape_hatch_keeps_off_managed_settings() {
    let table = |k: &str, v: &str| {
        format!(
            "{}\n[synapse.extra_settings.{k}]\n{v}\n",
            example_text("fresh.toml")
        )
    };
    assert!(has(
        table("matrix_authentication_service", "enabled = true"),
        "synapse.delegation_managed"
    ));
    for key in ["database", "listeners", "server_name"] {
        let text = if key == "server_name" {
            set(
                &example_text("fresh.toml"),
                "synapse.extra_settings.server_name",
                "x.example".into(),
            )
        } else if key == "listeners" {
            set(
                &example_text("fresh.toml"),
                "synapse.extra_settings.listeners",
                toml::Value::Array(vec![]),
            )
        } else {
            table(key, "name = \"psycopg2\"")
        };
        assert!(has(text, "synapse.managed_setting"), "{key}");
    }
}

/// The subject and account-name claims are templates only: an `action` on
/// either is refused.
#[test]
fn identity_claims_take_no_action() {
    for claim in ["subject", "account_name"] {
        let path = format!("mas.upstream_providers[0].claims_imports.{claim}.action");
        assert!(
            has(
                with("migrate-keycloak.toml", &path, "force".into()),
                "mas.claims.action"
            ),
            "{claim}"
        );
    }
}

/// The legacy `oidc_config` provider with users must be mapped by a MAS
/// provider with `synapse_idp_id = "oidc"`: refused unmapped, fine mapped,
/// and fine unmapped when nobody ever logged in with it.
#[test]
fn legacy_oidc_block_with_users_must_be_mapped() {
    let legacy = |has_users: bool, mapped: bool| {
        let mut text = with(
            "migrate-keycloak.toml",
            "synapse.oidc_providers[0].has_users",
            false.into(),
        );
        if mapped {
            text = set(
                &text,
                "mas.upstream_providers[0].synapse_idp_id",
                "oidc".into(),
            );
        }
        text.push_str(&format!(
            "\n[synapse.oidc_config]\nissuer = \"https://sso.example.net/realms/other\"\nclient_id = \"synapse\"\nclient_secret_file = \"/run/secrets/other\"\nhas_users = {has_users}\n"
        ));
        diags(&text)
            .into_iter()
            .filter(|d| d.1 == "migrate.provider_unmapped")
            .map(|d| d.2)
            .collect::<Vec<_>>()
    };
    let unmapped = legacy(true, false);
    assert!(
        unmapped.len() == 1 && unmapped[0].contains("legacy `oidc_config`"),
        "{unmapped:?}"
    );
    assert_eq!(legacy(true, true), Vec::<String>::new());
    assert_eq!(legacy(false, false), Vec::<String>::new());
}

/// Without discovery, a signed userinfo response is verified with the
/// provider's JWKS: `fetch_userinfo = true` with
/// `userinfo_signed_response_alg` and no `jwks_uri` is refused (a plain
/// OAuth 2.0 provider, so no `openid` scope to warn about instead); without
/// `fetch_userinfo` the algorithm is never used and nothing is refused.
#[test]
fn signed_userinfo_without_discovery_needs_jwks_uri() {
    let provider = |fetch: bool| {
        let mut text = example_text("migrate-keycloak.toml");
        for (key, value) in [
            ("discovery_mode", "disabled"),
            ("scope", "profile email"),
            (
                "authorization_endpoint",
                "https://sso.example.net/authorize",
            ),
            ("token_endpoint", "https://sso.example.net/token"),
            ("userinfo_endpoint", "https://sso.example.net/userinfo"),
            ("userinfo_signed_response_alg", "RS256"),
        ] {
            text = set(
                &text,
                &format!("mas.upstream_providers[0].{key}"),
                value.into(),
            );
        }
        let text = set(
            &text,
            "mas.upstream_providers[0].fetch_userinfo",
            fetch.into(),
        );
        diags(&text)
            .into_iter()
            .filter(|d| d.0)
            .map(|d| (d.1, d.2))
            .collect::<Vec<_>>()
    };
    let refused = provider(true);
    assert!(
        refused.len() == 1
            && refused[0].0 == "mas.provider.endpoints"
            && refused[0].1.contains("signed userinfo"),
        "{refused:?}"
    );
    assert_eq!(provider(false), Vec::<(String, String)>::new());
}
