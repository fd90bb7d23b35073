# The root flake.nix's package, evaluated with a STAND-IN nixpkgs: a `lib`
# with only the functions flake.nix calls, and a package set whose
# `rustPlatform.buildRustPackage` returns its arguments, so the package's
# `postInstall` text can be read as Nix computes it (tests/shell_integration.rs).
# Nothing is built or fetched.
#
#   nix-instantiate --store dummy:// --eval --strict --json tests/nixos/flake-package.nix \
#     --arg flake ./flake.nix --arg canExecute true
{
  flake,
  # Whether the build platform can run the host platform's binaries
  # (false: a cross build).
  canExecute,
}:
let
  b = builtins;
  # Stand-in for nixpkgs' lib: only what flake.nix uses.
  lib = {
    genAttrs = names: f: b.listToAttrs (map (name: { inherit name; value = f name; }) names);
    optionalString = cond: s: if cond then s else "";
    fileset = {
      toSource = _: "stand-in source";
      difference = _: _: null;
      unions = _: null;
      maybeMissing = _: null;
    };
    licenses.asl20 = "asl20";
  };
  # Stand-in for legacyPackages.<system>.
  pkgs = system: {
    stdenv = {
      buildPlatform.canExecute = _: canExecute;
      hostPlatform = { inherit system; };
    };
    installShellFiles = "installShellFiles";
    rustPlatform.buildRustPackage = args: args;
    mkShell = args: args;
  };
  nixpkgs = {
    inherit lib;
    legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] pkgs;
  };
  self = (import flake).outputs { inherit self nixpkgs; };
  package = self.packages.x86_64-linux.masgen;
in
{
  inherit (package) pname postInstall nativeBuildInputs;
  mainProgram = package.meta.mainProgram;
  default = self.packages.x86_64-linux.default.pname;
}
