# masgen.masKeys: make MAS's missing keys on the host before MAS starts, the
# way Synapse makes its own signing key on first start (spec: `generate = true`
# on a signing key, `generate_encryption = true` on [mas]).
#
#   masgen.masKeys.generate = [ { type = "encryption" | "rsa" | "ec-p256"; file = "/abs/path"; } ... ];
#
# One oneshot, masgen-mas-keys.service, ordered Before= and RequiredBy= the
# MAS service, runs scripts/mas-keys.sh: a file that exists is never touched,
# a new one is root-owned, mode 0400 (MAS runs as a DynamicUser and gets its
# keys through LoadCredential=, which PID 1 reads as root), and nothing is
# written to the Nix store: the keys exist only on the host.
{
  config,
  lib,
  pkgs,
  ...
}: let
  inherit (lib) mkOption types;

  mlib = import ./lib.nix;

  cfg = config.masgen.masKeys;

  script = pkgs.writeShellApplication {
    name = "masgen-mas-keys";
    runtimeInputs = [
      pkgs.coreutils
      pkgs.openssl
    ];
    text = builtins.readFile ./scripts/mas-keys.sh;
  };

  keyType = types.submodule {
    options = {
      type = mkOption {
        type = types.enum ["encryption" "rsa" "ec-p256"];
        description = "What to make: MAS's encryption key (64 hex characters), an RSA 2048 or an EC P-256 signing key (PEM).";
      };
      file = mkOption {
        type = types.str;
        description = "Where MAS's configuration reads the key (an absolute path outside the Nix store, on persistent storage).";
      };
    };
  };

  words = lib.concatMap (k: [k.type k.file]) cfg.generate;
in {
  options.masgen.masKeys = {
    generate = mkOption {
      type = types.listOf keyType;
      default = [];
      description = "MAS keys the host makes when they are missing, before MAS starts.";
    };

    masUnit = mkOption {
      type = types.str;
      default = "matrix-authentication-service.service";
      description = "The MAS unit that needs the keys.";
    };
  };

  config = lib.mkIf (cfg.generate != []) {
    assertions = [
      {
        assertion = builtins.all (k: lib.hasPrefix "/" k.file && !(lib.hasPrefix "/nix/store/" k.file)) cfg.generate;
        message = "masgen.masKeys.generate: every file must be an absolute path outside the Nix store";
      }
    ];

    systemd.services.masgen-mas-keys = {
      description = "masgen: make MAS's missing keys";
      before = [cfg.masUnit];
      requiredBy = [cfg.masUnit];
      # The keys' file systems are mounted first (a separate /var/lib, say).
      unitConfig.RequiresMountsFor = lib.unique (map (k: dirOf k.file) cfg.generate);
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${lib.getExe script} ${lib.concatMapStringsSep " " mlib.escapeExecArg words}";
        UMask = "0077";
        # Only local files: no network, no privilege gain.
        PrivateNetwork = true;
        NoNewPrivileges = true;
        PrivateTmp = true;
      };
    };
  };
}
