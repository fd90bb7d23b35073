# Evaluates one NixOS configuration of a masgen output tree with nixpkgs' own
# NixOS modules, through the generated flake's own `outputs` function.
#
#   nix-instantiate --store dummy:// --eval --strict --json tests/nixos/eval.nix \
#     --argstr tree ~/.cache/masgen/nixpkgs --argstr out /tmp/out --argstr configuration matrix
#
# `tree` is a nixpkgs checkout (at least `lib/` and `nixos/`); packages come
# from the stand-in set of ./pkgs.nix (never built). Inputs of the flake are
# substituted locally: `nixpkgs` is the tree (its `lib` extended with a
# `nixosSystem` like nixpkgs' flake has), each `host-<name>` input exports the
# minimal host module below under every `nixosModules.<name>` the flake asks
# for. Nothing is fetched, so a mistake in flake.nix itself fails here.
#
# The result (JSON) holds the failed assertions, the warnings, the texts of
# the units nixpkgs would install, and the store paths of the files those
# units read. The contents of generated files are printed on stderr by the
# stand-in package set (`trace: masgen-file {...}`); the Rust side
# (tests/support/nixos.rs) maps the paths back to them.
{
  tree,
  out,
  configuration,
  # A directory standing in for a `base_config` host input (not a flake):
  # the Rust side writes there every file the flake imports from it.
  hostDir ? "${out}/.masgen-test-host",
}:

let
  treeLib = import "${tree}/lib";
  flake = import "${out}/flake.nix";

  # The stand-in package set for a system.
  standin = system: import ./pkgs.nix { lib = treeLib; inherit system; };

  # The host's own configuration (./host.nix). Modules with the same `key`
  # are imported once, so it can come both as the host input's module and
  # for hosts without a base.
  hostModule = import ./host.nix;

  lib = treeLib.extend (
    final: _prev: {
      # Like nixpkgs' flake.nix `lib.nixosSystem`, with the stand-in pkgs.
      nixosSystem =
        args:
        import "${tree}/nixos/lib/eval-config.nix" (
          {
            lib = final;
            system = null;
            # Errors in the flake's modules point at the flake.
            modulesLocation = "${out}/flake.nix";
          }
          // args
          // {
            modules = args.modules ++ [
              hostModule
              ({ config, ... }: {
                nixpkgs.pkgs = standin (args.system or config.nixpkgs.system);
              })
            ];
          }
        );
    }
  );

  hostInputs = import ./host-inputs.nix { inherit lib out hostDir; };

  nixpkgs = {
    outPath = tree;
    inherit lib;
    legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] standin;
    nixosModules = { };
  };
  # Any other input (a second nixpkgs, say) is the same tree.
  otherInputs = lib.genAttrs (builtins.filter (n: n != "nixpkgs" && !lib.hasPrefix "host-" n) (
    builtins.attrNames (flake.inputs or { })
  )) (_: nixpkgs);
  inputs = otherInputs // hostInputs // {
    inherit self nixpkgs;
  };
  self = flake.outputs inputs // {
    outPath = out;
    inherit inputs;
  };

  nixos = self.nixosConfigurations.${configuration};
  config = nixos.config;

  # Units nixpkgs would install for masgen's services.
  wanted = [
    "matrix-synapse.service"
    "matrix-authentication-service.service"
    "nginx.service"
    "postgresql.service"
  ];
  unitNames = builtins.filter (n: lib.elem n wanted || lib.hasPrefix "masgen-" n) (
    builtins.attrNames config.systemd.units
  );

  # The Exec*/script texts of a service, with the text of each script file.
  execOf =
    name:
    let
      svc = config.systemd.services.${name};
      sc = svc.serviceConfig;
      asText = v: if builtins.isAttrs v && v ? text then v.text else toString v;
      keys = [
        "ExecStartPre"
        "ExecStart"
        "ExecStartPost"
        "ExecReload"
      ];
    in
    lib.genAttrs (builtins.filter (k: sc ? ${k}) keys) (k: map asText (lib.toList sc.${k}))
    // {
      script = svc.script;
      preStart = svc.preStart;
    };
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
  services = map (lib.removeSuffix ".service") (
    builtins.filter (lib.hasSuffix ".service") unitNames
  );
in
{
  inherit configuration failedAssertions;
  release = lib.trivial.release;
  warnings = config.warnings;
}
# Like nixos-rebuild, stop at failed assertions: what follows may not
# evaluate without what they ask for (e.g. ACME before 2026 without an e-mail).
// lib.optionalAttrs (failedAssertions == [ ]) {
  units = lib.genAttrs unitNames (n: config.systemd.units.${n}.text);
  # The units that pull each one in (NixOS makes these `.wants`/`.requires`
  # links, not lines of the unit's text).
  requiredBy = lib.genAttrs unitNames (n: config.systemd.units.${n}.requiredBy);
  wantedBy = lib.genAttrs unitNames (n: config.systemd.units.${n}.wantedBy);
  exec = lib.genAttrs services execOf;
  synapseConfigFile =
    if config.services.matrix-synapse.enable then toString config.services.matrix-synapse.configFile else null;
  etc = lib.mapAttrs (_: e: toString e.source) (
    lib.filterAttrs (n: _: lib.hasPrefix "nginx/" n || lib.hasPrefix "matrix" n) config.environment.etc
  );
  # Forcing the system's derivation forces every option value it is built
  # from (units, /etc, activation scripts): a type error anywhere shows.
  toplevel = config.system.build.toplevel.drvPath;
}
