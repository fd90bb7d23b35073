# masgen.firewall.allowFrom: open a TCP port to some hosts only (split hosts:
# PostgreSQL to the Synapse and MAS hosts, MAS and Synapse to the nginx host).
#
#   masgen.firewall.allowFrom = [ { port = 5432; addresses = [ "10.0.0.2" ]; } ... ];
#
# The NixOS firewall has per-interface but no per-source openings, so each
# (port, address) becomes one rule in the nixos-fw chain (lib.nix:
# iptablesAllowLines, nftablesAllowLines):
#   iptables backend (networking.nftables.enable = false), extraCommands:
#     iptables|ip6tables -A nixos-fw -p tcp -s ADDR --dport PORT -j nixos-fw-accept
#   nftables backend, extraInputRules:
#     ip|ip6 saddr ADDR tcp dport PORT accept
# nixpkgs asserts extraCommands empty under nftables, and extraInputRules is
# nftables only: exactly one of them is set.
#
# A DNS name is resolved by iptables when the firewall starts (IPv4
# addresses only, and a name that does not resolve then stops the firewall
# from loading). nftables would resolve it when nixpkgs checks the ruleset
# at build time, in a sandbox without network: refused (asserted).
{
  config,
  lib,
  ...
}: let
  inherit (lib) mkOption types;

  mlib = import ./lib.nix;

  cfg = config.masgen.firewall;
  nftables = config.networking.nftables.enable;

  addresses = builtins.concatMap (r: r.addresses) cfg.allowFrom;
  invalid = builtins.filter (a: mlib.addressKind a == "invalid") addresses;
  names = builtins.filter (a: mlib.addressKind a == "dns") addresses;

  ruleType = types.submodule {
    options = {
      port = mkOption {
        type = types.port;
        description = "The TCP port.";
      };
      addresses = mkOption {
        type = types.listOf types.str;
        description = "Hosts that may connect to it: IPv4 or IPv6 addresses (DNS names with iptables only).";
      };
    };
  };
in {
  options.masgen.firewall.allowFrom = mkOption {
    type = types.listOf ruleType;
    default = [];
    description = "TCP ports opened to some source addresses only.";
  };

  config = lib.mkIf (cfg.allowFrom != []) {
    assertions = [
      {
        assertion = invalid == [];
        message = "masgen.firewall.allowFrom: not an IPv4 or IPv6 address or a DNS name: ${builtins.toJSON invalid}.";
      }
      {
        assertion = !(nftables && names != []);
        message = "masgen.firewall.allowFrom: DNS names ${builtins.toJSON names} cannot be used with networking.nftables.enable (nixpkgs checks the ruleset at build time, without network); give addresses.";
      }
    ];

    networking.firewall.extraInputRules = lib.mkIf nftables (mlib.nftablesAllowLines cfg.allowFrom);
    networking.firewall.extraCommands = lib.mkIf (!nftables) (mlib.iptablesAllowLines cfg.allowFrom);
  };
}
