# masgen's NixOS modules (flake output nixosModules.default / nixosModules.masgen).
#
# Generated host modules only set data: services.* options of nixpkgs and the
# masgen.* options declared here.
{
  imports = [
    ./tasks.nix
    ./synapse-secrets.nix
    ./syn2mas-access.nix
  ];
}
