//! Whether generated Nix parses (rnix), checked once per *shape*.
//!
//! A fleet's files differ from one homeserver to the next mostly inside
//! their string literals (names, addresses, paths) and comments: 1,000
//! homeservers make some 7,000 Nix files of about 15 shapes. Two files whose
//! text outside string literals and comments is the same have the same
//! tokens but for the strings' contents, which no syntax rule looks at, so
//! one parse answers for both. A file the scanner is not sure of (an
//! interpolation, an indented string, a block comment) is parsed alone.

use std::collections::HashMap;

/// Syntax errors rnix finds in `text`, empty when it parses.
pub fn syntax_errors(text: &str) -> Vec<String> {
    rnix::Root::parse(text)
        .errors()
        .iter()
        .map(|e| e.to_string())
        .collect()
}

/// Texts this long are parsed alone, on a thread of their own, while the
/// others are shaped: so long a text hardly shares its shape (a fleet's
/// `flake.nix`), and its parse is the longest single piece of the work.
const ALONE: usize = 256 * 1024;

/// [`syntax_errors`] of each text, in order: one parse per shape (on every
/// core), the same answers as parsing each text.
pub fn syntax_errors_each(texts: &[&str]) -> Vec<Vec<String>> {
    checked(texts).0
}

/// [`syntax_errors_each`], and how many texts rnix parsed for it.
fn checked(texts: &[&str]) -> (Vec<Vec<String>>, usize) {
    let (long, short): (Vec<usize>, Vec<usize>) =
        (0..texts.len()).partition(|&i| texts[i].len() >= ALONE);
    let (alone, (representative, shaped)) = crate::par::both(
        || {
            long.iter()
                .map(|&i| (i, syntax_errors(texts[i])))
                .collect::<Vec<_>>()
        },
        || {
            let digests = crate::par::map(&short, 256, |&i| shape_digest(texts[i]));
            let representative = representatives(texts.len(), &short, &digests);
            let mut parse: Vec<usize> = short.iter().map(|&i| representative[i]).collect();
            parse.sort_unstable();
            parse.dedup();
            let parsed = crate::par::map(&parse, 1, |&i| syntax_errors(texts[i]));
            (representative, parse.into_iter().zip(parsed))
        },
    );
    let errors: HashMap<usize, Vec<String>> = shaped.chain(alone).collect();
    let mut parses = errors.len();
    let answers = representative
        .iter()
        .enumerate()
        .map(|(i, r)| match &errors[r] {
            // The error's place differs with the strings' lengths: a text
            // of a broken shape is parsed itself (masgen's bug, rare).
            e if !e.is_empty() && *r != i => {
                parses += 1;
                syntax_errors(texts[i])
            }
            e => e.clone(),
        })
        .collect();
    (answers, parses)
}

/// The digest of a text's shape (SHA-256, as the manifest trusts for the
/// files themselves); `None` when it has none (see [`Pieces`]).
fn shape_digest(text: &str) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut pieces = Pieces::new(text);
    for piece in pieces.by_ref() {
        match piece {
            Piece::Text(t) => {
                hasher.update([1]);
                hasher.update((t.len() as u64).to_le_bytes());
                hasher.update(t);
            }
            // The string's contents are no part of the shape.
            Piece::Str(_) => hasher.update([2]),
            Piece::Comment => hasher.update([3]),
        }
    }
    (!pieces.unsure).then(|| hasher.finalize().into())
}

/// Whether two Nix texts differ at most in their `#` comments (the same
/// comments in the same places, with other words): then they are the same
/// code. `false` where unsure (see [`Pieces`]).
pub fn same_but_comments(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (Pieces::new(a), Pieces::new(b));
    a.by_ref().eq(b.by_ref()) && !a.unsure && !b.unsure
}

/// For each text, the first text of its shape (itself when it has none):
/// the texts `short` names have the shape `digests` (in the same order),
/// the others are their own.
fn representatives(texts: usize, short: &[usize], digests: &[Option<[u8; 32]>]) -> Vec<usize> {
    let mut representative: Vec<usize> = (0..texts).collect();
    let mut first: HashMap<[u8; 32], usize> = HashMap::new();
    for (&i, digest) in short.iter().zip(digests) {
        if let Some(d) = digest {
            representative[i] = *first.entry(*d).or_insert(i);
        }
    }
    representative
}

/// One piece of a text: text outside strings and comments, a string
/// literal (with its quotes), or where a comment was. A piece of text never
/// holds `"` or `#`.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Piece<'a> {
    Text(&'a str),
    Str(&'a str),
    Comment,
}

/// The shape of a text: the text with each double-quoted string's contents
/// and each `#` comment left out. `unsure` once it met what could read
/// differently from Nix's lexer: an interpolation or a `$` before `{` inside
/// a string, `''` (an indented string, or an identifier ending in quotes),
/// `/*`, an unclosed string; it stops there.
struct Pieces<'a> {
    text: &'a str,
    /// Where the next piece of text starts.
    start: usize,
    /// A marker to give before going on.
    marker: Option<Piece<'a>>,
    unsure: bool,
}

impl<'a> Pieces<'a> {
    fn new(text: &'a str) -> Self {
        Pieces {
            text,
            start: 0,
            marker: None,
            unsure: false,
        }
    }

    /// Where the string opened at `open` ends (after its `"`); `None` if
    /// unsure.
    fn string_end(bytes: &[u8], open: usize) -> Option<usize> {
        let mut i = open + 1;
        loop {
            i += memchr::memchr3(b'\\', b'"', b'$', &bytes[i..])?;
            match bytes[i] {
                b'\\' => i += 2,
                b'$' if bytes.get(i + 1) == Some(&b'{') => return None,
                b'$' => i += 1,
                _ => return Some(i + 1),
            }
            if i >= bytes.len() {
                return None;
            }
        }
    }

    /// A piece of text, or `None` (and unsure) when it opens a block
    /// comment.
    fn text(&mut self, text: &'a str) -> Option<Piece<'a>> {
        if memchr::memmem::find(text.as_bytes(), b"/*").is_some() {
            self.unsure = true;
            return None;
        }
        Some(Piece::Text(text))
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = Piece<'a>;

    fn next(&mut self) -> Option<Piece<'a>> {
        if let Some(marker) = self.marker.take() {
            return Some(marker);
        }
        if self.unsure {
            return None;
        }
        let bytes = self.text.as_bytes();
        let mut i = self.start;
        while let Some(n) = memchr::memchr3(b'"', b'#', b'\'', &bytes[i..]) {
            i += n;
            let end = match bytes[i] {
                b'"' => Self::string_end(bytes, i).map(|end| (end, Piece::Str(&self.text[i..end]))),
                b'#' => {
                    let end = memchr::memchr(b'\n', &bytes[i..]).map_or(bytes.len(), |n| i + n);
                    Some((end, Piece::Comment))
                }
                _ if bytes.get(i + 1) == Some(&b'\'') => None,
                _ => {
                    i += 1;
                    continue;
                }
            };
            let Some((end, marker)) = end else {
                self.unsure = true;
                return None;
            };
            let before = &self.text[self.start..i];
            self.start = end;
            if before.is_empty() {
                return Some(marker);
            }
            self.marker = Some(marker);
            return self.text(before);
        }
        let rest = &self.text[self.start..];
        self.start = self.text.len();
        if rest.is_empty() {
            return None;
        }
        self.text(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(text: &str) -> Option<Vec<Piece<'_>>> {
        let mut pieces = Pieces::new(text);
        let all: Vec<Piece<'_>> = pieces.by_ref().collect();
        (!pieces.unsure).then_some(all)
    }

    fn texts(shape: Option<Vec<Piece<'_>>>) -> Option<Vec<String>> {
        shape.map(|pieces| {
            pieces
                .iter()
                .map(|p| match p {
                    Piece::Text(t) => t.to_string(),
                    Piece::Str(_) => "<str>".into(),
                    Piece::Comment => "<comment>".into(),
                })
                .collect()
        })
    }

    #[test]
    fn shapes_leave_out_strings_and_comments() {
        let a = "# from a.toml\n{ x = \"a\\\"b\"; y = [ \"c\" 1 ]; }";
        let b = "# from b.toml\n{ x = \"zz\"; y = [ \"\" 1 ]; }";
        assert_eq!(shape_digest(a), shape_digest(b));
        assert!(shape_digest(a).is_some());
        assert_eq!(
            texts(shape(a)).unwrap(),
            [
                "<comment>",
                "\n{ x = ",
                "<str>",
                "; y = [ ",
                "<str>",
                " 1 ]; }"
            ]
        );
        // What is outside strings counts: another number, name or bracket.
        assert_ne!(
            shape_digest(a),
            shape_digest("# a\n{ x = \"a\"; y = [ \"c\" 2 ]; }")
        );
        assert_ne!(
            shape_digest(a),
            shape_digest("# a\n{ z = \"a\"; y = [ \"c\" 1 ]; }")
        );
        // A string where a comment was is another shape.
        assert_ne!(shape_digest("\"a\"\n1"), shape_digest("#a\n1"));
    }

    #[test]
    fn unsure_texts_have_no_shape() {
        for text in [
            "\"a${b}\"",
            "\"$${b}\"",
            "''\n  a\n''",
            "x'' = 1;",
            "/* \" */ 1",
            "{ a = \"unclosed; }",
            "\"ends in a backslash\\",
        ] {
            assert_eq!(shape(text), None, "{text}");
        }
        // Inside a string, `/*` and a lone `$` are text like any other.
        assert_eq!(
            texts(shape("[ \"/var/*\" \"$ x $\" ]")).unwrap(),
            ["[ ", "<str>", " ", "<str>", " ]"]
        );
        // A lone `'` ends an identifier: code like any other.
        assert_eq!(
            texts(shape("{ x' = \"a\"; y'' = 1; }")),
            None,
            "`''` is never sure"
        );
        assert_eq!(
            texts(shape("{ x' = \"a\"; y = x'; }")).unwrap(),
            ["{ x' = ", "<str>", "; y = x'; }"]
        );
        // An escaped interpolation is a string like any other.
        assert_eq!(texts(shape("\"\\${b}\" ${c}")).unwrap(), ["<str>", " ${c}"]);
    }

    #[test]
    fn each_text_gets_its_own_answer() {
        let good = "{ a = \"x\"; }";
        let same_shape = "{ a = \"y\"; }";
        let bad = "{ a = ; }";
        let unsure_bad = "{ a = \"${\"; }";
        let all = [good, bad, same_shape, unsure_bad, good];
        let errors = syntax_errors_each(&all);
        let each: Vec<Vec<String>> = all.iter().map(|t| syntax_errors(t)).collect();
        assert_eq!(errors, each);
        assert!(errors[0].is_empty() && errors[2].is_empty() && errors[4].is_empty());
        assert!(!errors[1].is_empty() && !errors[3].is_empty());
    }

    #[test]
    fn a_shape_is_parsed_once() {
        let all = [
            "{ a = \"x\"; }",
            "{ a = ${b}; }",
            "{ a = \"y\"; }",
            "\"${c}\"",
            "\"${c}\"",
        ];
        let digests: Vec<_> = all.iter().map(|t| shape_digest(t)).collect();
        assert_eq!(
            representatives(5, &[0, 1, 2, 3, 4], &digests),
            [0, 1, 0, 3, 4]
        );
        // Only the texts named are shaped.
        assert_eq!(representatives(5, &[1, 2], &digests[1..3]), [0, 1, 2, 3, 4]);
        // Texts and markers are told apart in the digest.
        assert_ne!(shape_digest("a\"x\"b"), shape_digest("a#x\nb"));
        assert_ne!(shape_digest("ab"), shape_digest("a\"x\"b"));
        // A broken shape's texts are each parsed: the places differ.
        let errors = syntax_errors_each(&["{ a = \"x\" }", "{ a = \"yyyy\" }"]);
        assert_eq!(errors[1], syntax_errors("{ a = \"yyyy\" }"));
        assert_ne!(errors[0], errors[1]);
    }

    #[test]
    fn texts_differing_in_comments_only_are_the_same_code() {
        let a = "# masgen 0.1.0\n{ a = \"x # y\"; } # end\n";
        let b = "# masgen 0.2.0\n{ a = \"x # y\"; } # fin\n";
        assert!(same_but_comments(a, b));
        assert!(same_but_comments(a, a));
        // Strings, code, a comment more or less: not the same.
        assert!(!same_but_comments(
            a,
            "# masgen 0.1.0\n{ a = \"x # z\"; } # end\n"
        ));
        assert!(!same_but_comments(
            a,
            "# masgen 0.1.0\n{ b = \"x # y\"; } # end\n"
        ));
        assert!(!same_but_comments(
            a,
            "# masgen 0.1.0\n{ a = \"x # y\"; }\n"
        ));
        // Unsure texts are never the same, not even as themselves.
        let unsure = "# a\n{ a = ''\n  x\n''; }";
        assert!(!same_but_comments(unsure, unsure));
    }

    /// How many parses: one per shape, one per text over [`ALONE`] or
    /// without a shape, one more per text of a broken shape but its first.
    #[test]
    fn each_shape_is_parsed_once() {
        let short = |v: &str| format!("{{ a = \"{v}\"; }}");
        // Long, but not so long as to be parsed alone.
        let mid = |v: &str| format!("[ {} ]", format!("\"{v}\" ").repeat(1_000));
        let long = format!("[ {} ]", "\"x\" ".repeat(ALONE / 4));
        let texts = [
            short("x"),
            short("y"),
            mid("a"),
            mid("b"),
            short("z"),
            long,
            "\"${a}\"".into(),
        ];
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (errors, parses) = checked(&texts);
        assert!(errors.iter().all(Vec::is_empty), "{errors:?}");
        assert_eq!(parses, 4, "two shapes, the long text, the interpolation");
        let broken = [
            "{ a = \"x\" }",
            "{ a = \"yy\" }",
            "{ a = \"zzz\" }",
            "{ a = 1; }",
        ];
        let (errors, parses) = checked(&broken);
        assert!(errors[..3].iter().all(|e| !e.is_empty()) && errors[3].is_empty());
        assert_eq!(
            parses, 4,
            "the broken shape, its two other texts, the good one"
        );
    }

    #[test]
    fn long_texts_are_parsed_alone() {
        let long_good = format!("[ {} ]", "\"x\" ".repeat(ALONE / 4));
        let long_bad = format!("[ {} ", "\"x\" ".repeat(ALONE / 4));
        let all = [
            long_bad.as_str(),
            "{ a = \"x\"; }",
            long_good.as_str(),
            "{ a = ; }",
        ];
        let errors = syntax_errors_each(&all);
        assert!(!errors[0].is_empty() && errors[1].is_empty());
        assert!(errors[2].is_empty() && !errors[3].is_empty());
    }
}
