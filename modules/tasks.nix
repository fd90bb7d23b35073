# masgen.tasks: operator-run oneshot units (backups, syn2mas check/migrate,
# mas-cli doctor, user registration, ...).
#
# Every task becomes `systemd.services.<name>`: Type=oneshot, not wanted by any
# target, never restarted by `nixos-rebuild switch`. Operators run them with
# `systemctl start <name>` and read the output with `journalctl -u <name>`.
#
# `command` is an argv. An element that is exactly one of the placeholders
# below is replaced; every other element is passed literally (quoted for
# systemd, so `%` and `$` are not expanded):
#
#   @mas-cli@               mas-cli of services.matrix-authentication-service.package
#   @psql@, @pg_dump@       from the PostgreSQL package of this host
#                           (services.postgresql.finalPackage, else .package;
#                           pkgs.postgresql when services.postgresql is off)
#   @masgen-backup@         scripts/backup.sh
#   @masgen-mas-run@        scripts/mas-run.sh
#   @masgen-register-user@  scripts/register-user.sh
#   @mas-config@            services.matrix-authentication-service.settings as
#                           YAML in the store, nulls pruned (the file the MAS
#                           service renders at start)
#   @synapse-config-args@   `--synapse-config <file>` for the Synapse store
#                           config and for each of
#                           services.matrix-synapse.extraConfigFiles (loaded as
#                           credentials, so a DynamicUser task can read them).
#                           The store config is the Synapse service's
#                           configFile, or, where Synapse is not enabled (the
#                           MAS host of a split homeserver), the same YAML made
#                           here from services.matrix-synapse.settings (nulls
#                           pruned, as nixpkgs does)
#
# `@CONFIG@` is left alone: masgen-mas-run replaces it at run time. Any other
# `@word@` element is an evaluation error (a typo, not an argument).
#
# Implicit additions, so that tasks see the same files as the services:
# - a task using @mas-config@ gets LoadCredential= for every
#   services.matrix-authentication-service.credentials entry (the task's own
#   `credentials` win on a name clash) and for each MAS extraConfigFiles entry
#   (named masgen-mas-extra-config-<i>, listed in MASGEN_MAS_EXTRA_CONFIGS for
#   masgen-mas-run);
# - a task using @synapse-config-args@ gets LoadCredential= for each Synapse
#   extraConfigFiles entry (masgen-synapse-config-<i>) and, when
#   masgen.synapse.passwordConfig is enabled, Requires=/After= the unit that
#   writes the password_config file, and, when
#   masgen.synapse.databasePassword is enabled, Requires=/After=
#   masgen-synapse-database.service (the database section with its password);
# - a task using @mas-config@ on a host that makes MAS keys
#   (masgen.masKeys.generate) gets Requires=/After= masgen-mas-keys.service,
#   and, when masgen.mas.databasePassword is enabled, Requires=/After=
#   masgen-mas-database.service (the database uri with its password);
# (in this order: password config, Synapse database, MAS keys, MAS
# database; src/lower/tasks.rs `implied` states the same rules);
# - a task using @masgen-mas-run@ without runtimeDirectory gets
#   RuntimeDirectory=<name>.
# All tasks run with UMask=0077.
{
  config,
  lib,
  pkgs,
  ...
}: let
  inherit (lib) mkOption types;

  mlib = import ./lib.nix;

  cfg = config.masgen.tasks;
  masCfg = config.services.matrix-authentication-service;
  synCfg = config.services.matrix-synapse;
  pgCfg = config.services.postgresql;
  passwordConfigEnabled = config.masgen.synapse.passwordConfig.enable or false;
  masKeysEnabled = (config.masgen.masKeys.generate or []) != [];
  synapseDatabaseEnabled = config.masgen.synapse.databasePassword.enable or false;
  masDatabaseEnabled = config.masgen.mas.databasePassword.enable or false;

  # Where Synapse runs, the file its service reads; elsewhere the same YAML
  # from its settings (nixpkgs' configFile exists only with the service),
  # without `log_config`: its nixpkgs default is made from
  # services.matrix-synapse.log, which has a value only with the service,
  # and syn2mas does not read it.
  synapseConfigFile =
    if synCfg.enable
    then synCfg.configFile
    else
      (pkgs.formats.yaml {}).generate "homeserver.yaml"
      (mlib.pruneNulls (builtins.removeAttrs synCfg.settings ["log_config"]));

  pgPackage =
    if pgCfg.enable
    then
      (
        if pgCfg ? finalPackage
        then pgCfg.finalPackage
        else pgCfg.package
      )
    else pkgs.postgresql;

  masConfigFile = (pkgs.formats.yaml {}).generate "masgen-mas-config.yaml" (
    mlib.masFinalSettings masCfg.settings
  );

  scripts = {
    backup = pkgs.writeShellApplication {
      name = "masgen-backup";
      runtimeInputs = [
        pkgs.coreutils
        pkgs.util-linux
        pgPackage
      ];
      text = builtins.readFile ./scripts/backup.sh;
    };
    mas-run = pkgs.writeShellApplication {
      name = "masgen-mas-run";
      runtimeInputs = [
        pkgs.coreutils
        pkgs.gnugrep
        pkgs.gettext
      ];
      text = builtins.readFile ./scripts/mas-run.sh;
    };
    register-user = pkgs.writeShellApplication {
      name = "masgen-register-user";
      runtimeInputs = [
        pkgs.coreutils
        pkgs.gnugrep
      ];
      text = builtins.readFile ./scripts/register-user.sh;
    };
  };

  word = arg: {inherit arg;};

  # Placeholder -> Exec words. Values are only forced for placeholders a task
  # actually uses (e.g. @synapse-config-args@ needs Synapse on this host).
  table = {
    "@mas-cli@" = [(word (lib.getExe' masCfg.package "mas-cli"))];
    "@psql@" = [(word (lib.getExe' pgPackage "psql"))];
    "@pg_dump@" = [(word (lib.getExe' pgPackage "pg_dump"))];
    "@masgen-backup@" = [(word (lib.getExe scripts.backup))];
    "@masgen-mas-run@" = [(word (lib.getExe scripts.mas-run))];
    "@masgen-register-user@" = [(word (lib.getExe scripts.register-user))];
    "@mas-config@" = [(word masConfigFile)];
    "@synapse-config-args@" =
      [
        (word "--synapse-config")
        (word synapseConfigFile)
      ]
      ++ lib.concatLists (
        lib.imap0 (i: _: [
          (word "--synapse-config")
          {raw = mlib.credentialArg (mlib.synapseConfigCredential i);}
        ])
        synCfg.extraConfigFiles
      );
  };

  knownTokens = builtins.attrNames table ++ ["@CONFIG@"];

  uses = token: task: builtins.elem token task.command;

  taskType = types.submodule (
    {name, ...}: {
      options = {
        description = mkOption {
          type = types.str;
          default = "masgen task ${name}";
          description = "Unit description.";
        };
        after = mkOption {
          type = types.listOf types.str;
          default = [];
          description = "Units this task is ordered after.";
        };
        requires = mkOption {
          type = types.listOf types.str;
          default = [];
          description = "Units this task requires.";
        };
        wants = mkOption {
          type = types.listOf types.str;
          default = [];
          description = "Units this task wants.";
        };
        conflicts = mkOption {
          type = types.listOf types.str;
          default = [];
          description = "Units stopped when this task starts (e.g. the homeserver during a migration).";
        };
        user = mkOption {
          type = types.nullOr types.str;
          default = null;
          description = "User= of the unit; null runs as root (or as the unit name with dynamicUser).";
        };
        group = mkOption {
          type = types.nullOr types.str;
          default = null;
          description = "Group= of the unit.";
        };
        dynamicUser = mkOption {
          type = types.bool;
          default = false;
          description = "DynamicUser= of the unit.";
        };
        credentials = mkOption {
          type = types.attrsOf types.str;
          default = {};
          description = "Credential name -> source file, as LoadCredential=name:path.";
        };
        environment = mkOption {
          type = types.attrsOf types.str;
          default = {};
          description = "Environment variables of the unit.";
        };
        command = mkOption {
          type = types.listOf types.str;
          description = "argv of ExecStart=, with the placeholders described in tasks.nix.";
        };
        runtimeDirectory = mkOption {
          type = types.nullOr types.str;
          default = null;
          description = "RuntimeDirectory= of the unit.";
        };
        stateDirectory = mkOption {
          type = types.nullOr types.str;
          default = null;
          description = "StateDirectory= of the unit.";
        };
        timeoutSec = mkOption {
          type = types.nullOr types.ints.positive;
          default = null;
          description = "TimeoutStartSec= in seconds; null keeps the oneshot default (no timeout).";
        };
        successStamp = mkOption {
          type = types.nullOr (types.strMatching "[A-Za-z0-9._-]+");
          default = null;
          description = ''
            File name created under /var/lib/masgen when the task succeeds, so
            `masgen plan --system /` can tell how far a migration got.
          '';
        };
        clearStampAtStart = mkOption {
          type = types.bool;
          default = false;
          description = ''
            Remove the success stamp when a run starts, so it records the
            outcome of the last run only (a clean dry run, not an earlier one).
          '';
        };
        successExitStatus = mkOption {
          type = types.listOf types.int;
          default = [];
          description = "Extra exit codes counted as success (e.g. 11 for syn2mas check warnings).";
        };
      };
    }
  );

  mkUnit = name: task: let
    usesSynapse = uses "@synapse-config-args@" task;
    usesMasConfig = uses "@mas-config@" task;
    usesMasRun = uses "@masgen-mas-run@" task;

    masExtraConfigs = lib.optionals usesMasConfig (
      lib.imap0 (i: path: {
        name = mlib.masExtraConfigCredential i;
        inherit path;
      })
      masCfg.extraConfigFiles
    );
    synapseExtraConfigs = lib.optionals usesSynapse (
      lib.imap0 (i: path: {
        name = mlib.synapseConfigCredential i;
        inherit path;
      })
      synCfg.extraConfigFiles
    );
    namedCredentials = (lib.optionalAttrs usesMasConfig masCfg.credentials) // task.credentials;
    loadCredential =
      lib.mapAttrsToList (credName: path: "${credName}:${path}") namedCredentials
      # Interpolated like the Synapse and MAS modules do, so a path literal
      # refers to the same (store) file the service reads.
      ++ map (c: "${c.name}:${c.path}") (masExtraConfigs ++ synapseExtraConfigs);

    passwordConfigUnits = lib.optional (
      usesSynapse && passwordConfigEnabled
    ) "${mlib.passwordConfigUnit}.service";
    # MAS's credentials include the keys the host makes (modules/mas-keys.nix).
    masKeysUnits = lib.optional (usesMasConfig && masKeysEnabled) "masgen-mas-keys.service";
    # The database files with passwords (split hosts) are among the
    # extra config files loaded as credentials.
    synapseDatabaseUnits = lib.optional (usesSynapse && synapseDatabaseEnabled) "${mlib.synapseDatabaseUnit}.service";
    masDatabaseUnits = lib.optional (usesMasConfig && masDatabaseEnabled) "${mlib.masDatabaseUnit}.service";
    implied = passwordConfigUnits ++ synapseDatabaseUnits ++ masKeysUnits ++ masDatabaseUnits;

    runtimeDirectory =
      if task.runtimeDirectory != null
      then task.runtimeDirectory
      else if usesMasRun
      then name
      else null;
  in {
    inherit (task) description wants conflicts;
    # The spec's lowering may already list the unit (syn2mas tasks do);
    # name it once, as the reference render does.
    after = lib.unique (task.after ++ implied);
    requires = lib.unique (task.requires ++ implied);
    environment =
      task.environment
      // lib.optionalAttrs (masExtraConfigs != []) {
        MASGEN_MAS_EXTRA_CONFIGS = lib.concatMapStringsSep " " (c: c.name) masExtraConfigs;
      };
    # Never started, stopped or restarted by a configuration switch: a
    # migration must not be killed half-way because its unit changed.
    restartIfChanged = false;
    stopIfChanged = false;
    serviceConfig =
      {
        Type = "oneshot";
        ExecStart = mlib.renderCommand table task.command;
        UMask = "0077";
      }
      // lib.optionalAttrs (task.user != null) {User = task.user;}
      // lib.optionalAttrs (task.group != null) {Group = task.group;}
      // lib.optionalAttrs task.dynamicUser {DynamicUser = true;}
      // lib.optionalAttrs (loadCredential != []) {LoadCredential = loadCredential;}
      // lib.optionalAttrs (runtimeDirectory != null) {
        RuntimeDirectory = runtimeDirectory;
        RuntimeDirectoryMode = "0700";
      }
      // lib.optionalAttrs (task.stateDirectory != null) {
        StateDirectory = task.stateDirectory;
        StateDirectoryMode = "0700";
      }
      // lib.optionalAttrs (task.timeoutSec != null) {TimeoutStartSec = toString task.timeoutSec;}
      // lib.optionalAttrs (task.successStamp != null) {
        # `+`: written with full privileges, whatever User= the task runs as.
        ExecStartPost = [
          "+${pkgs.coreutils}/bin/mkdir -p /var/lib/masgen"
          "+${pkgs.coreutils}/bin/touch /var/lib/masgen/${task.successStamp}"
        ];
      }
      // lib.optionalAttrs (task.successStamp != null && task.clearStampAtStart) {
        ExecStartPre = ["+${pkgs.coreutils}/bin/rm -f /var/lib/masgen/${task.successStamp}"];
      }
      // lib.optionalAttrs (task.successExitStatus != []) {
        SuccessExitStatus = lib.concatMapStringsSep " " toString task.successExitStatus;
      };
  };
in {
  options.masgen.tasks = mkOption {
    type = types.attrsOf taskType;
    default = {};
    description = ''
      Oneshot units that operators start by hand (`systemctl start <name>`).
      See the header of masgen's modules/tasks.nix for the placeholders
      accepted in `command`.
    '';
  };

  config = lib.mkIf (cfg != {}) {
    assertions = lib.concatLists (
      lib.mapAttrsToList (name: task: [
        {
          assertion = mlib.unknownTokens knownTokens task.command == [];
          message = "masgen.tasks.${name}.command uses unknown placeholder(s) ${
            lib.concatStringsSep ", " (mlib.unknownTokens knownTokens task.command)
          }; known: ${lib.concatStringsSep ", " knownTokens}";
        }
        {
          assertion = task.command != [];
          message = "masgen.tasks.${name}.command is empty.";
        }
      ])
      cfg
    );

    systemd.services = lib.mapAttrs mkUnit cfg;
  };
}
