//! TOML syntax errors, pointed at their cause: where the parser stops is
//! often not where the mistake is. An array, inline table or multi-line
//! string that is never closed is reported where it opens; a duplicate key
//! names its first definition.

use toml_edit::{ImDocument, TomlError};

use super::Source;
use crate::diag::{Diagnostic, KeyPath, Location, Severity};

pub(super) fn diagnostic(source: &Source, err: &TomlError) -> Diagnostic {
    let span = err.span().unwrap_or(0..0);
    // toml_edit puts the reason on later lines ("duplicate key …").
    let message = err
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    let mut diag = Diagnostic {
        severity: Severity::Error,
        code: "toml.syntax",
        location: Location::Span(span.clone()),
        message: message.clone(),
        help: Some("fix the TOML syntax at this position".into()),
        cause: None,
        related: None,
        omitted: 0,
    };
    let unclosed = message.contains("expected `]`")
        || message.contains("expected `}`")
        || message.contains("multiline");
    if unclosed {
        if let Some((at, what)) = unclosed_opener(&source.text, span.start) {
            let (line, column) = source.line_col(span.start);
            diag.location = Location::Span(at..at);
            diag.message =
                format!("{message}: the {what} opened here is never closed (the parser stopped at {line}:{column})");
            diag.help = Some(format!("close the {what}").into());
        }
    } else if let Some(first) = first_definition(source, &message, span.start) {
        let (line, column) = source.line_col(first);
        diag.help = Some(format!(
            "it is first defined at {line}:{column}; keep one of the two (TOML allows each key and table once)"
        ).into());
    }
    diag
}

/// The innermost array, inline table or multi-line string still open at
/// byte `upto`: its offset and what it is. Comments, strings and table
/// headers are skipped.
fn unclosed_opener(text: &str, upto: usize) -> Option<(usize, &'static str)> {
    let b = text.as_bytes();
    let upto = upto.min(b.len());
    let mut stack: Vec<(usize, u8)> = Vec::new();
    let mut line_start = true;
    let mut i = 0;
    while i < upto {
        let c = b[i];
        match c {
            b'#' => {
                while i < upto && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' => {
                let triple = b[i..].starts_with(&[c, c, c]);
                let start = i;
                i += if triple { 3 } else { 1 };
                loop {
                    if i >= upto {
                        return triple.then_some((start, "multi-line string"));
                    }
                    if c == b'"' && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if triple && b[i..].starts_with(&[c, c, c]) {
                        i += 3;
                        while i < upto && b[i] == c {
                            i += 1;
                        }
                        break;
                    }
                    if !triple && (b[i] == c || b[i] == b'\n') {
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                line_start = false;
                continue;
            }
            // A table header: one line, never part of a value.
            b'[' if line_start && stack.is_empty() => {
                while i < upto && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'[' | b'{' => stack.push((i, c)),
            b']' | b'}' => {
                stack.pop();
            }
            b'\n' => line_start = stack.is_empty(),
            b' ' | b'\t' | b'\r' => {}
            _ => line_start = false,
        }
        i += 1;
    }
    stack.last().map(|&(at, c)| {
        (
            at,
            if c == b'[' {
                "array `[`"
            } else {
                "inline table `{`"
            },
        )
    })
}

/// For "duplicate key `k` in table `t`" (or "in document root"): the offset
/// of the first `t.k`, found in the text before the duplicate's line.
fn first_definition(source: &Source, message: &str, at: usize) -> Option<usize> {
    let after = message.split("duplicate key `").nth(1)?;
    let (key, rest) = after.split_once('`')?;
    let mut path = match rest.split_once("in table `") {
        Some((_, t)) => KeyPath::parse(t.split('`').next()?),
        None => KeyPath::root(),
    };
    path = path.key(key);
    let line_start = source.text[..at.min(source.text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let before = Source {
        doc: ImDocument::parse(source.text[..line_start].to_string()),
        ..Source::new(source.name.clone(), String::new())
    };
    let span = before.span_of(&path);
    (span != (0..0)).then_some(span.start)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A duplicate key's first definition is found in the text before the
    /// duplicate's line, whole lines only.
    #[test]
    fn finds_where_a_duplicate_key_was_first_defined() {
        let text = "a = 1\nb = 2\na = 3\n";
        let src = Source::new("s.toml", text);
        let at = text.rfind("a = 3").unwrap();
        assert_eq!(first_definition(&src, "duplicate key `a`", at), Some(0));
        assert_eq!(first_definition(&src, "duplicate key `c`", at), None);
    }

    #[test]
    fn finds_the_unclosed_opener() {
        let t = "a = [1, 2\nb = \"x]\" # ]\n";
        assert_eq!(unclosed_opener(t, t.len()), Some((4, "array `[`")));
        // An escaped backslash ends nothing: the quote after it closes the
        // string.
        let t = "a = [\"\\\\\", 1";
        assert_eq!(unclosed_opener(t, t.len()), Some((4, "array `[`")), "{t}");
        // After a multi-line string's closing quotes (and any extra quote
        // that belongs to its content) the text is read again.
        let t = "s = \"\"\"x\"\"\"\" [1";
        assert_eq!(unclosed_opener(t, t.len()), Some((13, "array `[`")), "{t}");
        let t = "s = \"\"\"x\"\"\" [1";
        assert_eq!(unclosed_opener(t, t.len()), Some((12, "array `[`")), "{t}");
        // A comment at the very end of the text (no newline after it).
        let t = "a = [1, 2 # ]";
        assert_eq!(unclosed_opener(t, t.len()), Some((4, "array `[`")), "{t}");
        let t = "[table]\nx = { a = [1] \ny = 2";
        assert_eq!(unclosed_opener(t, t.len()), Some((12, "inline table `{`")));
        let t = "s = \"\"\"abc\n'''\n";
        assert_eq!(unclosed_opener(t, t.len()), Some((4, "multi-line string")));
        assert_eq!(unclosed_opener("a = [1]\n[b]\n", 12), None);
        // An escaped quote does not end a string; a `[` inside one opens
        // nothing.
        let t = "a = [\"x\\\"[\", 1";
        assert_eq!(unclosed_opener(t, t.len()), Some((4, "array `[`")), "{t}");
        // A multi-line string may end in more than three quotes; what
        // follows it is read again.
        let t = "s = \"\"\"x\"\"\"\"\nt = [1, 2\n";
        assert_eq!(unclosed_opener(t, t.len()), Some((17, "array `[`")), "{t}");
        let t = "s = \"\"\"x\"\"\"\"";
        assert_eq!(unclosed_opener(t, t.len()), None, "{t}");
        // A table header is one line even when indented (or after CRLF
        // line ends): its `[` is not an array left open.
        for t in [
            "a = 1\n  [b\nc = 2\n",
            "a = 1\n\t[b\n",
            "a = 1\r\n[b\r\nc = 2\r\n",
            // A header that runs to the end of the text.
            "a = 1\n[b",
        ] {
            assert_eq!(unclosed_opener(t, t.len()), None, "{t:?}");
        }
    }
}
