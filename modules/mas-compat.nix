# services.matrix-authentication-service for a nixpkgs whose own module is
# missing or lacks `credentials` (imported by ./default.nix only then).
#
# It declares the options masgen's generated configurations set, with the
# meaning nixpkgs' module gives them:
#   settings          written as YAML (nulls pruned, like nixpkgs); when the
#                     unit starts, `${CREDENTIALS_DIRECTORY}` in it is
#                     replaced and the result is `mas-cli config check`ed
#   extraConfigFiles  further `--config` files, loaded as credentials
#                     `config-<i>`
#   credentials       credential name -> file on the host (LoadCredential=)
#   createDatabase    PostgreSQL role and database `matrix-authentication-service`
#   serviceDependencies  units to want and start after (Synapse's, if enabled)
# The unit runs as the DynamicUser `matrix-authentication-service` with its
# state in /var/lib/matrix-authentication-service. nixpkgs' settings
# defaults (pool sizes, trusted proxies, ...) are MAS's own, so they are not
# repeated here: MAS applies them itself.
{
  config,
  lib,
  pkgs,
  ...
}: let
  inherit (lib) mkOption types;

  mlib = import ./lib.nix;

  cfg = config.services.matrix-authentication-service;
  synapse = config.services.matrix-synapse;

  name = "matrix-authentication-service";
  runtimeConfig = "/run/${name}/config.yaml";
  configFile = (pkgs.formats.yaml {}).generate "${name}-config.yaml" (mlib.masFinalSettings cfg.settings);

  # `"${CREDENTIALS_DIRECTORY}/…"` is expanded by systemd in Exec lines and
  # by the shell in the start script.
  extraConfigArgs =
    lib.imap0 (
      i: _: "--config \"\${CREDENTIALS_DIRECTORY}/config-${toString i}\""
    )
    cfg.extraConfigFiles;
  mas = lib.getExe cfg.package;
  masCommand = words: lib.concatStringsSep " " ([mas] ++ words ++ extraConfigArgs);

  prepare = pkgs.writeShellApplication {
    name = "${name}-prepare";
    runtimeInputs = [pkgs.gettext];
    # envsubst replaces only the variable named in single quotes.
    text = ''
      # shellcheck disable=SC2016
      envsubst '$CREDENTIALS_DIRECTORY' < ${configFile} > ${runtimeConfig}
      ${masCommand ["config" "check" "--config" runtimeConfig]}
    '';
  };
in {
  options.services.matrix-authentication-service = {
    enable = lib.mkEnableOption "the Matrix Authentication Service (masgen's compatible module)";

    package = mkOption {
      type = types.package;
      default = pkgs.matrix-authentication-service;
      defaultText = lib.literalExpression "pkgs.matrix-authentication-service";
      description = "The MAS package; its `mas-cli` runs the service.";
    };

    settings = mkOption {
      type = (pkgs.formats.yaml {}).type;
      default = {};
      description = "MAS's config.yaml, as data. Secrets go through `credentials`.";
    };

    createDatabase = mkOption {
      type = types.bool;
      default = false;
      description = "Create the PostgreSQL role and database `matrix-authentication-service` on this host.";
    };

    extraConfigFiles = mkOption {
      type = types.listOf types.str;
      default = [];
      description = "Further MAS config files on the host, loaded as credentials `config-<i>`.";
    };

    credentials = mkOption {
      type = types.attrsOf types.str;
      default = {};
      description = "Credential name to file on the host; readable by MAS as `\${CREDENTIALS_DIRECTORY}/<name>`.";
    };

    serviceDependencies = mkOption {
      type = types.listOf types.str;
      default = lib.optional synapse.enable synapse.serviceUnit;
      defaultText = lib.literalExpression "lib.optional config.services.matrix-synapse.enable config.services.matrix-synapse.serviceUnit";
      description = "Units MAS wants and starts after.";
    };
  };

  config = lib.mkIf cfg.enable {
    services.postgresql = lib.mkIf cfg.createDatabase {
      enable = true;
      ensureDatabases = [name];
      ensureUsers = [
        {
          inherit name;
          ensureDBOwnership = true;
        }
      ];
    };

    systemd.services.${name} = {
      after = lib.optional cfg.createDatabase "postgresql.service" ++ cfg.serviceDependencies;
      wants = lib.optional cfg.createDatabase "postgresql.service" ++ cfg.serviceDependencies;
      wantedBy = ["multi-user.target"];
      serviceConfig = {
        DynamicUser = true;
        LoadCredential =
          lib.imap0 (i: file: "config-${toString i}:${file}") cfg.extraConfigFiles
          ++ lib.mapAttrsToList (credential: file: "${credential}:${file}") cfg.credentials;
        ExecStartPre = lib.getExe prepare;
        ExecStart = masCommand ["server" "--config" runtimeConfig];
        Restart = "on-failure";
        RestartSec = "1s";
        StateDirectory = name;
        StateDirectoryMode = "0700";
        RuntimeDirectory = name;
        WorkingDirectory = "/var/lib/${name}";
        UMask = "0077";

        # MAS needs the network and its own directories, nothing else.
        AmbientCapabilities = "";
        CapabilityBoundingSet = "";
        LockPersonality = true;
        NoNewPrivileges = true;
        PrivateDevices = true;
        PrivateMounts = true;
        PrivateTmp = true;
        ProcSubset = "pid";
        ProtectClock = true;
        ProtectControlGroups = true;
        ProtectHome = true;
        ProtectHostname = true;
        ProtectKernelLogs = true;
        ProtectKernelModules = true;
        ProtectKernelTunables = true;
        ProtectProc = "invisible";
        ProtectSystem = "strict";
        RemoveIPC = true;
        RestrictAddressFamilies = [
          "AF_UNIX"
          "AF_INET"
          "AF_INET6"
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        SystemCallArchitectures = "native";
        SystemCallErrorNumber = "EPERM";
        SystemCallFilter = ["@system-service"];
      };
    };
  };
}
