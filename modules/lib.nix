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

  # Units (without ".service") of the split-host modules:
  # postgres-access.nix, synapse-database.nix and mas-database.nix.
  postgresPasswordsUnit = "masgen-postgres-passwords";
  synapseDatabaseUnit = "masgen-synapse-database";
  masDatabaseUnit = "masgen-mas-database";

  # Files those units write at boot (their RuntimeDirectory is the unit name).
  synapseDatabaseFile = "/run/${synapseDatabaseUnit}/database.yaml";
  masDatabaseFile = "/run/${masDatabaseUnit}/database.yaml";

  # jq programs of scripts/database-file.sh: $settings[0] is the database
  # section from the store, $pw the password file. rtrimstr strips exactly
  # one trailing newline, as synapse-secrets.nix does for the pepper.
  #
  # Synapse merges extra config files shallowly: write the whole section.
  synapseDatabaseFilter = ''{database: ($settings[0] * {args: {password: ($pw | rtrimstr("\n"))}})}'';
  # MAS's uri `postgresql://USER@HOST...` becomes
  # `postgresql://USER:<password, percent-encoded>@HOST...`; a uri without
  # userinfo, or with a password already, is an error.
  masDatabaseFilter = ''
    ($settings[0].uri // "") as $uri
    | ($uri | capture("^(?<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?<user>[^@:/?#]+)@(?<rest>.*)$"))
      // error("database.uri has no USER@ (or has a password already): \($uri)")
    | {database: ($settings[0] + {uri: (.scheme + .user + ":" + ($pw | rtrimstr("\n") | @uri) + "@" + .rest)})}
  '';

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

  # --- split hosts: pg_hba lines and firewall rules -----------------------

  # A database or role name for pg_hba.conf: plain names as they are, any
  # other name double-quoted (a quoted `all` is the database named "all").
  # pg_hba.conf cannot quote `"` or a newline: validPgHbaName refuses them.
  pgHbaName = name:
    if isPlainPgName name
    then name
    else "\"${name}\"";
  validPgHbaName = name: isString name && name != "" && match "[^\"\n\r]*" name != null;

  isIPv4 = a: let
    parts = match "([0-9]{1,3})\\.([0-9]{1,3})\\.([0-9]{1,3})\\.([0-9]{1,3})" a;
  in
    parts != null && builtins.all (p: builtins.fromJSON (stripZeros p) <= 255) parts;
  stripZeros = p: let m = match "0*([0-9]+)" p; in builtins.head m;
  # Hex groups and colons (a dotted IPv4 tail allowed), at least two colons,
  # at most one `::`; no zone (`%eth0`) and no prefix length.
  isIPv6 = a:
    match "[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*" a
    != null
    && builtins.length (builtins.split "::" a) <= 3
    && match ".*:::.*" a == null
    && builtins.all (g: builtins.stringLength g <= 4) (filter isString (builtins.split ":" (builtins.head (builtins.split "[.]" a))));
  # A host name (letters, digits, `-`, dots), not a pg_hba address keyword.
  isDnsName = a:
    match "[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\\.?" a
    != null
    && !(elem a ["all" "samehost" "samenet"])
    && match "[0-9.]*" a == null;
  addressKind = a:
    if !isString a
    then "invalid"
    else if isIPv4 a
    then "ipv4"
    else if isIPv6 a
    then "ipv6"
    else if isDnsName a
    then "dns"
    else "invalid";

  # The pg_hba.conf address field for one client host.
  pgHbaAddress = a: let
    kind = addressKind a;
  in
    if kind == "ipv4"
    then "${a}/32"
    else if kind == "ipv6"
    then "${a}/128"
    else a;

  # One pg_hba.conf line per client of masgen.postgresAccess.
  postgresAccessLine = client: "host ${pgHbaName client.database} ${pgHbaName client.role} ${pgHbaAddress client.address} scram-sha-256";
  postgresAccessLines = clients: concatStringsSep "" (map (c: postgresAccessLine c + "\n") clients);

  # Firewall rules of masgen.firewall.allowFrom: iptables commands (for
  # networking.firewall.extraCommands) or nftables rules (for
  # networking.firewall.extraInputRules). A DNS name is resolved by iptables
  # when the rules are loaded (IPv4 only); nftables refuses names here
  # (asserted in firewall.nix).
  iptablesAllowLines = rules:
    concatStringsSep "" (concatMap (r:
      map (a: let
        tool =
          if addressKind a == "ipv6"
          then "ip6tables"
          else "iptables";
      in "${tool} -A nixos-fw -p tcp -s ${a} --dport ${toString r.port} -j nixos-fw-accept\n")
      r.addresses)
    rules);
  nftablesAllowLines = rules:
    concatStringsSep "" (concatMap (r:
      map (a: let
        family =
          if addressKind a == "ipv6"
          then "ip6"
          else "ip";
      in "${family} saddr ${a} tcp dport ${toString r.port} accept\n")
      r.addresses)
    rules);

  # What masgen-postgres-passwords.service does for `clients`: one
  # credential per distinct password file (password-<i>, in first-use
  # order), ROLE CREDENTIAL words for each distinct role (first-use order),
  # and the roles given two different files (an error).
  postgresPasswordPlan = clients: let
    uniq = builtins.foldl' (acc: e:
      if elem e acc
      then acc
      else acc ++ [e]) [];
    files = uniq (map (c: c.passwordFile) clients);
    credential = builtins.listToAttrs (builtins.genList (i: {
      name = builtins.elemAt files i;
      value = "password-${toString i}";
    }) (builtins.length files));
    roles = uniq (map (c: c.role) clients);
    filesOf = role: uniq (map (c: c.passwordFile) (filter (c: c.role == role) clients));
  in {
    loadCredential = map (f: "${credential.${f}}:${f}") files;
    words = concatMap (role: [role credential.${builtins.head (filesOf role)}]) roles;
    conflicting = filter (role: builtins.length (filesOf role) > 1) roles;
  };

  # `passwordFile` of masgen.{synapse,mas}.databasePassword: a root-only
  # file is fine, the units read it through LoadCredential.
  passwordFileOption = lib: example:
    lib.mkOption {
      type = lib.types.strMatching "/.*";
      inherit example;
      description = ''
        Absolute path of the database password (read through LoadCredential,
        so it may be root-only). One trailing newline is stripped.
      '';
    };

  # The writer of masgen.{synapse,mas}.databasePassword (synapse-database.nix,
  # mas-database.nix): scripts/database-file.sh run on the store settings with
  # `filter`, the password read through LoadCredential.
  databaseFileWriter = pkgs:
    pkgs.writeShellApplication {
      name = "masgen-database-file";
      runtimeInputs = [
        pkgs.coreutils
        pkgs.jq
      ];
      text = builtins.readFile ./scripts/database-file.sh;
    };

  databaseFileServiceConfig = {
    exe,
    outputFile,
    settingsFile,
    filter,
    passwordFile,
    runtimeDirectory,
  }: {
    Type = "oneshot";
    RemainAfterExit = true;
    RuntimeDirectory = runtimeDirectory;
    RuntimeDirectoryMode = "0700";
    RuntimeDirectoryPreserve = true;
    UMask = "0077";
    ExecStart = "${exe} ${concatStringsSep " " (map escapeExecArg [outputFile settingsFile filter])}";
    LoadCredential = ["password:${passwordFile}"];

    NoNewPrivileges = true;
    PrivateNetwork = true;
    PrivateTmp = true;
    ProtectHome = true;
    ProtectSystem = "strict";
  };
}
