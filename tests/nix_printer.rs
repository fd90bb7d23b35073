//! The Nix printer against the real Nix: any value built from arbitrary
//! strings and attribute names must print to text that rnix parses without
//! errors, that alejandra leaves unchanged, and that
//! `nix-instantiate --eval --strict --json` evaluates to exactly that value.
//!
//! What the generators leave out, and why:
//! - NUL: Nix 2.8 strings are C strings and cannot hold it (a spec cannot
//!   carry one into Nix either: TOML forbids raw NUL and masgen's data is
//!   TOML/JSON text).
//! - the attribute names `outPath` and `__toString`: Nix's JSON conversion
//!   replaces an attribute set holding them by that attribute (or the
//!   function's result), so the JSON differs by design, not by a printer bug.
//! - NaN and the infinities: they have no Nix value; the printer writes a
//!   `throw` for them ([`non_finite_floats_throw`]).
//!
//! Floats are in: Nix 2.8 prints them in JSON with 6 significant digits, so
//! the evaluated value is compared within that precision, and
//! [`float_text_reads_back_exactly`] checks that the printed literal itself
//! is exact (Nix reads it with `strtod`, as Rust's `parse` does).
//!
//! Without `nix-instantiate` the evaluation half SKIPs locally and fails in
//! CI (`support::nix_instantiate`); the rnix half always runs.

mod support;

use std::collections::BTreeMap;
use std::io::Write;

use masgen::nix::{print, syntax_errors, NixExpr};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

/// Whether `got` (Nix's JSON) is the value of `expr` (no imports or code
/// fragments). Floats: Nix 2.8 writes 6 significant digits.
fn same(got: &Value, expr: &NixExpr) -> bool {
    match (expr, got) {
        (NixExpr::Null, Value::Null) => true,
        (NixExpr::Bool(b), Value::Bool(g)) => b == g,
        (NixExpr::Int(i), Value::Number(g)) => g.as_i64() == Some(*i),
        (NixExpr::Float(f), Value::Number(g)) => g
            .as_f64()
            .is_some_and(|g| (g - f).abs() <= (f.abs() * 1e-5).max(1e-323)),
        (NixExpr::Str(s), Value::String(g)) => s == g,
        (NixExpr::List(items), Value::Array(g)) => {
            items.len() == g.len() && items.iter().zip(g).all(|(e, g)| same(g, e))
        }
        (NixExpr::Attrs(map), Value::Object(g)) => {
            map.len() == g.len()
                && map
                    .iter()
                    .all(|(k, e)| g.get(k).is_some_and(|g| same(g, e)))
        }
        _ => false,
    }
}

/// Evaluates Nix text from a file (no ARG_MAX limit) to JSON.
fn eval(nix: &support::NixTool, text: &str) -> Result<Value, String> {
    let mut file = tempfile::Builder::new()
        .suffix(".nix")
        .tempfile()
        .map_err(|e| e.to_string())?;
    file.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    file.flush().map_err(|e| e.to_string())?;
    nix.eval_json_file(file.path())
}

/// Parses with rnix, checks alejandra leaves it unchanged (`tests/nix_style.rs`
/// checks whole files), then (if Nix is there) evaluates and compares.
fn check_value(nix: Option<&support::NixTool>, expr: &NixExpr) -> Result<(), String> {
    let text = print(expr);
    let errors = syntax_errors(&text);
    if !errors.is_empty() {
        return Err(format!("rnix: {errors:?} in:\n{text}"));
    }
    // As a file: one trailing newline, the way the emitters write them.
    match alejandra::format::in_memory("value.nix".into(), format!("{text}\n")) {
        (alejandra::format::Status::Changed(false), _) => {}
        (_, formatted) => {
            return Err(format!(
                "not alejandra-formatted:\n{text}\nalejandra:\n{formatted}"
            ))
        }
    }
    if let Some(nix) = nix {
        let got = eval(nix, &text).map_err(|e| format!("{e}\nin:\n{text}"))?;
        if !same(&got, expr) {
            return Err(format!(
                "evaluated to\n  {got}\nwant\n  {expr:?}\nfrom:\n{text}"
            ));
        }
    }
    Ok(())
}

// ------------------------------------------------------------ generators

/// Characters that mean something in Nix strings, and unicode from every plane.
fn nasty_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(vec![
            '$', '{', '}', '\'', '\\', '"', '\r', '\n', '\t', ' ', 'a', 'Z', '.', '/', '#', ';',
            '=', '`', '~', ':',
        ]),
        2 => prop::sample::select(vec![
            'é', 'ß', '€', '\u{1}', '\u{7}', '\u{b}', '\u{c}', '\u{1b}', '\u{7f}', '\u{85}',
            '\u{a0}', '\u{200b}', '\u{2028}', '\u{2029}', '\u{feff}', '\u{fffd}', '\u{ffff}',
            '🦀', '😀', '\u{1d11e}', '\u{10000}', '\u{10ffff}',
        ]),
        1 => any::<char>().prop_filter("Nix strings cannot hold NUL", |c| *c != '\0'),
    ]
}

/// Pieces that are dangerous together: interpolation, both quote styles'
/// escapes, line endings.
fn nasty_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => nasty_char().prop_map(String::from),
        2 => prop::sample::select(vec![
            "${", "${x}", "$${", "$$", "''", "'''", "''$", "''${", "''\\", "\\${", "\\$", "\\",
            "\\\\", "\\\"", "$\"", "\"", "\r\n", "\n\r", "\\n", "${\"x\"}", "}", "$",
        ])
        .prop_map(String::from),
    ]
}

fn nasty_string() -> impl Strategy<Value = String> {
    prop::collection::vec(nasty_piece(), 0..10).prop_map(|pieces| pieces.concat())
}

fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => nasty_string().prop_filter("changes toJSON by design", |s| {
            s != "outPath" && s != "__toString"
        }),
        2 => prop::sample::select(vec![
            "", " ", ".", "a.b", "m.homeserver", "\"", "'", "in", "rec", "or", "let", "inherit",
            "if", "then", "else", "assert", "with", "true", "false", "null", "__functor",
            "__curPos", "__sub", "a-b", "a'b", "_", "_1", "-a", "1a", "0", "a b", "${x}", "$",
            "x$", "é", "🦀", "services", "settings",
        ])
        .prop_map(String::from),
        1 => "[a-zA-Z_][a-zA-Z0-9_'-]{0,8}",
    ]
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => any::<i64>(),
        1 => prop::sample::select(vec![
            0,
            1,
            -1,
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            -42,
            1 << 53,
            -(1 << 53) - 1,
        ]),
    ]
}

/// Every finite float (normal, subnormal, both zeros), and edge values.
fn float() -> impl Strategy<Value = f64> {
    use prop::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    prop_oneof![
        3 => POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO,
        1 => prop::sample::select(FLOATS.to_vec()),
    ]
}

const FLOATS: &[f64] = &[
    0.0,
    -0.0,
    1.0,
    -1.5,
    0.1,
    1e-5,
    9.99e-6,
    1e16,
    9999999999999998.0,
    1e21,
    1e300,
    -1e300,
    2.5e-300,
    f64::MAX,
    f64::MIN,
    f64::MIN_POSITIVE,
    f64::EPSILON,
    5e-324,
    -5e-324,
    // The largest subnormal.
    2.225073858507201e-308,
];

fn value() -> impl Strategy<Value = NixExpr> {
    let leaf = prop_oneof![
        1 => Just(NixExpr::Null),
        1 => any::<bool>().prop_map(NixExpr::Bool),
        2 => int().prop_map(NixExpr::Int),
        1 => float().prop_map(NixExpr::Float),
        4 => nasty_string().prop_map(NixExpr::Str),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(NixExpr::List),
            prop::collection::btree_map(attr_name(), inner, 0..6).prop_map(NixExpr::Attrs),
        ]
    })
}

// ------------------------------------------------------------------ tests

/// 64 batches of up to 16 random values; one `nix-instantiate` per batch.
/// Failures shrink to a minimal batch; nothing is persisted.
#[test]
fn printed_values_parse_and_evaluate_to_themselves() {
    let nix = support::nix_instantiate();
    let mut runner = TestRunner::new(Config {
        // PROPTEST_CASES=5000 for a deeper hunt.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64),
        max_shrink_iters: 2000,
        failure_persistence: None,
        ..Config::default()
    });
    let batch = prop::collection::vec(value(), 1..16).prop_map(NixExpr::List);
    let result = runner.run(&batch, |expr| {
        check_value(nix.as_ref(), &expr).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Strings and names that broke (or could break) quoting, one batch.
const TRICKY: &[&str] = &[
    "",
    "$",
    "$$",
    "${",
    "${x}",
    "$${x}",
    "$$${x}",
    "\\${x}",
    "\\$",
    "$\\{x}",
    "a$",
    "a$\"",
    "a${",
    "}",
    "''",
    "'''",
    "''$",
    "''${x}",
    "''\\n",
    "\\",
    "\\\\",
    "\\\"",
    "\"",
    "\"\"",
    "\n",
    "\r",
    "\r\n",
    "\n\r",
    "\t",
    "\\n",
    "\\r",
    "\\t",
    "line 1\nline 2\r\nline 3\rline 4",
    "#not a comment",
    "/* not a comment */",
    "\u{1}\u{7f}\u{1b}[31m",
    "\u{85}\u{2028}\u{2029}\u{feff}",
    "🦀 ferris",
    "\u{10ffff}",
    "\u{1d11e}\u{1f600}",
    "é€ß",
    "in",
    "rec",
    "or",
    "let",
    "inherit",
    "true",
    "null",
    "__functor",
    "a.b",
    "m.homeserver",
    "1a",
    "-a",
    "a'b",
    " ",
];

#[test]
fn tricky_strings_as_values_and_names() {
    let nix = support::nix_instantiate();
    let strings = NixExpr::List(TRICKY.iter().map(|s| NixExpr::str(*s)).collect());
    check_value(nix.as_ref(), &strings).unwrap();
    // As attribute names (each also as a value, and nested one level).
    let attrs = NixExpr::attrs(TRICKY.iter().map(|s| {
        (
            *s,
            NixExpr::attrs([(*s, NixExpr::str(*s)), ("n", NixExpr::Int(-1))]),
        )
    }));
    check_value(nix.as_ref(), &attrs).unwrap();
    // Every string alone at top level, where nothing follows the quote.
    for s in TRICKY {
        let text = print(&NixExpr::str(*s));
        assert_eq!(syntax_errors(&text), Vec::<String>::new(), "{text}");
    }
}

#[test]
fn nested_and_empty_containers() {
    let nix = support::nix_instantiate();
    let mut deep = NixExpr::Int(-7);
    for i in 0..40 {
        deep = if i % 2 == 0 {
            NixExpr::List(vec![deep, NixExpr::Int(-i), NixExpr::Null])
        } else {
            NixExpr::attrs([("in", deep), ("x.y", NixExpr::Bool(true))])
        };
    }
    let value = NixExpr::List(vec![
        NixExpr::List(vec![]),
        NixExpr::Attrs(BTreeMap::new()),
        NixExpr::List(vec![NixExpr::List(vec![]), NixExpr::Attrs(BTreeMap::new())]),
        NixExpr::attrs([("", NixExpr::List(vec![NixExpr::Int(-1)]))]),
        NixExpr::Int(i64::MAX),
        NixExpr::Int(i64::MIN + 1),
        // Nix reads `-9223372036854775808` as the negation of 2^63, which
        // overflows: the printer writes `(-9223372036854775807 - 1)`.
        NixExpr::Int(i64::MIN),
        deep,
    ]);
    check_value(nix.as_ref(), &value).unwrap();
}

#[test]
fn json_round_trips_through_from_json() {
    let nix = support::nix_instantiate();
    let data = json!({
        "m.homeserver": {"base_url": "https://matrix.example.org"},
        "rec": [1, -2, null, true, "${x}"],
        "": {"''": "\r\n"},
        "nested": {"a": {"b": {"c": []}}},
    });
    let expr = NixExpr::from_json(&data);
    check_value(nix.as_ref(), &expr).unwrap();
}

/// Edge floats in one list; `printed_values_parse_and_evaluate_to_themselves`
/// draws them too, this makes sure each is tried every run.
#[test]
fn edge_floats_evaluate() {
    let nix = support::nix_instantiate();
    let expr = NixExpr::List(FLOATS.iter().map(|f| NixExpr::Float(*f)).collect());
    check_value(nix.as_ref(), &expr).unwrap();
}

/// Nix has no negative literals: `(-0.0)` would be `0 - 0.0` = `+0.0`. Nix
/// writes the sign of a zero in JSON (`-0`), which serde_json drops, so the
/// raw output is compared.
#[test]
fn negative_zero_keeps_its_sign() {
    let expr = NixExpr::List(vec![NixExpr::Float(1.0), NixExpr::Float(-0.0)]);
    let text = print(&expr);
    assert_eq!(syntax_errors(&text), Vec::<String>::new(), "{text}");
    let Some(nix) = support::nix_instantiate() else {
        return;
    };
    let mut file = tempfile::Builder::new().suffix(".nix").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    let out = nix
        .command()
        .args(["--eval", "--strict", "--json"])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[1,-0]",
        "from:\n{text}"
    );
}

/// NaN and ±inf have no Nix literal, and no JSON either (Nix 2.8's toJSON
/// writes a bare `inf`). The printer writes a `throw`: the text parses, and
/// evaluating it stops with a message instead of carrying a wrong value.
#[test]
fn non_finite_floats_throw() {
    let nix = support::nix_instantiate();
    for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let text = print(&NixExpr::List(vec![NixExpr::Int(1), NixExpr::Float(f)]));
        assert_eq!(syntax_errors(&text), Vec::<String>::new(), "{text}");
        if let Some(nix) = &nix {
            let err = eval(nix, &text).expect_err(&text);
            assert!(err.contains("has no Nix value"), "{f}: {err}");
        }
    }
}

/// The printed text of a float reads back as exactly that float, as Nix
/// reads it: decimal tokens through `strtod` (correctly rounded, like
/// Rust's `parse`), `-x` as `0 - x`, `a * b` as one IEEE multiplication.
/// Nix's JSON output is too coarse (6 digits) to show this.
#[test]
fn float_text_reads_back_exactly() {
    fn read(text: &str) -> f64 {
        let t = text.trim();
        if let Some(inner) = t.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
            return read(inner);
        }
        if let Some((a, b)) = t.split_once(" * ") {
            return read(a) * read(b);
        }
        if let Some(x) = t.strip_prefix('-') {
            return 0.0 - read(x);
        }
        // Nix's FLOAT token: digits, a dot, digits, an optional exponent.
        let (mantissa, _) = t.split_once(['e', 'E']).unwrap_or((t, ""));
        assert!(mantissa.contains('.'), "`{t}` is not a Nix float token");
        let v: f64 = t.parse().unwrap_or_else(|e| panic!("`{t}`: {e}"));
        assert!(
            v == 0.0 || v.abs() >= f64::MIN_POSITIVE,
            "`{t}` is subnormal: Nix 2.8 refuses it (strtod sets ERANGE)"
        );
        v
    }
    let check = |f: f64| {
        let text = print(&NixExpr::Float(f));
        let got = read(&text);
        assert_eq!(got.to_bits(), f.to_bits(), "{f:e} printed as `{text}`");
        Ok(())
    };
    for f in FLOATS {
        check(*f).unwrap();
    }
    let mut runner = TestRunner::new(Config {
        cases: 4096,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&float(), |f| {
        check(f).map_err(|e: String| TestCaseError::fail(e))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
