# Evaluates every node of a masgen output tree's `colmena` hive the way
# Colmena's hive evaluator does (zhaofengli/colmena @ 5bf4ce6,
# src/nix/hive/eval.nix, `evalNode`): the node's nixpkgs is
# `meta.nodeNixpkgs.<node>` or else `meta.nixpkgs`; the node's module is
# evaluated with nixpkgs' eval-config.nix and that nixpkgs' system (Colmena
# also passes on its overlays and config), Colmena's `deployment.*` options and the special args `name` and
# `nodes`.
#
#   nix-instantiate --store dummy:// --eval --strict --json tests/nixos/colmena.nix \
#     --argstr tree ~/.cache/masgen/nixpkgs --argstr out /tmp/out --argstr hostDir /tmp/host
#
# Colmena itself is not available here (its `makeHive` and options come with
# its flake), so two things are stand-ins, named as such:
#   - `deploymentStandin` declares the `deployment.*` options with the names,
#     types and defaults of Colmena's src/nix/hive/options.nix
#     (`deploymentOptions`; `keys` is simplified to `attrsOf anything`). A
#     misspelt or mistyped deployment option fails here as it would there.
#   - packages are tests/nixos/pkgs.nix, as for eval.nix; eval-config.nix is
#     the tree's (the stand-in package set has no nixpkgs `path`).
# Inputs are substituted as in eval.nix; each nixpkgs input's package set is
# marked with its input name (`masgenInput`) so the test can tell which pin
# a node got.
{
  tree,
  out,
  hostDir,
}:

let
  treeLib = import "${tree}/lib";
  lib = treeLib;
  flake = import "${out}/flake.nix";
  standin = system: import ./pkgs.nix { inherit lib system; };
  hostModule = import ./host.nix;

  inputNames = builtins.attrNames (flake.inputs or { });
  hostInputs = import ./host-inputs.nix { inherit lib out hostDir; };
  # Every nixpkgs input is the tree, its packages marked with the input's name.
  nixpkgsInput = name: {
    outPath = tree;
    inherit lib;
    legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (
      system: standin system // { masgenInput = name; }
    );
    nixosModules = { };
  };
  pinInputs = lib.genAttrs (builtins.filter (n: !lib.hasPrefix "host-" n) inputNames) nixpkgsInput;
  inputs = pinInputs // hostInputs // { inherit self; };
  self = flake.outputs inputs // {
    outPath = out;
    inherit inputs;
  };

  hive = self.colmena;
  reservedNames = [
    "defaults"
    "network"
    "meta"
  ];
  nodeNames = builtins.filter (n: !lib.elem n reservedNames) (builtins.attrNames hive);

  # STAND-IN for Colmena's `deploymentOptions` (see the header).
  deploymentStandin =
    { name, lib, ... }:
    let
      inherit (lib) types mkOption;
    in
    {
      options.deployment = {
        targetHost = mkOption {
          type = types.nullOr types.str;
          default = name;
        };
        targetPort = mkOption {
          type = types.nullOr types.ints.unsigned;
          default = null;
        };
        targetUser = mkOption {
          type = types.nullOr types.str;
          default = "root";
        };
        allowLocalDeployment = mkOption {
          type = types.bool;
          default = false;
        };
        buildOnTarget = mkOption {
          type = types.bool;
          default = false;
        };
        tags = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
        keys = mkOption {
          type = types.attrsOf types.anything;
          default = { };
        };
        replaceUnknownProfiles = mkOption {
          type = types.bool;
          default = true;
        };
        privilegeEscalationCommand = mkOption {
          type = types.listOf types.str;
          default = [
            "sudo"
            "-H"
            "--"
          ];
        };
        sshOptions = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
      };
    };

  evalNode =
    name:
    let
      npkgs = hive.meta.nodeNixpkgs.${name} or hive.meta.nixpkgs;
      evaluated = import "${tree}/nixos/lib/eval-config.nix" {
        inherit (npkgs) system;
        inherit lib;
        # Colmena also sets `nixpkgs.overlays`/`nixpkgs.config` from the
        # node's nixpkgs; with the whole package set given as
        # `nixpkgs.pkgs` (the stand-in) nixpkgs refuses those, and they are
        # that set's own anyway.
        modules = [
          deploymentStandin
          hostModule
          # The stand-in packages in place of importing the tree's pkgs.
          { nixpkgs.pkgs = npkgs; }
          (hive.defaults or { })
          hive.${name}
        ];
        specialArgs = {
          inherit name;
          nodes = { };
        }
        // (hive.meta.specialArgs or { })
        // (hive.meta.nodeSpecialArgs.${name} or { });
      };
      config = evaluated.config;
    in
    {
      deployment = {
        inherit (config.deployment) targetHost tags targetUser;
      };
      pin = npkgs.masgenInput;
      system = npkgs.system;
      failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
      # The homeserver as the node's own service names it: Synapse's, else
      # MAS's (a split homeserver's MAS host), else none (its database host).
      serverName =
        if config.services.matrix-synapse.enable
        then config.services.matrix-synapse.settings.server_name
        else if config.services.matrix-authentication-service.enable
        then config.services.matrix-authentication-service.settings.matrix.homeserver
        else null;
      toplevel = config.system.build.toplevel.drvPath;
    };
in
{
  meta = {
    allowApplyAll = hive.meta.allowApplyAll or true;
    defaultPin = hive.meta.nixpkgs.masgenInput;
  };
  nodes = lib.genAttrs nodeNames evalNode;
  configurations = builtins.attrNames self.nixosConfigurations;
}
