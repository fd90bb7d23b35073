//! `masgen completions` and `masgen man` in the real consumers: bash, zsh and
//! fish load the completion scripts and complete a command line; `man -l`
//! renders the pages; the root flake's package, evaluated by nix-instantiate
//! (with a stand-in nixpkgs), installs completions, man pages and the
//! spec's schema where the shells and `man` find them (its `postInstall`
//! runs with stand-ins for nixpkgs' `installShellCompletion` /
//! `installManPage`).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{repo_root, require_tool, run_ok};

fn masgen_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("masgen")
}

/// `masgen <args>`'s stdout, which must succeed.
fn masgen_stdout(args: &[&str]) -> String {
    let out = run_ok(Command::new(masgen_bin()).args(args));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn write_script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Completes `words` (the last one being typed) with bash's completion
/// function, the way readline calls it.
fn bash_complete(bash: &Path, script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let line = words.join(" ");
    let program = format!(
        r#"source '{script}' || exit 3
complete -p masgen >/dev/null || exit 4
COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}
func=$(complete -p masgen | sed -n 's/.*-F \([^ ]*\).*/\1/p')
"$func" masgen '{cur}' '{prev}'
printf '%s\n' "${{COMPREPLY[@]}}""#,
        script = script.display(),
        words = quoted.join(" "),
        cword = words.len() - 1,
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    lines(&run_ok(Command::new(bash).args(["--norc", "-c", &program])))
}

#[test]
fn bash_registers_and_completes_masgen() {
    let Some(bash) = require_tool("bash", "loading the bash completion script") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(
        dir.path(),
        "masgen.bash",
        &masgen_stdout(&["completions", "bash"]),
    );

    let registered = run_ok(Command::new(&bash).args([
        "--norc",
        "-c",
        &format!("source '{}' && complete -p masgen", script.display()),
    ]));
    let registered = String::from_utf8_lossy(&registered.stdout);
    assert!(
        registered.contains("-F _masgen") && registered.trim_end().ends_with(" masgen"),
        "`complete -p masgen` after sourcing: {registered}"
    );

    let subcommands = bash_complete(&bash, &script, &["masgen", "c"]);
    for want in ["check", "completions"] {
        assert!(subcommands.contains(&want.to_string()), "{subcommands:?}");
    }
    assert!(
        !subcommands.contains(&"build".to_string()),
        "{subcommands:?}"
    );

    let shells = bash_complete(&bash, &script, &["masgen", "completions", ""]);
    for want in ["bash", "zsh", "fish"] {
        assert!(shells.contains(&want.to_string()), "{shells:?}");
    }

    let mut formats = bash_complete(&bash, &script, &["masgen", "check", "--format", ""]);
    formats.sort();
    assert_eq!(formats, ["github", "json", "text"]);
}

#[test]
fn zsh_loads_the_completion_function() {
    let Some(zsh) = require_tool("zsh", "loading the zsh completion script") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(
        dir.path(),
        "_masgen",
        &masgen_stdout(&["completions", "zsh"]),
    );
    run_ok(Command::new(&zsh).arg("-n").arg(&script));
    // compinit defines compdef; sourcing the script registers `_masgen` for `masgen`.
    let out = run_ok(
        Command::new(&zsh)
            .args(["-f", "-c"])
            .arg(format!(
                "autoload -U compinit && compinit -u -D && source '{}' && print -r -- $_comps[masgen]",
                script.display()
            ))
            .env("HOME", dir.path()),
    );
    assert_eq!(lines(&out), ["_masgen"]);
}

#[test]
fn fish_completes_masgen() {
    let Some(fish) = require_tool("fish", "loading the fish completion script") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(
        dir.path(),
        "masgen.fish",
        &masgen_stdout(&["completions", "fish"]),
    );
    let complete = |line: &str| -> Vec<String> {
        let out = run_ok(
            Command::new(&fish)
                .args(["--no-config", "-c"])
                .arg(format!(
                    "source '{}'; complete -C'{line}'",
                    script.display()
                ))
                .env("HOME", dir.path()),
        );
        // `complete -C` prints `candidate<TAB>description`.
        lines(&out)
            .into_iter()
            .map(|l| l.split('\t').next().unwrap_or("").to_string())
            .collect()
    };
    let subcommands = complete("masgen ");
    for want in [
        "init",
        "check",
        "build",
        "plan",
        "diff",
        "completions",
        "man",
    ] {
        assert!(subcommands.contains(&want.to_string()), "{subcommands:?}");
    }
    // clap_complete's fish script completes option values (not positional ones).
    let formats = complete("masgen diff --format ");
    assert_eq!(formats, ["json", "markdown", "text"]);
}

/// `man -l <page>` as plain text, with groff's warnings; panics unless it succeeds.
fn man_render(man: &Path, page: &Path) -> (String, String) {
    let out = run_ok(
        Command::new(man)
            .args(["--warnings", "-l"])
            .arg(page)
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat")
            .env_remove("MAN_KEEP_FORMATTING"),
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn man_renders_the_page_and_every_command_page() {
    let Some(man) = require_tool("man", "rendering the man pages (man-db)") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let page = write_script(dir.path(), "masgen.1", &masgen_stdout(&["man"]));
    let (text, warnings) = man_render(&man, &page);
    assert!(
        text.contains("NAME") && text.contains("masgen - Compile"),
        "{text}"
    );
    assert!(text.contains("masgen-check(1)"), "{text}");
    assert!(warnings.trim().is_empty(), "groff warnings: {warnings}");

    let pages = dir.path().join("pages");
    masgen_stdout(&["man", "--out-dir", pages.to_str().unwrap()]);
    let check = pages.join("masgen-check.1");
    let (text, warnings) = man_render(&man, &check);
    assert!(text.contains("masgen check"), "{text}");
    assert!(warnings.trim().is_empty(), "groff warnings: {warnings}");
    for entry in fs::read_dir(&pages).unwrap() {
        man_render(&man, &entry.unwrap().path());
    }
}

/// The root flake's package as Nix evaluates it, with the stand-in nixpkgs
/// of tests/nixos/flake-package.nix (`canExecute`: whether the build can run
/// the binary); `None` (after a SKIP) without nix-instantiate.
fn flake_package(can_execute: bool) -> Option<serde_json::Value> {
    let nix = support::nix_instantiate()?;
    let out = run_ok(
        nix.command()
            .args(["--eval", "--strict", "--json"])
            .arg(repo_root().join("tests/nixos/flake-package.nix"))
            .arg("--arg")
            .arg("flake")
            .arg(repo_root().join("flake.nix"))
            .args([
                "--arg",
                "canExecute",
                if can_execute { "true" } else { "false" },
            ]),
    );
    Some(serde_json::from_slice(&out.stdout).expect("JSON from nix-instantiate"))
}

/// STAND-INS for nixpkgs' installShellFiles hooks (nixpkgs
/// @05a7d1da5925c75f020b4b28647a70ec0e7d42d5,
/// pkgs/by-name/in/installShellFiles/setup-hook.sh), which cannot be loaded
/// here: they install to the same places under the same names (`--cmd
/// masgen`: `masgen.bash`, `masgen.fish`, `_masgen`; a page `X.N` to
/// `share/man/manN/X.N`), and nothing else. stdenv runs hooks with
/// `set -eu -o pipefail`.
const INSTALL_SHELL_FILES_STAND_INS: &str = r#"set -eu -o pipefail
installShellCompletion() {
  local cmd="" shell="" dir name
  while [ $# -gt 0 ]; do
    case "$1" in
      --cmd) cmd=$2; shift 2; continue ;;
      --bash|--fish|--zsh) shell=${1#--}; shift; continue ;;
    esac
    case "$shell" in
      bash) dir=bash-completion/completions; name=$cmd.bash ;;
      fish) dir=fish/vendor_completions.d; name=$cmd.fish ;;
      zsh) dir=zsh/site-functions; name=_$cmd ;;
      *) echo "stand-in: no shell for $1" >&2; return 1 ;;
    esac
    mkdir -p "$out/share/$dir"
    cat "$1" > "$out/share/$dir/$name"
    [ -s "$out/share/$dir/$name" ] || { echo "stand-in: empty $name" >&2; return 1; }
    shift
  done
}
installManPage() {
  local page section
  for page in "$@"; do
    section=${page##*.}
    install -D --mode=644 --no-target-directory -- "$page" "$out/share/man/man$section/$(basename "$page")"
  done
}
"#;

/// The root flake's package installs the completions, the man pages and the
/// spec's JSON Schema: its `postInstall`, as Nix computes it from flake.nix,
/// runs in bash with `$out/bin/masgen` being this build (and the stand-ins
/// above); then bash, zsh and fish load the installed completion files from
/// where a NixOS profile puts them, `man` renders the installed pages, and
/// the schema is `masgen schema`'s.
#[test]
fn flake_package_installs_completions_man_pages_and_schema() {
    let Some(bash) = require_tool("bash", "running the flake's postInstall") else {
        return;
    };
    let Some(package) = flake_package(true) else {
        return;
    };
    assert_eq!(package["pname"], "masgen");
    assert_eq!(
        package["nativeBuildInputs"],
        serde_json::json!(["installShellFiles"])
    );
    let script = package["postInstall"].as_str().unwrap().to_string();
    // A cross build (which cannot run the binary) installs nothing extra.
    assert_eq!(flake_package(false).unwrap()["postInstall"], "");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    fs::create_dir_all(out.join("bin")).unwrap();
    std::os::unix::fs::symlink(masgen_bin(), out.join("bin/masgen")).unwrap();
    run_ok(
        Command::new(&bash)
            .args([
                "--norc",
                "-c",
                &format!("{INSTALL_SHELL_FILES_STAND_INS}{script}"),
            ])
            .env("out", &out)
            .current_dir(dir.path()),
    );
    let share = out.join("share");
    let installed = |rel: &str| -> PathBuf {
        let p = share.join(rel);
        assert!(p.is_file(), "{rel} is not installed");
        p
    };
    for (rel, shell) in [
        ("bash-completion/completions/masgen.bash", "bash"),
        ("fish/vendor_completions.d/masgen.fish", "fish"),
        ("zsh/site-functions/_masgen", "zsh"),
    ] {
        let text = fs::read_to_string(installed(rel)).unwrap();
        assert_eq!(text, masgen_stdout(&["completions", shell]), "{rel}");
    }
    for page in ["masgen.1", "masgen-check.1", "masgen-build.1"] {
        installed(&format!("man/man1/{page}"));
    }
    let schema = fs::read_to_string(installed("masgen/spec.schema.json")).unwrap();
    assert_eq!(schema, masgen_stdout(&["schema"]));
    serde_json::from_str::<serde_json::Value>(&schema).expect("the schema is JSON");

    installed_man_pages_render(&share);
    installed_completions_load(&bash, &share, dir.path());
}

/// `man -l` renders the installed page, and `man -M` finds the command
/// pages in the installed tree, as `man masgen-check` would on the host.
fn installed_man_pages_render(share: &Path) {
    let Some(man) = require_tool("man", "rendering the installed man pages") else {
        return;
    };
    let (text, warnings) = man_render(&man, &share.join("man/man1/masgen.1"));
    assert!(text.contains("masgen - Compile"), "{text}");
    assert!(warnings.trim().is_empty(), "groff warnings: {warnings}");
    let out = run_ok(
        Command::new(&man)
            .arg("-M")
            .arg(share.join("man"))
            .arg("masgen-check")
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100"),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("masgen check"),
        "{out:?}"
    );
}

/// Each shell loads the installed file the way it finds completions: bash
/// by sourcing it, zsh through `fpath` and `compinit`, fish through
/// `fish_complete_path` (fish autoloads completions only for a command on
/// `PATH`, so the installed `bin/` is put there, as a profile does).
fn installed_completions_load(bash: &Path, share: &Path, home: &Path) {
    let bash_file = share.join("bash-completion/completions/masgen.bash");
    let got = bash_complete(bash, &bash_file, &["masgen", "com"]);
    assert_eq!(got, ["completions"]);
    if let Some(zsh) = require_tool("zsh", "loading the installed zsh completion") {
        let out = run_ok(
            Command::new(&zsh)
                .args(["-f", "-c"])
                .arg(format!(
                    "fpath=('{}' $fpath); autoload -U compinit && compinit -u -D && print -r -- $_comps[masgen]",
                    share.join("zsh/site-functions").display()
                ))
                .env("HOME", home),
        );
        assert_eq!(lines(&out), ["_masgen"]);
    }
    if let Some(fish) = require_tool("fish", "loading the installed fish completion") {
        let out = run_ok(
            Command::new(&fish)
                .args(["--no-config", "-c"])
                .arg(format!(
                    "set -p fish_complete_path '{}'; complete -C'masgen ma'",
                    share.join("fish/vendor_completions.d").display()
                ))
                .env("HOME", home)
                .env("PATH", path_with(&share.parent().unwrap().join("bin"))),
        );
        let got: Vec<String> = lines(&out)
            .into_iter()
            .map(|l| l.split('\t').next().unwrap_or("").to_string())
            .collect();
        assert_eq!(got, ["man"], "{out:?}");
    }
}

/// `PATH` with `dir` in front.
fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

/// The README's short guide names the operator's tools (issue 13): the
/// schema, the completions and man page, the flake package that installs
/// them, and the CI workflow.
#[test]
fn readme_short_guide_mentions_the_operators_tools() {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme.find("## A short guide").expect("a short guide");
    let guide = &readme[start..];
    let guide = &guide[..guide[3..].find("\n## ").map_or(guide.len(), |i| i + 3)];
    for want in [
        "masgen schema",
        "masgen completions",
        "masgen man",
        "share/masgen/spec.schema.json",
        "docs/ci.md",
        "check --format github",
    ] {
        assert!(guide.contains(want), "the short guide lacks `{want}`");
    }
}
