//! The flake's `colmena` output: a Colmena hive (its documented attribute
//! set: `meta` plus one node per NixOS configuration; zhaofengli/colmena @
//! 5bf4ce6, src/nix/hive/options.nix and eval.nix), so a fleet can be
//! deployed with `colmena apply --on <node>` as well as `nixos-rebuild`.
//!
//! Colmena's newer `colmenaHive` output is `colmena.lib.makeHive` of this set;
//! masgen does not add Colmena as a flake input (every user would fetch it),
//! docs/guide.md says how to add that one line.

use crate::lower::Lowered;
use crate::nix::NixExpr;

use super::flake::{module_list, Pins};

/// Node names Colmena reserves for itself (eval.nix `reservedNames`): a
/// configuration of that name cannot be a node.
pub const RESERVED_NODE_NAMES: [&str; 3] = ["defaults", "network", "meta"];

/// The tag of every node of a phase (`colmena apply --on @phase-final`).
pub fn phase_tag(phase: crate::lower::Phase) -> String {
    format!("phase-{}", phase.name())
}

/// The hive: a node per configuration, named like it, deployed to its host.
pub(super) fn hive(members: &[&Lowered], pins: &Pins) -> NixExpr {
    let mut nodes: Vec<(String, NixExpr)> = Vec::new();
    let mut node_nixpkgs = Vec::new();
    let mut default_pkgs = None;
    for lowered in members {
        let pin = pins.input(&lowered.nixpkgs);
        for phase in &lowered.phases {
            let Some(host) = lowered.hosts.iter().find(|h| h.name == phase.host) else {
                continue;
            };
            let pkgs = legacy_packages(pin, &host.system);
            default_pkgs.get_or_insert_with(|| pkgs.clone());
            node_nixpkgs.push((phase.configuration.clone(), pkgs));
            let deployment = NixExpr::attrs([
                ("targetHost", NixExpr::str(&host.name)),
                (
                    "tags",
                    NixExpr::list_of_strs([phase_tag(phase.phase), lowered.server_name.clone()]),
                ),
            ]);
            nodes.push((
                phase.configuration.clone(),
                NixExpr::attrs([
                    ("deployment", deployment),
                    ("imports", NixExpr::List(module_list(host, phase))),
                ]),
            ));
        }
    }
    let mut meta = vec![
        // A migrating host has two nodes (its two phases): applying every
        // node at once would switch it to both. Colmena then asks for `--on`.
        ("allowApplyAll", NixExpr::Bool(false)),
        ("nodeNixpkgs", NixExpr::attrs(node_nixpkgs)),
    ];
    if let Some(pkgs) = default_pkgs {
        meta.push(("nixpkgs", pkgs));
    }
    nodes.push(("meta".into(), NixExpr::attrs(meta)));
    NixExpr::attrs(nodes)
}

/// `<pin>.legacyPackages.<system>`: an initialised nixpkgs, as Colmena's
/// `meta.nixpkgs` takes it with flakes.
fn legacy_packages(pin: &str, system: &str) -> NixExpr {
    let mut path = Vec::new();
    if pin != "nixpkgs" {
        path.push("inputs".to_string());
    }
    path.extend([pin.to_string(), "legacyPackages".into(), system.to_string()]);
    NixExpr::Select(path)
}
