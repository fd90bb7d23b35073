# masgen.synapse.databasePassword: Synapse's database password from a file,
# for a PostgreSQL on another host (split hosts).
#
# Synapse has no password file option for its database, and it merges extra
# config files shallowly (a top-level key replaces the whole section), so
# masgen-synapse-database.service writes the whole `database` section at
# boot into
#   /run/masgen-synapse-database/database.yaml   (dir 0700, file 0400)
# as JSON (valid YAML):
#   {"database": <services.matrix-synapse.settings.database, nulls pruned>
#                + {"args": {"password": <passwordFile, one trailing newline stripped>}}}
# (lib.nix: synapseDatabaseFilter, run by scripts/database-file.sh) and
# appends the path to services.matrix-synapse.extraConfigFiles.
#
# Where Synapse runs, the file is owned by matrix-synapse and the unit runs
# before (and is required by) every Synapse unit. On the MAS host of a split
# homeserver Synapse is not enabled: its settings are there only for
# masgen's syn2mas tasks (@synapse-config-args@ loads the file as a
# credential, which PID 1 reads as root), so the file is root's and the
# tasks require the unit (tasks.nix).
{
  config,
  lib,
  pkgs,
  ...
}: let
  mlib = import ./lib.nix;

  cfg = config.masgen.synapse.databasePassword;
  synCfg = config.services.matrix-synapse;

  unitName = mlib.synapseDatabaseUnit;
  outputFile = mlib.synapseDatabaseFile;

  settingsFile =
    (pkgs.formats.json {}).generate "masgen-synapse-database-settings.json"
    (mlib.pruneNulls (synCfg.settings.database or {}));

  writer = mlib.databaseFileWriter pkgs;

  synapseUnits =
    ["matrix-synapse.service"]
    ++ map (worker: "matrix-synapse-worker-${worker}.service") (builtins.attrNames (synCfg.workers or {}));

  owner =
    if synCfg.enable
    then "matrix-synapse"
    else "root";
in {
  options.masgen.synapse.databasePassword = {
    enable = lib.mkEnableOption "writing Synapse's database section with a password from a file at boot";

    passwordFile = mlib.passwordFileOption lib "/run/secrets/synapse-db-password";
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = !((synCfg.settings.database.args or {}) ? password);
        message = ''
          services.matrix-synapse.settings.database.args.password is set while
          masgen.synapse.databasePassword is enabled: the password would be in
          the Nix store. Remove it; ${outputFile} adds it at boot.
        '';
      }
    ];

    services.matrix-synapse.extraConfigFiles = [outputFile];

    systemd.services.${unitName} = {
      description = "masgen: write Synapse's database section to ${outputFile}";
      before = lib.optionals synCfg.enable synapseUnits;
      requiredBy = lib.optionals synCfg.enable synapseUnits;
      serviceConfig =
        mlib.databaseFileServiceConfig {
          exe = lib.getExe writer;
          inherit outputFile settingsFile;
          filter = mlib.synapseDatabaseFilter;
          inherit (cfg) passwordFile;
          runtimeDirectory = unitName;
        }
        // {
          User = owner;
          Group = owner;
        };
    };
  };
}
