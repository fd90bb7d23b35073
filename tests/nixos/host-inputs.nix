# The flake's `host-*` inputs (the hosts' own configurations), for
# eval.nix, colmena.nix and colmena-hive.nix: each is `hostDir`, exporting
# tests/nixos/host.nix under every `nixosModules.<name>` the flake text names.
{
  lib,
  out,
  hostDir,
}:

let
  flake = import "${out}/flake.nix";
  flakeText = builtins.readFile "${out}/flake.nix";
  hostModule = import ./host.nix;
  moduleNames =
    let
      parts = builtins.tail (builtins.split "nixosModules\\.\"?" flakeText);
      names = map (p: builtins.match "([A-Za-z0-9_'-]+).*" p) (builtins.filter builtins.isString parts);
    in
    lib.unique (map builtins.head (builtins.filter (m: m != null) names));
  hostInput = {
    nixosModules = lib.genAttrs moduleNames (_: hostModule);
    outPath = hostDir;
  };
in
lib.genAttrs (builtins.filter (lib.hasPrefix "host-") (builtins.attrNames (flake.inputs or { }))) (
  _: hostInput
)
