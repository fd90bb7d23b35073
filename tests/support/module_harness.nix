# A stub of the parts of nixpkgs' lib and pkgs the masgen modules use, for
# tests/modules.rs and tests/split_hosts.rs (see HARNESS in tests/modules.rs).
{ modulesDir }:
let
  b = builtins;
  dir = /. + modulesDir;
  stubPkg = name: {
    outPath = "/nix/store/stub-${name}";
    inherit name;
    meta.mainProgram = name;
  };
  option = args: args // { _stub = "option"; };
  type = name: extra: { _stub = "type"; inherit name; } // extra;
  lib = rec {
    mkOption = option;
    mkEnableOption = desc: option { default = false; description = desc; type = types.bool; };
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkBefore = content: { _type = "order"; priority = 500; inherit content; };
    mkAfter = content: { _type = "order"; priority = 1500; inherit content; };
    mkForce = content: { _type = "override"; priority = 50; inherit content; };
    types = {
      str = type "str" { };
      bool = type "bool" { };
      int = type "int" { };
      ints.positive = type "positiveInt" { };
      strMatching = pattern: type "strMatching" { inherit pattern; };
      nullOr = t: type "nullOr" { elem = t; };
      listOf = t: type "listOf" { elem = t; };
      attrsOf = t: type "attrsOf" { elem = t; };
      submodule = module: type "submodule" { inherit module; };
      package = type "package" { };
      port = type "port" { };
    };
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    getExe' = pkg: bin: "${pkg}/bin/${bin}";
    getExe = pkg: pkg // { outPath = "${pkg}/bin/${pkg.meta.mainProgram}"; };
    imap0 = f: list: b.genList (i: f i (b.elemAt list i)) (b.length list);
    concatLists = b.concatLists;
    optional = cond: x: if cond then [ x ] else [ ];
    unique = b.foldl' (acc: e: if b.elem e acc then acc else acc ++ [ e ]) [ ];
    optionals = cond: xs: if cond then xs else [ ];
    optionalAttrs = cond: as: if cond then as else { };
    optionalString = cond: s: if cond then s else "";
    mapAttrs = b.mapAttrs;
    mapAttrsToList = f: as: map (n: f n as.${n}) (b.attrNames as);
    concatStringsSep = b.concatStringsSep;
    concatMapStringsSep = sep: f: list: b.concatStringsSep sep (map f list);
    escapeShellArg = arg: "'${b.replaceStrings [ "'" ] [ "'\\''" ] (toString arg)}'";
  };
  format = {
    type = type "format" { };
    generate = name: value: stubPkg name // { generatedValue = value; };
  };
  pkgs = {
    formats.yaml = { }: format;
    formats.json = { }: format;
    writeShellApplication = args: stubPkg args.name // {
      inherit (args) text;
      runtimeInputs = map (p: p.name) args.runtimeInputs;
    };
    coreutils = stubPkg "coreutils";
    util-linux = stubPkg "util-linux";
    gnugrep = stubPkg "gnugrep";
    gettext = stubPkg "gettext";
    jq = stubPkg "jq";
    postgresql = stubPkg "postgresql";
  };

  # What the module system does with mkIf / mkBefore / mkForce for a single
  # definition (the priority of mkForce is seen by the real module system in
  # tests/split_hosts_nixpkgs.rs).
  resolve = v:
    if b.isAttrs v && (v._type or null) == "if" then
      (if v.condition then resolve v.content else null)
    else if b.isAttrs v && (v._type or null) == "order" then
      resolve v.content
    else if b.isAttrs v && (v._type or null) == "override" then
      resolve v.content
    else if b.isAttrs v && !(v ? outPath) then
      b.mapAttrs (_: resolve) v
    else if b.isList v then
      map resolve v
    else
      v;

  evalModule = file: config: import (dir + "/${file}") { inherit config lib pkgs; };

  optionDefaults = opts: b.mapAttrs (_: o: o.default) (b.removeAttrs opts [ "command" ]);

  # A masgen.tasks entry with its option defaults filled in.
  task = name: value:
    let
      module = (evalModule "tasks.nix" { }).options.masgen.tasks.type.elem.module;
    in
    optionDefaults (module { inherit name; }).options // value;
in
{
  inherit lib pkgs resolve evalModule optionDefaults task stubPkg;
  mlib = import (dir + "/lib.nix");
}
