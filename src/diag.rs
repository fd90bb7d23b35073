//! Diagnostics: what is wrong, where in the spec, and what to do about it.

use std::borrow::Cow;
use std::fmt;

pub mod format;
mod text;

pub use text::Excerpt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One element of a path to a value in the spec, e.g. `mas.upstream_providers[0].id`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Name(String),
    Index(usize),
}

/// A path to a value in the spec. Spans are looked up from it when rendering,
/// so the validated model stays free of source positions.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyPath(pub Vec<Key>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// Parses `a.b[2].c` (names contain no dots or brackets in masgen's spec).
    pub fn parse(s: &str) -> Self {
        let mut keys = Vec::new();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let mut rest = part;
            if let Some(open) = rest.find('[') {
                keys.push(Key::Name(rest[..open].to_string()));
                rest = &rest[open..];
                while let Some(stripped) = rest.strip_prefix('[') {
                    let close = stripped.find(']').unwrap_or(stripped.len());
                    if let Ok(i) = stripped[..close].parse() {
                        keys.push(Key::Index(i));
                    }
                    rest = stripped.get(close + 1..).unwrap_or("");
                }
            } else {
                keys.push(Key::Name(rest.to_string()));
            }
        }
        KeyPath(keys)
    }

    pub fn key(&self, name: &str) -> Self {
        let mut keys = self.0.clone();
        keys.push(Key::Name(name.to_string()));
        KeyPath(keys)
    }

    pub fn index(&self, i: usize) -> Self {
        let mut keys = self.0.clone();
        keys.push(Key::Index(i));
        KeyPath(keys)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, key) in self.0.iter().enumerate() {
            match key {
                Key::Name(n) if i == 0 => write!(f, "{n}")?,
                Key::Name(n) => write!(f, ".{n}")?,
                Key::Index(idx) => write!(f, "[{idx}]")?,
            }
        }
        Ok(())
    }
}

/// Where a diagnostic points: a key path (resolved against the spec's source
/// when rendered) or an already known byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Path(KeyPath),
    Span(std::ops::Range<usize>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable id, e.g. `secret.literal`; tests and docs refer to it.
    pub code: &'static str,
    pub location: Location,
    pub message: String,
    /// What to do about it (mostly a fixed text: a spec with 400,000
    /// unknown keys should not hold 400,000 copies of it).
    pub help: Option<Cow<'static, str>>,
    /// A second place the diagnostic is about, with what is there.
    pub related: Option<(KeyPath, String)>,
    /// The value whose diagnostic causes this one: this one is printed
    /// right after it, wherever it is in the file.
    pub cause: Option<KeyPath>,
    /// How many more diagnostics like this one were counted but not kept:
    /// a spec with 400,000 unknown keys keeps the first few, not 400,000.
    pub omitted: usize,
}

impl Diagnostic {
    pub fn error(code: &'static str, at: KeyPath, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            location: Location::Path(at),
            message: message.into(),
            help: None,
            related: None,
            cause: None,
            omitted: 0,
        }
    }

    pub fn warning(code: &'static str, at: KeyPath, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, at, message)
        }
    }

    pub fn help(mut self, help: impl Into<Cow<'static, str>>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Points at a second key as well, e.g. the other side of a mismatch.
    pub fn related(mut self, at: KeyPath, label: impl Into<String>) -> Self {
        self.related = Some((at, label.into()));
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Diagnostics resolved to line and column, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub severity: Severity,
    pub code: &'static str,
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Where the pointed-at span ends (1-based, exclusive column), for
    /// machine-readable formats (`masgen check --format json|github`).
    pub end_line: usize,
    pub end_column: usize,
    pub message: String,
    pub help: Option<String>,
    /// The piece of the source line the text rendering shows; `None` for
    /// diagnostics kept for the machine formats, which print no source.
    pub excerpt: Option<Excerpt>,
    /// A second place the diagnostic is about.
    pub related: Option<Related>,
}

/// The second place of a diagnostic, with what is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Related {
    /// The file it is in: the diagnostic's own, or another spec of a fleet.
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub label: String,
    pub excerpt: Option<Excerpt>,
}

impl Rendered {
    /// The text rendering (annotate-snippets, see `diag/text.rs`), with
    /// ANSI colours when `color`; ends without a newline.
    pub fn to_text(&self, color: bool) -> String {
        text::render(self, color)
    }
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.to_text(false))
    }
}

/// How many diagnostics are printed; the rest are counted ("and N more").
/// Past a few dozen, more of them only hides the first, which is usually
/// the one to fix (a wrong table name makes every key below it unknown).
pub const MAX_SHOWN: usize = 50;

/// The diagnostics of one spec, in print order: at most [`MAX_SHOWN`] of
/// them for the text format, all of them (without source excerpts) for the
/// machine formats (see `spec::Source::all_diagnostics`); `errors` and
/// `warnings` count all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub shown: Vec<Rendered>,
    pub errors: usize,
    pub warnings: usize,
}

impl Report {
    /// How many diagnostics are counted but not shown.
    pub fn omitted(&self) -> usize {
        self.errors + self.warnings - self.shown.len()
    }

    /// `N error(s), M warning(s)`, counting the omitted ones.
    pub fn summary(&self) -> String {
        format!("{} error(s), {} warning(s)", self.errors, self.warnings)
    }
}

impl std::ops::Deref for Report {
    type Target = [Rendered];
    fn deref(&self) -> &[Rendered] {
        &self.shown
    }
}

impl Report {
    /// The text rendering: each shown diagnostic and a blank line (as rustc
    /// prints them), then how many were not shown. ANSI colours when `color`.
    pub fn to_text(&self, color: bool) -> String {
        let mut out = String::new();
        for d in &self.shown {
            out.push_str(&d.to_text(color));
            out.push_str("\n\n");
        }
        if self.omitted() > 0 {
            out.push_str(&format!(
                "note: and {} more diagnostic(s), not shown; fix the ones above and check again\n",
                self.omitted()
            ));
        }
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text(false))
    }
}

/// Start offsets of a text's lines, to turn byte offsets into lines and
/// columns by binary search instead of a scan from the start per diagnostic
/// (which made a spec with many errors take quadratic time).
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        (line, text[start..offset].chars().count() + 1)
    }

    /// [`Self::line_col`] of many offsets at once, in their order: one pass
    /// over the text in offset order, so many offsets on one long line cost
    /// the line's length once, not once per offset.
    pub fn line_cols(&self, text: &str, offsets: &[usize]) -> Vec<(usize, usize)> {
        let mut order: Vec<usize> = (0..offsets.len()).collect();
        order.sort_by_key(|&i| offsets[i]);
        let mut out = vec![(0, 0); offsets.len()];
        // The last offset resolved: (byte offset, line, column).
        let mut last: Option<(usize, usize, usize)> = None;
        for i in order {
            let mut offset = offsets[i].min(text.len());
            while !text.is_char_boundary(offset) {
                offset -= 1;
            }
            let line = self.starts.partition_point(|&s| s <= offset);
            let (from, col) = match last {
                Some((at, l, c)) if l == line => (at, c),
                _ => (self.starts[line - 1], 1),
            };
            let col = col + text[from..offset].chars().count();
            out[i] = (line, col);
            last = Some((offset, line, col));
        }
        out
    }

    /// Byte range of a 1-based line in the text, without its line ending.
    pub fn line_range(&self, text: &str, line: usize) -> std::ops::Range<usize> {
        let Some(&start) = self.starts.get(line.wrapping_sub(1)) else {
            return text.len()..text.len();
        };
        let end = self.starts.get(line).map_or(text.len(), |&e| e - 1);
        let end = if text[start..end].ends_with('\r') {
            end - 1
        } else {
            end
        };
        start..end
    }

    /// The text of a 1-based line, without its line ending.
    pub fn line<'a>(&self, text: &'a str, line: usize) -> &'a str {
        let Some(&start) = self.starts.get(line.wrapping_sub(1)) else {
            return "";
        };
        let end = self.starts.get(line).map_or(text.len(), |&e| e - 1);
        text[start..end].trim_end_matches('\r')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_round_trip_through_text() {
        let p = KeyPath::parse("mas.upstream_providers[1].claims_imports.localpart");
        assert_eq!(
            p.to_string(),
            "mas.upstream_providers[1].claims_imports.localpart"
        );
        assert_eq!(p.0[2], Key::Index(1));
    }

    #[test]
    fn line_and_column_are_one_based() {
        let src = "a = 1\nbé = 2\r\nlast";
        let idx = LineIndex::new(src);
        assert_eq!(idx.line_col(src, 0), (1, 1));
        assert_eq!(idx.line_col(src, 5), (1, 6));
        assert_eq!(idx.line_col(src, 6), (2, 1));
        assert_eq!(idx.line_col(src, 10), (2, 4));
        assert_eq!(idx.line_col(src, 15), (3, 1));
        assert_eq!(idx.line_col(src, 99), (3, 5));
        assert_eq!(idx.line(src, 2), "bé = 2");
        assert_eq!(idx.line(src, 3), "last");
        assert_eq!(idx.line(src, 4), "");
    }

    #[test]
    fn many_offsets_resolve_like_one() {
        let src = "a = 1\nbé = 2\r\nlast";
        let idx = LineIndex::new(src);
        let offsets = [15, 0, 10, 99, 6, 5, 10];
        let want: Vec<_> = offsets.iter().map(|&o| idx.line_col(src, o)).collect();
        assert_eq!(idx.line_cols(src, &offsets), want);
        assert_eq!(&src[idx.line_range(src, 2)], "bé = 2");
        assert_eq!(idx.line_range(src, 9), src.len()..src.len());
    }
}
