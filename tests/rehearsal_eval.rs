//! The rehearsal check of every example's flake (`checks.<system>.<host>-
//! migration` / `-fresh`, masgen/modules/rehearsal), evaluated with the
//! 2026 nixpkgs tree's own NixOS test framework (nixos/lib/testing) and the
//! STAND-IN packages of tests/nixos/pkgs.nix, through tests/nixos/rehearsal.nix.
//! No VM runs and nothing is built (no KVM, no binary cache): what is
//! checked is that the machine and its `final` specialisation evaluate
//! without failed assertions, that the system, VM, driver and test
//! derivations instantiate with stand-in packages, and that the test script
//! the driver would run passes Python's parser, pyflakes (with the driver's
//! globals) and mypy (with the driver's types, as the driver derivation
//! runs it). docs/testing.md, "The rehearsal check".
//!
//! The tree is fetched, not installed: a missing tree is a loud SKIP.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::nixos::{self, Tree};

/// Names the NixOS test driver defines for a test script with one machine
/// (nixos/lib/test-driver/test_driver/driver.py, `test_symbols`).
const DRIVER_GLOBALS: &[&str] = &[
    "machine",
    "start_all",
    "test_script",
    "machines",
    "vlans",
    "driver",
    "log",
    "os",
    "create_machine",
    "subtest",
    "run_tests",
    "join_all",
    "retry",
    "serial_stdout_off",
    "serial_stdout_on",
    "polling_condition",
    "Machine",
];

fn tree(what: &str) -> Option<Tree> {
    support::nix_instantiate()?;
    nixos::trees(what).into_iter().find(|t| t.label == "2026")
}

/// One stage of tests/nixos/rehearsal.nix (`-A attr`): its JSON, or Nix's error.
fn stage(out: &Path, check: &str, tree: &Tree, attr: &str) -> Result<Value, String> {
    let nix = support::nix_instantiate().ok_or("no nix-instantiate")?;
    let output = nix
        .command()
        .args(["--eval", "--strict", "--json"])
        .arg(support::repo_root().join("tests/nixos/rehearsal.nix"))
        .arg("--argstr")
        .arg("tree")
        .arg(&tree.path)
        .arg("--argstr")
        .arg("out")
        .arg(out)
        .args(["--argstr", "check", check, "-A", attr])
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let error = stderr.find("error:").map_or(&stderr[..], |i| &stderr[i..]);
        return Err(error.lines().take(12).collect::<Vec<_>>().join("\n"));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())
}

/// The checks the generated flake defines (`checks.<system>` names).
fn checks(out: &Path) -> Vec<(String, String)> {
    let nix = support::nix_instantiate().unwrap();
    // Only the names are forced, so the inputs can be empty.
    let flake = serde_json::to_string(out.join("flake.nix").to_str().unwrap()).unwrap();
    let expr = format!(
        "builtins.mapAttrs (_: builtins.attrNames) ((import (/. + {flake})).outputs {{ self = {{ }}; nixpkgs = {{ }}; }}).checks"
    );
    let value = nix.eval_json_expr(&expr).unwrap();
    let mut found = Vec::new();
    for (system, names) in value.as_object().unwrap() {
        for name in names.as_array().unwrap() {
            found.push((system.clone(), name.as_str().unwrap().to_string()));
        }
    }
    found
}

/// Python's parser and pyflakes on `script`, the driver's globals defined.
/// `Ok(false)`: pyflakes is missing (a SKIP; in CI the setup script installs
/// it, so there it is a failure).
fn python_check(script: &str) -> Result<bool, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("test-script.py");
    std::fs::write(&file, script).unwrap();
    let parse = Command::new("python3")
        .args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())"])
        .arg(&file)
        .output()
        .map_err(|e| e.to_string())?;
    if !parse.status.success() {
        return Err(String::from_utf8_lossy(&parse.stderr).into_owned());
    }
    let python = "/usr/bin/python3";
    let has_pyflakes = Command::new(python)
        .args(["-c", "import pyflakes"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_pyflakes {
        assert!(
            !support::in_ci(),
            "pyflakes (python3-pyflakes) is required; run scripts/setup-test-deps.sh"
        );
        eprintln!("SKIP: pyflakes is not installed (python3-pyflakes); only Python's parser ran. Run scripts/setup-test-deps.sh");
        return Ok(false);
    }
    let flakes = Command::new(python)
        .args(["-m", "pyflakes"])
        .arg(&file)
        .env("PYFLAKES_BUILTINS", DRIVER_GLOBALS.join(","))
        .output()
        .map_err(|e| e.to_string())?;
    if flakes.status.success() {
        Ok(true)
    } else {
        Err(String::from_utf8_lossy(&flakes.stdout).into_owned())
    }
}

/// mypy on `script` as nixpkgs' driver derivation runs it
/// (nixos/lib/testing/driver.nix): the tree's `test-script-prepend.py`, the
/// machine's type line, then the script, with the tree's `test_driver`
/// package on MYPYPATH (its own third-party imports are not followed: they
/// are not installed here). `Ok(false)`: mypy is missing (SKIP; a failure
/// in CI, where the setup script installs Debian's `mypy`).
fn mypy_check(script: &str, tree: &Tree) -> Result<bool, String> {
    let Some(mypy) = support::find_tool("mypy") else {
        assert!(
            !support::in_ci(),
            "mypy is required; run scripts/setup-test-deps.sh"
        );
        eprintln!("SKIP: mypy is not installed; the test script was not type-checked. Run scripts/setup-test-deps.sh");
        return Ok(false);
    };
    let lib = tree.path.join("nixos/lib");
    let prepend = std::fs::read_to_string(lib.join("test-script-prepend.py"))
        .map_err(|e| format!("the tree has no test-script-prepend.py: {e}"))?;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("testScriptWithTypes");
    std::fs::write(&file, format!("{prepend}machine: Machine;\n\n{script}")).unwrap();
    let out = Command::new(mypy)
        .args([
            "--no-implicit-optional",
            "--pretty",
            "--no-color-output",
            "--follow-imports=silent",
            "--ignore-missing-imports",
            "--cache-dir",
        ])
        .arg(dir.path().join(".mypy_cache"))
        .arg(&file)
        .env("MYPYPATH", lib.join("test-driver"))
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(true)
    } else {
        Err(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The machine and its specialisation as the rehearsal needs them.
fn check_nodes(nodes: &Value, migration: bool) -> Result<(), String> {
    let machine = &nodes["machine"];
    for (what, node) in [("machine", machine), ("final", &nodes["final"])] {
        if node.is_null() {
            continue;
        }
        if node["failedAssertions"] != Value::Array(vec![]) {
            return Err(format!(
                "{what}: failed assertions {}",
                node["failedAssertions"]
            ));
        }
        if node["warnings"] != Value::Array(vec![]) {
            return Err(format!("{what}: warnings {}", node["warnings"]));
        }
        for (name, vhost) in node["nginx"].as_object().ok_or("no nginx")? {
            if vhost["enableACME"] == true {
                return Err(format!(
                    "{what}: {name} still asks ACME (no network in a VM)"
                ));
            }
            if vhost["forceSSL"] != true && vhost["addSSL"] != true {
                return Err(format!(
                    "{what}: {name} serves no TLS (the plan's gates use https)"
                ));
            }
            if !node["hosts"]
                .as_array()
                .is_some_and(|h| h.contains(&Value::from(name.as_str())))
            {
                return Err(format!("{what}: {name} does not resolve to the VM"));
            }
        }
        if !node["units"]
            .as_array()
            .is_some_and(|u| u.contains(&"masgen-rehearsal-secrets".into()))
        {
            return Err(format!("{what}: no unit makes the secret files"));
        }
    }
    let (boot, last) = if migration {
        (machine, &nodes["final"])
    } else {
        (machine, machine)
    };
    if migration {
        if boot["phase"] != "prepare" || boot["delegates"] != false {
            return Err(format!(
                "the machine boots {} (delegates: {})",
                boot["phase"], boot["delegates"]
            ));
        }
        if !boot["synapseExtraConfigFiles"]
            .to_string()
            .contains("masgen-rehearsal-registration")
        {
            return Err("phase 1 has no shared-secret registration for seeding".into());
        }
    }
    if last["phase"] != "final" || last["delegates"] != true {
        return Err(format!(
            "the final configuration is {} (delegates: {})",
            last["phase"], last["delegates"]
        ));
    }
    if last["synapseExtraConfigFiles"]
        .to_string()
        .contains("masgen-rehearsal-registration")
    {
        return Err("the final configuration keeps the seeding registration".into());
    }
    Ok(())
}

/// Evaluates every stage of every check `checked` builds; failures as lines.
fn evaluate_checks(name: &str, checked: &masgen::Checked, tree: &Tree) -> Vec<String> {
    let out = nixos::build_output(checked).unwrap();
    let migration = checked.homeserver.mode == masgen::model::Mode::Migrate;
    let found = checks(out.path());
    let hosts = checked.homeserver.hosts.len();
    assert_eq!(found.len(), hosts, "{name}: one check per host: {found:?}");
    for (_, check) in &found {
        let suffix = if migration { "-migration" } else { "-fresh" };
        assert!(check.ends_with(suffix), "{name}: {check}");
    }
    evaluate_found(name, out.path(), found, tree)
}

/// Evaluates each of `found` (system, check) of the flake in `out`.
fn evaluate_found(
    name: &str,
    out: &Path,
    found: Vec<(String, String)>,
    tree: &Tree,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (system, check) in found {
        let migration = check.ends_with("-migration");
        let what = format!("{name} × checks.{system}.{check}");
        let nodes =
            stage(out, &check, tree, "nodes").and_then(|n| check_nodes(&n, migration).map(|()| n));
        if let Err(e) = nodes {
            failures.push(format!("{what}: nodes: {e}"));
            continue;
        }
        let script = stage(out, &check, tree, "testScript").unwrap();
        match python_check(script.as_str().unwrap()) {
            Ok(linted) => eprintln!("{what}: test script parses (pyflakes ran: {linted})"),
            Err(e) => failures.push(format!("{what}: test script: {e}")),
        }
        match mypy_check(script.as_str().unwrap(), tree) {
            Ok(checked) => eprintln!("{what}: test script type-checks (mypy ran: {checked})"),
            Err(e) => failures.push(format!("{what}: mypy: {e}")),
        }
        // How far the derivations instantiate with stand-in packages.
        for attr in ["toplevel", "vm", "driver", "test"] {
            match stage(out, &check, tree, attr) {
                Ok(Value::String(drv)) if drv.ends_with(".drv") => {
                    eprintln!("{what}: {attr} instantiates: {drv}")
                }
                Ok(other) => failures.push(format!("{what}: {attr}: {other}")),
                Err(e) => failures.push(format!("{what}: {attr}: {e}")),
            }
        }
    }
    failures
}

#[test]
fn every_example_carries_a_rehearsal_that_evaluates() {
    let what = "every_example_carries_a_rehearsal_that_evaluates";
    let Some(tree) = tree(what) else { return };
    let mut failures = Vec::new();
    for (name, checked) in support::checked_examples() {
        failures.extend(evaluate_checks(&name, &checked, &tree));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A fleet's one flake carries a rehearsal per host of every homeserver of
/// one host, each with its homeserver's nixpkgs pin (the example fleet has
/// two); the homeserver split across three hosts has none (one VM cannot
/// stand for three hosts).
#[test]
fn every_host_of_the_example_fleet_has_a_rehearsal_that_evaluates() {
    let what = "every_host_of_the_example_fleet_has_a_rehearsal_that_evaluates";
    let Some(tree) = tree(what) else { return };
    let fleet = support::repo_root().join("examples/fleet/fleet.toml");
    let (out, _) = nixos::build_fleet_output(&[fleet]).unwrap();
    let found = checks(out.path());
    let names: Vec<&str> = found.iter().map(|(_, c)| c.as_str()).collect();
    assert!(names.iter().any(|c| c.ends_with("-fresh")), "{names:?}");
    assert!(names.iter().any(|c| c.ends_with("-migration")), "{names:?}");
    assert_eq!(names, ["matrix-com-migration", "matrix-org-fresh"]);
    let flake = std::fs::read_to_string(out.path().join("flake.nix")).unwrap();
    assert!(
        flake.contains("pkgs = inputs.nixpkgs-2.legacyPackages"),
        "{flake}"
    );
    let failures = evaluate_found("the example fleet", out.path(), found, &tree);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// TLS that ends in front of nginx (`proxy.tls = "external"`): in the VM,
/// nginx serves the test certificate itself, so the plan's https gates work.
#[test]
fn external_tls_is_served_in_the_vm() {
    let what = "external_tls_is_served_in_the_vm";
    let Some(tree) = tree(what) else { return };
    let text = support::example_text("migrate-local.toml") + "\n[proxy]\ntls = \"external\"\n";
    let checked = support::checked("migrate-local-external.toml", &text);
    let failures = evaluate_checks("migrate-local, tls external", &checked, &tree);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The checks above can fail: a test script with a name the driver does
/// not define, or a syntax error, is refused; a machine that still asks
/// ACME is refused.
#[test]
fn the_rehearsal_checks_can_fail() {
    assert!(python_check("def f(:\n  pass\n").is_err());
    match python_check("machine.succeed('true')\nundefined_name.run()\n") {
        Ok(false) => {} // pyflakes missing: reported as SKIP above
        Ok(true) => panic!("pyflakes accepted an undefined name"),
        Err(e) => assert!(e.contains("undefined_name"), "{e}"),
    }
    assert!(python_check("machine.succeed('true')\nstart_all()\n").is_ok());
    let acme = serde_json::json!({
        "machine": {"failedAssertions": [], "warnings": [], "hosts": ["m.example"],
            "nginx": {"m.example": {"enableACME": true, "forceSSL": true}}, "units": ["masgen-rehearsal-secrets"],
            "phase": "final", "delegates": true, "synapseExtraConfigFiles": []},
        "final": null,
    });
    let err = check_nodes(&acme, false).unwrap_err();
    assert!(err.contains("ACME"), "{err}");
    let mut plain = acme.clone();
    plain["machine"]["nginx"]["m.example"] =
        serde_json::json!({"enableACME": false, "forceSSL": false, "addSSL": false});
    let err = check_nodes(&plain, false).unwrap_err();
    assert!(err.contains("serves no TLS"), "{err}");
    // mypy with the driver's types: a str is not an int.
    if let Some(tree) = tree("the_rehearsal_checks_can_fail") {
        match mypy_check("x: int = machine.succeed('true')\n", &tree) {
            Ok(false) => {}
            Ok(true) => panic!("mypy accepted a str as an int"),
            Err(e) => assert!(e.contains("Incompatible types"), "{e}"),
        }
        assert!(mypy_check("print(machine.succeed('true'))\n", &tree).is_ok());
    }
}
