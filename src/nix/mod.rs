//! The one way masgen writes Nix: a small expression tree and its printer.
//!
//! Spec data only ever reaches Nix text through [`NixExpr::Str`] and attribute
//! names, both escaped here. [`NixExpr::Import`] and [`NixExpr::Raw`] take
//! `&'static str`, so nothing a user wrote can be spliced in as code.

use std::collections::BTreeMap;

mod syntax;
pub use syntax::{same_but_comments, syntax_errors, syntax_errors_each};

/// A Nix value or a fixed code fragment.
#[derive(Debug, Clone, PartialEq)]
pub enum NixExpr {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<NixExpr>),
    /// Attribute names are single path elements: `"m.homeserver"` stays one name.
    Attrs(BTreeMap<String, NixExpr>),
    /// `import <path>` of a file masgen itself wrote.
    Import(&'static str),
    /// A code fragment fixed at compile time.
    Raw(&'static str),
    /// `pattern: body`, with a pattern fixed at compile time (`{...}`), written
    /// at indentation 0 when it spans lines.
    Lambda(&'static str, Box<NixExpr>),
    /// `function argument`, with a function fixed at compile time.
    Call(&'static str, Box<NixExpr>),
    /// `function argument` where the function is a selection, e.g.
    /// `inputs.nixpkgs-2.lib.nixosSystem` (a fleet's second nixpkgs pin).
    Apply(Box<NixExpr>, Box<NixExpr>),
    /// An attribute selection such as `inputs.host-matrix.nixosModules.default`;
    /// each element is escaped like an attribute name.
    Select(Vec<String>),
    /// `left + right`, e.g. a path and a string (parenthesised where it is
    /// a list element or an argument).
    Concat(Box<NixExpr>, Box<NixExpr>),
}

impl NixExpr {
    pub fn str(s: impl Into<String>) -> Self {
        NixExpr::Str(s.into())
    }

    pub fn attrs<K: Into<String>>(items: impl IntoIterator<Item = (K, NixExpr)>) -> Self {
        NixExpr::Attrs(items.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub fn list_of_strs<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Self {
        NixExpr::List(
            items
                .into_iter()
                .map(|s| NixExpr::str(s.as_ref()))
                .collect(),
        )
    }

    /// Converts JSON data into the same Nix data (`builtins.toJSON` of the result
    /// gives back the input, up to number formatting).
    pub fn from_json(value: &serde_json::Value) -> Self {
        use serde_json::Value;
        match value {
            Value::Null => NixExpr::Null,
            Value::Bool(b) => NixExpr::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => NixExpr::Int(i),
                None => NixExpr::Float(n.as_f64().unwrap_or(0.0)),
            },
            Value::String(s) => NixExpr::Str(s.clone()),
            Value::Array(items) => NixExpr::List(items.iter().map(NixExpr::from_json).collect()),
            Value::Object(map) => NixExpr::Attrs(
                map.iter()
                    .map(|(k, v)| (k.clone(), NixExpr::from_json(v)))
                    .collect(),
            ),
        }
    }
}

const KEYWORDS: &[&str] = &[
    "if", "then", "else", "assert", "with", "let", "in", "rec", "inherit", "or",
];

/// Whether `name` can be written as a bare attribute name.
pub fn is_bare_ident(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '\'' | '-'))
        && !KEYWORDS.contains(&name)
}

/// Quotes a string as a Nix double-quoted literal. Escapes the whole value at
/// once, so a `$` at the end of one piece can never join a `{` of the next.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            // Nix reads a literal CR as LF, so it must be escaped.
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn attr_name(name: &str) -> String {
    if is_bare_ident(name) {
        name.to_string()
    } else {
        quote(name)
    }
}

/// Prints an expression with two-space indentation, one binding per line, in
/// alejandra's style (`tests/nix_style.rs` checks that alejandra leaves every
/// generated file unchanged).
pub fn print(expr: &NixExpr) -> String {
    let mut out = String::new();
    write_expr(&mut out, expr, 0);
    out
}

/// Writes `expr` without parentheses of its own: the caller adds them where
/// the context needs them ([`write_operand`]). alejandra removes parentheses
/// around a binding's value, so a value is never wrapped there.
fn write_expr(out: &mut String, expr: &NixExpr, indent: usize) {
    match expr {
        NixExpr::Null => out.push_str("null"),
        NixExpr::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // Nix reads `-N` as negation of N, and 2^63 overflows.
        NixExpr::Int(i) if *i == i64::MIN => out.push_str("-9223372036854775807 - 1"),
        NixExpr::Int(i) => out.push_str(&i.to_string()),
        NixExpr::Float(f) => out.push_str(&float(*f)),
        NixExpr::Str(s) => out.push_str(&quote(s)),
        NixExpr::List(items) if items.is_empty() => out.push_str("[]"),
        NixExpr::List(items) => {
            out.push_str("[\n");
            for item in items {
                push_indent(out, indent + 1);
                write_operand(out, item, indent + 1);
                out.push('\n');
            }
            push_indent(out, indent);
            out.push(']');
        }
        NixExpr::Attrs(map) if map.is_empty() => out.push_str("{}"),
        NixExpr::Attrs(map) => {
            out.push_str("{\n");
            for (name, value) in map {
                push_indent(out, indent + 1);
                out.push_str(&attr_name(name));
                out.push_str(" = ");
                write_expr(out, value, indent + 1);
                out.push_str(";\n");
            }
            push_indent(out, indent);
            out.push('}');
        }
        NixExpr::Import(path) => {
            out.push_str("import ");
            out.push_str(path);
        }
        NixExpr::Raw(code) => out.push_str(code),
        NixExpr::Lambda(pattern, body) => write_lambda(out, pattern, body, indent),
        NixExpr::Call(function, arg) => {
            out.push_str(function);
            out.push(' ');
            write_operand(out, arg, indent);
        }
        NixExpr::Apply(function, arg) => {
            write_operand(out, function, indent);
            out.push(' ');
            write_operand(out, arg, indent);
        }
        NixExpr::Concat(left, right) => {
            write_operand(out, left, indent);
            out.push_str(" + ");
            write_operand(out, right, indent);
        }
        NixExpr::Select(path) => {
            let names: Vec<String> = path.iter().map(|p| attr_name(p)).collect();
            out.push_str(&names.join("."));
        }
    }
}

/// Writes `expr` where only a single term fits (a list element, a function
/// argument, an operand), in parentheses unless it is one: Nix has no negative
/// literals, so `[ 1 -1 ]` would be a subtraction.
fn write_operand(out: &mut String, expr: &NixExpr, indent: usize) {
    let needs_parens = match expr {
        NixExpr::Int(i) => *i < 0,
        // Negative, a product (subnormals, -0.0) or a `throw` (NaN, infinities).
        NixExpr::Float(f) => {
            let text = float(*f);
            text.starts_with('-') || text.contains(' ')
        }
        NixExpr::Raw(code) => code.contains(char::is_whitespace),
        NixExpr::Import(_)
        | NixExpr::Lambda(..)
        | NixExpr::Call(..)
        | NixExpr::Apply(..)
        | NixExpr::Concat(..) => true,
        _ => false,
    };
    if !needs_parens {
        write_expr(out, expr, indent);
        return;
    }
    let mut inner = String::new();
    write_expr(&mut inner, expr, indent);
    // alejandra indents a parenthesised expression one more level when its
    // middle lines would otherwise not be deeper than the parenthesis.
    if !middle_lines_indented(&inner, indent, matches!(expr, NixExpr::Lambda(..))) {
        inner.clear();
        write_expr(&mut inner, expr, indent + 1);
    }
    out.push('(');
    out.push_str(&inner);
    out.push(')');
}

/// alejandra's test for a parenthesised expression (`utils.rs`,
/// `second_through_penultimate_line_are_indented`): single-line text never
/// needs it; two lines pass only for a function.
fn middle_lines_indented(text: &str, indent: usize, is_lambda: bool) -> bool {
    let lines: Vec<&str> = text.split('\n').collect();
    if lines.len() == 1 {
        return true;
    }
    if lines.len() <= 2 {
        return is_lambda;
    }
    let pad = "  ".repeat(indent);
    lines[1..lines.len() - 1].iter().all(|line| {
        line.is_empty()
            || line.starts_with(&format!("{pad}  "))
            || line.starts_with(&format!("{pad}}}:"))
            || line.starts_with(&format!("{pad}in"))
    })
}

/// `pattern: body`; a multi-line pattern is written at indentation 0.
fn write_lambda(out: &mut String, pattern: &str, body: &NixExpr, indent: usize) {
    for (i, line) in pattern.lines().enumerate() {
        if i > 0 {
            out.push('\n');
            push_indent(out, indent);
        }
        out.push_str(line);
    }
    out.push(':');
    // alejandra's layout: a container, string, number or function body starts
    // on the pattern's line, anything else on the next one, indented unless
    // the lambda is at top level.
    let same_line = match body {
        NixExpr::Attrs(_) | NixExpr::List(_) | NixExpr::Str(_) | NixExpr::Lambda(..) => true,
        NixExpr::Int(i) => *i >= 0,
        NixExpr::Float(f) => {
            let text = float(*f);
            !(text.starts_with('-') || text.contains(' '))
        }
        _ => false,
    };
    if same_line {
        out.push(' ');
        write_expr(out, body, indent);
    } else {
        let body_indent = if indent > 0 { indent + 1 } else { indent };
        out.push('\n');
        push_indent(out, body_indent);
        write_expr(out, body, body_indent);
    }
}

/// 2^64 and its inverse, both exact in binary: scaling by them is exact.
const TWO_64: f64 = 18446744073709551616.0;
const INV_TWO_64: &str = "5.421010862427522e-20";

/// A float as Nix text that evaluates to exactly `f`. Nix 2.8 reads a float
/// token with `strtod` and refuses it when `errno` is set (src/libexpr/lexer.l
/// @ 2.8.0), so subnormals, which set `ERANGE`, are written as a normal
/// literal times 2^-64. Nix has no negative literals: `-x` is `0 - x`, which
/// is `+0.0` for `x = 0.0`, so negative zero is `0.0 * -1.0`. NaN and the
/// infinities have no Nix value (`builtins.toJSON` would write invalid JSON):
/// they become a `throw`, so evaluation stops with a message instead of
/// carrying a wrong value. masgen's data comes from JSON, which holds none.
fn float(f: f64) -> String {
    if !f.is_finite() {
        return format!("throw \"masgen: the float {f} has no Nix value\"");
    }
    if f == 0.0 && f.is_sign_negative() {
        return "0.0 * -1.0".into();
    }
    let a = f.abs();
    let text = if a != 0.0 && a < f64::MIN_POSITIVE {
        format!("{} * {INV_TWO_64}", float_literal(a * TWO_64))
    } else {
        float_literal(a)
    };
    if f.is_sign_negative() {
        format!("-{text}")
    } else {
        text
    }
}

/// The shortest decimal that reads back as `a` (finite, normal or zero, not
/// negative), in the form Nix's lexer takes as a float: a dot in the
/// mantissa, and an exponent only for very large or small numbers.
fn float_literal(a: f64) -> String {
    let with_dot = |m: String| if m.contains('.') { m } else { format!("{m}.0") };
    if a == 0.0 || (1e-5..1e16).contains(&a) {
        with_dot(format!("{a}"))
    } else {
        let text = format!("{a:e}");
        let (mantissa, exponent) = text.split_once('e').expect("LowerExp has an e");
        format!("{}e{exponent}", with_dot(mantissa.to_string()))
    }
}

fn push_indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_interpolation_and_control_characters() {
        assert_eq!(quote("a${b}"), r#""a\${b}""#);
        assert_eq!(quote("$a {b} $"), r#""$a {b} $""#);
        assert_eq!(quote("x\r\n\t\"\\"), r#""x\r\n\t\"\\""#);
        assert_eq!(quote("''"), r#""''""#);
    }

    #[test]
    fn attr_names_are_quoted_when_not_identifiers() {
        assert!(is_bare_ident("matrix-synapse"));
        assert!(!is_bare_ident("m.homeserver"));
        assert!(!is_bare_ident("in"));
        assert!(!is_bare_ident("1abc"));
        assert!(!is_bare_ident(""));
        let e = NixExpr::attrs([("m.homeserver", NixExpr::Int(-1)), ("rec", NixExpr::Null)]);
        assert_eq!(
            print(&e),
            "{\n  \"m.homeserver\" = -1;\n  \"rec\" = null;\n}"
        );
    }

    #[test]
    fn printed_values_parse_with_rnix() {
        let e = NixExpr::attrs([
            (
                "list",
                NixExpr::List(vec![
                    NixExpr::Int(-3),
                    NixExpr::Float(-0.5),
                    NixExpr::Import("./x.nix"),
                ]),
            ),
            ("s", NixExpr::str("${x} ''${y}'' \\")),
            ("empty", NixExpr::Attrs(BTreeMap::new())),
        ]);
        assert_eq!(syntax_errors(&print(&e)), Vec::<String>::new());
    }
}
