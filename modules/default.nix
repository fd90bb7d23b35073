# masgen's NixOS modules (flake output nixosModules.default / nixosModules.masgen).
#
# Generated host modules only set data: services.* options of nixpkgs and the
# masgen.* options declared here.
#
# services.matrix-authentication-service comes from nixpkgs when its module
# has `credentials`; otherwise (nixos-25.11, nixos-26.05, nixpkgs of June
# 2026) from ./mas-compat.nix, replacing a module without `credentials`.
# Decided here, when the configuration is evaluated, so a pin by URL works
# too; `masgen check` names the way a known branch goes (docs/guide.md).
{lib, ...} @ args: let
  mlib = import ./lib.nix;
  upstream = mlib.masUpstream {
    inherit lib;
    modulesPath = args.modulesPath or null;
  };
in {
  imports =
    [
      ./tasks.nix
      ./synapse-secrets.nix
      ./syn2mas-access.nix
      ./mas-keys.nix
      ./postgres-access.nix
      ./firewall.nix
      ./synapse-database.nix
      ./mas-database.nix
    ]
    ++ (
      if upstream.hasCredentials
      then []
      else [./mas-compat.nix]
    );

  disabledModules =
    if upstream.present && !upstream.hasCredentials
    then [mlib.masUpstreamModule]
    else [];
}
