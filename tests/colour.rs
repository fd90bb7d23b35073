//! Colour on stdout (`masgen plan`, `masgen diff`) and of diagnostics on
//! stderr follows the common conventions: none when the stream is not a
//! terminal (as here), unless `CLICOLOR_FORCE` asks for it; never with
//! `NO_COLOR`.

const SPEC: &str = "examples/migrate-local.toml";

/// `masgen plan` with `vars` set (and every colour variable else removed);
/// its stdout, which is a pipe here.
fn plan(vars: &[(&str, &str)]) -> String {
    let mut cmd = assert_cmd::Command::cargo_bin("masgen").unwrap();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["plan", SPEC, "--from", "synapse-only"]);
    for var in ["NO_COLOR", "CLICOLOR_FORCE", "CLICOLOR"] {
        cmd.env_remove(var);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.assert().success().get_output().stdout.clone();
    String::from_utf8(out).unwrap()
}

#[test]
fn clicolor_force_colours_a_pipe_unless_no_color() {
    let plain = plan(&[]);
    assert!(!plain.contains('\x1b'), "{plain}");
    let forced = plan(&[("CLICOLOR_FORCE", "1")]);
    assert!(forced.contains("\x1b["), "{forced}");
    // The same text under the colour codes.
    let mut stripped = forced.clone();
    while let Some(at) = stripped.find('\x1b') {
        let end = at + stripped[at..].find('m').unwrap() + 1;
        stripped.replace_range(at..end, "");
    }
    assert_eq!(stripped, plain);
    // `CLICOLOR_FORCE=0` and an empty value do not force it.
    assert_eq!(plan(&[("CLICOLOR_FORCE", "0")]), plain);
    assert_eq!(plan(&[("CLICOLOR_FORCE", "")]), plain);
    // NO_COLOR wins.
    assert_eq!(plan(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]), plain);
}

/// `masgen check` of a spec with an error; its stderr (a pipe here), where
/// diagnostics go.
fn check_stderr(vars: &[(&str, &str)]) -> String {
    let mut cmd = assert_cmd::Command::cargo_bin("masgen").unwrap();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["check", "tests/bad_specs/93-warn-issuer-mismatch.toml"]);
    for var in ["NO_COLOR", "CLICOLOR_FORCE", "CLICOLOR"] {
        cmd.env_remove(var);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.assert().success().get_output().stderr.clone();
    String::from_utf8(out).unwrap()
}

/// Diagnostics on stderr follow the same conventions, decided for stderr.
#[test]
fn diagnostics_are_coloured_by_the_same_conventions() {
    let plain = check_stderr(&[]);
    assert!(
        plain.contains("warning[mas.provider.issuer_mismatch]"),
        "{plain}"
    );
    assert!(!plain.contains('\x1b'), "{plain}");
    let forced = check_stderr(&[("CLICOLOR_FORCE", "1")]);
    assert!(forced.contains("\x1b["), "{forced}");
    let mut stripped = forced.clone();
    while let Some(at) = stripped.find('\x1b') {
        let end = at + stripped[at..].find('m').unwrap() + 1;
        stripped.replace_range(at..end, "");
    }
    assert_eq!(stripped, plain);
    assert_eq!(
        check_stderr(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]),
        plain
    );
}
