# masgen.postgresAccess: let Synapse and MAS on other hosts reach this
# host's PostgreSQL over the network, each role with a password from a file.
#
#   masgen.postgresAccess = {
#     enable = true;
#     clients = [ { database; role; address; passwordFile; } ... ];
#     listenAddresses = [ "10.0.0.4" ];   # optional
#   };
#
# - services.postgresql.enableTCPIP; with listenAddresses, PostgreSQL
#   listens on localhost and those addresses only (listen_addresses, forced
#   over enableTCPIP's "*"); the firewall decides who reaches the port
#   (masgen.firewall);
# - one pg_hba.conf line per client, at default priority, so after the
#   nixpkgs header (mkBefore) and masgen.syn2masAccess (mkBefore), before
#   the nixpkgs defaults (mkAfter):
#     host <database> <role> <address>/32 | /128 | <dns name> scram-sha-256
#   (lib.nix: postgresAccessLines; a name that is not plain is quoted);
# - masgen-postgres-passwords.service, a oneshot after postgresql-setup
#   (which creates the roles from ensureUsers), that sets each role's
#   password from its file (scripts/postgres-passwords.sh: the password is
#   on no command line, in no environment and not in the server log; one
#   trailing newline is stripped). The files are read through
#   LoadCredential=, so they may be root-only.
{
  config,
  lib,
  pkgs,
  ...
}: let
  inherit (lib) mkOption types;

  mlib = import ./lib.nix;

  cfg = config.masgen.postgresAccess;
  pgCfg = config.services.postgresql;

  unitName = mlib.postgresPasswordsUnit;

  pgPackage =
    if pgCfg ? finalPackage
    then pgCfg.finalPackage
    else pgCfg.package;

  script = pkgs.writeShellApplication {
    name = unitName;
    runtimeInputs = [
      pkgs.coreutils
      pgPackage
    ];
    text = builtins.readFile ./scripts/postgres-passwords.sh;
  };

  plan = mlib.postgresPasswordPlan cfg.clients;
  badAddresses = builtins.filter (c: mlib.addressKind c.address == "invalid") cfg.clients;
  badNames = builtins.filter (c: !(mlib.validPgHbaName c.database && mlib.validPgHbaName c.role)) cfg.clients;

  clientType = types.submodule {
    options = {
      database = mkOption {
        type = types.str;
        description = "The database the client connects to.";
      };
      role = mkOption {
        type = types.str;
        description = "The PostgreSQL role it connects as (created elsewhere, e.g. by ensureUsers).";
      };
      address = mkOption {
        type = types.str;
        example = "10.0.0.2";
        description = "The client host: an IPv4 or IPv6 address (one host) or a DNS name (PostgreSQL checks it by reverse and forward lookup).";
      };
      passwordFile = mkOption {
        type = types.strMatching "/.*";
        example = "/run/secrets/synapse-db-password";
        description = "Absolute path of the role's password (one trailing newline is stripped).";
      };
    };
  };
in {
  options.masgen.postgresAccess = {
    enable = lib.mkEnableOption "password access to this host's PostgreSQL from other hosts";

    clients = mkOption {
      type = types.listOf clientType;
      default = [];
      description = "Who may connect over TCP: one pg_hba.conf line each.";
    };

    listenAddresses = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      example = ["10.0.0.4"];
      description = "This host's addresses PostgreSQL listens on besides localhost; null listens on every address (enableTCPIP).";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = pgCfg.enable;
        message = "masgen.postgresAccess is enabled but services.postgresql is not enabled on this host.";
      }
      {
        assertion = badAddresses == [];
        message = "masgen.postgresAccess.clients: not an IPv4 or IPv6 address or a DNS name: ${builtins.toJSON (map (c: c.address) badAddresses)}.";
      }
      {
        assertion = badNames == [];
        message = "masgen.postgresAccess.clients: a database or role name is empty or holds a double quote or a line break (pg_hba.conf cannot quote them): ${builtins.toJSON (map (c: [c.database c.role]) badNames)}.";
      }
      {
        assertion = plan.conflicting == [];
        message = "masgen.postgresAccess.clients: role(s) ${builtins.toJSON plan.conflicting} given different passwordFile values; a role has one password.";
      }
    ];

    services.postgresql.enableTCPIP = true;
    # nixpkgs sets listen_addresses from enableTCPIP at normal priority.
    services.postgresql.settings.listen_addresses = lib.mkIf (cfg.listenAddresses != null) (
      lib.mkForce (lib.concatStringsSep "," (["localhost"] ++ cfg.listenAddresses))
    );
    services.postgresql.authentication = mlib.postgresAccessLines cfg.clients;

    systemd.services.${unitName} = lib.mkIf (cfg.clients != []) {
      description = "masgen: set the passwords of PostgreSQL roles used from other hosts";
      after = ["postgresql.service" "postgresql-setup.service"];
      requires = ["postgresql.service"];
      wantedBy = ["multi-user.target"];
      # A changed list re-runs it on switch (the files' content is not
      # visible to Nix: restart the unit after changing a password file).
      restartTriggers = [(builtins.toJSON cfg.clients)];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        User = "postgres";
        Group = "postgres";
        ExecStart = "${lib.getExe script} ${lib.concatMapStringsSep " " mlib.escapeExecArg plan.words}";
        LoadCredential = plan.loadCredential;
        UMask = "0077";
        NoNewPrivileges = true;
        PrivateTmp = true;
      };
    };
  };
}
