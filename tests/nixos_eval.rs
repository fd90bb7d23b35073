//! Every example × every configuration its flake defines × every nixpkgs
//! tree present, evaluated with nixpkgs' own NixOS modules through the
//! generated flake's `outputs` (tests/support/nixos.rs, tests/nixos/).
//! Missing trees are a loud SKIP (they are fetched, not installed).

mod support;

use support::nixos;

#[test]
fn every_example_configuration_evaluates_with_nixpkgs_modules() {
    let trees = nixos::trees("every_example_configuration_evaluates_with_nixpkgs_modules");
    if trees.is_empty() || support::nix_instantiate().is_none() {
        return;
    }
    let mut failures = Vec::new();
    for (name, checked) in support::checked_examples() {
        let out = nixos::build_output(&checked).unwrap();
        let configurations = nixos::configurations(out.path()).unwrap();
        for tree in &trees {
            for configuration in &configurations {
                let what = format!("{name} × {configuration} × {} tree", tree.label);
                match nixos::evaluate(out.path(), configuration, &tree.path) {
                    Ok(eval) => eprintln!("{what}: ok, {} units", eval.units.len()),
                    Err(e) => failures.push(format!("{what}: {e}")),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
