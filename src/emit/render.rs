//! Reference renders for review: what each configuration makes Synapse, MAS,
//! nginx and systemd read. Secrets appear only as their file paths.

use serde_json::Value;

use crate::lower::{HostPhase, Task, TlsMode, VirtualHost, PASSWORD_CONFIG_PATH};

use super::{header, Inputs};

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
    let mut hs_yaml = header("#", inputs);
    hs_yaml.push_str(&format!(
        "# Synapse homeserver.yaml of `{}`.\n",
        phase.configuration
    ));
    for f in &phase.synapse.extra_config_files {
        if f == PASSWORD_CONFIG_PATH {
            if let Some(pc) = &phase.synapse.password_config {
                hs_yaml.push_str(&format!(
                    "# Also read: {f} = {{\"password_config\": {} + pepper read from {}}}\n",
                    pc.settings, pc.pepper_file
                ));
            }
        } else {
            hs_yaml.push_str(&format!("# Also read: {f}\n"));
        }
    }
    hs_yaml.push_str(&yaml(&phase.synapse.settings)?);
    out.push(("homeserver.yaml".to_string(), hs_yaml));

    let mut mas_yaml = header("#", inputs);
    mas_yaml.push_str(&format!(
        "# MAS config.yaml of `{}`. ${{CREDENTIALS_DIRECTORY}} is the unit's credentials directory;\n",
        phase.configuration
    ));
    mas_yaml.push_str("# each credential is loaded from:\n");
    for (name, path) in &phase.mas.credentials {
        mas_yaml.push_str(&format!("#   {name}: {path}\n"));
    }
    mas_yaml.push_str(&yaml(&phase.mas.settings)?);
    out.push(("mas-config.yaml".to_string(), mas_yaml));

    let mut nginx = header("#", inputs);
    nginx.push_str(&format!(
        "# nginx server blocks of `{}` as services.nginx.virtualHosts describes them\n# (recommendedProxySettings written out).\n",
        phase.configuration
    ));
    nginx.push_str(&render_nginx(&phase.nginx, &RenderOptions::default()));
    out.push(("nginx.conf".to_string(), nginx));

    for (name, task) in &phase.tasks {
        let mut unit = header("#", inputs);
        unit.push_str(&format!("# Reference render of systemd.services.{name}; store paths shown under /run/current-system/sw.\n"));
        unit.push_str(&render_unit(task, &phase.synapse.extra_config_files));
        out.push((format!("units/{name}.service"), unit));
    }
    Ok(out)
}

fn yaml(value: &Value) -> anyhow::Result<String> {
    Ok(serde_norway::to_string(value)?)
}

/// nginx `server` blocks for the virtual hosts.
pub fn render_nginx(hosts: &[VirtualHost], opts: &RenderOptions) -> String {
    let mut out = String::new();
    for v in hosts {
        let tls = opts.plain_listen.is_none() && v.tls != TlsMode::None;
        if tls {
            out.push_str(&format!(
                "server {{\n    listen 0.0.0.0:80;\n    listen [::]:80;\n    server_name {};\n{}    location / {{\n        return 301 https://$host$request_uri;\n    }}\n}}\n\n",
                v.server_name,
                // nixpkgs adds the challenge location only for ACME hosts.
                if v.tls == TlsMode::Acme {
                    "    location ^~ /.well-known/acme-challenge/ {\n        root /var/lib/acme/acme-challenge;\n    }\n"
                } else {
                    ""
                }
            ));
        }
        out.push_str("server {\n");
        match &opts.plain_listen {
            Some(listen) => out.push_str(&format!("    listen {listen};\n")),
            None if tls => out
                .push_str("    listen 0.0.0.0:443 ssl;\n    listen [::]:443 ssl;\n    http2 on;\n"),
            None => out.push_str("    listen 0.0.0.0:80;\n    listen [::]:80;\n"),
        }
        out.push_str(&format!("    server_name {};\n", v.server_name));
        if tls {
            let (cert, key) = match &v.tls {
                TlsMode::Files { certificate, key } => (certificate.clone(), key.clone()),
                _ => (
                    format!("/var/lib/acme/{}/fullchain.pem", v.server_name),
                    format!("/var/lib/acme/{}/key.pem", v.server_name),
                ),
            };
            out.push_str(&format!(
                "    ssl_certificate {cert};\n    ssl_certificate_key {key};\n"
            ));
        }
        for l in &v.locations {
            out.push_str(&format!("\n    location {} {{\n", l.matcher));
            if let Some(p) = &l.proxy_pass {
                out.push_str(&format!("        proxy_pass {p};\n"));
                for h in [
                    "Host $host",
                    "X-Real-IP $remote_addr",
                    "X-Forwarded-For $proxy_add_x_forwarded_for",
                    "X-Forwarded-Proto $scheme",
                    "X-Forwarded-Host $host",
                    "X-Forwarded-Server $host",
                ] {
                    out.push_str(&format!("        proxy_set_header {h};\n"));
                }
            }
            for d in &l.directives {
                out.push_str(&format!("        {d};\n"));
            }
            if let Some(r) = &l.return_value {
                out.push_str(&format!("        return {r};\n"));
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

/// A `.service` file equivalent to what modules/tasks.nix makes of a task.
pub fn render_unit(task: &Task, synapse_extra_files: &[String]) -> String {
    let mut credentials: Vec<(String, String)> = task
        .credentials
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut argv = Vec::new();
    for arg in &task.command {
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
    let mut u = String::from("[Unit]\n");
    u.push_str(&format!(
        "Description={}\n",
        task.description.replace('%', "%%")
    ));
    for (key, list) in [
        ("After", &task.after),
        ("Requires", &task.requires),
        ("Conflicts", &task.conflicts),
    ] {
        if !list.is_empty() {
            u.push_str(&format!("{key}={}\n", list.join(" ")));
        }
    }
    // What NixOS writes for restartIfChanged = false / stopIfChanged = false:
    // a switch never restarts or stops a running task.
    u.push_str("X-RestartIfChanged=false\nX-StopIfChanged=false\n");
    u.push_str("\n[Service]\nType=oneshot\nUMask=0077\n");
    if let Some(user) = &task.user {
        u.push_str(&format!("User={user}\n"));
    }
    if task.dynamic_user {
        u.push_str("DynamicUser=yes\n");
    }
    for (name, path) in &credentials {
        u.push_str(&format!(
            "LoadCredential={name}:{}\n",
            path.replace('%', "%%")
        ));
    }
    if let Some(d) = &task.runtime_directory {
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
