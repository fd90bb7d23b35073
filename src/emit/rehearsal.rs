//! The rehearsal of a host's plan in a NixOS VM test: the flake's
//! `checks.<system>.<host>-migration` (or `<host>-fresh`), built by
//! `masgen/modules/rehearsal` from the data file `rehearsal/<host>.nix`
//! written here (docs/guide.md, "Rehearse it in a VM").

use camino::Utf8PathBuf;
use serde_json::{json, Value};

use crate::lower::{HostPhase, Lowered, Phase, TlsMode};
use crate::model::{Homeserver, Mode};
use crate::nix::{print, NixExpr};
use crate::secrets::{self, Kind};

use super::{header, Inputs, OutputTree};

/// Units that read the spec's secret files: the test makes them first.
const SECRET_USERS: [&str; 3] = [
    "matrix-synapse.service",
    "matrix-authentication-service.service",
    "masgen-synapse-password-config.service",
];

/// The password of the VM's test users (in the store: it protects nothing).
const TEST_PASSWORD: &str = "masgen-rehearsal-password";

/// The check's name: `<host>-migration` or `<host>-fresh`.
pub fn check_name(mode: Mode, host: &str) -> String {
    match mode {
        Mode::Migrate => format!("{host}-migration"),
        Mode::Fresh => format!("{host}-fresh"),
    }
}

fn data_path(host: &str) -> String {
    format!("rehearsal/{host}.nix")
}

/// The flake's `checks` output: one rehearsal per host of every homeserver,
/// under its system, with the nixpkgs input its homeserver is pinned to.
pub(super) fn checks<'a>(
    members: impl IntoIterator<Item = (&'a Lowered, &'a str)>,
) -> Option<NixExpr> {
    let mut systems: std::collections::BTreeMap<String, Vec<(String, NixExpr)>> =
        Default::default();
    for (lowered, pin) in members {
        add_checks(&mut systems, lowered, pin);
    }
    (!systems.is_empty()).then(|| {
        NixExpr::attrs(
            systems
                .into_iter()
                .map(|(system, checks)| (system, NixExpr::attrs(checks))),
        )
    })
}

fn add_checks(
    systems: &mut std::collections::BTreeMap<String, Vec<(String, NixExpr)>>,
    lowered: &Lowered,
    pin: &str,
) {
    // One machine rehearses a homeserver of one host; a split homeserver
    // would need one VM per host (not made yet, docs/guide.md).
    if lowered.hosts.len() > 1 {
        return;
    }
    for host in &lowered.hosts {
        let test = NixExpr::Call(
            "import ./masgen/modules/rehearsal",
            Box::new(NixExpr::attrs([
                (
                    "pkgs",
                    // Only `nixpkgs` is an argument of `outputs`; a fleet's
                    // other pins are reached through `inputs`.
                    NixExpr::Select(
                        (pin != "nixpkgs")
                            .then(|| "inputs".to_string())
                            .into_iter()
                            .chain([
                                pin.to_string(),
                                "legacyPackages".into(),
                                host.system.clone(),
                            ])
                            .collect(),
                    ),
                ),
                ("self", NixExpr::Raw("self")),
                (
                    "data",
                    NixExpr::Call(
                        "import",
                        Box::new(NixExpr::Concat(
                            Box::new(NixExpr::Raw("./.")),
                            Box::new(NixExpr::str(format!("/{}", data_path(&host.name)))),
                        )),
                    ),
                ),
            ])),
        );
        systems
            .entry(host.system.clone())
            .or_default()
            .push((check_name(lowered.mode, &host.name), test));
    }
}

/// `rehearsal/<host>.nix` for every host. `plan` is the build's plan.json
/// (None when the plan was refused: the test then fails with the reason).
pub fn files(
    hs: &Homeserver,
    lowered: &Lowered,
    plan: Result<&Value, &str>,
    inputs: &Inputs<'_>,
) -> OutputTree {
    let mut tree = OutputTree::new();
    if lowered.hosts.len() > 1 {
        return tree;
    }
    for host in &lowered.hosts {
        let phases: Vec<&HostPhase> = lowered
            .phases
            .iter()
            .filter(|p| p.host == host.name)
            .collect();
        let Some(data) = host_data(hs, lowered.mode, &host.name, &phases, plan) else {
            continue;
        };
        let mut text = header("#", inputs);
        text.push_str(&format!(
            "# Data of the rehearsal `checks.{}.{}` (masgen/modules/rehearsal, docs/guide.md):\n",
            host.system,
            check_name(lowered.mode, &host.name)
        ));
        text.push_str(
            "# the configurations, the proxy's host names, the secret files the VM makes\n",
        );
        text.push_str("# (test-only values) and the plan's steps as the test runs them.\n");
        text.push_str(&print(&NixExpr::from_json(&data)));
        text.push('\n');
        tree.insert(Utf8PathBuf::from(data_path(&host.name)), text);
    }
    tree
}

fn host_data(
    hs: &Homeserver,
    mode: Mode,
    host: &str,
    phases: &[&HostPhase],
    plan: Result<&Value, &str>,
) -> Option<Value> {
    let phase = |p: Phase| phases.iter().find(|h| h.phase == p).copied();
    let final_phase = phase(Phase::Final)?;
    let first = phase(Phase::Prepare).unwrap_or(final_phase);
    let configurations: serde_json::Map<String, Value> = phases
        .iter()
        .map(|p| (p.phase.name().to_string(), json!(p.configuration)))
        .collect();
    let mut host_names: Vec<String> = phases
        .iter()
        .flat_map(|p| p.nginx.iter().map(|v| v.server_name.clone()))
        .collect();
    host_names.sort();
    host_names.dedup();
    let mut tls_hosts: Vec<String> = phases
        .iter()
        .flat_map(|p| p.nginx.iter())
        .filter(|v| v.tls != TlsMode::None)
        .map(|v| v.server_name.clone())
        .collect();
    tls_hosts.sort();
    tls_hosts.dedup();

    let (users, check_users) = match mode {
        Mode::Migrate => (
            json!([{"localpart": "alice", "admin": true}, {"localpart": "bob", "admin": false}]),
            json!(["alice", "bob"]),
        ),
        Mode::Fresh => (json!([]), json!(["rehearsal"])),
    };
    let steps = match plan {
        Ok(plan) => steps(plan, host, &first.configuration, &final_phase.configuration),
        Err(reason) => vec![json!({
            "id": "plan-refused", "title": "the build's plan", "kind": "check",
            "commands": [], "condition": reason, "warnings_only": null,
            "checks": [{"command": "false", "exit": "zero", "stdout_has": [], "stdout_lacks": []}],
        })],
    };
    let script = json!({
        "kind": if mode == Mode::Migrate { "migration" } else { "fresh" },
        "host": host,
        "public_base": public_base(final_phase),
        "synapse_url": synapse_url(first),
        "synapse_password_login": synapse_password_login(first),
        "mas_password_login": final_phase.mas.settings.pointer("/passwords/enabled") != Some(&json!(false)),
        "password": TEST_PASSWORD,
        "users": users,
        "check_users": check_users,
        "steps": steps,
    });
    Some(json!({
        "name": check_name(mode, host),
        "boot": first.phase.name(),
        "configurations": configurations,
        "hostNames": host_names,
        "tlsHosts": tls_hosts,
        "secrets": secret_files(hs),
        "secretUsers": SECRET_USERS,
        "script": script,
    }))
}

/// The spec's secret files, and how the VM makes each (masgen/modules/rehearsal).
fn secret_files(hs: &Homeserver) -> Vec<Value> {
    let files = secrets::secret_files(hs);
    let password_of = |key: &str| {
        let pkey = key.replace(".key_file", ".password_file");
        files.iter().find(|f| f.key == pkey).map(|f| f.path.clone())
    };
    let mut out: Vec<Value> = Vec::new();
    // A key's password first: the key is encrypted with it.
    let mut ordered: Vec<&secrets::SecretFile> = files
        .iter()
        .filter(|f| f.key.ends_with(".password_file"))
        .collect();
    ordered.extend(files.iter().filter(|f| !f.key.ends_with(".password_file")));
    for f in ordered {
        let mut entry = json!({"path": f.path, "owner": f.owner});
        let kind = match &f.kind {
            // The VM's own masgen-mas-keys.service makes it, as the host would.
            Kind::OnHost(_) => continue,
            Kind::Rsa => "rsa",
            Kind::EcP256 => "ec",
            Kind::External(_) if f.key == "mas.keys_dir" => "rsa-dir",
            Kind::External(_) if f.key.ends_with(".key_file") => {
                entry["password"] = json!(password_of(&f.key));
                "rsa-encrypted"
            }
            // Tokens, the pepper, client and SMTP passwords, initial user
            // passwords: random text is all the VM needs.
            Kind::MasEncryption | Kind::Token | Kind::External(_) => "hex",
        };
        entry["kind"] = json!(kind);
        out.push(entry);
    }
    out
}

/// The plan's steps for `host` as the VM runs them: a switch to the
/// configuration it booted is done; the switch to the final configuration
/// is its specialisation's `switch-to-configuration test`; the build of the
/// final configuration is there already (its gate checks the specialisation).
fn steps(plan: &Value, host: &str, boot: &str, final_configuration: &str) -> Vec<Value> {
    let empty = Vec::new();
    let mut out = Vec::new();
    for step in plan["steps"].as_array().unwrap_or(&empty) {
        if step["host"] != host {
            continue;
        }
        let commands: Vec<&str> = step["commands"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut checks = step["gate"]["check"].clone();
        if commands.is_empty() && checks.as_array().map_or(true, |c| c.is_empty()) {
            continue;
        }
        let mut run = Vec::new();
        for command in commands {
            let target = command.rsplit_once('#').map(|(_, c)| c);
            if command.starts_with("nixos-rebuild switch ") && target == Some(boot) {
                continue;
            } else if command.starts_with("nixos-rebuild switch ")
                && target == Some(final_configuration)
            {
                run.push("@FINAL@/bin/switch-to-configuration test".to_string());
            } else if command.starts_with("nixos-rebuild build ") {
                checks = json!([{"command": "test -e @FINAL@", "exit": "zero", "stdout_has": [], "stdout_lacks": []}]);
            } else {
                run.push(command.to_string());
            }
        }
        out.push(json!({
            "id": step["id"],
            "title": step["title"],
            "kind": step["kind"],
            "commands": run,
            "condition": step["gate"]["condition"],
            "checks": checks,
            "warnings_only": step["gate"]["warnings_only"],
        }));
    }
    out
}

/// Synapse's `public_baseurl` without its trailing slash.
fn public_base(phase: &HostPhase) -> String {
    let url = phase.synapse.settings["public_baseurl"]
        .as_str()
        .unwrap_or_default();
    url.trim_end_matches('/').to_string()
}

/// Synapse's own listener, for its admin API (nginx does not proxy it).
fn synapse_url(phase: &HostPhase) -> String {
    let listener = &phase.synapse.settings["listeners"][0];
    let port = listener["port"].as_u64().unwrap_or(8008);
    let addresses: Vec<&str> = listener["bind_addresses"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let address = match addresses.as_slice() {
        [] => "127.0.0.1".to_string(),
        a if a.contains(&"127.0.0.1") || a.contains(&"0.0.0.0") => "127.0.0.1".to_string(),
        [first, ..] if first.contains(':') => format!("[{first}]"),
        [first, ..] => first.to_string(),
    };
    format!("http://{address}:{port}")
}

/// Whether Synapse offers password logins in `phase` (its own logins):
/// `password_config.enabled` in its settings or in masgen's runtime
/// password config, true when absent; `only_for_reauth` offers none.
fn synapse_password_login(phase: &HostPhase) -> bool {
    let from_runtime = phase
        .synapse
        .password_config
        .as_ref()
        .and_then(|p| p.settings.get("enabled").cloned());
    let enabled = from_runtime.or_else(|| {
        phase
            .synapse
            .settings
            .pointer("/password_config/enabled")
            .cloned()
    });
    matches!(enabled, None | Some(Value::Bool(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str, kind: &str, commands: &[&str]) -> Value {
        json!({"id": id, "host": "matrix", "title": id, "kind": kind, "commands": commands,
            "gate": {"condition": "c", "check": [{"command": "true", "exit": "zero",
                "stdout_has": [], "stdout_lacks": []}], "warnings_only": null}})
    }

    #[test]
    fn the_plans_switches_become_the_vms() {
        let plan = json!({"steps": [
            step("switch-prepare", "rebuild", &["nixos-rebuild switch --flake ./out#matrix-prepare"]),
            step("backup", "run-unit", &["systemctl start masgen-backup.service"]),
            step("build-final", "rebuild", &["nixos-rebuild build --flake ./out#matrix"]),
            step("switch-final", "rebuild", &["nixos-rebuild switch --flake ./out#matrix"]),
            {"id": "other-host", "host": "other", "commands": ["x"], "gate": {"check": []}},
            {"id": "follow-ups", "host": "matrix", "commands": [], "gate": {"check": []}},
        ]});
        let steps = steps(&plan, "matrix", "matrix-prepare", "matrix");
        let ids: Vec<&str> = steps.iter().map(|s| s["id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            ["switch-prepare", "backup", "build-final", "switch-final"]
        );
        // Booted in it: only the gate.
        assert_eq!(steps[0]["commands"], json!([]));
        assert_eq!(steps[0]["checks"][0]["command"], "true");
        assert_eq!(
            steps[1]["commands"],
            json!(["systemctl start masgen-backup.service"])
        );
        // The final configuration is built already: its gate checks it.
        assert_eq!(steps[2]["commands"], json!([]));
        assert_eq!(steps[2]["checks"][0]["command"], "test -e @FINAL@");
        assert_eq!(
            steps[3]["commands"],
            json!(["@FINAL@/bin/switch-to-configuration test"])
        );
    }

    #[test]
    fn a_fresh_install_boots_its_final_configuration() {
        let plan = json!({"steps": [
            step("switch-final", "rebuild", &["nixos-rebuild switch --flake ./out#matrix"]),
        ]});
        let steps = steps(&plan, "matrix", "matrix", "matrix");
        assert_eq!(steps[0]["commands"], json!([]));
        assert_eq!(check_name(Mode::Fresh, "matrix"), "matrix-fresh");
        assert_eq!(check_name(Mode::Migrate, "matrix"), "matrix-migration");
    }
}
