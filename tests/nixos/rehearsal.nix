# Evaluates the rehearsal check of a masgen output tree
# (`checks.<system>.<check>`, masgen/modules/rehearsal) with a nixpkgs tree's
# own NixOS test framework (nixos/lib/testing) and the stand-in packages of
# ./pkgs.nix; nothing is built and no VM runs (tests/rehearsal_eval.rs).
#
#   nix-instantiate --store dummy:// --eval --strict --json tests/nixos/rehearsal.nix \
#     --argstr tree ~/.cache/masgen/nixpkgs --argstr out /tmp/out --argstr check matrix-migration -A nodes
#
# Each attribute is one stage, evaluated on its own (`-A`), so the test can
# say how far evaluation gets: `nodes` (the machine and its specialisation),
# `testScript`, `toplevel`, `vm`, `driver`, `test`.
{
  tree,
  out,
  check,
  system ? "x86_64-linux",
}:

let
  lib = import "${tree}/lib";
  flake = import "${out}/flake.nix";
  standin = system: import ./pkgs.nix { inherit lib system tree; };

  nixpkgs = {
    outPath = tree;
    inherit lib;
    legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] standin;
    nixosModules = { };
  };
  # The rehearsal uses no host input: any access to one fails here.
  hostInput = throw "the rehearsal must not use the host's own configuration";
  # A fleet's other pins (`nixpkgs-2`, …) are the same tree.
  isPin = n: n == "nixpkgs" || lib.hasPrefix "nixpkgs-" n;
  inputs = lib.mapAttrs (n: _: if isPin n then nixpkgs else hostInput) (flake.inputs or { }) // {
    inherit self nixpkgs;
  };
  self = flake.outputs inputs // {
    outPath = out;
    inherit inputs;
  };

  test = self.checks.${system}.${check};
  # A node is its NixOS `config`.
  node = test.config.nodes.machine;
  final = node.specialisation.final.configuration or null;

  failed = config: map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
  summary = config: {
    failedAssertions = failed config;
    warnings = config.warnings;
    phase = config.masgen.rehearsal.phase;
    delegates = config.services.matrix-synapse.settings.matrix_authentication_service.enabled or false;
    synapseExtraConfigFiles = map toString config.services.matrix-synapse.extraConfigFiles;
    hosts = config.networking.hosts."127.0.0.1" or [ ];
    units = builtins.filter (n: lib.hasPrefix "masgen-" n || lib.hasPrefix "matrix-" n) (
      builtins.attrNames config.systemd.services
    );
    secretsScript = config.systemd.services.masgen-rehearsal-secrets.script;
    nginx = lib.mapAttrs (_: v: {
      inherit (v) enableACME forceSSL addSSL;
      sslCertificate = toString v.sslCertificate;
    }) config.services.nginx.virtualHosts;
  };
in
{
  name = test.config.name;
  nodes = {
    machine = summary node;
    final = if final == null then null else summary final;
  };
  testScript = test.config.testScriptString;
  # The system's derivation: every option value it is made of, the
  # specialisation's system included (it is linked into it).
  toplevel = node.system.build.toplevel.drvPath;
  vm = node.system.build.vm.drvPath;
  driver = test.driver.drvPath;
  test = test.drvPath;
}
