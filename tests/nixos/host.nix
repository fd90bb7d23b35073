# The stand-in for a host's own configuration (hardware, boot, users) in
# tests/nixos/eval.nix: what a configuration needs to evaluate, nothing more.
{
  key = "masgen-test-host";
  config = {
    boot.loader.grub.enable = false;
    fileSystems."/" = {
      device = "/dev/disk/by-label/nixos";
      fsType = "ext4";
    };
    system.stateVersion = "25.11";
    networking.hostName = "matrix-test";
    networking.firewall.enable = true;
    # The NixOS manual is built from the tree's sources during evaluation,
    # which needs a real store (`--store dummy://` has none).
    documentation.nixos.enable = false;
    # A container: no kernel, initrd or boot loader to stand in for when
    # `system.build.toplevel` is forced. The services masgen configures are
    # the same either way.
    boot.isContainer = true;
  };
}
