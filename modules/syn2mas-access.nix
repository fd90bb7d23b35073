# masgen.syn2masAccess: let syn2mas, running as the MAS DynamicUser, read the
# Synapse database over the Unix socket.
#
# PostgreSQL peer authentication only lets an OS user in as the role of the
# same name. This adds a pg_ident map `masgen-syn2mas`
#   masgen-syn2mas <synapseRole> <synapseRole>
#   masgen-syn2mas <masUser>     <synapseRole>
# and, ahead of every other pg_hba rule (lib.mkBefore; the nixpkgs defaults
# are added with lib.mkAfter),
#   local <synapseDatabase> <synapseRole> peer map=masgen-syn2mas
# so Synapse itself keeps its access and the MAS user may also connect as the
# Synapse role, to that one database only. Enabled for the prepare phase; the
# exact lines come from lib.nix (syn2masAccessLines) and are tested against a
# real PostgreSQL in tests/modules.rs.
{
  config,
  lib,
  ...
}: let
  inherit (lib) mkOption types;

  mlib = import ./lib.nix;

  cfg = config.masgen.syn2masAccess;

  lines = mlib.syn2masAccessLines {
    inherit (cfg) synapseDatabase synapseRole masUser;
  };
in {
  options.masgen.syn2masAccess = {
    enable = lib.mkEnableOption "peer access of the MAS user to the Synapse database (for syn2mas)";

    synapseDatabase = mkOption {
      type = types.str;
      default = "matrix-synapse";
      description = "The Synapse database.";
    };

    synapseRole = mkOption {
      type = types.str;
      default = "matrix-synapse";
      description = "The PostgreSQL role (and OS user) Synapse connects as.";
    };

    masUser = mkOption {
      type = types.str;
      default = "matrix-authentication-service";
      description = "The OS user syn2mas runs as (the MAS DynamicUser).";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = builtins.all mlib.isPlainPgName [
          cfg.synapseDatabase
          cfg.synapseRole
          cfg.masUser
        ];
        message = ''
          masgen.syn2masAccess: synapseDatabase, synapseRole and masUser must be
          plain names ([A-Za-z0-9_][A-Za-z0-9_.-]*, not a pg_hba keyword); got
          ${builtins.toJSON [
            cfg.synapseDatabase
            cfg.synapseRole
            cfg.masUser
          ]}.
        '';
      }
      {
        assertion = config.services.postgresql.enable;
        message = "masgen.syn2masAccess is enabled but services.postgresql is not enabled on this host.";
      }
    ];

    services.postgresql.identMap = lines.identMap;
    services.postgresql.authentication = lib.mkBefore lines.authentication;
  };
}
