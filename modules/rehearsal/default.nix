# masgen's rehearsal: a NixOS VM test (nixpkgs' `runNixOSTest`) that runs a
# host's plan in a VM, the generated flake's `checks.<system>.<host>-migration`
# (migration) or `<host>-fresh` (fresh install). docs/guide.md, "Rehearse it
# in a VM", says how to run it and what it proves.
#
# Called from the generated flake.nix:
#   import ./masgen/modules/rehearsal {
#     pkgs = nixpkgs.legacyPackages.<system>;
#     inherit self;
#     data = import ./rehearsal/<host>.nix;
#   }
# `data` is written by masgen from the spec and its plan (rehearsal/<host>.nix).
#
# The machine is masgen's modules and the phase modules only, not the host's
# own configuration (hardware, boot loader, users): a VM replaces those. It
# boots `data.boot` ("prepare" for a migration, "final" for a fresh install);
# a migration's final configuration is the specialisation `final`, switched
# to with `switch-to-configuration test` where the plan switches. Both phase
# modules are imported, each in effect only while `masgen.rehearsal.phase`
# names it.
#
# Test-only stand-ins, never the operator's: every secret file the spec names
# is made inside the VM at boot (random, in the format masgen's `secrets`
# command makes it); TLS uses a certificate authority made at build time and
# trusted by the VM (its key is in the store: it is a throwaway test key), in
# place of ACME, the spec's certificate files or a TLS proxy in front; the
# proxy's host names resolve to the VM itself.
{
  pkgs,
  self,
  data,
}: let
  inherit (pkgs) lib;

  # A test CA and one certificate for every host name the proxy serves.
  testTls =
    pkgs.runCommand "masgen-rehearsal-tls" {
      nativeBuildInputs = [pkgs.openssl];
    } ''
      mkdir -p $out
      openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
        -subj "/CN=masgen rehearsal CA" -addext basicConstraints=critical,CA:TRUE \
        -keyout ca.key -out $out/ca.pem
      openssl req -newkey rsa:2048 -nodes -subj "/CN=masgen rehearsal" \
        -keyout $out/key.pem -out server.csr
      printf 'subjectAltName=%s\n' ${lib.escapeShellArg (lib.concatMapStringsSep "," (n: "DNS:${n}") data.hostNames)} > ext.cnf
      openssl x509 -req -in server.csr -CA $out/ca.pem -CAkey ca.key -CAcreateserial \
        -days 3650 -extfile ext.cnf -out $out/cert.pem
    '';

  # One line of the secrets unit per file: made only when missing.
  makeSecret = s: let
    path = lib.escapeShellArg s.path;
    owner = lib.escapeShellArg s.owner;
    make =
      {
        hex = "openssl rand -hex 32 | tr -d '\\n' > ${path}";
        rsa = "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ${path}";
        ec = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ${path}";
        rsa-dir = "mkdir -p ${path} && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ${path}/rehearsal.pem";
        rsa-encrypted = "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -aes-256-cbc -pass file:${lib.escapeShellArg (s.password or "")} -out ${path}";
      }
      .${s.kind};
  in ''
    (umask 022 && mkdir -p "$(dirname ${path})")
    [ -e ${path} ] || ${make}
    chown -R ${owner}: ${path}
    chmod -R u=rwX,go= ${path}
  '';

  secretsScript = lib.concatMapStrings makeSecret data.secrets;

  # Synapse's shared-secret registration, for seeding users in the first
  # phase: its own path setting replaces the spec's (Synapse merges config
  # files key by key).
  registrationConfig = pkgs.writeText "masgen-rehearsal-registration.yaml" ''
    registration_shared_secret_path: /run/masgen-rehearsal/registration-secret
  '';

  # A phase's module, in effect only while `masgen.rehearsal.phase` names it.
  phaseModule = phase: args @ {
    config,
    lib,
    pkgs,
    ...
  }: let
    module = self.nixosModules.${data.configurations.${phase}};
    value =
      if lib.isFunction module
      then module args
      else module;
  in {
    config = lib.mkIf (config.masgen.rehearsal.phase == phase) (value.config or value);
  };

  # mas-cli against the host's MAS config, as masgen's own tasks run it.
  masTask = description: args: {
    inherit description;
    after = ["postgresql.service"];
    requires = ["postgresql.service"];
    user = "matrix-authentication-service";
    dynamicUser = true;
    command = ["@masgen-mas-run@" "@mas-config@" "--" "@mas-cli@"] ++ args ++ ["@CONFIG@"];
  };

  testModule = {
    config,
    lib,
    pkgs,
    ...
  }: {
    options.masgen.rehearsal.phase = lib.mkOption {
      type = lib.types.enum (builtins.attrNames data.configurations);
      default = data.boot;
      description = "The phase module in effect (masgen's rehearsal test only).";
    };

    config = lib.mkMerge [
      {
        virtualisation = {
          memorySize = 3072;
          diskSize = 4096;
          cores = 2;
        };
        networking.hosts."127.0.0.1" = data.hostNames;
        security.pki.certificateFiles = lib.optional (data.hostNames != []) "${testTls}/ca.pem";
        # Every vhost serves the test certificate; one without TLS of its own
        # (`proxy.tls` "external" or "none") gets it too, standing in for the
        # TLS in front of it.
        services.nginx.virtualHosts = lib.genAttrs data.hostNames (name:
          {
            enableACME = lib.mkForce false;
            sslCertificate = lib.mkForce "${testTls}/cert.pem";
            sslCertificateKey = lib.mkForce "${testTls}/key.pem";
          }
          // lib.optionalAttrs (!builtins.elem name data.tlsHosts) {addSSL = true;});
        environment.systemPackages = [pkgs.curl pkgs.jq];

        systemd.services.masgen-rehearsal-secrets = {
          description = "masgen rehearsal: make the spec's secret files (test-only values)";
          wantedBy = ["multi-user.target"];
          before = data.secretUsers;
          requiredBy = builtins.filter (u: config.systemd.services ? ${lib.removeSuffix ".service" u}) data.secretUsers;
          path = [pkgs.openssl pkgs.coreutils];
          serviceConfig = {
            Type = "oneshot";
            RemainAfterExit = true;
          };
          script = ''
            umask 077
            ${secretsScript}
            mkdir -p /run/masgen-rehearsal
            [ -e /run/masgen-rehearsal/registration-secret ] \
              || openssl rand -hex 32 | tr -d '\n' > /run/masgen-rehearsal/registration-secret
            chown matrix-synapse: /run/masgen-rehearsal/registration-secret
            chmod 0755 /run/masgen-rehearsal
          '';
        };

        masgen.tasks =
          {
            masgen-rehearsal-list-admins = masTask "masgen rehearsal: list MAS admins" ["manage" "list-admin-users"];
          }
          // lib.listToAttrs (map (u: {
              name = "masgen-rehearsal-token-${u}";
              value = masTask "masgen rehearsal: a compatibility token for ${u}" ["manage" "issue-compatibility-token" u];
            })
            data.script.check_users)
          // lib.optionalAttrs (data.script.kind == "fresh") {
            masgen-rehearsal-register = masTask "masgen rehearsal: register a user in MAS" (
              ["manage" "register-user" "--yes" "--no-admin"]
              ++ lib.optionals data.script.mas_password_login ["--password" data.script.password]
              ++ [(builtins.head data.script.check_users)]
            );
          };
      }
      (lib.mkIf (config.masgen.rehearsal.phase == "prepare") {
        services.matrix-synapse.extraConfigFiles = ["${registrationConfig}"];
      })
      (lib.mkIf (data.boot != "final") {
        specialisation.final.configuration.masgen.rehearsal.phase = lib.mkForce "final";
      })
    ];
  };
in
  pkgs.testers.runNixOSTest {
    name = data.name;
    nodes.machine = {
      imports =
        [self.nixosModules.masgen testModule]
        ++ map phaseModule (builtins.attrNames data.configurations);
    };
    testScript = "DATA_JSON = ${builtins.toJSON (builtins.toJSON data.script)}\n" + builtins.readFile ./test-script.py;
  }
