{
  description = "masgen: compile a Matrix homeserver spec into a NixOS flake for Synapse + Matrix Authentication Service";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = {
    self,
    nixpkgs,
  }: let
    inherit (nixpkgs) lib;

    systems = [
      "x86_64-linux"
      "aarch64-linux"
    ];

    forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

    cargoToml = builtins.fromTOML (builtins.readFile ./Cargo.toml);
  in {
    packages = forAllSystems (pkgs: {
      masgen = pkgs.rustPlatform.buildRustPackage {
        pname = "masgen";
        inherit (cargoToml.package) version;

        # The repository minus build outputs.
        src = lib.fileset.toSource {
          root = ./.;
          fileset = lib.fileset.difference ./. (
            lib.fileset.unions [
              (lib.fileset.maybeMissing ./target)
              (lib.fileset.maybeMissing ./result)
            ]
          );
        };
        cargoLock.lockFile = ./Cargo.lock;

        # The integration tests need root, a PostgreSQL server and
        # nix-instantiate; they run in CI (.ci/run), not in the sandbox.
        doCheck = false;

        # Completions, man pages and the spec's JSON Schema come from the binary
        # itself (clap_complete, clap_mangen, schemars), so they always match it;
        # a cross build cannot run it. Tested in tests/shell_integration.rs.
        nativeBuildInputs = [pkgs.installShellFiles];
        postInstall = lib.optionalString (pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform) ''
          installShellCompletion --cmd masgen \
            --bash <($out/bin/masgen completions bash) \
            --fish <($out/bin/masgen completions fish) \
            --zsh <($out/bin/masgen completions zsh)
          $out/bin/masgen man --out-dir man
          installManPage man/*.1
          mkdir -p $out/share/masgen
          $out/bin/masgen schema > $out/share/masgen/spec.schema.json
        '';

        meta = {
          inherit (cargoToml.package) description;
          license = lib.licenses.asl20;
          mainProgram = "masgen";
        };
      };
      default = self.packages.${pkgs.stdenv.hostPlatform.system}.masgen;
    });

    nixosModules = {
      default = import ./modules;
      masgen = import ./modules;
    };

    devShells = forAllSystems (pkgs: {
      default = pkgs.mkShell {
        inputsFrom = [self.packages.${pkgs.stdenv.hostPlatform.system}.masgen];
        packages = [
          pkgs.cargo
          pkgs.clippy
          pkgs.rustc
          pkgs.rustfmt
          pkgs.jq
          pkgs.nix
          pkgs.postgresql
          pkgs.shellcheck
        ];
      };
    });
  };
}
