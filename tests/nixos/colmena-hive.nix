# `colmena.lib.makeHive` of a masgen output tree's `colmena` output, with
# Colmena's REAL hive evaluator (its src/nix/hive/eval.nix, options.nix and
# modules.nix from a fetched tree, `colmena`): what a flake of the user's own
# with `colmenaHive = colmena.lib.makeHive masgen-out.colmena` gives Colmena
# >= 0.5 (docs/guide.md). makeHive is, in Colmena's flake.nix @ 5bf4ce6:
#
#   lib.makeHive = rawHive: import ./src/nix/hive/eval.nix {
#     inherit rawHive colmenaOptions colmenaModules; hermetic = true; };
#
#   nix-instantiate --store dummy:// --eval --strict --json tests/nixos/colmena-hive.nix \
#     --argstr tree ~/.cache/masgen/nixpkgs --argstr colmena ~/.cache/masgen/colmena \
#     --argstr out /tmp/out --argstr hostDir /tmp/host
#
# What is not Colmena's or the tree's, named as such:
#   - packages are tests/nixos/pkgs.nix (STAND-IN), given to every node as
#     `nixpkgs.pkgs` through the hive's `defaults`, with the attributes
#     Colmena reads of an initialised nixpkgs (`path` = the tree, `lib`,
#     empty `overlays` and `config`);
#   - the host inputs are tests/nixos/host.nix, as in eval.nix.
# Only `deploymentConfig`, `metaConfig` and the node names are evaluated:
# Colmena's own nixpkgs module sets `nixpkgs.overlays`/`config`, which a
# given `nixpkgs.pkgs` refuses by assertion, so `toplevel` is left to
# tests/nixos/colmena.nix.
{
  tree,
  shim,
  colmena,
  out,
  hostDir,
}:

let
  lib = import "${tree}/lib";
  flake = import "${out}/flake.nix";
  inputNames = builtins.attrNames (flake.inputs or { });
  hostInputs = import ./host-inputs.nix { inherit lib out hostDir; };
  nixpkgsInput = name: {
    outPath = tree;
    inherit lib;
    legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (
      system:
      import ./pkgs.nix { inherit lib system; }
      // {
        masgenInput = name;
        path = shim;
        inherit lib;
        overlays = [ ];
        config = { };
      }
    );
    nixosModules = { };
  };
  pinInputs = lib.genAttrs (builtins.filter (n: !lib.hasPrefix "host-" n) inputNames) nixpkgsInput;
  inputs = pinInputs // hostInputs // { inherit self; };
  self = flake.outputs inputs // {
    outPath = out;
    inherit inputs;
  };

  # The user's flake: `colmena.lib.makeHive masgen-out.colmena`, with the
  # stand-in packages as every node's nixpkgs.
  rawHive = self.colmena // {
    defaults =
      { name, ... }:
      {
        nixpkgs.pkgs = lib.mkForce (self.colmena.meta.nodeNixpkgs.${name} or self.colmena.meta.nixpkgs);
      };
  };
  hive = import "${colmena}/src/nix/hive/eval.nix" {
    inherit rawHive;
    colmenaOptions = import "${colmena}/src/nix/hive/options.nix";
    colmenaModules = import "${colmena}/src/nix/hive/modules.nix";
    hermetic = true;
  };
in
{
  schema = hive.__schema;
  nodes = builtins.attrNames hive.nodes;
  meta = hive.metaConfig;
  deployment = lib.mapAttrs (_: d: {
    inherit (d) targetHost targetUser tags allowLocalDeployment buildOnTarget;
  }) hive.deploymentConfig;
  configurations = builtins.attrNames self.nixosConfigurations;
}
