# A stand-in for nixpkgs' package set, for evaluating NixOS configurations
# with nixpkgs' own modules (tests/nixos/eval.nix). Written for masgen's test
# suite; no code here comes from nixpkgs.
#
# Every package is a derivation that is never built: evaluation only needs
# its store path, `version`, `meta.mainProgram` and the like. What the
# configuration writes is kept readable:
#   - `writeText`/`writeTextFile`/`writeShellScript`… keep `text`;
#   - `formats.<f>.generate name value` keeps `value` (and the format name);
#   - builders (`runCommand`, `symlinkJoin`, `mkDerivation`, ...) put their
#     inputs into the derivation, so computing its path forces them;
#   - a generated file prints its content on stderr when its path is used
#     (see `traced`).
# Plain packages are named in ./pkgs-names.nix; they can also be called
# (`pkgs.makeInitrd { ... }` is the stand-in again). Anything evaluation
# forces that is not here fails with "attribute missing", which names what
# to add. Versions a module compares are in `versioned`.
{
  lib,
  system ? "x86_64-linux",
  # A nixpkgs tree with nixos/lib/testing: `testers.runNixOSTest` runs the
  # tree's own test framework (tests/nixos/rehearsal.nix). Without it,
  # `testers` is empty.
  tree ? null,
}:

let
  platform = lib.systems.elaborate system;

  # A derivation that is never built. `extra` becomes attributes of it
  # (passthru-like); the outputs named in `outputs` are selectable.
  mk =
    name: extra:
    let
      version = extra.version or "0-standin";
      outputs = extra.outputs or [
        "out"
        "bin"
        "lib"
        "dev"
        "man"
      ];
      drv = derivation (
        coerceEnv (extra.env or { })
        // {
          # Files are named as nixpkgs names them, packages "pname-version".
          name = lib.strings.sanitizeDerivationName (
            if extra ? standinKind then name else "${name}-${version}"
          );
          inherit system outputs;
          builder = "/bin/sh";
          args = [
            "-c"
            "echo stand-in package, never built; exit 1"
          ];
        }
      );
      self =
        drv
        // {
          pname = name;
          inherit version;
          meta = {
            mainProgram = name;
            platforms = lib.platforms.all;
            broken = false;
            available = true;
          } // (extra.meta or { });
          passthru = { };
          override = _: self;
          overrideAttrs = _: self;
          overrideDerivation = _: self;
          overridePythonAttrs = _: self;
          withPackages = _f: self;
          shellPath = "/bin/${name}";
          tests = { };
        }
        // removeAttrs extra [
          "meta"
          "env"
        ];
    in
    self;

  # A builder's inputs become the stand-in's environment, as they would
  # become a real derivation's, so computing its path forces them (a type
  # error or a missing package anywhere below system.build.toplevel shows).
  # What a real builder could not put in its environment is JSON-encoded.
  plain = v: builtins.isString v || builtins.isPath v || builtins.isBool v || builtins.isInt v
    || builtins.isFloat v || v == null || (builtins.isAttrs v && (v ? outPath || v ? __toString));
  coerceEnv =
    env:
    # Keys are taken by name only: forcing a value here could recurse where
    # a real derivation would not (its environment is lazy until built).
    lib.mapAttrs (
      _: v:
      if builtins.isFunction v then
        null
      else if plain v || (builtins.isList v && builtins.all plain v) then
        v
      else
        builtins.toJSON (lib.filterAttrsRecursive (_: x: !builtins.isFunction x) { inherit v; })
    ) (removeAttrs env [ "passthru" "meta" "pos" ]);

  # A generated file announces its content on stderr when its store path is
  # first used (a trace line `masgen-file {"path":…,"name":…,"text"|"value":…}`),
  # so the test can map the paths in unit texts back to what nixpkgs wrote.
  # (The store is `dummy://`: nothing can be read back from a path.)
  # `out` is the traced file too: `lib.getExe`/`getBin` go through it.
  traced =
    drv:
    let
      self = drv // {
        out = self;
        outPath = tracedPath;
      };
      tracedPath = builtins.trace (
        "masgen-file "
        + builtins.toJSON (
          {
            path = drv.outPath;
            inherit (drv) name standinKind;
          }
          // (
            if drv ? value then
              { inherit (drv) value format; }
            else
              { inherit (drv) text executable destination; }
          )
        )
      ) drv.outPath;
    in
    self;

  # `writeTextFile`-like: a derivation that keeps its text.
  textFile =
    {
      name,
      text,
      executable ? false,
      destination ? "",
      checkPhase ? "",
      ...
    }@args:
    traced (mk name {
      env = { inherit text executable destination checkPhase; };
      inherit text executable destination checkPhase;
      version = "file";
      outputs = [ "out" ];
      standinKind = "text";
      meta = args.meta or { };
    });

  # `formats.<kind>` of nixpkgs: `type` is a real lib.types type (so
  # freeform settings type-check as in nixpkgs), `generate` keeps its value.
  jsonValue =
    with lib.types;
    let
      valueType =
        nullOr (oneOf [
          bool
          int
          float
          str
          path
          (attrsOf valueType)
          (listOf valueType)
        ])
        // {
          description = "JSON value";
        };
    in
    valueType;
  iniAtom = with lib.types; nullOr (oneOf [ bool int float str ]);
  format =
    kind: type: _args:
    {
      inherit type;
      generate =
        name: value:
        traced (mk name {
          env.value = builtins.toJSON value;
          inherit value;
          format = kind;
          version = "file";
          outputs = [ "out" ];
          standinKind = "format";
        });
      lib = {
        mkRaw = value: { _type = "raw"; inherit value; };
        mkStr = value: value;
      };
    };
  formats = {
    yaml = format "yaml" jsonValue;
    yaml_1_1 = format "yaml" jsonValue;
    yaml_1_2 = format "yaml" jsonValue;
    json = format "json" jsonValue;
    toml = format "toml" jsonValue;
    ini = format "ini" (lib.types.attrsOf (lib.types.attrsOf (lib.types.either iniAtom (lib.types.listOf iniAtom))));
    iniWithGlobalSection = format "ini" jsonValue;
    keyValue = format "keyValue" (lib.types.attrsOf (lib.types.either iniAtom (lib.types.listOf iniAtom)));
    systemd = format "systemd" jsonValue;
    javaProperties = format "javaProperties" (lib.types.attrsOf lib.types.str);
    elixirConf = format "elixirConf" jsonValue;
    lua = format "lua" jsonValue;
    nixConf = format "nixConf" jsonValue;
    xml = format "xml" jsonValue;
    php = format "php" jsonValue;
    pythonVars = format "pythonVars" jsonValue;
    hocon = format "hocon" jsonValue;
    libconfig = format "libconfig" jsonValue;
    gitIni = format "gitIni" jsonValue;
    cdn = format "cdn" jsonValue;
  };

  # A set of plain stand-ins.
  set = names: lib.genAttrs names (n: mk n { });

  # Python: `withPackages`/`pkgs` of an interpreter and package sets.
  python =
    name:
    let
      self = mk name {
        version = "3.13.0";
        pythonVersion = "3.13";
        sitePackages = "lib/python3.13/site-packages";
        withPackages = _f: self;
        buildEnv = self;
        pkgs = pythonPackages;
        interpreter = "${self}/bin/python3";
        executable = "python3.13";
        isPy3 = true;
      };
    in
    self;
  pythonPackages = lib.genAttrs [
    "pip"
    "setuptools"
    "psycopg2"
    "authlib"
    "systemd"
    "matrix-synapse"
    "matrix-synapse-unwrapped"
    "pglast"
    "pyflakes"
  ] (n: mk n { }) // {
    buildPythonPackage = a: mk (a.pname or "python-package") { };
    buildPythonApplication = a: mk (a.pname or "python-application") { };
  };

  # Packages whose version a module compares or prints.
  versioned = {
    nginx = "1.29.1";
    nginxStable = "1.28.0";
    nginxMainline = "1.29.1";
    openssl = "3.5.1";
    systemd = "258";
    postgresql = "17.6";
    postgresql_15 = "15.14";
    postgresql_16 = "16.10";
    postgresql_17 = "17.6";
    postgresql_18 = "18.0";
    matrix-synapse = "1.157.0";
    matrix-synapse-unwrapped = "1.157.0";
    matrix-authentication-service = "1.5.0";
    linux = "6.12.40";
    bash = "5.3";
    util-linux = "2.41";
    shadow = "4.18";
    glibc = "2.40";
    lego = "4.25.2";
    nix = "2.31.0";
    openssh = "10.0p2";
    kmod = "34";
    dbus = "1.16.2";
    perl = "5.40.0";
    coreutils = "9.7";
  };

  # Stand-ins for a PostgreSQL package: extensions and `withPackages`.
  postgres =
    name: version:
    let
      self = mk name {
        inherit version;
        psqlSchema = lib.versions.major version;
        withPackages = _f: self;
        withJIT = self;
        withoutJIT = self;
        jitSupport = false;
        pkgs = { };
        installedExtensions = [ ];
        dlSuffix = ".so";
        pg_config = mk "pg_config" { };
      };
    in
    self;

  # The kernel: modules the configuration asks for are looked up by name.
  kernel = mk "linux" {
    version = versioned.linux;
    modDirVersion = versioned.linux;
    features = { };
    config = {
      isYes = _: true;
      isNo = _: false;
      isEnabled = _: true;
      isModule = _: false;
      isSet = _: true;
      getValue = _: null;
    };
    kernelAtLeast = v: lib.versionAtLeast versioned.linux v;
    kernelOlder = v: lib.versionOlder versioned.linux v;
    isHardened = false;
    isZen = false;
    isLibre = false;
    passthru = { };
  };
  kernelPackages = {
    inherit kernel;
    inherit (self) stdenv;
    extend = _: kernelPackages;
    __unfix__ = _: kernelPackages;
    nvidia_x11 = mk "nvidia" { };
    virtualbox = mk "virtualbox-modules" { };
    zfs = mk "zfs-kernel" { };
  };

  systemdPkg = mk "systemd" {
    version = versioned.systemd;
    withBootloader = true;
    withCryptsetup = true;
    withEfi = true;
    withFido2 = true;
    withHostnamed = true;
    withImportd = true;
    withKmod = true;
    withLocaled = true;
    withMachined = true;
    withNetworkd = true;
    withPortabled = false;
    withSysupdate = false;
    withTimedated = true;
    withTpm2Tss = true;
    withUtmp = true;
    withHomed = true;
    withLogind = true;
    withResolved = true;
    withSysusers = true;
    withTimesyncd = true;
    withCoredump = true;
    withRepart = true;
    withUkify = false;
    withAnalyze = true;
    withPolkit = true;
    withOomd = true;
    withShellCompletions = true;
    withUserDb = true;
    withVmspawn = false;
    withQrencode = true;
    withLibBPF = true;
    withKexectools = true;
    withPasswordQuality = true;
    withPCRE2 = true;
    interfaceVersion = 2;
    kbd = mk "kbd" { };
    util-linux = mk "util-linux" { version = versioned.util-linux; };
  };

  self =
    # Ordinary packages: a derivation with the name, version if known.
    # They can be called too (`pkgs.makeInitrd { ... }` is the stand-in
    # again, its arguments unread), for builders nothing here looks into.
    lib.genAttrs (import ./pkgs-names.nix) (
      n: mk n { version = versioned.${n} or "0-standin"; } // { __functor = self: _: self; }
    )
    // {
      _type = "pkgs";
      inherit lib formats kernelPackages;
      inherit (lib) recurseIntoAttrs;
      path = ./.;
      config = {
        allowAliases = true;
        allowUnfree = false;
      };
      overlays = [ ];
      targetPlatform = platform;
      hostPlatform = platform;
      buildPlatform = platform;
      system = platform.system;
      # Like nixpkgs' stdenv, it carries the host platform's predicates.
      stdenv = lib.filterAttrs (_: builtins.isBool) platform // {
        hostPlatform = platform;
        buildPlatform = platform;
        targetPlatform = platform;
        isLinux = true;
        isDarwin = false;
        isx86_64 = platform.isx86_64;
        isAarch64 = platform.isAarch64;
        system = platform.system;
        cc = mk "gcc-wrapper" {
          bintools = mk "binutils" { dynamicLinker = "/lib64/ld-linux-x86-64.so.2"; };
          isGNU = true;
          isClang = false;
          libc = mk "glibc" { };
          targetPrefix = "";
        };
        shell = "${self.bash}/bin/bash";
        mkDerivation =
          a0:
          let
            a = if builtins.isFunction a0 then a0 a else a0;
          in
          mk (a.pname or a.name or "mkDerivation") {
            env = removeAttrs a [ "name" "pname" "version" "outputs" ];
            version = a.version or "0";
            outputs = a.outputs or [ "out" ];
          } // (a.passthru or { });
        lib = lib;
      };
      stdenvNoCC = self.stdenv;
      buildPackages = self;
      pkgsBuildBuild = self;
      pkgsBuildHost = self;
      pkgsHostTarget = self;
      pkgsTargetTarget = self;
      pkgsStatic = self;
      pkgsi686Linux = self;
      __splicedPackages = self;
      appendOverlays = _: self;
      extend = _: self;
      callPackage = _f: _a: mk "callPackage" { };

      # Trivial builders: they keep what they were given.
      writeTextFile = textFile;
      writeText = name: text: textFile { inherit name text; };
      writeTextDir = path: text: textFile { name = baseNameOf path; inherit text; destination = "/${path}"; };
      writeScript = name: text: textFile { inherit name text; executable = true; };
      writeScriptBin = name: text: textFile { inherit name text; executable = true; destination = "/bin/${name}"; };
      writeShellScript = name: text: textFile { inherit name; text = "#!${self.runtimeShell}\n${text}"; executable = true; };
      writeShellScriptBin = name: text: textFile { inherit name; text = "#!${self.runtimeShell}\n${text}"; executable = true; destination = "/bin/${name}"; };
      writeShellApplication = a: textFile { inherit (a) name text; executable = true; destination = "/bin/${a.name}"; } // { meta.mainProgram = a.name; };
      writeDash = name: text: textFile { inherit name text; executable = true; };
      writeBash = name: text: textFile { inherit name text; executable = true; };
      writePython3 = name: _a: text: textFile { inherit name text; executable = true; };
      writePython3Bin = name: _a: text: textFile { inherit name text; executable = true; destination = "/bin/${name}"; };
      writeClosure = _paths: textFile { name = "closure"; text = ""; };
      writeReferencesToFile = _p: textFile { name = "references"; text = ""; };
      writers = {
        writeBash = name: text: textFile { inherit name text; executable = true; };
        writeBashBin = name: text: textFile { inherit name text; executable = true; destination = "/bin/${name}"; };
        writeDash = name: text: textFile { inherit name text; executable = true; };
        writePython3 = name: _a: text: textFile { inherit name text; executable = true; };
        writePython3Bin = name: _a: text: textFile { inherit name text; executable = true; };
        writeJSON = name: value: (formats.json { }).generate name value;
        writeYAML = name: value: (formats.yaml { }).generate name value;
        # nixpkgs formats and checks the file with gixy; the text is kept as given.
        writeNginxConfig = name: text: textFile { inherit name text; };
        writeTOML = name: value: (formats.toml { }).generate name value;
      };
      runCommand = name: env: script: mk name {
        env = env // { buildCommand = script; };
        passthru = env.passthru or { };
        version = "cmd";
        outputs = [ "out" ];
      } // (env.passthru or { });
      runCommandLocal = self.runCommand;
      runCommandNoCC = self.runCommand;
      runCommandCC = self.runCommand;
      symlinkJoin = a: mk a.name { env = removeAttrs a [ "name" ]; paths = a.paths or [ ]; version = "join"; outputs = [ "out" ]; } // (a.passthru or { });
      buildEnv = a: mk a.name { env = removeAttrs a [ "name" ]; paths = a.paths or [ ]; version = "env"; outputs = [ "out" ]; } // (a.passthru or { });
      linkFarm = name: entries: mk name { env.entries = entries; version = "farm"; outputs = [ "out" ]; };
      linkFarmFromDrvs = name: drvs: mk name { env.drvs = drvs; version = "farm"; outputs = [ "out" ]; };
      substituteAll = a: mk (a.name or (baseNameOf (toString a.src))) { version = "subst"; outputs = [ "out" ]; };
      substitute = a: mk (a.name or (baseNameOf (toString a.src))) { env = a; version = "subst"; outputs = [ "out" ]; };
      replaceVars = src: vars: mk (baseNameOf (toString src)) { inherit vars; version = "subst"; outputs = [ "out" ]; };
      replaceVarsWith = a: mk (a.name or (baseNameOf (toString a.src))) { version = "subst"; outputs = [ "out" ]; };
      concatText = name: files: mk name { env.files = files; version = "file"; standinKind = "concat"; outputs = [ "out" ]; };
      concatTextFile = a: mk a.name { env.files = a.files; version = "file"; standinKind = "concat"; outputs = [ "out" ]; };
      aggregateModules = modules: mk "kernel-modules" { env.modules = modules; outputs = [ "out" ]; };
      makeWrapper = mk "make-wrapper" { };
      makeBinaryWrapper = mk "make-binary-wrapper" { };
      makeSetupHook = a: _script: mk (a.name or "hook") { };
      makeDBusConf = a: mk "dbus-conf" { };
      makeFontsConf = a: mk "fonts-conf" { };
      makeFontsCache = a: mk "fonts-cache" { };
      closureInfo = a: mk "closure-info" { };
      mkShell = a: mk "shell" { };
      fetchurl = a: mk "fetchurl" { };
      fetchzip = a: mk "fetchzip" { };
      fetchFromGitHub = a: mk "source" { };
      unixtools = set [ "xxd" "hostname" "ifconfig" "netstat" "ping" "route" "top" "whereis" "wall" "write" "script" "getopt" "more" "procps" "util-linux" "nettools" "logger" "fdisk" ];
      # Like nixpkgs' pkgs/build-support/testers (written for these tests):
      # the tree's `nixos/lib` runTest, with this set as host and node pkgs.
      testers = lib.optionalAttrs (tree != null) {
        runNixOSTest =
          testModule:
          (import "${tree}/nixos/lib" { inherit lib; }).runTest {
            _file = "stand-in pkgs.testers.runNixOSTest";
            imports = [ testModule ];
            hostPkgs = self;
            node.pkgs = self;
          };
      };
      nixosTests = { };

      runtimeShell = "${self.bash}/bin/bash";
      runtimeShellPackage = self.bash;

      # Packages with a structure modules look into.
      systemd = systemdPkg;
      systemdMinimal = systemdPkg;
      systemdLibs = systemdPkg;
      systemdUkify = systemdPkg;
      python3 = python "python3";
      python312 = python "python3";
      python313 = python "python3";
      python3Packages = pythonPackages;
      python3Minimal = python "python3";
      linuxPackages = kernelPackages;
      linuxPackages_latest = kernelPackages;
      linuxKernel = {
        packages = { };
        packagesFor = _k: kernelPackages;
      };
      linuxPackagesFor = _k: kernelPackages;
      postgresql = postgres "postgresql" versioned.postgresql;
      postgresql_15 = postgres "postgresql" versioned.postgresql_15;
      postgresql_16 = postgres "postgresql" versioned.postgresql_16;
      postgresql_17 = postgres "postgresql" versioned.postgresql_17;
      postgresql_18 = postgres "postgresql" versioned.postgresql_18;
      postgresqlPackages = { };
      matrix-synapse = mk "matrix-synapse" {
        version = versioned.matrix-synapse;
        python = python "python3";
        plugins = { };
        unwrapped = mk "matrix-synapse-unwrapped" { version = versioned.matrix-synapse; };
        override = _: self.matrix-synapse;
      };
      matrix-synapse-unwrapped = mk "matrix-synapse-unwrapped" {
        version = versioned.matrix-synapse;
        python = python "python3";
        plugins = { };
        optional-dependencies = { };
      };
      matrix-synapse-plugins = { };
      nginx = mk "nginx" {
        version = versioned.nginx;
        modules = [ ];
      };
      nginxStable = self.nginx;
      nginxMainline = self.nginx;
      nginxQuic = self.nginx;
      openresty = self.nginx;
      tengine = self.nginx;
      angie = self.nginx;
      glibcLocales = mk "glibc-locales" { };
      cacert = mk "nss-cacert" { outputs = [ "out" "p11kit" "unbundled" ]; };
      shadow = mk "shadow" { version = versioned.shadow; outputs = [ "out" "su" "man" "dev" ]; };
      libxcrypt = mk "libxcrypt" {
        enabledCryptSchemeIds = [ "y" "gy" "7" "2b" "2y" "2a" "6" "5" ];
      };
      tzdata = mk "tzdata" { };
      perlPackages = { };
      haskellPackages = { };
      nodePackages = { };
      luaPackages = { };
      xorg = set [ "fontadobe100dpi" "fontadobe75dpi" "fontalias" "fontcursormisc" "fontmiscmisc" "fontxfree86type1" "lndir" "mkfontdir" "mkfontscale" "twm" "xauth" "xf86inputlibinput" "xf86inputsynaptics" "xf86inputvmmouse" "xf86videoamdgpu" "xfs" "xmessage" "xorgserver" "xrandr" "xrdb" "xwininfo" ];
      gnome = { };
      kdePackages = { };
      qt6 = { };
      qt5 = { };
      fontconfig = mk "fontconfig" { };
      dejavu_fonts = mk "dejavu-fonts" { minimal = mk "dejavu-fonts-minimal" { }; };
      grub2 = mk "grub" { };
      grub2_efi = mk "grub" { };
      busybox = mk "busybox" { };
      # The NixOS test framework (tests/nixos/rehearsal.nix).
      qemu_test = mk "qemu" { ga = mk "qemu-ga" { }; inherit (self) stdenv; };
      qemu = self.qemu_test;
      qemu_kvm = self.qemu_test;
      makeInitrd = a: mk (a.name or "initrd") {
        compressorExecutableFunction = _: "${self.gzip}/bin/gzip";
        extension = ".gz";
        compressorArgs = [ ];
        outputs = [ "out" ];
      };
      makeInitrdNG = self.makeInitrd;
      OVMF = mk "OVMF" { fd = mk "OVMF-fd" { systemManagementModeRequired = false; firmware = "/nix/store/00000000000000000000000000000000-OVMF/FV/OVMF_CODE.fd"; variables = "/nix/store/00000000000000000000000000000000-OVMF/FV/OVMF_VARS.fd"; }; firmware = "/nix/store/00000000000000000000000000000000-OVMF/FV/OVMF_CODE.fd"; variables = "/nix/store/00000000000000000000000000000000-OVMF/FV/OVMF_VARS.fd"; };
      nixos-artwork.wallpapers.simple-dark-gray-bootloader = mk "wallpaper" { gnomeFilePath = "/nix/store/00000000000000000000000000000000-masgen-standin-wallpaper.png"; };
      stdenvAdapters = { };
      lib-override = { };
    };
in
self
