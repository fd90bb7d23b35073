# masgen.mas.databasePassword: MAS's database password from a file, for a
# PostgreSQL on another host (split hosts).
#
# MAS's `database.password_file` cannot be combined with `uri`, and the
# nixpkgs MAS module always sets `uri` (a non-nullable str with a default;
# "If you need to put secrets in the uri, please use the extraConfigFiles
# option"). So masgen-mas-database.service writes at boot
#   /run/masgen-mas-database/database.yaml   (dir 0700, file 0400, root)
# as JSON (valid YAML):
#   {"database": <services.matrix-authentication-service.settings.database,
#                 nulls pruned> + {"uri": <the uri with the password inserted>}}
# where `postgresql://USER@HOST:PORT/DB?sslmode=MODE` becomes
# `postgresql://USER:PASSWORD@HOST:PORT/DB?sslmode=MODE`, the password (one
# trailing newline stripped) percent-encoded with jq's @uri (lib.nix:
# masDatabaseFilter, run by scripts/database-file.sh). MAS merges its config
# files in order, later wins. The path is appended to
# services.matrix-authentication-service.extraConfigFiles, which MAS reads
# through LoadCredential= (as root: the file is root's).
{
  config,
  lib,
  pkgs,
  ...
}: let
  mlib = import ./lib.nix;

  cfg = config.masgen.mas.databasePassword;
  masCfg = config.services.matrix-authentication-service;

  unitName = mlib.masDatabaseUnit;
  outputFile = mlib.masDatabaseFile;
  masUnit = "matrix-authentication-service.service";

  settingsFile =
    (pkgs.formats.json {}).generate "masgen-mas-database-settings.json"
    (mlib.pruneNulls (masCfg.settings.database or {}));

  writer = mlib.databaseFileWriter pkgs;
in {
  options.masgen.mas.databasePassword = {
    enable = lib.mkEnableOption "writing MAS's database uri with a password from a file at boot";

    passwordFile = mlib.passwordFileOption lib "/run/secrets/mas-db-password";
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = builtins.match "[A-Za-z][A-Za-z0-9+.-]*://[^@:/?#]+@.*" (masCfg.settings.database.uri or "") != null;
        message = ''
          masgen.mas.databasePassword needs
          services.matrix-authentication-service.settings.database.uri of the
          form postgresql://USER@HOST:PORT/DB (a user, no password); got
          ${builtins.toJSON (masCfg.settings.database.uri or null)}.
        '';
      }
    ];

    services.matrix-authentication-service.extraConfigFiles = [outputFile];

    systemd.services.${unitName} = {
      description = "masgen: write MAS's database uri to ${outputFile}";
      before = lib.optional masCfg.enable masUnit;
      requiredBy = lib.optional masCfg.enable masUnit;
      serviceConfig = mlib.databaseFileServiceConfig {
        exe = lib.getExe writer;
        inherit outputFile settingsFile;
        filter = mlib.masDatabaseFilter;
        inherit (cfg) passwordFile;
        runtimeDirectory = unitName;
      };
    };
  };
}
