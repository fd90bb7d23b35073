//! Reference renders for review: the files each configuration makes Synapse,
//! MAS, nginx and systemd read, as nixpkgs' modules write them (what nixpkgs
//! adds is in `#| ` comment lines; tests/conformance_nixpkgs.rs compares the
//! renders with an evaluation of those modules). Secrets appear only as
//! their file paths.

use std::sync::Mutex;

use serde_json::Value;

use crate::lower::tasks::{self, PASSWORD_CONFIG_UNIT};
use crate::lower::{
    HostPhase, PasswordConfigOut, Task, TlsMode, VirtualHost, PASSWORD_CONFIG_PATH,
};

use super::{header, nixpkgs, Inputs};

/// Where the reference renders show store paths (the real ones are
/// `/nix/store/<hash>-…`, known only after a Nix build).
pub const STORE_BIN: &str = "/run/current-system/sw/bin";
pub const STORE_MAS_CONFIG: &str = "/run/current-system/sw/share/masgen/mas-config.yaml";
pub const STORE_SYNAPSE_CONFIG: &str = "/run/current-system/sw/share/masgen/homeserver.yaml";

/// How to render nginx server blocks. The default is the production form;
/// tests listen on a loopback port without TLS.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    pub plain_listen: Option<String>,
}

pub(super) fn files(
    phase: &HostPhase,
    inputs: &Inputs<'_>,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    // Each service's files on the host that runs it (Synapse's also where
    // syn2mas reads them).
    if phase.synapse_config_here() {
        let mut hs_yaml = header("#", inputs);
        hs_yaml.push_str(&format!(
            "# Synapse homeserver.yaml of `{}`.\n",
            phase.configuration
        ));
        for f in &phase.synapse.extra_config_files {
            if f == PASSWORD_CONFIG_PATH {
                hs_yaml.push_str(&format!(
                    "# Also read: {f} (written at boot; rendered beside this file as password-config.yaml)\n"
                ));
            } else {
                hs_yaml.push_str(&format!("# Also read: {f}\n"));
            }
        }
        let mut defaults = nixpkgs::unset(&nixpkgs::synapse_defaults(), &phase.synapse.settings);
        let intro = if phase.roles.synapse {
            "nixpkgs' services.matrix-synapse adds its defaults for the keys masgen leaves\n\
             # unset (nixos/modules/services/matrix/synapse.nix); Synapse reads these too:"
        } else {
            // Synapse is off here: what syn2mas reads is the file masgen's
            // task module makes of the settings, without the defaults nixpkgs
            // derives from the enabled service.
            if let Some(d) = defaults.as_object_mut() {
                d.remove("log_config");
                d.remove("instance_map");
            }
            "Synapse runs on another host; syn2mas reads this file here, made by masgen's task\n\
             # module from services.matrix-synapse.settings with nixpkgs' option defaults:"
        };
        hs_yaml.push_str(&documented(intro, &defaults)?);
        hs_yaml.push_str(&yaml(&phase.synapse.settings)?);
        out.push(("homeserver.yaml".to_string(), hs_yaml));

        if let Some(pc) = &phase.synapse.password_config {
            let mut text = header("#", inputs);
            text.push_str(&password_config(pc));
            out.push(("password-config.yaml".to_string(), text));
        }
    }
    if phase.roles.mas {
        let mut mas_yaml = header("#", inputs);
        mas_yaml.push_str(&format!(
            "# MAS config.yaml of `{}`. ${{CREDENTIALS_DIRECTORY}} is the unit's credentials directory;\n",
            phase.configuration
        ));
        mas_yaml.push_str("# each credential is loaded from:\n");
        for (name, path) in &phase.mas.credentials {
            mas_yaml.push_str(&format!("#   {name}: {path}\n"));
        }
        mas_yaml.push_str(&documented(
            "nixpkgs' services.matrix-authentication-service adds its defaults for the keys\n\
             # masgen leaves unset (nixos/modules/services/matrix/matrix-authentication-service.nix):",
            &nixpkgs::unset(&nixpkgs::mas_defaults(), &phase.mas.settings),
        )?);
        mas_yaml.push_str(&yaml(&phase.mas.settings)?);
        out.push(("mas-config.yaml".to_string(), mas_yaml));
    }
    if phase.roles.proxy {
        let mut nginx = header("#", inputs);
        nginx.push_str(&format!(
            "# nginx.conf of `{}` as nixpkgs' nginx module writes it from services.nginx.virtualHosts\n\
             # (recommendedProxySettings and recommendedTlsSettings on). The `#| ` lines are nixpkgs'\n\
             # own part of the file, the server blocks are masgen's virtual hosts; each `include` of\n\
             # nixpkgs' recommended proxy headers is written out as its lines.\n",
            phase.configuration
        ));
        for line in nixpkgs::NGINX_PROLOGUE.lines() {
            nginx.push_str(&format!("#| {line}\n"));
        }
        nginx.push_str(&render_nginx(&phase.nginx, &RenderOptions::default()));
        for line in nixpkgs::NGINX_EPILOGUE.lines() {
            nginx.push_str(&format!("#| {line}\n"));
        }
        out.push(("nginx.conf".to_string(), nginx));
    }
    for (name, task) in &phase.tasks {
        let mut unit = header("#", inputs);
        unit.push_str(&format!(
            "# systemd.services.{name} as NixOS writes it (modules/tasks.nix). Store paths are shown\n\
             # under /run/current-system/sw; `#| ` lines are what NixOS adds to every service.\n"
        ));
        unit.push_str(&render_unit(name, task, phase));
        out.push((format!("units/{name}.service"), unit));
    }
    Ok(out)
}

/// The file modules/synapse-secrets.nix writes at boot: jq's JSON (valid
/// YAML) of `{password_config: settings + {pepper}}`, settings keys sorted
/// (Nix's JSON) and `pepper` last. The pepper is shown as the file it is
/// read from, never its value.
pub fn password_config(pc: &PasswordConfigOut) -> String {
    let mut text = format!(
        "# {PASSWORD_CONFIG_PATH}: written at boot by {PASSWORD_CONFIG_UNIT}\n\
         # (modules/synapse-secrets.nix; directory 0700, file 0400, owner matrix-synapse),\n\
         # and read by Synapse after homeserver.yaml. `pepper` is the content of\n\
         # {} with one trailing newline stripped; its value is never rendered.\n",
        pc.pepper_file
    );
    let mut inner: Vec<(String, Value)> = match &pc.settings {
        Value::Object(m) => m
            .iter()
            .filter(|(k, _)| *k != "pepper")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ => Vec::new(),
    };
    inner.sort_by(|a, b| a.0.cmp(&b.0));
    inner.push((
        "pepper".into(),
        Value::String(format!("<content of {}>", pc.pepper_file)),
    ));
    // jq's layout: two-space indent, insertion order.
    text.push_str("{\n  \"password_config\": {\n");
    for (i, (k, v)) in inner.iter().enumerate() {
        let value = serde_json::to_string_pretty(v)
            .unwrap_or_default()
            .replace('\n', "\n    ");
        let comma = if i + 1 < inner.len() { "," } else { "" };
        text.push_str(&format!(
            "    {}: {value}{comma}\n",
            Value::String(k.clone())
        ));
    }
    text.push_str("  }\n}\n");
    text
}

/// `what` as a comment, then `value` as YAML in `#| ` comment lines (a
/// block tests/conformance_nixpkgs.rs reads back); nothing when empty.
fn documented(what: &str, value: &Value) -> anyhow::Result<String> {
    if !value.as_object().is_some_and(|m| !m.is_empty()) {
        return Ok(String::new());
    }
    // The defaults repeat from one homeserver of a fleet to the next (a few
    // distinct sets): each is made into YAML once.
    static MADE: Mutex<Vec<(Value, String)>> = Mutex::new(Vec::new());
    let made =
        |m: &Vec<(Value, String)>| m.iter().find(|(v, _)| v == value).map(|(_, y)| y.clone());
    let lock = || MADE.lock().unwrap_or_else(|e| e.into_inner());
    // (The lock is let go before the YAML is made: a temporary in a
    // `match` would hold it to the end.)
    let found = made(&lock());
    let block = match found {
        Some(block) => block,
        None => {
            let mut block = String::new();
            for line in yaml(value)?.lines() {
                block.push_str(&format!("#| {line}\n"));
            }
            let mut m = lock();
            if m.len() == 16 {
                m.remove(0);
            }
            m.push((value.clone(), block.clone()));
            block
        }
    };
    Ok(format!("# {what}\n{block}"))
}

fn yaml(value: &Value) -> anyhow::Result<String> {
    Ok(serde_norway::to_string(value)?)
}

/// What nixpkgs' `recommendedProxySettings` adds to every proxied location
/// (`include` of its `nginx-recommended-proxy_set_header-headers.conf`;
/// nixpkgs nixos/modules/services/web-servers/nginx/default.nix, 2026 text
/// at siraben/nixpkgs@a0931b4d: `X-Forwarded-Server` is `$hostname` there,
/// `$host` before).
pub const RECOMMENDED_PROXY_HEADERS: [&str; 6] = [
    "Host $host",
    "X-Real-IP $remote_addr",
    "X-Forwarded-For $proxy_add_x_forwarded_for",
    "X-Forwarded-Proto $scheme",
    "X-Forwarded-Host $host",
    "X-Forwarded-Server $hostname",
];

/// nginx `server` blocks for the virtual hosts, in the order and form of
/// nixpkgs' nginx module: hosts and locations sorted by name (Nix attribute
/// order), the ACME challenge location in both server blocks of an ACME host.
pub fn render_nginx(hosts: &[VirtualHost], opts: &RenderOptions) -> String {
    let mut hosts: Vec<&VirtualHost> = hosts.iter().collect();
    hosts.sort_by(|a, b| a.server_name.cmp(&b.server_name));
    let mut out = String::new();
    for v in hosts {
        let tls = opts.plain_listen.is_none() && v.tls != TlsMode::None;
        // nixpkgs adds the challenge location only for ACME hosts.
        let acme = if tls && v.tls == TlsMode::Acme {
            "\n    location ^~ /.well-known/acme-challenge/ {\n        root /var/lib/acme/acme-challenge;\n        auth_basic off;\n        auth_request off;\n    }\n"
        } else {
            ""
        };
        if tls {
            out.push_str(&format!(
                "server {{\n    listen 0.0.0.0:80;\n    listen [::0]:80;\n    server_name {};\n\n    location / {{\n        return 301 https://$host$request_uri;\n    }}\n{acme}}}\n\n",
                v.server_name,
            ));
        }
        out.push_str("server {\n");
        match &opts.plain_listen {
            Some(listen) => out.push_str(&format!("    listen {listen};\n")),
            None if tls => out.push_str("    listen 0.0.0.0:443 ssl;\n    listen [::0]:443 ssl;\n"),
            None => out.push_str("    listen 0.0.0.0:80;\n    listen [::0]:80;\n"),
        }
        out.push_str(&format!("    server_name {};\n", v.server_name));
        if tls {
            out.push_str("    http2 on;\n");
            let (cert, key, chain) = match &v.tls {
                TlsMode::Files { certificate, key } => (certificate.clone(), key.clone(), None),
                _ => {
                    let dir = format!("/var/lib/acme/{}", v.server_name);
                    (
                        format!("{dir}/fullchain.pem"),
                        format!("{dir}/key.pem"),
                        Some(format!("{dir}/chain.pem")),
                    )
                }
            };
            out.push_str(&format!(
                "    ssl_certificate {cert};\n    ssl_certificate_key {key};\n"
            ));
            if let Some(chain) = chain {
                out.push_str(&format!("    ssl_trusted_certificate {chain};\n"));
            }
        }
        out.push_str(acme);
        let mut locations: Vec<_> = v.locations.iter().collect();
        locations.sort_by(|a, b| a.matcher.cmp(&b.matcher));
        for l in locations {
            out.push_str(&format!("\n    location {} {{\n", l.matcher));
            if let Some(p) = &l.proxy_pass {
                out.push_str(&format!("        proxy_pass {p};\n"));
            }
            if let Some(r) = &l.return_value {
                out.push_str(&format!("        return {r};\n"));
            }
            for d in &l.directives {
                out.push_str(&format!("        {d};\n"));
            }
            if l.proxy_pass.is_some() {
                for h in RECOMMENDED_PROXY_HEADERS {
                    out.push_str(&format!("        proxy_set_header {h};\n"));
                }
            }
            out.push_str("    }\n");
        }
        out.push_str("}\n\n");
    }
    out
}

/// Synapse config files a task passes to syn2mas: the store homeserver.yaml,
/// then each extra file through the unit's credentials (`%d`), so MAS's
/// dynamic user can read the root- or synapse-owned originals.
pub fn synapse_config_args(extra_files: &[String]) -> Vec<(String, Option<(String, String)>)> {
    let mut out = vec![(STORE_SYNAPSE_CONFIG.to_string(), None)];
    for (i, f) in extra_files.iter().enumerate() {
        let cred = format!("masgen-synapse-config-{i}");
        out.push((format!("%d/{cred}"), Some((cred, f.clone()))));
    }
    out
}

/// A `.service` file equivalent to what modules/tasks.nix makes of the task
/// `name` on the host of `phase`, with the module's implicit additions.
pub fn render_unit(name: &str, task: &Task, phase: &HostPhase) -> String {
    let implied = tasks::implied(
        name,
        &task.command,
        &task.credentials,
        task.runtime_directory.as_deref(),
        &tasks::HostWiring {
            mas_credentials: &phase.mas.credentials,
            password_config: phase.synapse.password_config.is_some(),
            mas_keys: !phase.mas.generated_keys.is_empty(),
            synapse_database: phase.database_passwords.synapse.is_some(),
            mas_database: phase.database_passwords.mas.is_some(),
        },
    );
    // MAS's extra config files (the database file, split hosts), loaded as
    // credentials and named to masgen-mas-run (modules/tasks.nix).
    let mas_extra: Vec<(String, String)> = match &phase.database_passwords.mas {
        Some(_) if task.command.iter().any(|w| w == "@mas-config@") => vec![(
            "masgen-mas-extra-config-0".to_string(),
            tasks::MAS_DATABASE_PATH.to_string(),
        )],
        _ => Vec::new(),
    };
    let mut credentials: Vec<(String, String)> = implied.credentials.into_iter().collect();
    // In the module's order: named credentials, MAS's extra files, Synapse's.
    credentials.extend(mas_extra.iter().cloned());
    let argv = exec_start(
        &task.command,
        &phase.synapse.extra_config_files,
        &mut credentials,
    );
    let mut u = unit_section(task, &implied.after_requires);
    u.push_str("\n[Service]\n");
    for line in environment(task, &mas_extra) {
        u.push_str(&format!("{line}\n"));
    }
    // What NixOS writes for restartIfChanged = false / stopIfChanged = false,
    // under [Service] (nixos/lib/systemd-lib.nix, serviceToUnit): a switch
    // never restarts or stops a running task.
    u.push_str("X-RestartIfChanged=false\nX-StopIfChanged=false\n");
    u.push_str("Type=oneshot\nUMask=0077\n");
    if let Some(user) = &task.user {
        u.push_str(&format!("User={user}\n"));
    }
    if task.dynamic_user {
        u.push_str("DynamicUser=true\n");
    }
    for (name, path) in &credentials {
        u.push_str(&format!(
            "LoadCredential={name}:{}\n",
            path.replace('%', "%%")
        ));
    }
    if let Some(d) = &implied.runtime_directory {
        u.push_str(&format!(
            "RuntimeDirectory={d}\nRuntimeDirectoryMode=0700\n"
        ));
    }
    if let (Some(stamp), true) = (&task.success_stamp, task.clear_stamp_at_start) {
        u.push_str(&format!(
            "ExecStartPre=+{STORE_BIN}/rm -f /var/lib/masgen/{stamp}\n"
        ));
    }
    u.push_str(&format!("ExecStart={}\n", argv.join(" ")));
    if let Some(stamp) = &task.success_stamp {
        u.push_str(&format!(
            "ExecStartPost=+{STORE_BIN}/mkdir -p /var/lib/masgen\nExecStartPost=+{STORE_BIN}/touch /var/lib/masgen/{stamp}\n"
        ));
    }
    u
}

/// `[Unit]`: the description and the ordering, with the units the task's
/// placeholders imply.
fn unit_section(task: &Task, implied: &[String]) -> String {
    let mut u = String::from("[Unit]\n");
    u.push_str(&format!(
        "Description={}\n",
        task.description.replace('%', "%%")
    ));
    let with_implied = |list: &[String]| {
        let mut all = list.to_vec();
        for u in implied {
            if !all.contains(u) {
                all.push(u.clone());
            }
        }
        all
    };
    for (key, list) in [
        ("After", &with_implied(&task.after)),
        ("Requires", &with_implied(&task.requires)),
        ("Conflicts", &task.conflicts),
    ] {
        if !list.is_empty() {
            u.push_str(&format!("{key}={}\n", list.join(" ")));
        }
    }
    u
}

/// The `Environment=` lines as NixOS writes them, sorted by name: its own
/// (`#| `, for reference) and the task's.
fn environment(task: &Task, mas_extra: &[(String, String)]) -> Vec<String> {
    let mut env: Vec<(String, String)> = nixpkgs::SERVICE_ENVIRONMENT
        .iter()
        .map(|l| (l.to_string(), format!("#| {l}")))
        .collect();
    if !mas_extra.is_empty() {
        let names: Vec<&str> = mas_extra.iter().map(|(n, _)| n.as_str()).collect();
        let line = format!(
            "Environment=\"MASGEN_MAS_EXTRA_CONFIGS={}\"",
            names.join(" ")
        );
        env.push((line.clone(), line));
    }
    for (name, value) in &task.environment {
        let line = format!("Environment=\"{name}={value}\"");
        env.push((line.clone(), line));
    }
    env.sort();
    env.into_iter().map(|(_, line)| line).collect()
}

/// `ExecStart=`'s words: placeholders expanded as modules/tasks.nix does;
/// `@synapse-config-args@` also adds the credentials its files need.
fn exec_start(
    command: &[String],
    synapse_extra_files: &[String],
    credentials: &mut Vec<(String, String)>,
) -> Vec<String> {
    let mut argv = Vec::new();
    for arg in command {
        match arg.as_str() {
            "@synapse-config-args@" => {
                for (path, cred) in synapse_config_args(synapse_extra_files) {
                    argv.push("--synapse-config".to_string());
                    // `%d` is systemd's credentials directory specifier: keep it unescaped.
                    argv.push(if path.starts_with("%d/") {
                        quote_exec(&path)
                    } else {
                        exec_arg(&path)
                    });
                    credentials.extend(cred);
                }
            }
            "@mas-config@" => argv.push(exec_arg(STORE_MAS_CONFIG)),
            tool if tool.len() > 2
                && tool.starts_with('@')
                && tool.ends_with('@')
                && tool != "@CONFIG@" =>
            {
                argv.push(format!("{STORE_BIN}/{}", &tool[1..tool.len() - 1]));
            }
            other => argv.push(exec_arg(other)),
        }
    }
    argv
}

/// One ExecStart argument: `%` doubled, quoted when it has spaces or quotes.
fn exec_arg(arg: &str) -> String {
    quote_exec(&arg.replace('%', "%%"))
}

fn quote_exec(arg: &str) -> String {
    if !arg.is_empty()
        && !arg
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';' | '$'))
    {
        return arg.to_string();
    }
    let mut s = String::from("\"");
    for c in arg.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '$' => s.push_str("$$"),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}
