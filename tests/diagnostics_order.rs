//! How diagnostics are chosen, ordered and placed: a cap with a count,
//! root causes before what they cause, TOML errors at their cause, every
//! diagnostic at a key the spec has, and non-UTF-8 input by byte offset.
//! The bad specs used here are also in the corpus (`tests/diagnostics.rs`).

mod support;

use support::check::*;
use support::repo_root;

/// The first bad byte is named by offset and by line and column: a Latin-1
/// `é` in a comment on line 3.
#[test]
fn invalid_utf8_names_the_byte_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = b"version = 1\n\n# caf".to_vec();
    bytes.push(0xe9);
    bytes.extend_from_slice(b" menu\n");
    std::fs::write(tmp.path().join("latin1.toml"), &bytes).unwrap();
    let out = check_in(tmp.path(), "latin1.toml");
    assert_eq!(exit_code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.starts_with("error[spec.encoding]: the spec is not valid UTF-8: byte offset 18 holds 0xe9\n --> latin1.toml:3:6\n"),
        "{err}"
    );
}

/// A file cut in the middle of a character: every byte of the incomplete
/// sequence is named.
#[test]
fn a_truncated_character_names_all_its_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = b"version = 1

# price in "
        .to_vec();
    bytes.extend_from_slice(&[0xe2, 0x82]); // the first two bytes of `€`
    std::fs::write(tmp.path().join("cut.toml"), &bytes).unwrap();
    let out = check_in(tmp.path(), "cut.toml");
    assert_eq!(exit_code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.starts_with(
            "error[spec.encoding]: the spec is not valid UTF-8: byte offset 24 holds 0xe2 0x82
 --> cut.toml:3:12
"
        ),
        "{err}"
    );
}

/// A spec with many errors prints the first `MAX_SHOWN` (in file order),
/// counts the rest in one line, and its summary counts them all.
#[test]
fn many_errors_are_capped_with_a_count() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = fresh_spec();
    spec.push_str("\n[migration]\n");
    for i in 0..200 {
        spec.push_str(&format!("unknown_{i:03} = 1\n"));
    }
    std::fs::write(tmp.path().join("many.toml"), &spec).unwrap();
    let out = check_in(tmp.path(), "many.toml");
    assert_eq!(exit_code(&out), 2);
    let err = stderr(&out);
    let codes = printed_codes(&err, "many.toml");
    assert_eq!(codes.len(), masgen::diag::MAX_SHOWN, "{err}");
    assert!(err.contains("`migration.unknown_000`"), "{err}");
    assert!(!err.contains("`migration.unknown_199`"), "{err}");
    assert!(
        err.contains(&format!(
            "note: and {} more diagnostic(s), not shown",
            200 - masgen::diag::MAX_SHOWN
        )),
        "{err}"
    );
    assert!(
        err.trim_end()
            .ends_with("many.toml: failed (200 error(s), 0 warning(s)); nothing was written"),
        "{err}"
    );
}

/// Two errors at one place: the bad value comes before the clash that was
/// computed from the default put in its place, and the clash says so.
#[test]
fn a_bad_value_comes_before_what_its_default_causes() {
    let rel = "tests/bad_specs/112-port-out-of-range-root-cause.toml";
    let err = stderr(&check(rel));
    let range = err.find("error[value.port]: port 70000 is out of range");
    let clash = err.find("error[value.port]: MAS and Synapse would both listen on port 8080 (follows from `mas.listener.port`");
    assert!(
        matches!((range, clash), (Some(r), Some(c)) if r < c),
        "{err}"
    );
}

/// A TOML error is shown where the mistake is: an unclosed array where it
/// opens (line 5), a duplicate with the place of its first definition.
#[test]
fn toml_errors_point_at_their_cause() {
    let err = stderr(&check("tests/bad_specs/113-unclosed-array.toml"));
    assert!(
        err.starts_with("error[toml.syntax]: ")
            && err.contains("\n --> tests/bad_specs/113-unclosed-array.toml:5:15\n"),
        "{err}"
    );
    let err = stderr(&check("tests/bad_specs/76-duplicate-key.toml"));
    assert!(err.contains("help: it is first defined at 15:1;"), "{err}");
}

/// Codes whose diagnostics are about something missing: their path may end
/// at a key the spec does not have, and they point at its table.
const ABOUT_ABSENT: &[&str] = &[
    "mas.email.none",
    "mas.email.from",
    "mas.secret_missing",
    "mas.signing_keys",
    "mas.provider.client_secret",
    "mas.provider.endpoints",
];

/// Every model diagnostic of the corpus and the examples points at a key
/// the spec has (or, for the codes above, at the table of the missing key):
/// a path the spec does not have silently falls back to an enclosing table
/// header, the way `host.no_base_flake` pointed at `[homeserver]`.
#[test]
fn diagnostics_point_at_keys_the_spec_has() {
    use masgen::diag::{Location, Severity};
    let mut dirs = vec![repo_root().join("examples")];
    dirs.push(repo_root().join("tests/bad_specs"));
    let mut failures = Vec::new();
    for dir in dirs {
        for stem in spec_stems(&dir) {
            let path = dir.join(format!("{stem}.toml"));
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let source = masgen::spec::Source::new(stem.as_str(), text);
            let Ok(raw) = masgen::spec::load(&source) else {
                continue;
            };
            let (_, diags) = masgen::model::validate(&raw);
            for d in diags {
                let Location::Path(p) = &d.location else {
                    continue;
                };
                if ABOUT_ABSENT.contains(&d.code) {
                    continue;
                }
                if source.span_of_exact(p).is_none() {
                    let kind = if d.severity == Severity::Error {
                        "error"
                    } else {
                        "warning"
                    };
                    failures.push(format!(
                        "{stem}: {kind} {} at `{p}`, which the spec does not have",
                        d.code
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
