//! The pinned nixpkgs (`flake.nixpkgs`, table in src/model/nixpkgs.rs) and
//! the host's own configuration (`base_flake` / `base_config`): what
//! `masgen check` says about a pin, the Synapse version derived from it, the
//! ACME address an older ACME module needs, and the flake inputs emitted.
//! Refused specs are in the bad-spec corpus (tests/bad_specs/100-106).

mod support;

use assert_cmd::Command;
use support::{checked, example_text, repo_root};

fn masgen() -> Command {
    let mut cmd = Command::cargo_bin("masgen").expect("the masgen binary");
    cmd.env_remove("MASGEN_LOG").env_remove("RUST_LOG");
    cmd
}

/// `fresh.toml` with its `[flake]` pin replaced.
fn fresh_pinned(nixpkgs: &str) -> String {
    let text = example_text("fresh.toml");
    let default = "nixpkgs = \"github:NixOS/nixpkgs/nixos-unstable\"";
    assert!(text.contains(default), "fresh.toml pins the default");
    text.replace(default, &format!("nixpkgs = \"{nixpkgs}\""))
}

fn without_line(text: &str, start: &str) -> String {
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with(start)).collect();
    assert!(
        kept.len() < text.lines().count(),
        "no line starts with {start}"
    );
    kept.join("\n") + "\n"
}

fn build(name: &str, text: &str) -> masgen::emit::OutputTree {
    let c = checked(name, text);
    masgen::build_tree(&c).expect("build").1
}

#[test]
fn check_says_which_mas_module_each_example_uses() {
    for (example, expect) in [
        ("fresh.toml", "has the MAS module with `credentials`: the configurations use nixpkgs' own module"),
        ("migrate-keycloak.toml", "is nixos-26.05, which has no MAS module: the configurations import masgen's compatible module"),
    ] {
        let out = masgen()
            .current_dir(repo_root())
            .args(["check", &format!("examples/{example}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(stdout.contains(expect), "{example}: {stdout}");
    }
}

#[test]
fn synapse_version_comes_from_a_known_pin_when_omitted() {
    let text = without_line(
        &fresh_pinned("github:NixOS/nixpkgs/nixos-25.11"),
        "version = \"1.157\"",
    );
    let c = checked("fresh-25.11.toml", &text);
    assert_eq!(c.homeserver.synapse.version.to_string(), "1.146");
    assert_eq!(c.homeserver.nixpkgs, "github:NixOS/nixpkgs/nixos-25.11");

    let text = without_line(&example_text("fresh.toml"), "version = \"1.157\"");
    let c = checked("fresh-default.toml", &text);
    assert_eq!(c.homeserver.synapse.version.to_string(), "1.156");
}

#[test]
fn a_pin_masgen_does_not_know_takes_the_version_as_written() {
    // The pre-1.136 form stays reachable through a pin by commit.
    let text = fresh_pinned("github:NixOS/nixpkgs/3c573fbc3bbfb4f43c2627aeb5f21add389cac99")
        .replace("version = \"1.157\"", "version = \"1.135\"");
    let c = checked("fresh-commit.toml", &text);
    assert!(!c.homeserver.synapse.version.has_stable_delegation());
    let out = masgen::model::nixpkgs::describe(&c.homeserver.nixpkgs);
    assert!(out.contains("not a branch masgen knows"), "{out}");
}

#[test]
fn spec_without_a_pin_builds_against_the_default_branch() {
    let text = without_line(&example_text("fresh.toml"), "nixpkgs = ");
    let tree = build("fresh-nopin.toml", &text);
    assert!(tree[camino::Utf8Path::new("flake.nix")]
        .contains("url = \"github:NixOS/nixpkgs/nixos-unstable\";"));
    // The compatible module ships in every tree; default.nix decides.
    assert!(tree.contains_key(camino::Utf8Path::new("masgen/modules/mas-compat.nix")));
}

#[test]
fn acme_address_from_the_host_satisfies_an_old_acme_module() {
    let text = fresh_pinned("github:NixOS/nixpkgs/nixos-26.05")
        .replace(
            "acme_email = \"admin@example.org\"",
            "acme_email_from_host = true",
        )
        .replace("version = \"1.157\"", "version = \"1.152\"");
    let tree = build("fresh-26.05.toml", &text);
    let module = &tree[camino::Utf8Path::new("hosts/matrix/final/default.nix")];
    assert!(module.contains("acceptTerms = true;"), "{module}");
    assert!(
        !module.contains("email"),
        "masgen sets no address: {module}"
    );
}

#[test]
fn base_config_is_imported_from_a_non_flake_input_of_its_directory() {
    let tree = build("migrate-local.toml", &example_text("migrate-local.toml"));
    let flake = &tree[camino::Utf8Path::new("flake.nix")];
    assert!(
        flake.contains(
            "    host-matrix = {\n      flake = false;\n      url = \"path:/etc/nixos\";\n    };"
        ),
        "{flake}"
    );
    assert!(
        flake.contains("(inputs.host-matrix.outPath + \"/configuration.nix\")"),
        "{flake}"
    );
    assert!(!flake.contains("nixosModules.default"), "{flake}");

    // base_flake keeps importing the flake's module.
    let flake =
        &build("fresh.toml", &example_text("fresh.toml"))[camino::Utf8Path::new("flake.nix")];
    assert!(
        flake.contains("inputs.host-matrix.nixosModules.default"),
        "{flake}"
    );
    assert!(!flake.contains("flake = false"), "{flake}");
}

/// The emitted flake.nix, called through its own `outputs` with stand-in
/// inputs (`nixosSystem` returns its arguments): a `base_config` host
/// imports the file inside its input, a `base_flake` host the module.
#[test]
fn flake_outputs_import_the_host_configuration() {
    let Some(nix) = support::nix_instantiate() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for (example, want) in [
        (
            "migrate-local.toml",
            "\"/stand-in/host-matrix/configuration.nix\"",
        ),
        ("fresh.toml", "{\"host\":\"module\"}"),
    ] {
        let tree = build(example, &example_text(example));
        let out = tmp.path().join(example);
        for (path, text) in &tree {
            let file = out.join(path.as_str());
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        let expr = format!(
            r#"let
  flake = import {out}/flake.nix;
  inputs = {{
    nixpkgs.lib.nixosSystem = args: args;
    host-matrix = {{ outPath = "/stand-in/host-matrix"; nixosModules.default = {{ host = "module"; }}; }};
  }};
  self = flake.outputs (inputs // {{ inherit self; }});
in
  builtins.elemAt self.nixosConfigurations.matrix.modules 2"#,
            out = out.display()
        );
        let got = nix
            .eval_json_expr(&expr)
            .unwrap_or_else(|e| panic!("{example}: {e}"));
        assert_eq!(got.to_string(), want, "{example}");
    }
}
