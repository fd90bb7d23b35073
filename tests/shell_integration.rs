//! `masgen completions` and `masgen man` in the real consumers: bash, zsh and
//! fish load the completion scripts and complete a command line; `man -l`
//! renders the pages; the root flake's `postInstall` runs as written (with
//! stand-ins for nixpkgs' `installShellCompletion` / `installManPage`).

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

/// The root flake's `postInstall`, as written between `postInstall = ... ''` and `'';`.
fn flake_post_install() -> String {
    let flake = fs::read_to_string(repo_root().join("flake.nix")).unwrap();
    let start = flake
        .find("postInstall =")
        .expect("flake.nix has a postInstall");
    let body = &flake[start..];
    let open = body.find("''").expect("postInstall is an indented string") + 2;
    let close = body[open..].find("'';").expect("postInstall ends with '';") + open;
    let script = &body[open..close];
    assert!(
        !script.contains("${"),
        "this test runs postInstall without Nix interpolation: {script}"
    );
    script.to_string()
}

/// Runs the flake's `postInstall` in bash with `$out/bin/masgen` being this
/// build, and stand-ins for nixpkgs' installShellFiles hooks that only copy
/// (the real ones, nixpkgs pkgs/build-support/setup-hooks/install-shell-files.sh,
/// also copy to share/{bash-completion/completions,zsh/site-functions,
/// fish/vendor_completions.d} and share/man/man1).
#[test]
fn flake_post_install_installs_completions_and_man_pages() {
    let Some(bash) = require_tool("bash", "running the flake's postInstall") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    fs::create_dir_all(out.join("bin")).unwrap();
    std::os::unix::fs::symlink(masgen_bin(), out.join("bin/masgen")).unwrap();
    let stand_ins = r#"set -euo pipefail
# Stand-in for installShellCompletion --cmd NAME --bash F --fish F --zsh F.
installShellCompletion() {
  local cmd="" shell
  while [ $# -gt 0 ]; do
    case "$1" in
      --cmd) cmd=$2; shift 2 ;;
      --bash) shell=bash ;&
      --fish) shell=${shell:-fish} ;&
      --zsh) shell=${shell:-zsh}
        mkdir -p "$out/completions"; cat "$2" > "$out/completions/$cmd.$shell"; shell=""; shift 2 ;;
      *) echo "unexpected argument $1" >&2; return 1 ;;
    esac
  done
}
# Stand-in for installManPage PAGE...
installManPage() { mkdir -p "$out/share/man/man1"; cp "$@" "$out/share/man/man1/"; }
"#;
    let script = format!("{stand_ins}{}", flake_post_install());
    run_ok(
        Command::new(&bash)
            .args(["--norc", "-c", &script])
            .env("out", &out)
            .current_dir(dir.path()),
    );
    for shell in ["bash", "fish", "zsh"] {
        let installed = fs::read_to_string(out.join(format!("completions/masgen.{shell}")))
            .unwrap_or_else(|e| panic!("no {shell} completion installed: {e}"));
        assert_eq!(installed, masgen_stdout(&["completions", shell]));
    }
    let man1 = out.join("share/man/man1");
    for page in ["masgen.1", "masgen-check.1", "masgen-build.1"] {
        assert!(man1.join(page).is_file(), "{page} not installed");
    }
}
