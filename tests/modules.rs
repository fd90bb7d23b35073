//! Tests of the hand-written NixOS modules (`modules/*.nix`), their shell
//! scripts (`modules/scripts/*.sh`) and the root `flake.nix`.
//!
//! Here each module is evaluated in isolation with a small stub of
//! `lib`/`pkgs` (see `HARNESS`): enough to resolve `mkIf`/`mkBefore` and
//! option defaults, so the exact unit definitions, Exec lines and
//! pg_hba/pg_ident lines the modules produce can be checked, and it runs
//! without any nixpkgs. The scripts and the pg_hba/pg_ident lines are then
//! exercised for real (bash, a throwaway PostgreSQL cluster, fake `mas-cli`
//! programs). Whole configurations are evaluated for real, with nixpkgs' own
//! NixOS modules, in tests/nixos_eval.rs.
//!
//! Tool lookup, nix-instantiate (`--store dummy://`), the PostgreSQL cluster
//! and OS users come from tests/support. A missing external tool makes a
//! test print SKIP locally and fail in CI (`CI` set). The PostgreSQL tests
//! need root (they use `runuser` and may create the system users
//! `matrix-synapse` and `matrix-authentication-service`).

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

use support::{
    ensure_os_user, mode_of, nix_instantiate, repo_root, require_root, require_tool, run_ok,
    NixTool, PgCluster,
};

// ------------------------------------------------------------------ basics

fn modules_dir() -> PathBuf {
    repo_root().join("modules")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_file(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// All `*.nix` files under `modules/` plus the root `flake.nix`.
fn nix_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "nix") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&modules_dir(), &mut files);
    files.push(repo_root().join("flake.nix"));
    files
}

fn scripts() -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(modules_dir().join("scripts"))
        .expect("modules/scripts exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    files.sort();
    files
}

fn script(name: &str) -> PathBuf {
    modules_dir().join("scripts").join(name)
}

// --------------------------------------------------------------------- Nix

/// `expr`, a function of `{ modulesDir, harness }`, evaluated with the stub
/// `lib`/`pkgs` of tests/support/module_harness.nix (support's
/// `eval_module_case`).
fn eval_case(nix: &NixTool, expr: &str) -> Value {
    support::eval_module_case(nix, expr)
}

// The stub of the parts of nixpkgs' `lib` and `pkgs` the modules use is
// tests/support/module_harness.nix. Every stubbed `lib` name exists in
// nixpkgs (checked against lib/ sources); `getExe` keeps the package
// attributes so a script's text stays reachable, and `formats.*.generate`
// keeps the value it was given.

// ------------------------------------------------------------- syntax

#[test]
fn nix_files_parse_with_nix_instantiate() {
    let Some(nix) = nix_instantiate() else { return };
    let files = nix_files();
    assert!(
        files.len() >= 6,
        "expected the modules and flake.nix, got {files:?}"
    );
    for file in files {
        nix.parse_file(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}

#[test]
fn nix_files_parse_with_rnix() {
    for file in nix_files() {
        let text = fs::read_to_string(&file).unwrap();
        let parse = rnix::Root::parse(&text);
        let errors: Vec<String> = parse.errors().iter().map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
    }
}

#[test]
fn scripts_pass_bash_n() {
    let files = scripts();
    assert_eq!(
        files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        [
            "backup.sh",
            "database-file.sh",
            "mas-keys.sh",
            "mas-run.sh",
            "postgres-passwords.sh",
            "register-user.sh"
        ]
    );
    for file in &files {
        run_ok(Command::new("bash").arg("-n").arg(file));
    }
}

/// pkgs.writeShellApplication runs shellcheck on the scripts at build time,
/// with `set -o errexit -o nounset -o pipefail` in front.
#[test]
fn scripts_pass_shellcheck() {
    // scripts/setup-test-deps.sh installs it: SKIP locally, fail in CI.
    let Some(shellcheck) = require_tool("shellcheck", "checking modules/*.sh") else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    for file in scripts() {
        let wrapped = tmp.path().join(file.file_name().unwrap());
        let text = fs::read_to_string(&file).unwrap();
        write_file(
            &wrapped,
            &format!("#!/bin/bash\nset -o errexit\nset -o nounset\nset -o pipefail\n\n{text}"),
            0o644,
        );
        run_ok(Command::new(&shellcheck).arg(&wrapped));
    }
}

// ------------------------------------------------------ module evaluation

#[test]
fn lib_nix_quotes_exec_arguments_and_prunes_nulls() {
    let Some(nix) = nix_instantiate() else { return };
    let v = eval_case(
        &nix,
        r#"{ modulesDir, harness }:
        let h = import (/. + harness) { inherit modulesDir; }; l = h.mlib; in {
          rendered = l.renderCommand {
            "@tool@" = [ { arg = "/nix/store/x-tool/bin/tool"; } ];
            "@pair@" = [ { arg = "--flag"; } { raw = l.credentialArg "cred"; } ];
          } [ "@tool@" "two words" "100%" "$HOME" "\${X}" "quote\"back\\slash" "new\nline" "@pair@" "@CONFIG@" ];
          unknown = l.unknownTokens [ "@tool@" "@CONFIG@" ] [ "@tool@" "@CONFIG@" "@typo@" "a@b@" "@" "@@" ];
          pruned = l.masFinalSettings {
            a = null;
            b = { c = null; d = [ null 1 { e = null; f = false; } ]; };
            upstream_oauth2 = { providers = null; };
            keep = { outPath = "/nix/store/x"; n = null; };
          };
          prunedProviders = l.masFinalSettings { upstream_oauth2.providers = [ { id = "X"; x = null; } ]; };
          plain = map l.isPlainPgName [ "matrix-synapse" "all" "a b" "/re" "x,y" "\"q\"" "" "+grp" "mas_1.2" ];
        }"#,
    );
    assert_eq!(
        v["rendered"],
        concat!(
            r#""/nix/store/x-tool/bin/tool" "two words" "100%%" "$$HOME" "$${X}" "#,
            r#""quote\"back\\slash" "new\nline" "--flag" "%d/cred" "@CONFIG@""#
        )
    );
    assert_eq!(v["unknown"], serde_json::json!(["@typo@"]));
    assert_eq!(
        v["pruned"],
        serde_json::json!({"b": {"d": [1, {"f": false}]}, "keep": "/nix/store/x"})
    );
    assert_eq!(
        v["prunedProviders"],
        serde_json::json!({"upstream_oauth2": {"providers": [{"id": "X"}]}})
    );
    assert_eq!(
        v["plain"],
        serde_json::json!([true, false, false, false, false, false, false, false, true])
    );
}

const TASKS_CASE: &str = r#"{ modulesDir, harness }:
let
  h = import (/. + harness) { inherit modulesDir; };
  tasks = {
    syn2mas-check = {
      command = [ "@masgen-mas-run@" "@mas-config@" "--" "@mas-cli@" "syn2mas" "@CONFIG@"
                  "@synapse-config-args@" "check" ];
      user = "matrix-authentication-service";
      dynamicUser = true;
      credentials = { own = "/run/secrets/own"; shared = "/run/secrets/task-wins"; };
      after = [ "postgresql.service" ];
      successExitStatus = [ 11 ];
      timeoutSec = 3600;
      successStamp = "syn2mas-dry-run.done";
      clearStampAtStart = true;
    };
    backup = {
      command = [ "@masgen-backup@" "matrix-synapse" "/var/backup/masgen" "@synapse-config-args@"
                  "@mas-config@" "100%" "$HOME" ];
      conflicts = [ "matrix-synapse.service" ];
      stateDirectory = "masgen-backup";
      successStamp = "syn2mas-migrate.done";
    };
    sql = { command = [ "@psql@" "-c" "select 1" "@pg_dump@" ]; group = "postgres"; user = "postgres"; };
    register = {
      command = [ "@masgen-mas-run@" "@mas-config@" "--" "@masgen-register-user@" "@mas-cli@" "@CONFIG@" "bot" "--admin" ];
      runtimeDirectory = "masgen-register";
      environment = { FOO = "bar"; };
    };
  };
  config = bad: synapse: {
    masgen.tasks = builtins.mapAttrs h.task (tasks // (if bad then { bad.command = [ "@mas_cli@" "x" ]; } else { }));
    masgen.synapse.passwordConfig.enable = true;
    services.matrix-authentication-service = {
      package = h.stubPkg "matrix-authentication-service";
      settings = { matrix.homeserver = "example.org"; upstream_oauth2.providers = null; http.issuer = null; };
      credentials = { shared = "/run/secrets/mas-wins"; enc = "/run/secrets/enc"; };
      extraConfigFiles = [ "/run/secrets/mas-extra.yaml" ];
    };
    services.matrix-synapse = {
      enable = synapse;
      configFile = h.stubPkg "nixpkgs-homeserver.yaml";
      settings = { server_name = "example.org"; database.args.host = null; };
      extraConfigFiles = [ "/run/secrets/synapse-extra.yaml" "/run/masgen-synapse/password-config.yaml" ];
    };
    services.postgresql = {
      enable = true;
      package = h.stubPkg "postgresql-17";
      finalPackage = h.stubPkg "postgresql-and-plugins-17";
    };
  };
  eval = bad: synapse: h.evalModule "tasks.nix" (config bad synapse);
in {
  good = h.resolve (eval false true).config;
  badAssertions = map (a: a.assertion) (h.resolve (eval true true).config).assertions;
  noSynapse = h.resolve (eval false false).config;
  empty = h.resolve (h.evalModule "tasks.nix" (config false true // { masgen.tasks = { }; })).config;
  defaults = h.task "x" { command = [ "true" ]; };
}
"#;

#[test]
fn tasks_module_builds_oneshot_units() {
    let Some(nix) = nix_instantiate() else { return };
    let v = eval_case(&nix, TASKS_CASE);
    let good = &v["good"];
    for a in good["assertions"].as_array().unwrap() {
        assert_eq!(a["assertion"], true, "{a}");
    }
    let units = &good["systemd"]["services"];
    let mut names: Vec<_> = units.as_object().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["backup", "register", "sql", "syn2mas-check"]);

    // Common to every task.
    for (name, unit) in units.as_object().unwrap() {
        assert_eq!(unit["serviceConfig"]["Type"], "oneshot", "{name}");
        assert_eq!(unit["serviceConfig"]["UMask"], "0077", "{name}");
        assert_eq!(unit["restartIfChanged"], false, "{name}");
        assert_eq!(unit["stopIfChanged"], false, "{name}");
        assert!(
            unit.get("wantedBy").is_none(),
            "{name} must not be wanted by anything"
        );
        assert_eq!(unit["description"], format!("masgen task {name}"));
    }

    let s2m = &units["syn2mas-check"];
    assert_eq!(
        s2m["serviceConfig"]["ExecStart"],
        concat!(
            r#""/nix/store/stub-masgen-mas-run/bin/masgen-mas-run" "/nix/store/stub-masgen-mas-config.yaml" "--" "#,
            r#""/nix/store/stub-matrix-authentication-service/bin/mas-cli" "syn2mas" "@CONFIG@" "#,
            r#""--synapse-config" "/nix/store/stub-nixpkgs-homeserver.yaml" "#,
            r#""--synapse-config" "%d/masgen-synapse-config-0" "#,
            r#""--synapse-config" "%d/masgen-synapse-config-1" "check""#
        )
    );
    assert_eq!(
        s2m["serviceConfig"]["LoadCredential"],
        serde_json::json!([
            "enc:/run/secrets/enc",
            "own:/run/secrets/own",
            "shared:/run/secrets/task-wins",
            "masgen-mas-extra-config-0:/run/secrets/mas-extra.yaml",
            "masgen-synapse-config-0:/run/secrets/synapse-extra.yaml",
            "masgen-synapse-config-1:/run/masgen-synapse/password-config.yaml"
        ])
    );
    assert_eq!(
        s2m["environment"],
        serde_json::json!({"MASGEN_MAS_EXTRA_CONFIGS": "masgen-mas-extra-config-0"})
    );
    assert_eq!(
        s2m["serviceConfig"]["User"],
        "matrix-authentication-service"
    );
    assert_eq!(s2m["serviceConfig"]["DynamicUser"], true);
    assert_eq!(s2m["serviceConfig"]["RuntimeDirectory"], "syn2mas-check");
    assert_eq!(s2m["serviceConfig"]["RuntimeDirectoryMode"], "0700");
    assert_eq!(s2m["serviceConfig"]["SuccessExitStatus"], "11");
    assert_eq!(s2m["serviceConfig"]["TimeoutStartSec"], "3600");
    // A stamp that records the last run only is removed when a run starts.
    assert_eq!(
        s2m["serviceConfig"]["ExecStartPre"],
        serde_json::json!([
            "+/nix/store/stub-coreutils/bin/rm -f /var/lib/masgen/syn2mas-dry-run.done"
        ])
    );
    assert_eq!(
        s2m["serviceConfig"]["ExecStartPost"][1],
        "+/nix/store/stub-coreutils/bin/touch /var/lib/masgen/syn2mas-dry-run.done"
    );
    assert_eq!(
        s2m["after"],
        serde_json::json!([
            "postgresql.service",
            "masgen-synapse-password-config.service"
        ])
    );
    assert_eq!(
        s2m["requires"],
        serde_json::json!(["masgen-synapse-password-config.service"])
    );

    let backup = &units["backup"];
    assert_eq!(
        backup["serviceConfig"]["ExecStart"],
        concat!(
            r#""/nix/store/stub-masgen-backup/bin/masgen-backup" "matrix-synapse" "/var/backup/masgen" "#,
            r#""--synapse-config" "/nix/store/stub-nixpkgs-homeserver.yaml" "#,
            r#""--synapse-config" "%d/masgen-synapse-config-0" "#,
            r#""--synapse-config" "%d/masgen-synapse-config-1" "#,
            r#""/nix/store/stub-masgen-mas-config.yaml" "100%%" "$$HOME""#
        )
    );
    assert_eq!(
        backup["conflicts"],
        serde_json::json!(["matrix-synapse.service"])
    );
    assert_eq!(backup["serviceConfig"]["StateDirectory"], "masgen-backup");
    // @mas-config@ pulls in the MAS credentials, @synapse-config-args@ the
    // Synapse extra config files.
    assert_eq!(
        backup["serviceConfig"]["LoadCredential"],
        serde_json::json!([
            "enc:/run/secrets/enc",
            "shared:/run/secrets/mas-wins",
            "masgen-mas-extra-config-0:/run/secrets/mas-extra.yaml",
            "masgen-synapse-config-0:/run/secrets/synapse-extra.yaml",
            "masgen-synapse-config-1:/run/masgen-synapse/password-config.yaml"
        ])
    );
    assert!(
        backup["serviceConfig"].get("User").is_none(),
        "root by default"
    );
    assert!(backup["serviceConfig"].get("DynamicUser").is_none());
    // A sticky stamp: touched on success, never removed by the unit.
    assert!(backup["serviceConfig"].get("ExecStartPre").is_none());
    assert_eq!(
        backup["serviceConfig"]["ExecStartPost"][1],
        "+/nix/store/stub-coreutils/bin/touch /var/lib/masgen/syn2mas-migrate.done"
    );
    assert!(backup["serviceConfig"].get("RuntimeDirectory").is_none());

    let sql = &units["sql"];
    assert_eq!(
        sql["serviceConfig"]["ExecStart"],
        concat!(
            r#""/nix/store/stub-postgresql-and-plugins-17/bin/psql" "-c" "select 1" "#,
            r#""/nix/store/stub-postgresql-and-plugins-17/bin/pg_dump""#
        )
    );
    assert!(sql["serviceConfig"].get("LoadCredential").is_none());
    assert_eq!(sql["after"], serde_json::json!([]));
    assert_eq!(sql["serviceConfig"]["Group"], "postgres");

    let register = &units["register"];
    assert_eq!(
        register["serviceConfig"]["ExecStart"],
        concat!(
            r#""/nix/store/stub-masgen-mas-run/bin/masgen-mas-run" "/nix/store/stub-masgen-mas-config.yaml" "--" "#,
            r#""/nix/store/stub-masgen-register-user/bin/masgen-register-user" "#,
            r#""/nix/store/stub-matrix-authentication-service/bin/mas-cli" "@CONFIG@" "bot" "--admin""#
        )
    );
    assert_eq!(
        register["serviceConfig"]["RuntimeDirectory"],
        "masgen-register"
    );
    assert_eq!(
        register["environment"],
        serde_json::json!({"FOO": "bar", "MASGEN_MAS_EXTRA_CONFIGS": "masgen-mas-extra-config-0"})
    );

    // A typo'd placeholder fails an assertion.
    assert!(v["badAssertions"]
        .as_array()
        .unwrap()
        .contains(&Value::Bool(false)));
    // Without the Synapse service (the MAS host of a split homeserver),
    // @synapse-config-args@ names a YAML made from Synapse's settings.
    for a in v["noSynapse"]["assertions"].as_array().unwrap() {
        assert_eq!(a["assertion"], true, "{a}");
    }
    let exec = v["noSynapse"]["systemd"]["services"]["syn2mas-check"]["serviceConfig"]["ExecStart"]
        .as_str()
        .unwrap();
    assert!(
        exec.contains(r#""--synapse-config" "/nix/store/stub-homeserver.yaml" "--synapse-config" "%d/masgen-synapse-config-0""#),
        "{exec}"
    );
    // No tasks: the module adds nothing.
    assert_eq!(v["empty"], Value::Null);

    let d = &v["defaults"];
    assert_eq!(d["description"], "masgen task x");
    for key in [
        "after",
        "requires",
        "wants",
        "conflicts",
        "successExitStatus",
    ] {
        assert_eq!(d[key], serde_json::json!([]), "{key}");
    }
    for key in ["credentials", "environment"] {
        assert_eq!(d[key], serde_json::json!({}), "{key}");
    }
    for key in [
        "user",
        "group",
        "runtimeDirectory",
        "stateDirectory",
        "timeoutSec",
    ] {
        assert_eq!(d[key], Value::Null, "{key}");
    }
    assert_eq!(d["dynamicUser"], false);
}

#[test]
fn tasks_module_generates_the_mas_config_like_the_mas_module() {
    let Some(nix) = nix_instantiate() else { return };
    // formats.yaml.generate is stubbed to name its output after a hash of the
    // value it is given, so the Exec line shows which value that was.
    let v = eval_case(
        &nix,
        r#"{ modulesDir, harness }:
        let
          h = import (/. + harness) { inherit modulesDir; };
          hashed = name: value: {
            outPath = "/nix/store/${builtins.hashString "sha256" (builtins.toJSON value)}-${name}";
          };
          settings = {
            matrix = { homeserver = "example.org"; secret_file = "\${CREDENTIALS_DIRECTORY}/s"; kind = null; };
            upstream_oauth2.providers = null;
            passwords.schemes = [
              { version = 1; algorithm = "bcrypt"; secret_file = "$CREDENTIALS_DIRECTORY/p"; cost = null; }
            ];
          };
          m = import (/. + modulesDir + "/tasks.nix") {
            inherit (h) lib;
            pkgs = h.pkgs // { formats.yaml = { }: { generate = hashed; }; };
            config = {
              masgen.tasks.t = h.task "t" { command = [ "@mas-config@" ]; };
              services.matrix-authentication-service = {
                package = h.stubPkg "mas";
                inherit settings;
                credentials = { };
                extraConfigFiles = [ ];
              };
              services.matrix-synapse.enable = false;
              services.postgresql.enable = false;
            };
          };
          quoted = p: builtins.toJSON (toString p);
        in {
          exec = m.config.content.systemd.services.t.serviceConfig.ExecStart;
          expected = quoted (hashed "masgen-mas-config.yaml" {
            matrix = { homeserver = "example.org"; secret_file = "\${CREDENTIALS_DIRECTORY}/s"; };
            passwords.schemes = [ { version = 1; algorithm = "bcrypt"; secret_file = "$CREDENTIALS_DIRECTORY/p"; } ];
          });
          unpruned = quoted (hashed "masgen-mas-config.yaml" settings);
        }"#,
    );
    assert_eq!(v["exec"], v["expected"]);
    assert_ne!(v["exec"], v["unpruned"]);
}

const SECRETS_CASE: &str = r#"{ modulesDir, harness }:
let
  h = import (/. + harness) { inherit modulesDir; };
  config = pepperFile: extra: {
    masgen.synapse.passwordConfig = {
      enable = true;
      settings = { enabled = true; policy.minimum_length = 8; };
      inherit pepperFile;
    };
    services.matrix-synapse = {
      enable = true;
      settings = { server_name = "example.org"; } // extra;
      workers = { fed = { }; media = { }; };
    };
  };
  eval = pepperFile: extra: h.resolve (h.evalModule "synapse-secrets.nix" (config pepperFile extra)).config;
  withPepper = eval "/run/secrets/pepper" { };
  noPepper = eval null { };
  unit = c: c.systemd.services.masgen-synapse-password-config;
  exec = c: (unit c).serviceConfig.ExecStart;
  # The MAS host of a split homeserver: Synapse's settings, no Synapse.
  noSynapse = mas: h.resolve (h.evalModule "synapse-secrets.nix" (config "/run/secrets/pepper" { } // {
    services.matrix-synapse = { enable = false; settings = { }; workers = { }; };
    services.matrix-authentication-service.enable = mas;
  })).config;
in {
  inherit withPepper;
  withPepperText = (exec withPepper).text;
  withPepperInputs = (exec withPepper).runtimeInputs;
  noPepperText = (exec noPepper).text;
  noPepperCredentials = (unit noPepper).serviceConfig ? LoadCredential;
  settingsJson = builtins.toJSON (builtins.head withPepper.systemd.services.matrix-synapse.restartTriggers).generatedValue;
  settingsPath = toString (builtins.head withPepper.systemd.services.matrix-synapse.restartTriggers);
  shadowed = map (a: a.assertion) (eval "/p" { password_config.enabled = true; }).assertions;
  masHost = noSynapse true;
  nowhereAssertions = map (a: a.assertion) (noSynapse false).assertions;
  disabled = h.resolve (h.evalModule "synapse-secrets.nix" {
    masgen.synapse.passwordConfig = { enable = false; settings = { }; pepperFile = null; };
    services.matrix-synapse = { enable = true; settings = { }; workers = { }; };
  }).config;
}
"#;

#[test]
fn synapse_secrets_module_writes_password_config_before_synapse() {
    let Some(nix) = nix_instantiate() else { return };
    let v = eval_case(&nix, SECRETS_CASE);
    let c = &v["withPepper"];
    for a in c["assertions"].as_array().unwrap() {
        assert_eq!(a["assertion"], true, "{a}");
    }
    assert_eq!(
        c["services"]["matrix-synapse"]["extraConfigFiles"],
        serde_json::json!(["/run/masgen-synapse/password-config.yaml"])
    );
    let unit = &c["systemd"]["services"]["masgen-synapse-password-config"];
    let synapse_units = serde_json::json!([
        "matrix-synapse.service",
        "matrix-synapse-worker-fed.service",
        "matrix-synapse-worker-media.service"
    ]);
    assert_eq!(unit["before"], synapse_units);
    assert_eq!(unit["requiredBy"], synapse_units);
    assert!(unit.get("wantedBy").is_none());
    let sc = &unit["serviceConfig"];
    assert_eq!(sc["Type"], "oneshot");
    assert_eq!(sc["RemainAfterExit"], true);
    assert_eq!(sc["User"], "matrix-synapse");
    assert_eq!(sc["Group"], "matrix-synapse");
    assert_eq!(sc["RuntimeDirectory"], "masgen-synapse");
    assert_eq!(sc["RuntimeDirectoryMode"], "0700");
    assert_eq!(sc["RuntimeDirectoryPreserve"], true);
    assert_eq!(sc["UMask"], "0077");
    assert_eq!(
        sc["LoadCredential"],
        serde_json::json!(["pepper:/run/secrets/pepper"])
    );
    assert_eq!(
        sc["ExecStart"],
        "/nix/store/stub-masgen-synapse-password-config/bin/masgen-synapse-password-config"
    );
    assert_eq!(
        v["withPepperInputs"],
        serde_json::json!(["coreutils", "jq"])
    );
    assert_eq!(v["noPepperCredentials"], false);
    assert!(v["shadowed"]
        .as_array()
        .unwrap()
        .contains(&Value::Bool(false)));
    assert_eq!(v["disabled"], Value::Null);

    // On the MAS host (Synapse off, MAS on): root's file, for the syn2mas
    // tasks only; nothing orders or restarts the absent Synapse.
    let m = &v["masHost"];
    for a in m["assertions"].as_array().unwrap() {
        assert_eq!(a["assertion"], true, "{a}");
    }
    let unit = &m["systemd"]["services"]["masgen-synapse-password-config"];
    assert_eq!(unit["serviceConfig"]["User"], "root");
    assert_eq!(unit["serviceConfig"]["Group"], "root");
    assert_eq!(unit["before"], serde_json::json!([]));
    assert_eq!(unit["requiredBy"], serde_json::json!([]));
    assert_eq!(m["systemd"]["services"]["matrix-synapse"], Value::Null);
    assert_eq!(
        m["services"]["matrix-synapse"]["extraConfigFiles"],
        serde_json::json!(["/run/masgen-synapse/password-config.yaml"])
    );
    // Neither Synapse nor MAS: refused.
    assert!(v["nowhereAssertions"]
        .as_array()
        .unwrap()
        .contains(&Value::Bool(false)));

    // writeShellApplication runs shellcheck on the generated scripts. Without
    // shellcheck: a SKIP line locally, a failure in CI (the setup script
    // installs it); the rest of this test runs either way.
    if let Some(shellcheck) = require_tool("shellcheck", "checking the password_config writer") {
        let tmp = TempDir::new().unwrap();
        for key in ["withPepperText", "noPepperText"] {
            let path = tmp.path().join(format!("{key}.sh"));
            write_file(
                &path,
                &format!(
                    "#!/bin/bash\nset -o errexit\nset -o nounset\nset -o pipefail\n{}",
                    v[key].as_str().unwrap()
                ),
                0o644,
            );
            run_ok(Command::new(&shellcheck).arg(&path));
        }
    }

    // Run the generated script (with writeShellApplication's preamble) for
    // real, with the store/run paths pointed into a temp dir.
    let Some(_jq) = require_tool("jq", "running the password_config writer") else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let settings = tmp.path().join("settings.json");
    fs::write(&settings, v["settingsJson"].as_str().unwrap()).unwrap();
    let creds = tmp.path().join("creds");
    fs::create_dir(&creds).unwrap();
    let pepper = "pe\"p'p\\er $x ${y}";
    fs::write(creds.join("pepper"), format!("{pepper}\n")).unwrap();
    let run_dir = tmp.path().join("run");
    fs::create_dir(&run_dir).unwrap();
    let out_file = run_dir.join("password-config.yaml");

    let run_script = |text: &str| -> Output {
        let text = text
            .replace(
                v["settingsPath"].as_str().unwrap(),
                settings.to_str().unwrap(),
            )
            .replace(
                "/run/masgen-synapse/password-config.yaml",
                out_file.to_str().unwrap(),
            );
        let script = tmp.path().join("writer.sh");
        write_file(
            &script,
            &format!("set -o errexit\nset -o nounset\nset -o pipefail\n{text}"),
            0o700,
        );
        run(Command::new("bash")
            .arg(&script)
            .env("CREDENTIALS_DIRECTORY", &creds))
    };

    let out = run_script(v["withPepperText"].as_str().unwrap());
    assert!(out.status.success(), "{out:?}");
    let written: Value = serde_json::from_str(&fs::read_to_string(&out_file).unwrap()).unwrap();
    assert_eq!(
        written,
        serde_json::json!({"password_config": {
            "enabled": true,
            "policy": {"minimum_length": 8},
            "pepper": pepper
        }})
    );
    assert_eq!(mode_of(&out_file), 0o400);
    // The reference render (render/<host>/prepare/password-config.yaml) is
    // this file byte for byte, with the pepper shown as its source file.
    let rendered = masgen::emit::password_config(&masgen::lower::PasswordConfigOut {
        settings: serde_json::json!({"enabled": true, "policy": {"minimum_length": 8}}),
        pepper_file: "/run/secrets/pepper".into(),
    });
    let body: String = rendered
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        fs::read_to_string(&out_file).unwrap(),
        body.replace(
            "\"<content of /run/secrets/pepper>\"",
            &serde_json::to_string(pepper).unwrap()
        ),
        "the render of password-config.yaml is not what the writer writes"
    );
    // Re-running replaces the read-only file.
    let out = run_script(v["withPepperText"].as_str().unwrap());
    assert!(out.status.success(), "{out:?}");

    // An empty pepper file is refused.
    fs::write(creds.join("pepper"), "").unwrap();
    let out = run_script(v["withPepperText"].as_str().unwrap());
    assert!(!out.status.success(), "empty pepper must fail");

    let out = run_script(v["noPepperText"].as_str().unwrap());
    assert!(out.status.success(), "{out:?}");
    let written: Value = serde_json::from_str(&fs::read_to_string(&out_file).unwrap()).unwrap();
    assert_eq!(
        written,
        serde_json::json!({"password_config": {"enabled": true, "policy": {"minimum_length": 8}}})
    );
}

/// The pg_hba/pg_ident text syn2mas-access.nix produces with its defaults.
fn syn2mas_access_lines(nix: &NixTool) -> (String, String, Value) {
    let v = eval_case(
        nix,
        r#"{ modulesDir, harness }:
        let
          h = import (/. + harness) { inherit modulesDir; };
          decls = (h.evalModule "syn2mas-access.nix" { masgen.syn2masAccess.enable = false; }).options.masgen.syn2masAccess;
          defaults = h.optionDefaults decls // { enable = true; };
          eval = cfg: h.resolve (h.evalModule "syn2mas-access.nix" {
            masgen.syn2masAccess = cfg;
            services.postgresql.enable = true;
          }).config;
          good = eval defaults;
          # the raw (unresolved) definition, to see its mkBefore
          raw = (h.evalModule "syn2mas-access.nix" { masgen.syn2masAccess = defaults; services.postgresql.enable = true; }).config.content;
        in {
          inherit defaults;
          identMap = good.services.postgresql.identMap;
          authentication = good.services.postgresql.authentication;
          authenticationPriority = raw.services.postgresql.authentication.priority;
          assertions = map (a: a.assertion) good.assertions;
          keywordAssertions = map (a: a.assertion) (eval (defaults // { synapseDatabase = "all"; })).assertions;
          disabled = h.resolve (h.evalModule "syn2mas-access.nix" { masgen.syn2masAccess = defaults // { enable = false; }; }).config;
        }"#,
    );
    (
        v["authentication"].as_str().unwrap().to_owned(),
        v["identMap"].as_str().unwrap().to_owned(),
        v,
    )
}

#[test]
fn syn2mas_access_module_lines() {
    let Some(nix) = nix_instantiate() else { return };
    let (hba, ident, v) = syn2mas_access_lines(&nix);
    assert_eq!(
        v["defaults"],
        serde_json::json!({
            "enable": true,
            "synapseDatabase": "matrix-synapse",
            "synapseRole": "matrix-synapse",
            "masUser": "matrix-authentication-service"
        })
    );
    assert_eq!(
        hba,
        "local matrix-synapse matrix-synapse peer map=masgen-syn2mas\n"
    );
    assert_eq!(
        ident,
        "masgen-syn2mas matrix-synapse matrix-synapse\nmasgen-syn2mas matrix-authentication-service matrix-synapse\n"
    );
    // lib.mkBefore (priority 500): ahead of other rules and of the nixpkgs
    // defaults, which come with lib.mkAfter.
    assert_eq!(v["authenticationPriority"], 500);
    assert_eq!(v["assertions"], serde_json::json!([true, true]));
    assert_eq!(v["keywordAssertions"], serde_json::json!([false, true]));
    assert_eq!(v["disabled"], Value::Null);
}

// -------------------------------------------------------------- PostgreSQL

/// A throwaway PostgreSQL cluster (support's PgCluster: Unix socket only,
/// run by the `postgres` OS user, stopped on drop) with the pg_hba/pg_ident
/// given by the test. Needs root.
fn start_pg(hba: &str, ident: &str) -> Option<PgCluster> {
    if !require_root("runuser and a PostgreSQL cluster") {
        return None;
    }
    require_tool("runuser", "running commands as other OS users")?;
    let pg = PgCluster::start()?;
    set_auth(&pg, hba, ident);
    Some(pg)
}

/// Rewrite pg_hba/pg_ident and make the server re-read them (support
/// prepends a `local all <superuser> peer` line and fails on file errors).
fn set_auth(pg: &PgCluster, hba: &str, ident: &str) {
    pg.set_ident(ident).unwrap_or_else(|e| panic!("{e}"));
    pg.set_hba(hba).unwrap_or_else(|e| panic!("{e}"));
}

/// `sql` as the superuser in `db`.
fn sql(pg: &PgCluster, db: &str, sql: &str) -> String {
    pg.superuser_sql_in(db, sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn as_user(user: &str, program: &Path) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", user, "--"]).arg(program).current_dir("/");
    cmd
}

/// nixpkgs' default pg_hba rules (added with lib.mkAfter).
const NIXPKGS_DEFAULT_HBA: &str =
    "local all all              peer\nhost  all all 127.0.0.1/32 md5\nhost  all all ::1/128      md5\n";

#[test]
fn backup_script_dumps_a_real_database() {
    let Some(pg) = start_pg(NIXPKGS_DEFAULT_HBA, "") else {
        return;
    };
    sql(&pg, "postgres", "CREATE DATABASE masgen_backup_test");
    sql(
        &pg,
        "masgen_backup_test",
        "CREATE TABLE users (name text PRIMARY KEY); INSERT INTO users VALUES ('alice'), ('bob')",
    );

    // pg_dump runs as `postgres` (runuser): the wrapper must be reachable.
    let tmp = tempfile::Builder::new()
        .prefix("masgen-backup-")
        .tempdir()
        .unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let work = tmp.path();
    let wrapper = work.join("pg_dump-wrapper");
    write_file(&wrapper, &pg.pg_dump_script(), 0o755);
    let homeserver = work.join("homeserver.yaml");
    write_file(&homeserver, "server_name: example.org\n", 0o644);
    let secrets = work.join("secrets.yaml");
    write_file(&secrets, "macaroon_secret_key: x\n", 0o600);
    let backups = work.join("backups").join("nested");

    let backup = |db: &str| -> Output {
        run(Command::new("bash")
            .arg(script("backup.sh"))
            .arg(db)
            .arg(&backups)
            .arg(&homeserver)
            .arg("--synapse-config")
            .arg(&secrets)
            .env("PG_DUMP", &wrapper)
            .current_dir(work))
    };

    let out = backup("masgen_backup_test");
    assert!(out.status.success(), "{out:?}");
    let dump = PathBuf::from(stdout(&out).lines().last().unwrap().trim());
    assert_eq!(dump.parent().unwrap(), backups);
    let name = dump.file_name().unwrap().to_string_lossy().into_owned();
    let stamp = name
        .strip_prefix("masgen_backup_test-")
        .and_then(|s| s.strip_suffix(".dump"))
        .unwrap_or_else(|| panic!("unexpected dump name {name}"));
    assert_eq!(stamp.len(), 16, "{stamp}");
    assert!(
        stamp.chars().enumerate().all(|(i, c)| match i {
            8 => c == 'T',
            15 => c == 'Z',
            _ => c.is_ascii_digit(),
        }),
        "{stamp}"
    );
    assert!(fs::metadata(&dump).unwrap().len() > 0);
    assert_eq!(mode_of(&dump), 0o600);
    assert_eq!(mode_of(&backups), 0o700);

    // pg_restore reads it (custom format) and it restores the data.
    let list = run_ok(
        Command::new(pg.bin_dir().join("pg_restore"))
            .arg("--list")
            .arg(&dump),
    );
    assert!(
        stdout(&list).contains("TABLE public users"),
        "{}",
        stdout(&list)
    );
    sql(&pg, "postgres", "CREATE DATABASE masgen_restored");
    // The backup is root-only; hand pg_restore (running as postgres) a copy.
    let readable = work.join("restore.dump");
    fs::copy(&dump, &readable).unwrap();
    fs::set_permissions(&readable, fs::Permissions::from_mode(0o644)).unwrap();
    run_ok(
        as_user(pg.superuser(), &pg.bin_dir().join("pg_restore"))
            .arg("-h")
            .arg(pg.socket_dir())
            .arg("-p")
            .arg(pg.port().to_string())
            .args(["-d", "masgen_restored"])
            .arg(&readable),
    );
    assert_eq!(
        sql(
            &pg,
            "masgen_restored",
            "SELECT string_agg(name, ',' ORDER BY name) FROM users"
        )
        .trim(),
        "alice,bob"
    );

    // Config files are copied next to the dump.
    let config_dir = backups.join(format!("masgen_backup_test-{stamp}-config"));
    assert_eq!(mode_of(&config_dir), 0o700);
    let copied: BTreeMap<String, String> = fs::read_dir(&config_dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            assert_eq!(mode_of(&p), 0o600, "{}", p.display());
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        copied,
        BTreeMap::from([
            (
                "01-homeserver.yaml".to_owned(),
                "server_name: example.org\n".to_owned()
            ),
            (
                "02-secrets.yaml".to_owned(),
                "macaroon_secret_key: x\n".to_owned()
            ),
        ])
    );

    // A missing database fails and leaves no dump behind.
    let before: Vec<_> = fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let out = backup("masgen_no_such_db");
    assert!(!out.status.success(), "missing database must fail: {out:?}");
    let after: Vec<_> = fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before.len(), after.len(), "left files behind: {after:?}");
    assert!(!after
        .iter()
        .any(|p| p.to_string_lossy().contains("masgen_no_such_db")));

    // A missing config file fails before dumping.
    let out = run(Command::new("bash")
        .arg(script("backup.sh"))
        .arg("masgen_backup_test")
        .arg(&backups)
        .arg(work.join("missing.yaml"))
        .env("PG_DUMP", &wrapper));
    assert!(!out.status.success());
    // Usage errors.
    let out = run(Command::new("bash").arg(script("backup.sh")).arg("db"));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn syn2mas_ident_map_lets_only_the_mas_user_in() {
    let Some(nix) = nix_instantiate() else { return };
    let (module_hba, ident, _) = syn2mas_access_lines(&nix);
    // Module lines first (mkBefore), nixpkgs' defaults last (mkAfter).
    let hba = format!("{module_hba}{NIXPKGS_DEFAULT_HBA}");
    let Some(pg) = start_pg(NIXPKGS_DEFAULT_HBA, "") else {
        return;
    };
    for user in ["matrix-synapse", "matrix-authentication-service"] {
        if !ensure_os_user(user) {
            return;
        }
    }
    sql(
        &pg,
        "postgres",
        r#"CREATE ROLE "matrix-synapse" LOGIN; CREATE ROLE "matrix-authentication-service" LOGIN"#,
    );
    sql(
        &pg,
        "postgres",
        r#"CREATE DATABASE "matrix-synapse" OWNER "matrix-synapse""#,
    );
    sql(
        &pg,
        "postgres",
        r#"CREATE DATABASE "matrix-authentication-service" OWNER "matrix-authentication-service""#,
    );

    // Err carries psql's stderr.
    let connect = |os_user: &str, db: &str, role: &str| -> Result<String, String> {
        pg.psql_as(os_user, db, role, "SELECT current_user")
            .map(|out| out.trim().to_owned())
    };

    // Control: with the nixpkgs defaults only, the MAS user cannot get in.
    assert!(connect(
        "matrix-authentication-service",
        "matrix-synapse",
        "matrix-synapse"
    )
    .is_err());

    set_auth(&pg, &hba, &ident);
    assert_eq!(
        connect(
            "matrix-authentication-service",
            "matrix-synapse",
            "matrix-synapse"
        ),
        Ok("matrix-synapse".to_owned())
    );
    // Synapse keeps its own access.
    assert_eq!(
        connect("matrix-synapse", "matrix-synapse", "matrix-synapse"),
        Ok("matrix-synapse".to_owned())
    );
    // MAS keeps its own database.
    assert_eq!(
        connect(
            "matrix-authentication-service",
            "matrix-authentication-service",
            "matrix-authentication-service"
        ),
        Ok("matrix-authentication-service".to_owned())
    );
    // Nobody else gets the Synapse role.
    let err = connect("nobody", "matrix-synapse", "matrix-synapse").unwrap_err();
    assert!(err.contains("authentication failed"), "{err}");
    // The mapping is limited to the Synapse database.
    assert!(connect(
        "matrix-authentication-service",
        "postgres",
        "matrix-synapse"
    )
    .is_err());
    assert!(connect(
        "matrix-authentication-service",
        "matrix-synapse",
        "postgres"
    )
    .is_err());
}

// ------------------------------------------------------------- mas-run.sh

/// A fake program printing its argv (one per line) and then the file after
/// `--config` (the first one).
const FAKE_MAS_CLI_ARGV: &str = r#"#!/usr/bin/env bash
for a in "$@"; do printf 'ARG %s\n' "$a"; done
while [ "$#" -gt 0 ]; do
  if [ "$1" = "--config" ]; then echo "CONFIG-BEGIN"; cat "$2"; echo "CONFIG-END"; break; fi
  shift
done
"#;

#[test]
fn mas_run_renders_config_and_inserts_config_args() {
    let Some(_) = require_tool("envsubst", "running mas-run.sh") else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let fake = dir.join("mas-cli");
    write_file(&fake, FAKE_MAS_CLI_ARGV, 0o755);
    let run_dir = dir.join("run");
    let creds = dir.join("creds");
    fs::create_dir(&run_dir).unwrap();
    fs::create_dir(&creds).unwrap();
    fs::write(creds.join("extra.yaml"), "x: 1\n").unwrap();
    let source = dir.join("mas.yaml");
    fs::write(
        &source,
        "secrets:\n  encryption_file: $CREDENTIALS_DIRECTORY/enc\n  keys:\n  - key_file: ${CREDENTIALS_DIRECTORY}/rsa\nother: $HOME ${USER} $$ \\$CREDENTIALS\n",
    )
    .unwrap();
    let creds_s = creds.to_str().unwrap();
    let rendered = run_dir.join("config.yaml");
    let expected_config = format!(
        "secrets:\n  encryption_file: {creds_s}/enc\n  keys:\n  - key_file: {creds_s}/rsa\nother: $HOME ${{USER}} $$ \\$CREDENTIALS\n"
    );

    let mas_run = |args: &[&str], envs: &[(&str, &Path)], extra: Option<&str>| -> Output {
        let mut cmd = Command::new("bash");
        cmd.arg(script("mas-run.sh"))
            .arg(&source)
            .arg("--")
            .arg(&fake)
            .args(args)
            .env_remove("RUNTIME_DIRECTORY")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("MASGEN_MAS_EXTRA_CONFIGS");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        if let Some(extra) = extra {
            cmd.env("MASGEN_MAS_EXTRA_CONFIGS", extra);
        }
        run(&mut cmd)
    };
    let env = [
        ("RUNTIME_DIRECTORY", run_dir.as_path()),
        ("CREDENTIALS_DIRECTORY", creds.as_path()),
    ];

    // @CONFIG@ is replaced in place, extra configs follow the rendered one.
    let out = mas_run(
        &[
            "syn2mas",
            "@CONFIG@",
            "--synapse-config",
            "/h.yaml",
            "check",
        ],
        &env,
        Some("extra.yaml"),
    );
    assert!(out.status.success(), "{out:?}");
    let r = rendered.to_str().unwrap();
    let extra = format!("{creds_s}/extra.yaml");
    let expected_args: Vec<String> = [
        "syn2mas",
        "--config",
        r,
        "--config",
        &extra,
        "--synapse-config",
        "/h.yaml",
        "check",
    ]
    .iter()
    .map(|a| format!("ARG {a}"))
    .collect();
    let text = stdout(&out);
    let (args, config) = text.split_once("CONFIG-BEGIN\n").unwrap();
    assert_eq!(args.lines().collect::<Vec<_>>(), expected_args);
    assert_eq!(
        config.strip_suffix("CONFIG-END\n").unwrap(),
        expected_config
    );
    assert_eq!(mode_of(&rendered), 0o600);

    // Without @CONFIG@ the config goes right after the program (mas-cli's
    // --config is global); args with spaces survive.
    let out = mas_run(&["doctor", "two words"], &env, None);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let args: Vec<_> = text.split("CONFIG-BEGIN").next().unwrap().lines().collect();
    assert_eq!(
        args,
        [
            "ARG --config".to_owned(),
            format!("ARG {r}"),
            "ARG doctor".to_owned(),
            "ARG two words".to_owned()
        ]
    );

    // No RUNTIME_DIRECTORY: refuse.
    let out = mas_run(
        &["doctor"],
        &[("CREDENTIALS_DIRECTORY", creds.as_path())],
        None,
    );
    assert!(!out.status.success());
    // The config needs credentials but the unit has none: refuse.
    let out = mas_run(
        &["doctor"],
        &[("RUNTIME_DIRECTORY", run_dir.as_path())],
        None,
    );
    assert!(!out.status.success());
    // Missing `--`: usage error.
    let out = run(Command::new("bash")
        .arg(script("mas-run.sh"))
        .arg(&source)
        .arg(&fake)
        .arg("doctor"));
    assert_eq!(out.status.code(), Some(2));
}

// -------------------------------------------------------- register-user.sh

/// A fake mas-cli keeping registered users in $FAKE_DB and logging argv.
const FAKE_MAS_CLI_USERS: &str = r#"#!/usr/bin/env bash
printf '%s\n' "$*" >>"$FAKE_LOG"
args=("$@")
user="${args[-1]}"
case " $* " in
  *" manage register-user "*)
    if [ "$user" = broken ]; then echo "Error: could not connect to the database" >&2; exit 3; fi
    if grep -qx "$user" "$FAKE_DB" 2>/dev/null; then echo "Error: User already exists" >&2; exit 1; fi
    echo "$user" >>"$FAKE_DB"
    echo "User registered"
    ;;
  *" manage promote-admin "*)
    grep -qx "$user" "$FAKE_DB" || { echo "Error: User not found" >&2; exit 1; }
    ;;
  *) echo "unexpected: $*" >&2; exit 99 ;;
esac
"#;

#[test]
fn register_user_is_idempotent() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let fake = dir.join("mas-cli");
    write_file(&fake, FAKE_MAS_CLI_USERS, 0o755);
    let log = dir.join("log");
    let db = dir.join("db");
    let creds = dir.join("creds");
    fs::create_dir(&creds).unwrap();
    fs::write(creds.join("bot-password"), "s3cret pass\n").unwrap();

    let register = |args: &[&str]| -> Output {
        run(Command::new("bash")
            .arg(script("register-user.sh"))
            .arg(&fake)
            .args(["--config", "/run/x/config.yaml", "--config", "/creds/extra"])
            .args(args)
            .env("FAKE_LOG", &log)
            .env("FAKE_DB", &db)
            .env("CREDENTIALS_DIRECTORY", &creds))
    };
    let log_lines = || -> Vec<String> {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };

    let out = register(&["bot", "--admin", "--password-file", "bot-password"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        log_lines(),
        ["--config /run/x/config.yaml --config /creds/extra manage register-user --yes --admin --password s3cret pass -- bot"]
    );

    // Second run: already exists -> success, and --admin is enforced.
    let out = register(&["bot", "--admin", "--password-file", "bot-password"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        log_lines()[1..],
        [
            "--config /run/x/config.yaml --config /creds/extra manage register-user --yes --admin --password s3cret pass -- bot",
            "--config /run/x/config.yaml --config /creds/extra manage promote-admin -- bot"
        ]
    );

    // Without --admin or a password, an existing user is left alone.
    let out = register(&["bot"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(log_lines().len(), 4);
    assert_eq!(
        log_lines()[3],
        "--config /run/x/config.yaml --config /creds/extra manage register-user --yes -- bot"
    );

    // Other failures propagate their exit code.
    let out = register(&["broken"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // Bad password files.
    let out = register(&["other", "--password-file", "missing"]);
    assert!(!out.status.success());
    fs::write(creds.join("empty"), "").unwrap();
    let out = register(&["other", "--password-file", "empty"]);
    assert!(!out.status.success());
    let out = register(&["other", "--password-file", "rel/path"]);
    assert_eq!(out.status.code(), Some(2));
    // Usage errors.
    let out = register(&[]);
    assert_eq!(out.status.code(), Some(2));
    let out = register(&["a", "b"]);
    assert_eq!(out.status.code(), Some(2));
    let out = register(&["a", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
}

// ------------------------------------------------- MAS module of the pin

/// `mas-compat.nix` with what a generated configuration sets: its unit,
/// credentials, start script and database, like nixpkgs' module.
const MAS_COMPAT_CASE: &str = r#"
{ modulesDir, harness }:
let
  h = import harness { inherit modulesDir; };
  mas = h.stubPkg "matrix-authentication-service" // { meta.mainProgram = "mas-cli"; };
  eval = extraConfigFiles: h.resolve (h.evalModule "mas-compat.nix" {
    services.matrix-synapse = { enable = true; serviceUnit = "matrix-synapse.service"; };
    services.matrix-authentication-service = {
      enable = true;
      package = mas;
      createDatabase = true;
      settings = { http.public_base = "https://m.example.org/"; email = null; };
      credentials = { encryption = "/run/secrets/enc"; matrix-secret = "/run/secrets/shared"; };
      serviceDependencies = [ "matrix-synapse.service" ];
      inherit extraConfigFiles;
    };
  }).config;
  withExtra = eval [ "/run/secrets/mas-extra.yaml" ];
  prepare = withExtra.systemd.services.matrix-authentication-service.serviceConfig.ExecStartPre;
in
{
  unit = withExtra.systemd.services.matrix-authentication-service;
  postgresql = withExtra.services.postgresql;
  prepareText = prepare.text;
  prepareInputs = prepare.runtimeInputs;
  noExtraExecStart = (eval [ ]).systemd.services.matrix-authentication-service.serviceConfig.ExecStart;
  options = builtins.attrNames (h.evalModule "mas-compat.nix" { services.matrix-authentication-service = { }; services.matrix-synapse = { }; }).options.services.matrix-authentication-service;
}
"#;

#[test]
fn mas_compat_module_runs_mas_like_the_nixpkgs_module() {
    let Some(nix) = nix_instantiate() else { return };
    let v = eval_case(&nix, MAS_COMPAT_CASE);
    // Exactly the options masgen's configurations set (and nixpkgs' names).
    assert_eq!(
        v["options"],
        serde_json::json!([
            "createDatabase",
            "credentials",
            "enable",
            "extraConfigFiles",
            "package",
            "serviceDependencies",
            "settings"
        ])
    );
    // … which are the top-level options of nixpkgs' module.
    let options = support::shared_dir().join("schemas/nixos-options.json");
    match fs::read_to_string(&options) {
        Ok(text) => {
            let all: Value = serde_json::from_str(&text).unwrap();
            let prefix = "services.matrix-authentication-service.";
            let mut names: Vec<&str> = all["options"]
                .as_array()
                .expect("a list of options")
                .iter()
                .filter_map(|o| o["name"].as_str()?.strip_prefix(prefix))
                .filter(|rest| !rest.contains('.'))
                .collect();
            names.sort();
            assert_eq!(v["options"], serde_json::json!(names));
        }
        Err(e) => eprintln!(
            "SKIP: {}: {e}: compat options not compared with nixpkgs'",
            options.display()
        ),
    }
    let unit = &v["unit"];
    assert_eq!(
        unit["after"],
        serde_json::json!(["postgresql.service", "matrix-synapse.service"])
    );
    assert_eq!(unit["wants"], unit["after"]);
    assert_eq!(unit["wantedBy"], serde_json::json!(["multi-user.target"]));
    let sc = &unit["serviceConfig"];
    assert_eq!(sc["DynamicUser"], true);
    assert_eq!(sc["StateDirectory"], "matrix-authentication-service");
    assert_eq!(sc["RuntimeDirectory"], "matrix-authentication-service");
    // Extra config files first as config-<i>, then the named credentials.
    assert_eq!(
        sc["LoadCredential"],
        serde_json::json!([
            "config-0:/run/secrets/mas-extra.yaml",
            "encryption:/run/secrets/enc",
            "matrix-secret:/run/secrets/shared"
        ])
    );
    let mas = "/nix/store/stub-matrix-authentication-service/bin/mas-cli";
    assert_eq!(
        sc["ExecStart"],
        format!(
            "{mas} server --config /run/matrix-authentication-service/config.yaml --config \"${{CREDENTIALS_DIRECTORY}}/config-0\""
        )
    );
    assert_eq!(
        v["noExtraExecStart"],
        format!("{mas} server --config /run/matrix-authentication-service/config.yaml")
    );
    let text = v["prepareText"].as_str().unwrap();
    assert!(
        text.contains("envsubst '$CREDENTIALS_DIRECTORY' < /nix/store/stub-matrix-authentication-service-config.yaml > /run/matrix-authentication-service/config.yaml"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{mas} config check --config /run/matrix-authentication-service/config.yaml --config \"${{CREDENTIALS_DIRECTORY}}/config-0\""
        )),
        "{text}"
    );
    assert_eq!(v["prepareInputs"], serde_json::json!(["gettext"]));
    assert_eq!(
        v["postgresql"]["ensureUsers"],
        serde_json::json!([{"name": "matrix-authentication-service", "ensureDBOwnership": true}])
    );
    assert_eq!(
        v["postgresql"]["ensureDatabases"],
        serde_json::json!(["matrix-authentication-service"])
    );

    // writeShellApplication runs shellcheck on the start script. Without
    // shellcheck: a SKIP line locally, a failure in CI.
    if let Some(shellcheck) = require_tool("shellcheck", "checking MAS's prepare script") {
        let tmp = TempDir::new().unwrap();
        let path = tmp.path().join("prepare.sh");
        write_file(
            &path,
            &format!("#!/bin/bash\nset -o errexit\nset -o nounset\nset -o pipefail\n{text}"),
            0o644,
        );
        run_ok(Command::new(&shellcheck).arg(&path));
    }
}

/// Which MAS module `default.nix` brings in for a NixOS modules directory
/// with no MAS module, one without `credentials` (nixpkgs of June 2026) and
/// one with it. The modules written here are stand-ins declaring only names.
#[test]
fn default_module_imports_the_compat_module_only_where_nixpkgs_lacks_credentials() {
    let Some(nix) = nix_instantiate() else { return };
    let tmp = TempDir::new().unwrap();
    let module = |dir: &str, options: &str| {
        let path = tmp.path().join(dir).join("services/matrix");
        fs::create_dir_all(&path).unwrap();
        fs::write(
            path.join("matrix-authentication-service.nix"),
            format!("{{ lib, ... }}: {{ options.services.matrix-authentication-service = {{ {options} }}; config = {{ }}; }}\n"),
        )
        .unwrap();
    };
    fs::create_dir_all(tmp.path().join("none")).unwrap();
    module(
        "june",
        "enable = lib.mkEnableOption \"MAS\"; settings = { };",
    );
    module(
        "july",
        "enable = lib.mkEnableOption \"MAS\"; credentials = { };",
    );
    let expr = format!(
        r#"{{ modulesDir, harness }}:
let
  h = import harness {{ inherit modulesDir; }};
  pick = dir: let m = import (/. + modulesDir + "/default.nix") {{ inherit (h) lib; modulesPath = "{root}/${{dir}}"; }}; in {{
    imports = map baseNameOf m.imports;
    inherit (m) disabledModules;
  }};
in {{ none = pick "none"; june = pick "june"; july = pick "july"; }}"#,
        root = tmp.path().display()
    );
    let v = eval_case(&nix, &expr);
    let ours = [
        "tasks.nix",
        "synapse-secrets.nix",
        "syn2mas-access.nix",
        "mas-keys.nix",
        "postgres-access.nix",
        "firewall.nix",
        "synapse-database.nix",
        "mas-database.nix",
    ];
    let with_compat = [&ours[..], &["mas-compat.nix"]].concat();
    assert_eq!(v["none"]["imports"], serde_json::json!(with_compat));
    assert_eq!(v["none"]["disabledModules"], serde_json::json!([]));
    assert_eq!(v["june"]["imports"], serde_json::json!(with_compat));
    assert_eq!(
        v["june"]["disabledModules"],
        serde_json::json!(["services/matrix/matrix-authentication-service.nix"])
    );
    assert_eq!(v["july"]["imports"], serde_json::json!(ours));
    assert_eq!(v["july"]["disabledModules"], serde_json::json!([]));
}

/// The same choice on a real nixpkgs tree (`MASGEN_NIXPKGS`, else
/// ~/.cache/masgen/nixpkgs): its MAS module, when it has one, is read with
/// its own `lib`, and `credentials` is found exactly when the file declares it.
#[test]
fn default_module_reads_a_real_nixpkgs_mas_module() {
    let Some(nix) = nix_instantiate() else { return };
    let tree = std::env::var_os("MASGEN_NIXPKGS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/masgen/nixpkgs"))
        });
    let Some(tree) = tree.filter(|t| t.join("lib/default.nix").exists()) else {
        eprintln!("SKIP: no nixpkgs tree (MASGEN_NIXPKGS or ~/.cache/masgen/nixpkgs): the MAS module choice was not checked against nixpkgs' own module");
        return;
    };
    let file = tree.join("nixos/modules/services/matrix/matrix-authentication-service.nix");
    let expect = match fs::read_to_string(&file) {
        Ok(text) => text.contains("credentials = "),
        Err(_) => false,
    };
    let expr = format!(
        r#"{{ modulesDir, harness }}:
(import (/. + modulesDir + "/lib.nix")).masUpstream {{
  lib = import {tree}/lib;
  modulesPath = "{tree}/nixos/modules";
}}"#,
        tree = tree.display()
    );
    let v = eval_case(&nix, &expr);
    assert_eq!(v["present"], file.exists(), "{}", file.display());
    assert_eq!(v["hasCredentials"], expect, "{}", file.display());
}
