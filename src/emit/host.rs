//! `hosts/<host>/<phase>/`: the NixOS module of one configuration. It only
//! sets options; the data files beside it are pure values that evaluate to
//! exactly the reference renders under `render/`.

use crate::lower::{Acme, HostPhase, Task, TlsMode, VirtualHost};
use crate::nix::{print, NixExpr};

use super::{header, Inputs};

pub(super) fn files(phase: &HostPhase, inputs: &Inputs<'_>) -> Vec<(&'static str, String)> {
    let data = |value: NixExpr, what: &str| {
        let mut text = header("#", inputs);
        text.push_str(&format!("# {what}\n"));
        text.push_str(&print(&value));
        text.push('\n');
        text
    };
    let mut files = vec![("default.nix", module(phase, inputs))];
    if phase.synapse_config_here() {
        files.push((
            "synapse-settings.nix",
            data(
                NixExpr::from_json(&phase.synapse.settings),
                "services.matrix-synapse.settings (same data as render/…/homeserver.yaml)",
            ),
        ));
    }
    if phase.roles.mas {
        files.push((
            "mas-settings.nix",
            data(NixExpr::from_json(&phase.mas.settings), "services.matrix-authentication-service.settings (same data as render/…/mas-config.yaml)"),
        ));
    }
    files.push((
        "tasks.nix",
        data(
            tasks(phase),
            "masgen.tasks: oneshot units started by hand, see PLAN.md",
        ),
    ));
    files
}

fn tasks(phase: &HostPhase) -> NixExpr {
    NixExpr::attrs(phase.tasks.iter().map(|(name, t)| (name.clone(), task(t))))
}

fn task(t: &Task) -> NixExpr {
    let mut attrs = vec![
        ("description", NixExpr::str(&t.description)),
        ("after", NixExpr::list_of_strs(&t.after)),
        ("requires", NixExpr::list_of_strs(&t.requires)),
        ("conflicts", NixExpr::list_of_strs(&t.conflicts)),
        (
            "user",
            t.user.as_ref().map(NixExpr::str).unwrap_or(NixExpr::Null),
        ),
        ("dynamicUser", NixExpr::Bool(t.dynamic_user)),
        ("command", NixExpr::list_of_strs(&t.command)),
    ];
    // Only the task's own: modules/tasks.nix adds MAS's for `@mas-config@`.
    if !t.credentials.is_empty() {
        attrs.push((
            "credentials",
            NixExpr::attrs(
                t.credentials
                    .iter()
                    .map(|(k, v)| (k.clone(), NixExpr::str(v))),
            ),
        ));
    }
    if !t.environment.is_empty() {
        attrs.push((
            "environment",
            NixExpr::attrs(
                t.environment
                    .iter()
                    .map(|(k, v)| (k.clone(), NixExpr::str(v))),
            ),
        ));
    }
    if let Some(d) = &t.runtime_directory {
        attrs.push(("runtimeDirectory", NixExpr::str(d)));
    }
    if let Some(s) = &t.success_stamp {
        attrs.push(("successStamp", NixExpr::str(s)));
        if t.clear_stamp_at_start {
            attrs.push(("clearStampAtStart", NixExpr::Bool(true)));
        }
    }
    NixExpr::attrs(attrs)
}

/// `default.nix`: one function per NixOS service it configures, then
/// masgen's own options, the firewall and ACME.
fn module(phase: &HostPhase, inputs: &Inputs<'_>) -> String {
    let roles = phase.roles;
    let mut services = Vec::new();
    if phase.synapse_config_here() {
        services.push(("matrix-synapse", synapse(phase)));
    }
    if roles.mas {
        services.push(("matrix-authentication-service", mas(phase)));
    }
    if roles.postgres {
        services.push(("postgresql", postgresql(phase)));
    }
    if roles.proxy {
        services.push(("nginx", nginx(phase)));
    }
    let mut config = vec![
        ("services", NixExpr::attrs(services)),
        ("masgen", masgen_options(phase)),
    ];
    if !phase.firewall.public.is_empty() {
        config.push((
            "networking",
            NixExpr::attrs([(
                "firewall",
                NixExpr::attrs([(
                    "allowedTCPPorts",
                    NixExpr::List(
                        phase
                            .firewall
                            .public
                            .iter()
                            .map(|p| NixExpr::Int(i64::from(*p)))
                            .collect(),
                    ),
                )]),
            )]),
        ));
    }
    if let Some(acme) = &phase.acme {
        config.push(("security", NixExpr::attrs([("acme", security_acme(acme))])));
    }

    let mut text = header("#", inputs);
    text.push_str(&format!(
        "# NixOS configuration `{}`: {}.\n",
        phase.configuration,
        match phase.phase {
            crate::lower::Phase::Prepare =>
                "migration phase 1, MAS installed and idle, Synapse unchanged for users",
            crate::lower::Phase::Final => "Synapse delegates authentication to MAS",
        }
    ));
    text.push_str(&print(&NixExpr::Lambda(
        "{...}",
        Box::new(NixExpr::attrs(config)),
    )));
    text.push('\n');
    text
}

/// `services.matrix-synapse`: settings live in `synapse-settings.nix`.
fn synapse(phase: &HostPhase) -> NixExpr {
    if !phase.roles.synapse {
        // Synapse runs elsewhere; its settings are here for syn2mas
        // (modules/tasks.nix reads them when Synapse is off).
        return NixExpr::attrs([("settings", NixExpr::Import("./synapse-settings.nix"))]);
    }
    let mut synapse = vec![
        ("enable", NixExpr::Bool(true)),
        ("settings", NixExpr::Import("./synapse-settings.nix")),
        ("extras", NixExpr::list_of_strs(&phase.synapse.extras)),
    ];
    // The password-config and database files are added by masgen's modules
    // (synapse-secrets.nix, synapse-database.nix).
    let extra_files: Vec<&String> = phase
        .synapse
        .extra_config_files
        .iter()
        .filter(|f| {
            f.as_str() != crate::lower::PASSWORD_CONFIG_PATH
                && f.as_str() != crate::lower::tasks::SYNAPSE_DATABASE_PATH
        })
        .collect();
    if !extra_files.is_empty() {
        synapse.push(("extraConfigFiles", NixExpr::list_of_strs(extra_files)));
    }
    NixExpr::attrs(synapse)
}

/// `services.matrix-authentication-service`: settings live in
/// `mas-settings.nix`; secrets are passed as credentials.
fn mas(phase: &HostPhase) -> NixExpr {
    let mut mas = vec![
        ("enable", NixExpr::Bool(true)),
        ("settings", NixExpr::Import("./mas-settings.nix")),
        (
            "credentials",
            NixExpr::attrs(
                phase
                    .mas
                    .credentials
                    .iter()
                    .map(|(k, v)| (k.clone(), NixExpr::str(v))),
            ),
        ),
    ];
    if phase.mas.create_database {
        mas.push(("createDatabase", NixExpr::Bool(true)));
    }
    NixExpr::attrs(mas)
}

/// `services.postgresql`: the databases and owners masgen creates.
fn postgresql(phase: &HostPhase) -> NixExpr {
    let mut postgres = vec![("enable", NixExpr::Bool(true))];
    if !phase.postgres.databases.is_empty() {
        postgres.push((
            "ensureDatabases",
            NixExpr::list_of_strs(&phase.postgres.databases),
        ));
        postgres.push((
            "ensureUsers",
            NixExpr::List(
                phase
                    .postgres
                    .users
                    .iter()
                    .map(|u| {
                        NixExpr::attrs([
                            ("name", NixExpr::str(u)),
                            ("ensureDBOwnership", NixExpr::Bool(true)),
                        ])
                    })
                    .collect(),
            ),
        ));
    }
    if phase.postgres.c_locale {
        // Synapse requires C collation; this applies when the cluster is created.
        postgres.push((
            "initdbArgs",
            NixExpr::list_of_strs(["--locale=C", "--encoding=UTF8"]),
        ));
    }
    NixExpr::attrs(postgres)
}

/// `services.nginx`: one virtual host per public name.
fn nginx(phase: &HostPhase) -> NixExpr {
    NixExpr::attrs([
        ("enable", NixExpr::Bool(true)),
        ("recommendedProxySettings", NixExpr::Bool(true)),
        ("recommendedTlsSettings", NixExpr::Bool(true)),
        (
            "virtualHosts",
            NixExpr::attrs(
                phase
                    .nginx
                    .iter()
                    .map(|v| (v.server_name.clone(), virtual_host(v))),
            ),
        ),
    ])
}

/// `masgen.*`: the options of masgen's own modules (tasks, Synapse's
/// password config, syn2mas's database access, MAS key generation).
fn masgen_options(phase: &HostPhase) -> NixExpr {
    let mut masgen = vec![("tasks", NixExpr::Import("./tasks.nix"))];
    let mut synapse = Vec::new();
    if let Some(pc) = phase
        .synapse
        .password_config
        .as_ref()
        .filter(|_| phase.synapse_config_here())
    {
        synapse.push((
            "passwordConfig",
            NixExpr::attrs([
                ("enable", NixExpr::Bool(true)),
                ("settings", NixExpr::from_json(&pc.settings)),
                ("pepperFile", NixExpr::str(&pc.pepper_file)),
            ]),
        ));
    }
    if let Some(file) = &phase.database_passwords.synapse {
        synapse.push(("databasePassword", password_option(file)));
    }
    if !synapse.is_empty() {
        masgen.push(("synapse", NixExpr::attrs(synapse)));
    }
    if let Some(file) = &phase.database_passwords.mas {
        masgen.push((
            "mas",
            NixExpr::attrs([("databasePassword", password_option(file))]),
        ));
    }
    if !phase.postgres.clients.is_empty() {
        let clients = phase.postgres.clients.iter().map(|c| {
            NixExpr::attrs([
                ("database", NixExpr::str(&c.database)),
                ("role", NixExpr::str(&c.role)),
                ("address", NixExpr::str(&c.address)),
                ("passwordFile", NixExpr::str(&c.password_file)),
            ])
        });
        let mut access = vec![
            ("enable", NixExpr::Bool(true)),
            ("clients", NixExpr::List(clients.collect())),
        ];
        if let Some(a) = &phase.postgres.listen {
            access.push(("listenAddresses", NixExpr::list_of_strs([a])));
        }
        masgen.push(("postgresAccess", NixExpr::attrs(access)));
    }
    if !phase.firewall.allow_from.is_empty() {
        let rules = phase.firewall.allow_from.iter().map(|a| {
            NixExpr::attrs([
                ("port", NixExpr::Int(i64::from(a.port))),
                ("addresses", NixExpr::list_of_strs(&a.addresses)),
            ])
        });
        masgen.push((
            "firewall",
            NixExpr::attrs([("allowFrom", NixExpr::List(rules.collect()))]),
        ));
    }
    if let Some(access) = &phase.syn2mas_access {
        masgen.push((
            "syn2masAccess",
            NixExpr::attrs([
                ("enable", NixExpr::Bool(true)),
                ("synapseDatabase", NixExpr::str(&access.database)),
                ("synapseRole", NixExpr::str(&access.role)),
            ]),
        ));
    }
    if phase.roles.mas && !phase.mas.generated_keys.is_empty() {
        let keys = phase.mas.generated_keys.iter().map(|k| {
            NixExpr::attrs([
                ("type", NixExpr::str(k.key_type)),
                ("file", NixExpr::str(&k.file)),
            ])
        });
        masgen.push((
            "masKeys",
            NixExpr::attrs([("generate", NixExpr::List(keys.collect()))]),
        ));
    }
    NixExpr::attrs(masgen)
}

/// `masgen.{synapse,mas}.databasePassword`: the password of a database on
/// another host, added to the service's config at run time.
fn password_option(file: &str) -> NixExpr {
    NixExpr::attrs([
        ("enable", NixExpr::Bool(true)),
        ("passwordFile", NixExpr::str(file)),
    ])
}

/// `security.acme`: Let's Encrypt's terms, and the contact when given.
fn security_acme(Acme { email }: &Acme) -> NixExpr {
    let mut acme = vec![("acceptTerms", NixExpr::Bool(true))];
    if let Some(e) = email {
        acme.push(("defaults", NixExpr::attrs([("email", NixExpr::str(e))])));
    }
    NixExpr::attrs(acme)
}

fn virtual_host(v: &VirtualHost) -> NixExpr {
    let mut attrs = Vec::new();
    match &v.tls {
        TlsMode::Acme => {
            attrs.push(("enableACME", NixExpr::Bool(true)));
            attrs.push(("forceSSL", NixExpr::Bool(true)));
        }
        TlsMode::Files { certificate, key } => {
            attrs.push(("forceSSL", NixExpr::Bool(true)));
            attrs.push(("sslCertificate", NixExpr::str(certificate)));
            attrs.push(("sslCertificateKey", NixExpr::str(key)));
        }
        TlsMode::None => {}
    }
    let locations = v.locations.iter().map(|l| {
        let mut loc = Vec::new();
        if let Some(p) = &l.proxy_pass {
            loc.push(("proxyPass", NixExpr::str(p)));
        }
        if let Some(r) = &l.return_value {
            loc.push(("return", NixExpr::str(r)));
        }
        if !l.directives.is_empty() {
            let text: Vec<String> = l.directives.iter().map(|d| format!("{d};")).collect();
            loc.push(("extraConfig", NixExpr::str(text.join("\n"))));
        }
        (l.matcher.clone(), NixExpr::attrs(loc))
    });
    attrs.push(("locations", NixExpr::attrs(locations)));
    NixExpr::attrs(attrs)
}
