//! Every example × every configuration its flake defines × every nixpkgs
//! tree present, evaluated with nixpkgs' own NixOS modules through the
//! generated flake's own `outputs` function (tests/support/nixos.rs,
//! tests/nixos/eval.nix). Packages are stand-ins (tests/nixos/pkgs.nix):
//! nothing is built, but every option value `system.build.toplevel` is made
//! of is evaluated and type-checked against nixpkgs' real option set.
//!
//! The trees are fetched, not installed (docs/testing.md, "NixOS evaluation
//! with nixpkgs' own modules"): a missing tree is a loud SKIP, even in CI.

mod support;

use std::fs;
use std::path::Path;

use masgen::model::nixpkgs::{MasModule, BRANCHES};
use support::nixos::{self, NixosEval, Tree};

/// nixpkgs warnings a configuration is expected to produce (none today).
const EXPECTED_WARNINGS: &[&str] = &[];

/// Units every configuration must install.
const SERVICE_UNITS: &[&str] = &[
    "matrix-synapse.service",
    "matrix-authentication-service.service",
    "nginx.service",
    "postgresql.service",
];

/// Builds every example and evaluates each configuration on `tree`;
/// returns one line per failing combination among the examples `asserted`
/// takes (by their nixpkgs URL). The others are evaluated and reported only.
fn evaluate_all(tree: &Tree, asserted: fn(&str) -> bool) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, checked) in support::checked_examples() {
        let out = nixos::build_output(&checked).unwrap();
        let url = nixos::nixpkgs_url(out.path()).unwrap();
        let asserted = asserted(&url);
        if !asserted {
            eprintln!(
                "{name}: pinned to {url}; on the {} tree, reported only",
                tree.label
            );
        }
        let configurations = nixos::configurations(out.path()).unwrap();
        assert!(
            !configurations.is_empty(),
            "{name}: the flake defines no configuration"
        );
        for configuration in &configurations {
            let what = format!("{name} × {configuration} × {} tree", tree.label);
            let started = std::time::Instant::now();
            let result = nixos::evaluate(out.path(), configuration, &tree.path);
            let secs = started.elapsed().as_secs_f32();
            match result.map_err(|e| first_lines(&e, 8)).and_then(|e| {
                check_deployment(&e, &checked.homeserver.server_name)?;
                Ok(e)
            }) {
                Ok(eval) => eprintln!(
                    "{what}: evaluates ({secs:.1} s, {} units, warnings: {:?})",
                    eval.units.len(),
                    eval.warnings
                ),
                Err(e) if !asserted => {
                    eprintln!("{what}: fails, not asserted ({secs:.1} s)\n{e}\n")
                }
                Err(e) => {
                    eprintln!("{what}: FAILS ({secs:.1} s)\n{e}\n");
                    failures.push(format!("{what}: {e}"));
                }
            }
        }
    }
    failures
}

fn first_lines(text: &str, n: usize) -> String {
    text.lines().take(n).collect::<Vec<_>>().join("\n")
}

/// What nixpkgs would deploy: no failed assertion, only expected warnings,
/// the service units, and the files they read.
fn check_deployment(eval: &NixosEval, server_name: &str) -> Result<(), String> {
    let all = masgen::model::Roles {
        synapse: true,
        mas: true,
        proxy: true,
        postgres: true,
    };
    check_host_deployment(eval, server_name, all)
}

/// `check_deployment` for a host that runs `roles` of its homeserver: its
/// services and no others.
fn check_host_deployment(
    eval: &NixosEval,
    server_name: &str,
    roles: masgen::model::Roles,
) -> Result<(), String> {
    if !eval.failed_assertions.is_empty() {
        return Err(format!("failed assertions: {:#?}", eval.failed_assertions));
    }
    if eval.warnings != EXPECTED_WARNINGS {
        return Err(format!("unexpected warnings: {:#?}", eval.warnings));
    }
    let runs = [roles.synapse, roles.mas, roles.proxy, roles.postgres];
    for (unit, runs) in SERVICE_UNITS.iter().zip(runs) {
        if eval.units.contains_key(*unit) != runs {
            return Err(format!(
                "{unit}: expected {} (units: {:?})",
                if runs { "present" } else { "absent" },
                eval.units.keys()
            ));
        }
    }
    if !eval.units.keys().any(|u| u.starts_with("masgen-")) {
        return Err("no masgen-* unit".into());
    }
    for (unit, text) in &eval.units {
        repeated_dependency(text).map_err(|e| format!("{unit}: {e}"))?;
    }
    if roles.synapse {
        synapse_deployment(eval, server_name)?;
    }
    if roles.mas {
        mas_deployment(eval, server_name)?;
    }
    if roles.proxy {
        let nginx = eval.nginx_conf.as_deref().ok_or("no nginx.conf")?;
        if !nginx.contains("server_name") {
            return Err("nginx.conf has no server block".into());
        }
    }
    Ok(())
}

fn synapse_deployment(eval: &NixosEval, server_name: &str) -> Result<(), String> {
    let synapse = eval.synapse_settings.as_ref().ok_or("no homeserver.yaml")?;
    if synapse["server_name"] != server_name {
        return Err(format!(
            "homeserver.yaml server_name is {}",
            synapse["server_name"]
        ));
    }
    Ok(())
}

fn mas_deployment(eval: &NixosEval, server_name: &str) -> Result<(), String> {
    let mas = eval.mas_settings.as_ref().ok_or("no MAS config.yaml")?;
    if mas["matrix"]["homeserver"] != server_name {
        return Err(format!(
            "MAS matrix.homeserver is {}",
            mas["matrix"]["homeserver"]
        ));
    }
    // masgen's tasks run mas-cli against the config the MAS server reads.
    for file in eval.files.values() {
        if file.name == "masgen-mas-config.yaml" && file.value.as_ref() != Some(mas) {
            return Err(format!(
                "{} differs from the MAS module's config ({:?})",
                file.path, eval.mas_config_path
            ));
        }
    }
    Ok(())
}

/// A dependency line (After=, Requires=, ...) naming a unit twice means two
/// modules add the same dependency, and the reference render (which names
/// it once) is not what the host runs.
fn repeated_dependency(unit_text: &str) -> Result<(), String> {
    const KEYS: &[&str] = &[
        "After=",
        "Before=",
        "Requires=",
        "Wants=",
        "Conflicts=",
        "BindsTo=",
    ];
    for line in unit_text.lines() {
        let Some(key) = KEYS.iter().find(|k| line.starts_with(**k)) else {
            continue;
        };
        let mut seen = std::collections::BTreeSet::new();
        for name in line[key.len()..].split_whitespace() {
            if !seen.insert(name) {
                return Err(format!("{name} is named twice in `{line}`"));
            }
        }
    }
    Ok(())
}

#[test]
fn every_example_configuration_evaluates_on_the_2026_tree() {
    let trees = nixos::trees("every_example_configuration_evaluates_on_the_2026_tree");
    let Some(tree) = trees.iter().find(|t| t.label == "2026") else {
        return;
    };
    if support::nix_instantiate().is_none() {
        return;
    }
    // Whatever the pin, the generated flake must work on current nixpkgs.
    let failures = evaluate_all(tree, |_| true);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// Examples pinned to a release branch must evaluate on the old tree (a
// release without nixpkgs' MAS module, pre-2026 ACME); the others are
// reported. What makes them evaluate: the compat MAS module the generated
// flake imports where nixpkgs has none, and `masgen check` requiring
// `acme_email` for such pins.
#[test]
fn every_example_configuration_evaluates_on_the_old_tree() {
    let trees = nixos::trees("every_example_configuration_evaluates_on_the_old_tree");
    let Some(tree) = trees.iter().find(|t| t.label == "old") else {
        return;
    };
    if support::nix_instantiate().is_none() {
        return;
    }
    let failures = evaluate_all(tree, nixos::pins_release);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every example re-pinned to every branch of masgen's pin table, evaluated
/// on the tree that stands for that branch: the 2026 tree for a branch with
/// nixpkgs' MAS module, the old tree for one without. The spec is re-pinned
/// the way an operator would: `flake.nixpkgs` set, `synapse.version` left to
/// the pin, and an ACME address added where the pin's ACME module needs one.
#[test]
fn every_example_evaluates_on_every_supported_pin() {
    let trees = nixos::trees("every_example_evaluates_on_every_supported_pin");
    if support::nix_instantiate().is_none() {
        return;
    }
    let mut failures = Vec::new();
    for branch in BRANCHES {
        let label = match branch.mas_module {
            MasModule::WithCredentials => "2026",
            MasModule::Missing => "old",
        };
        let Some(tree) = trees.iter().find(|t| t.label == label) else {
            continue;
        };
        for (name, text) in support::example_specs() {
            let text = repinned(&text, branch.name, branch.acme_email_required);
            let checked = support::checked(&name, &text);
            let out = nixos::build_output(&checked).unwrap();
            for configuration in nixos::configurations(out.path()).unwrap() {
                let what = format!("{name} pinned to {} × {configuration}", branch.name);
                match nixos::evaluate(out.path(), &configuration, &tree.path)
                    .map_err(|e| first_lines(&e, 8))
                    .and_then(|e| check_deployment(&e, &checked.homeserver.server_name))
                {
                    Ok(()) => eprintln!("{what}: evaluates on the {label} tree"),
                    Err(e) => failures.push(format!("{what} ({label} tree): {e}")),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `text` pinned to `branch`, as an operator would write it.
fn repinned(text: &str, branch: &str, acme_email_required: bool) -> String {
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    doc["flake"]["nixpkgs"] = toml_edit::value(format!("github:NixOS/nixpkgs/{branch}"));
    if let Some(synapse) = doc["synapse"].as_table_mut() {
        synapse.remove("version");
    }
    let server_name = doc["homeserver"]["server_name"]
        .as_str()
        .unwrap()
        .to_string();
    let proxy = doc.get("proxy");
    let key = |k: &str| proxy.and_then(|p| p.get(k));
    let acme = key("tls").and_then(|t| t.as_str()).unwrap_or("acme") == "acme";
    let has_address = key("acme_email").is_some() || key("acme_email_from_host").is_some();
    if acme_email_required && acme && !has_address {
        doc["proxy"]["acme_email"] = toml_edit::value(format!("admin@{server_name}"));
    }
    doc.to_string()
}

// ------------------------------------------------ the check can fail

/// The fresh example written out, with `extra` (a NixOS module) added to
/// every configuration through flake.nix.
fn fresh_with_module(extra: &str) -> tempfile::TempDir {
    let checked = support::checked("fresh.toml", &support::example_text("fresh.toml"));
    let out = nixos::build_output(&checked).unwrap();
    add_module(out.path(), extra);
    out
}

fn add_module(out: &Path, module: &str) {
    fs::write(out.join("sabotage.nix"), module).unwrap();
    let flake = out.join("flake.nix");
    let text = fs::read_to_string(&flake).unwrap();
    let patched = text.replace(
        "self.nixosModules.masgen\n",
        "self.nixosModules.masgen\n          ./sabotage.nix\n",
    );
    assert_ne!(
        patched, text,
        "flake.nix has no `self.nixosModules.masgen` line"
    );
    fs::write(&flake, patched).unwrap();
}

fn tree_2026(what: &str) -> Option<Tree> {
    support::nix_instantiate()?;
    nixos::trees(what).into_iter().find(|t| t.label == "2026")
}

#[test]
fn release_pins_are_told_from_other_urls() {
    assert!(nixos::pins_release("github:NixOS/nixpkgs/nixos-25.11"));
    assert!(nixos::pins_release("github:NixOS/nixpkgs/nixos-26.05"));
    assert!(!nixos::pins_release("github:NixOS/nixpkgs/nixos-unstable"));
    assert!(!nixos::pins_release(
        "github:NixOS/nixpkgs/nixpkgs-unstable"
    ));
    assert!(nixos::pins_release(
        "github:NixOS/nixpkgs/nixos-26.05-small"
    ));
    assert!(!nixos::pins_release("github:me/nixpkgs/nixos-26.05-mine"));
}

#[test]
fn an_unknown_option_fails_the_evaluation() {
    let Some(tree) = tree_2026("an_unknown_option_fails_the_evaluation") else {
        return;
    };
    let out = fresh_with_module("{ services.matrix-synapse.noSuchOption = true; }");
    let err = nixos::evaluate(out.path(), "matrix", &tree.path).unwrap_err();
    assert!(
        err.contains("services.matrix-synapse.noSuchOption' does not exist"),
        "{err}"
    );
}

#[test]
fn a_type_error_fails_the_evaluation() {
    let Some(tree) = tree_2026("a_type_error_fails_the_evaluation") else {
        return;
    };
    let out = fresh_with_module("{ services.nginx.clientMaxBodySize = 5; }");
    let err = nixos::evaluate(out.path(), "matrix", &tree.path).unwrap_err();
    assert!(err.contains("is not of type"), "{err}");
}

#[test]
fn a_value_only_the_system_derivation_reads_is_evaluated() {
    let Some(tree) = tree_2026("a_value_only_the_system_derivation_reads_is_evaluated") else {
        return;
    };
    let out = fresh_with_module(
        r#"{ environment.etc."masgen-probe".text = throw "probe file was evaluated"; }"#,
    );
    let err = nixos::evaluate(out.path(), "matrix", &tree.path).unwrap_err();
    assert!(err.contains("probe file was evaluated"), "{err}");
}

#[test]
fn a_failed_assertion_is_reported() {
    let Some(tree) = tree_2026("a_failed_assertion_is_reported") else {
        return;
    };
    let out = fresh_with_module(
        r#"{ assertions = [ { assertion = false; message = "masgen probe assertion"; } ]; }"#,
    );
    let eval = nixos::evaluate(out.path(), "matrix", &tree.path).unwrap();
    assert_eq!(
        eval.failed_assertions,
        vec!["masgen probe assertion".to_string()]
    );
}

#[test]
fn a_mistake_in_flake_nix_fails_the_evaluation() {
    let Some(tree) = tree_2026("a_mistake_in_flake_nix_fails_the_evaluation") else {
        return;
    };
    let checked = support::checked("fresh.toml", &support::example_text("fresh.toml"));
    let out = nixos::build_output(&checked).unwrap();
    let flake = out.path().join("flake.nix");
    let text = fs::read_to_string(&flake).unwrap();
    fs::write(
        &flake,
        text.replace(
            "self.nixosModules.masgen\n",
            "self.nixosModules.masgenTypo\n",
        ),
    )
    .unwrap();
    let err = nixos::evaluate(out.path(), "matrix", &tree.path).unwrap_err();
    assert!(err.contains("masgenTypo"), "{err}");
}

#[test]
fn nixpkgs_files_are_recovered_for_the_consumers() {
    let Some(tree) = tree_2026("nixpkgs_files_are_recovered_for_the_consumers") else {
        return;
    };
    let checked = support::checked("fresh.toml", &support::example_text("fresh.toml"));
    let out = nixos::build_output(&checked).unwrap();
    let eval = nixos::evaluate(out.path(), "matrix", &tree.path).unwrap();
    // The MAS unit renders its config from the file nixpkgs generated.
    let mas_path = eval.mas_config_path.clone().unwrap();
    let pre = eval.exec_texts("matrix-authentication-service").join("\n");
    assert!(pre.contains(&format!("< {mas_path}")), "{pre}");
    // Synapse reads homeserver.yaml by the path the unit names.
    let synapse_path = eval.synapse_config_path.clone().unwrap();
    let unit = &eval.units["matrix-synapse.service"];
    assert!(
        eval.exec_texts("matrix-synapse")
            .iter()
            .any(|t| t.contains(&synapse_path)),
        "{unit}"
    );
    // nixpkgs' nginx.conf: the 2026 module writes `http2 on;` for nginx >= 1.25.1.
    let nginx = eval.nginx_conf.as_deref().unwrap();
    assert!(nginx.contains("http2 on;"), "{nginx}");
    assert!(nginx.contains("server_name matrix.example.org"), "{nginx}");
    // Written out, the files are what the units read, at local paths.
    let dir = tempfile::tempdir().unwrap();
    let written = eval.write_files(dir.path()).unwrap();
    let local_mas = nixos::localize(&mas_path, &written);
    let yaml: serde_json::Value =
        serde_norway::from_str(&fs::read_to_string(&local_mas).unwrap()).unwrap();
    assert_eq!(Some(&yaml), eval.mas_settings.as_ref());
    let local_pre = nixos::localize(&pre, &written);
    assert!(local_pre.contains(&format!("< {local_mas}")), "{local_pre}");
    // Every path in the unit texts that a module generated is known.
    for path in eval.units.values().flat_map(|t| nixos::store_paths(t)) {
        if path.ends_with(".yaml") || path.ends_with(".conf") {
            assert!(eval.file(&path).is_some(), "unknown generated file {path}");
        }
    }
}

#[test]
fn a_host_input_that_is_not_a_flake_is_imported_from_its_directory() {
    let Some(tree) = tree_2026("a_host_input_that_is_not_a_flake_is_imported_from_its_directory")
    else {
        return;
    };
    // The form a `base_config` host takes in flake.nix: a non-flake input
    // whose `configuration.nix` is imported by path.
    let checked = support::checked("fresh.toml", &support::example_text("fresh.toml"));
    let out = nixos::build_output(&checked).unwrap();
    let flake = out.path().join("flake.nix");
    let text = fs::read_to_string(&flake).unwrap();
    let patched = text.replace(
        "inputs.host-matrix.nixosModules.default",
        "(inputs.host-matrix.outPath + \"/configuration.nix\")",
    );
    assert_ne!(patched, text);
    fs::write(&flake, patched).unwrap();
    let eval = nixos::evaluate(out.path(), "matrix", &tree.path).unwrap();
    assert!(
        eval.failed_assertions.is_empty(),
        "{:?}",
        eval.failed_assertions
    );
    assert!(eval.units.contains_key("nginx.service"));
}

// ------------------------------------------------ fleets and the Colmena hive

fn example_fleet() -> Vec<std::path::PathBuf> {
    vec![support::repo_root().join("examples/fleet/fleet.toml")]
}

/// Every configuration of the example fleet's one flake (two nixpkgs pins,
/// both evaluated on the 2026 tree as eval.nix maps every nixpkgs input to it).
#[test]
fn every_configuration_of_the_example_fleet_evaluates_on_the_2026_tree() {
    let Some(tree) =
        tree_2026("every_configuration_of_the_example_fleet_evaluates_on_the_2026_tree")
    else {
        return;
    };
    let (out, servers) = nixos::build_fleet_output(&example_fleet()).unwrap();
    let roles = nixos::fleet_roles(&example_fleet()).unwrap();
    let configurations = nixos::configurations(out.path()).unwrap();
    assert_eq!(
        configurations,
        servers.keys().cloned().collect::<Vec<_>>(),
        "the flake's configurations are the fleet's hosts and phases"
    );
    // example.org: one; example.com: two; example.net: two on each of its
    // three hosts (Synapse and nginx, MAS, PostgreSQL).
    assert_eq!(configurations.len(), 9);
    let mut failures = Vec::new();
    for configuration in &configurations {
        match nixos::evaluate(out.path(), configuration, &tree.path)
            .map_err(|e| first_lines(&e, 8))
            .and_then(|e| check_host_deployment(&e, &servers[configuration], roles[configuration]))
        {
            Ok(()) => eprintln!("fleet × {configuration}: evaluates"),
            Err(e) => failures.push(format!("fleet × {configuration}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The `colmena` hive: every node evaluates as Colmena evaluates it (with a
/// stand-in for Colmena's `deployment.*` option declarations, see
/// tests/nixos/colmena.nix), deploys to its host, carries its phase tag and
/// gets its homeserver's nixpkgs pin.
#[test]
fn the_colmena_hive_of_the_example_fleet_evaluates() {
    let Some(tree) = tree_2026("the_colmena_hive_of_the_example_fleet_evaluates") else {
        return;
    };
    let (out, servers) = nixos::build_fleet_output(&example_fleet()).unwrap();
    let hive = nixos::evaluate_hive(out.path(), &tree.path).unwrap();
    assert_eq!(hive["meta"]["allowApplyAll"], false);
    assert_eq!(hive["meta"]["defaultPin"], "nixpkgs");
    let nodes = hive["nodes"].as_object().unwrap();
    let names: Vec<&String> = nodes.keys().collect();
    assert_eq!(
        names,
        servers.keys().collect::<Vec<_>>(),
        "a node per configuration"
    );
    for (name, node) in nodes {
        let host = name.trim_end_matches("-prepare");
        let phase = if name.ends_with("-prepare") {
            "prepare"
        } else {
            "final"
        };
        assert_eq!(node["deployment"]["targetHost"], host.to_string(), "{name}");
        assert_eq!(
            node["deployment"]["tags"],
            serde_json::json!([format!("phase-{phase}"), servers[name]]),
            "{name}"
        );
        let pin = if servers[name] == "example.com" {
            "nixpkgs-2"
        } else {
            "nixpkgs"
        };
        assert_eq!(node["pin"], pin, "{name}");
        let server = if host == "db-net" {
            serde_json::Value::Null
        } else {
            servers[name].clone().into()
        };
        assert_eq!(node["serverName"], server, "{name}");
        assert_eq!(node["failedAssertions"], serde_json::json!([]), "{name}");
        assert!(
            node["toplevel"].as_str().unwrap().ends_with(".drv"),
            "{name}"
        );
    }
}

#[test]
fn a_misspelt_deployment_option_fails_the_hive() {
    let Some(tree) = tree_2026("a_misspelt_deployment_option_fails_the_hive") else {
        return;
    };
    let (out, _) = nixos::build_fleet_output(&example_fleet()).unwrap();
    let flake = out.path().join("flake.nix");
    let text = fs::read_to_string(&flake).unwrap();
    fs::write(&flake, text.replacen("targetHost = ", "targetHots = ", 1)).unwrap();
    let err = nixos::evaluate_hive(out.path(), &tree.path).unwrap_err();
    assert!(
        err.contains("deployment.targetHots' does not exist"),
        "{err}"
    );
}
