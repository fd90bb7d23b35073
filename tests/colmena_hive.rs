//! The flake's `colmena` output through Colmena's REAL hive evaluator:
//! `colmena.lib.makeHive` of it, as the user's own flake makes
//! `colmenaHive` for Colmena >= 0.5 (docs/guide.md). Colmena's
//! src/nix/hive/{eval,options,modules}.nix come from a fetched tree,
//! `MASGEN_COLMENA` (else `~/.cache/masgen/colmena`, zhaofengli/colmena @
//! 5bf4ce6; ~/.cache/masgen/README.md); a missing tree is a loud SKIP, never
//! a failure, as for the nixpkgs trees. Packages are the stand-ins of
//! tests/nixos/pkgs.nix (see tests/nixos/colmena-hive.nix).

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::nixos;

/// Colmena's hive evaluator, or a loud SKIP naming `what`.
fn colmena_tree(what: &str) -> Option<PathBuf> {
    let path = match std::env::var_os("MASGEN_COLMENA") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache/masgen/colmena"),
    };
    if path.join("src/nix/hive/eval.nix").is_file() {
        return Some(path);
    }
    eprintln!(
        "SKIP: {what} did not run: no Colmena tree at {} (set MASGEN_COLMENA to a checkout of \
         zhaofengli/colmena; ~/.cache/masgen/README.md says how it was made)",
        path.display()
    );
    None
}

/// A Nix string literal of `s`.
fn nix_str(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace("${", "\\${");
    format!("\"{escaped}\"")
}

/// Evaluates tests/nixos/colmena-hive.nix for the output tree `out`.
fn make_hive(out: &Path, tree: &Path, colmena: &Path) -> Result<Value, String> {
    let nix = support::nix_instantiate().ok_or("no nix-instantiate")?;
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    // Colmena calls `<nixpkgs path>/nixos/lib/eval-config.nix` without
    // `lib`; the test tree's eval-config.nix defaults it to `pkgs.lib`, and
    // Colmena passes no `pkgs`: this shim passes the tree's lib.
    let shim = work.path().join("shim");
    fs::create_dir_all(shim.join("nixos/lib")).map_err(|e| e.to_string())?;
    let tree_s = tree.to_str().ok_or("non-UTF-8 tree")?;
    fs::write(
        shim.join("nixos/lib/eval-config.nix"),
        format!(
            "args: import {} ({{ lib = import {}; }} // args)\n",
            nix_str(&format!("{tree_s}/nixos/lib/eval-config.nix")),
            nix_str(&format!("{tree_s}/lib"))
        ),
    )
    .map_err(|e| e.to_string())?;
    // The hosts' own configuration files (`base_config`): the test host.
    let host = work.path().join("host");
    let flake = fs::read_to_string(out.join("flake.nix")).map_err(|e| e.to_string())?;
    let host_module = support::repo_root().join("tests/nixos/host.nix");
    for part in flake.split(".outPath + \"/").skip(1) {
        let Some(file) = part.split('"').next().filter(|f| !f.contains("..")) else {
            continue;
        };
        let path = host.join(file);
        fs::create_dir_all(path.parent().unwrap()).map_err(|e| e.to_string())?;
        let text = format!("import {}\n", nix_str(host_module.to_str().unwrap()));
        fs::write(path, text).map_err(|e| e.to_string())?;
    }
    fs::create_dir_all(&host).map_err(|e| e.to_string())?;
    let output = nix
        .command()
        .args(["--eval", "--strict", "--json"])
        .arg(support::repo_root().join("tests/nixos/colmena-hive.nix"))
        .args(["--argstr", "tree"])
        .arg(tree)
        .args(["--argstr", "shim"])
        .arg(&shim)
        .args(["--argstr", "colmena"])
        .arg(colmena)
        .args(["--argstr", "out"])
        .arg(out)
        .args(["--argstr", "hostDir"])
        .arg(&host)
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let err = err.find("error:").map_or(&err[..], |i| &err[i..]);
        return Err(err.to_string());
    }
    serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())
}

/// The trees the tests need, or None after the SKIP lines.
fn trees(what: &str) -> Option<(PathBuf, PathBuf)> {
    support::nix_instantiate()?;
    let tree = nixos::trees(what).into_iter().find(|t| t.label == "2026")?;
    Some((tree.path, colmena_tree(what)?))
}

fn example_fleet() -> Vec<PathBuf> {
    vec![support::repo_root().join("examples/fleet/fleet.toml")]
}

#[test]
fn make_hive_of_the_flakes_colmena_output_evaluates() {
    let Some((tree, colmena)) = trees("make_hive_of_the_flakes_colmena_output_evaluates") else {
        return;
    };
    let (out, servers) = nixos::build_fleet_output(&example_fleet()).unwrap();
    let hive = make_hive(out.path(), &tree, &colmena).unwrap();
    // The schema Colmena's main branch asks of `colmenaHive`.
    assert_eq!(hive["schema"], "v0.5");
    assert_eq!(hive["meta"]["allowApplyAll"], false);
    assert_eq!(hive["nodes"], hive["configurations"]);
    let nodes: Vec<&str> = hive["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(
        nodes,
        servers.keys().map(String::as_str).collect::<Vec<_>>()
    );
    for (name, server) in &servers {
        let d = &hive["deployment"][name];
        let phase = if name.ends_with("-prepare") {
            "prepare"
        } else {
            "final"
        };
        assert_eq!(d["targetHost"], name.trim_end_matches("-prepare"), "{name}");
        assert_eq!(d["targetUser"], "root", "{name}");
        assert_eq!(
            d["tags"],
            serde_json::json!([format!("phase-{phase}"), server]),
            "{name}"
        );
    }
}

/// Colmena's own option declarations judge the hive: a misspelt deployment
/// option fails it.
#[test]
fn make_hive_refuses_a_misspelt_deployment_option() {
    let Some((tree, colmena)) = trees("make_hive_refuses_a_misspelt_deployment_option") else {
        return;
    };
    let (out, _) = nixos::build_fleet_output(&example_fleet()).unwrap();
    let flake = out.path().join("flake.nix");
    let text = fs::read_to_string(&flake).unwrap();
    fs::write(&flake, text.replacen("targetHost = ", "targetHots = ", 1)).unwrap();
    let err = make_hive(out.path(), &tree, &colmena).unwrap_err();
    assert!(
        err.contains("deployment.targetHots' does not exist"),
        "{err}"
    );
}
