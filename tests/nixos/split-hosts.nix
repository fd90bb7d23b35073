# Evaluates masgen's split-host modules (postgres-access, firewall,
# synapse-database, mas-database) inside a whole NixOS configuration with a
# nixpkgs tree's own modules, for tests/conformance_nixpkgs.rs:
#
#   nix-instantiate --store dummy:// --eval --strict --json tests/nixos/split-hosts.nix \
#     --argstr tree ~/.cache/masgen/nixpkgs --arg nftables false --argstr role db
#
# `role` = "db": PostgreSQL with masgen.postgresAccess and masgen.firewall;
# "mas": MAS enabled, Synapse not (its settings only, for syn2mas tasks),
# with both database password files and a syn2mas task; "synapse": Synapse
# with its database password file. Packages come from the stand-in set of
# ./pkgs.nix (never built).
{
  tree,
  nftables,
  role,
}:
let
  lib = import "${tree}/lib";
  standin = import ./pkgs.nix { inherit lib; system = "x86_64-linux"; };

  db = {
    services.postgresql = {
      enable = true;
      ensureDatabases = [ "matrix-synapse" ];
      ensureUsers = [ { name = "matrix-synapse"; } ];
    };
    masgen.postgresAccess = {
      enable = true;
      clients = [
        { database = "matrix-synapse"; role = "matrix-synapse"; address = "10.0.0.2"; passwordFile = "/run/secrets/synapse-db"; }
        { database = "matrix-authentication-service"; role = "matrix-authentication-service"; address = "fd00::3"; passwordFile = "/run/secrets/mas-db"; }
      ];
      listenAddresses = [ "10.0.0.1" ];
    };
    masgen.firewall.allowFrom = [ { port = 5432; addresses = [ "10.0.0.2" "fd00::3" ]; } ];
    networking.nftables.enable = nftables;
    # The check runs nft in a derivation the stand-in packages cannot make.
    networking.nftables.checkRuleset = false;
  };

  synapseSettings = {
    server_name = "example.org";
    database = {
      name = "psycopg2";
      args = { user = "matrix-synapse"; database = "matrix-synapse"; host = "10.0.0.1"; port = 5432; };
    };
  };

  mas = {
    services.matrix-authentication-service = {
      enable = true;
      settings.database.uri = "postgresql://matrix-authentication-service@10.0.0.1:5432/matrix-authentication-service?sslmode=disable";
    };
    services.matrix-synapse.settings = synapseSettings;
    masgen.synapse.databasePassword = { enable = true; passwordFile = "/run/secrets/synapse-db"; };
    masgen.mas.databasePassword = { enable = true; passwordFile = "/run/secrets/mas-db"; };
    masgen.tasks.masgen-syn2mas-check = {
      command = [ "@masgen-mas-run@" "@mas-config@" "--" "@mas-cli@" "syn2mas" "@CONFIG@" "@synapse-config-args@" "check" ];
      dynamicUser = true;
      user = "matrix-authentication-service";
    };
  };

  synapse = {
    services.matrix-synapse = { enable = true; settings = synapseSettings; };
    masgen.synapse.databasePassword = { enable = true; passwordFile = "/run/secrets/synapse-db"; };
  };

  nixos = import "${tree}/nixos/lib/eval-config.nix" {
    inherit lib;
    system = null;
    modules = [
      ../../modules/default.nix
      ./host.nix
      { nixpkgs.pkgs = standin; }
      { db = db; mas = mas; synapse = synapse; }.${role}
    ];
  };
  config = nixos.config;
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
  masgenUnits = builtins.filter (lib.hasPrefix "masgen-") (builtins.attrNames config.systemd.units);
in
{
  inherit failedAssertions;
}
// lib.optionalAttrs (failedAssertions == [ ]) {
  authentication = config.services.postgresql.authentication;
  enableTCPIP = config.services.postgresql.enableTCPIP;
  listenAddresses = config.services.postgresql.settings.listen_addresses or null;
  # The pg_hba.conf nixpkgs writes (its text, from the stand-in writer).
  extraCommands = config.networking.firewall.extraCommands;
  extraInputRules = config.networking.firewall.extraInputRules;
  units = lib.genAttrs masgenUnits (n: config.systemd.units.${n}.text);
  requiredBy = lib.genAttrs masgenUnits (n: config.systemd.units.${n}.requiredBy);
  wantedBy = lib.genAttrs masgenUnits (n: config.systemd.units.${n}.wantedBy);
  synapseExtraConfigFiles = config.services.matrix-synapse.extraConfigFiles;
  masExtraConfigFiles = config.services.matrix-authentication-service.extraConfigFiles;
  toplevel = config.system.build.toplevel.drvPath;
}
