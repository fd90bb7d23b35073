# masgen.synapse.passwordConfig: give Synapse a `password_config` whose
# `pepper` comes from a secret file.
#
# Synapse has no `pepper_path`, and it merges extra config files shallowly
# (top-level keys), so the whole `password_config` section is written at boot
# by a oneshot (before Synapse) into
#   /run/masgen-synapse/password-config.yaml   (dir 0700, file 0400, owner matrix-synapse;
#   root on a host where Synapse is off but MAS is: the MAS host of a split
#   homeserver, where only masgen's syn2mas tasks read the file)
# as JSON (valid YAML):
#   {"password_config": <settings> + {"pepper": <pepperFile, one trailing newline stripped>}}
# and that path is appended to services.matrix-synapse.extraConfigFiles.
# `password_config` must therefore not be set in services.matrix-synapse.settings
# (it would be replaced wholesale; asserted).
#
# Note: MAS reads `passwords.schemes[].secret_file` verbatim (no trimming), and
# syn2mas requires the MAS version-1 secret to equal the Synapse pepper byte for
# byte. A pepper file shared with MAS must therefore not end with a newline.
{
  config,
  lib,
  pkgs,
  ...
}: let
  inherit (lib) mkOption types;

  mlib = import ./lib.nix;

  cfg = config.masgen.synapse.passwordConfig;
  synCfg = config.services.matrix-synapse;
  masEnabled = config.services.matrix-authentication-service.enable or false;
  # On the MAS host of a split homeserver Synapse is off: only masgen's
  # syn2mas tasks read the file, as a credential (PID 1 reads it as root).
  owner =
    if synCfg.enable
    then "matrix-synapse"
    else "root";

  unitName = mlib.passwordConfigUnit;
  runtimeDirectory = "masgen-synapse";
  outputFile = "/run/${runtimeDirectory}/password-config.yaml";

  jsonFormat = pkgs.formats.json {};
  settingsFile = jsonFormat.generate "masgen-synapse-password-config-settings.json" cfg.settings;

  jqFilter =
    if cfg.pepperFile != null
    then ''{password_config: ($settings[0] + {pepper: ($pepper | rtrimstr("\n"))})}''
    else ''{password_config: $settings[0]}'';

  writer = pkgs.writeShellApplication {
    name = unitName;
    runtimeInputs = [
      pkgs.coreutils
      pkgs.jq
    ];
    text =
      ''
        out=${lib.escapeShellArg outputFile}
        tmp="$out.tmp"
        pepper_args=()
      ''
      + lib.optionalString (cfg.pepperFile != null) ''
        pepper="$CREDENTIALS_DIRECTORY/pepper"
        if [ ! -s "$pepper" ]; then
          echo "${unitName}: pepper file ${cfg.pepperFile} is empty or missing" >&2
          exit 1
        fi
        pepper_args=(--rawfile pepper "$pepper")
      ''
      + ''
        umask 077
        jq -n \
          --slurpfile settings ${settingsFile} \
          "''${pepper_args[@]}" \
          ${lib.escapeShellArg jqFilter} >"$tmp"
        chmod 0400 "$tmp"
        mv -f "$tmp" "$out"
      '';
  };

  synapseUnits =
    [
      "matrix-synapse.service"
    ]
    ++ map (worker: "matrix-synapse-worker-${worker}.service") (builtins.attrNames synCfg.workers);
in {
  options.masgen.synapse.passwordConfig = {
    enable = lib.mkEnableOption "writing Synapse's password_config (with a pepper from a file) at boot";

    settings = mkOption {
      type = types.attrsOf jsonFormat.type;
      default = {};
      example = {
        enabled = true;
      };
      description = ''
        The non-secret keys of Synapse's `password_config`. `pepper` is added
        from {option}`pepperFile`.
      '';
    };

    pepperFile = mkOption {
      type = types.nullOr (types.strMatching "/.*");
      default = null;
      example = "/run/secrets/synapse-pepper";
      description = ''
        Absolute path of a file holding the pepper (read through
        LoadCredential, so it may be root-only). One trailing newline is
        stripped. null writes `password_config` without a pepper.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = synCfg.enable || masEnabled;
        message = "masgen.synapse.passwordConfig is enabled but neither services.matrix-synapse nor services.matrix-authentication-service (whose syn2mas tasks read Synapse's config) is.";
      }
      {
        assertion = !(synCfg.settings ? password_config);
        message = ''
          services.matrix-synapse.settings.password_config is set while
          masgen.synapse.passwordConfig is enabled: Synapse would replace it
          wholesale with ${outputFile}. Put the keys in
          masgen.synapse.passwordConfig.settings instead.
        '';
      }
      {
        assertion = !(cfg.settings ? pepper);
        message = "masgen.synapse.passwordConfig.settings must not contain `pepper`; use pepperFile.";
      }
    ];

    services.matrix-synapse.extraConfigFiles = [outputFile];

    systemd.services.${unitName} = {
      description = "masgen: write Synapse password_config to ${outputFile}";
      before = lib.optionals synCfg.enable synapseUnits;
      requiredBy = lib.optionals synCfg.enable synapseUnits;
      serviceConfig =
        {
          Type = "oneshot";
          RemainAfterExit = true;
          User = owner;
          Group = owner;
          RuntimeDirectory = runtimeDirectory;
          RuntimeDirectoryMode = "0700";
          RuntimeDirectoryPreserve = true;
          UMask = "0077";
          ExecStart = lib.getExe writer;

          NoNewPrivileges = true;
          PrivateNetwork = true;
          PrivateTmp = true;
          ProtectHome = true;
          ProtectSystem = "strict";
        }
        // lib.optionalAttrs (cfg.pepperFile != null) {
          LoadCredential = ["pepper:${cfg.pepperFile}"];
        };
    };

    # Synapse reads the file only at start: restart it when the content
    # definition changes (a changed pepper *file* is not visible to Nix).
    systemd.services.matrix-synapse = lib.mkIf synCfg.enable {
      restartTriggers = [
        settingsFile
        (toString cfg.pepperFile)
      ];
    };
  };
}
