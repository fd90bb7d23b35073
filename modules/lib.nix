# Pure helpers shared by the masgen NixOS modules.
#
# This file uses builtins only (no nixpkgs `lib`), so tests/modules.rs can
# evaluate it with a bare `nix-instantiate --eval` and check the exact text
# the modules produce (Exec lines, pg_hba/pg_ident lines, pruned settings).
let
  inherit
    (builtins)
    attrNames
    concatMap
    concatStringsSep
    elem
    filter
    isAttrs
    isList
    isString
    mapAttrs
    match
    removeAttrs
    replaceStrings
    toJSON
    unsafeDiscardStringContext
    ;
in rec {
  # Quote one argument for an Exec*= line of a systemd unit.
  #
  # JSON string quoting is a subset of systemd's C-style quoting; `%` becomes
  # `%%` (no specifier expansion) and `$` becomes `$$` (no environment variable
  # expansion), so the program receives exactly `arg`.
  escapeExecArg = arg: replaceStrings ["%" "$"] ["%%" "$$"] (toJSON (toString arg));

  # An Exec word naming the file `name` in the unit's credentials directory.
  # Deliberately unescaped: `%d` is the systemd specifier for that directory.
  credentialArg = name: "\"%d/${name}\"";

  # `@tool@` placeholders in masgen.tasks.<name>.command.
  isToken = arg: isString arg && match "@[A-Za-z0-9_-]+@" (unsafeDiscardStringContext arg) != null;

  # Placeholders in `command` that are not in `known`.
  unknownTokens = known: command: filter (arg: isToken arg && !(elem arg known)) command;

  # Expand a command into Exec words.
  #
  # table: token -> list of words; a word is { arg = <string>; } (quoted with
  # escapeExecArg) or { raw = <string>; } (already quoted Exec syntax).
  # Elements that are not keys of `table` are passed literally.
  expandCommand = table: command:
    concatMap (arg:
      if isString arg && table ? ${arg}
      then table.${arg}
      else [{inherit arg;}])
    command;

  renderWords = words:
    concatStringsSep " " (map (w:
      if w ? raw
      then w.raw
      else escapeExecArg w.arg)
    words);

  # ExecStart= value for `command` expanded through `table`.
  renderCommand = table: command: renderWords (expandCommand table command);

  # Recursively drop attributes and list elements whose value is null.
  # Derivations (and anything else with an outPath) are kept as they are.
  pruneNulls = value:
    if isAttrs value && !(value ? outPath)
    then mapAttrs (_: pruneNulls) (removeAttrs value (filter (n: value.${n} == null) (attrNames value)))
    else if isList value
    then map pruneNulls (filter (v: v != null) value)
    else value;

  # The MAS settings as the MAS service writes them: nulls pruned, and an empty
  # `upstream_oauth2` section (what the nixpkgs default `providers = null`
  # leaves behind) removed.
  masFinalSettings = settings: let
    pruned = pruneNulls settings;
  in
    if pruned ? upstream_oauth2 && pruned.upstream_oauth2 == {}
    then removeAttrs pruned ["upstream_oauth2"]
    else pruned;

  # Unit (without ".service") that writes the Synapse password_config file;
  # see synapse-secrets.nix.
  passwordConfigUnit = "masgen-synapse-password-config";

  # Credential names under which masgen tasks load config files.
  synapseConfigCredential = i: "masgen-synapse-config-${toString i}";
  masExtraConfigCredential = i: "masgen-mas-extra-config-${toString i}";

  # Name of the pg_ident map used by masgen.syn2masAccess.
  syn2masMapName = "masgen-syn2mas";

  # A name we write unquoted into pg_hba.conf / pg_ident.conf: no whitespace,
  # quotes, commas, leading `/` or `+` (regex / group syntax), and none of the
  # pg_hba keywords.
  isPlainPgName = name:
    isString name
    && match "[A-Za-z0-9_][A-Za-z0-9_.-]*" name != null
    && !(elem name [
      "all"
      "sameuser"
      "samerole"
      "samegroup"
      "replication"
    ]);

  # nixpkgs' own MAS module, relative to the NixOS modules directory.
  masUpstreamModule = "services/matrix/matrix-authentication-service.nix";

  # What nixpkgs' own MAS module offers, found from `modulesPath` when the
  # configuration is evaluated: whether it exists, and whether it declares
  # `credentials` (nixpkgs added that option in July 2026, a month after the
  # module). `lib` is only handed on to the module to read its declarations.
  masUpstream = {
    lib,
    modulesPath,
  }: let
    file = modulesPath + "/${masUpstreamModule}";
    present = modulesPath != null && builtins.pathExists file;
    module = import file;
    # Only the names of its declarations are read: no value is forced.
    body =
      if builtins.isFunction module
      then
        module {
          inherit lib modulesPath;
          config = {};
          options = {};
          pkgs = {};
          utils = {};
        }
      else module;
    declared = body.options.services.matrix-authentication-service or {};
  in {
    inherit present;
    hasCredentials = present && declared ? credentials;
  };

  # pg_ident.conf and pg_hba.conf lines letting OS user `masUser` (and the
  # Synapse OS user itself) connect to `synapseDatabase` as `synapseRole`
  # over the Unix socket with peer authentication.
  syn2masAccessLines = {
    synapseDatabase,
    synapseRole,
    masUser,
  }: {
    identMap = ''
      ${syn2masMapName} ${synapseRole} ${synapseRole}
      ${syn2masMapName} ${masUser} ${synapseRole}
    '';
    authentication = ''
      local ${synapseDatabase} ${synapseRole} peer map=${syn2masMapName}
    '';
  };
}
