//! Diagnostics: what is wrong, where in the spec, and what to do about it.

use std::fmt;

pub mod format;

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
    /// What to do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, at: KeyPath, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            location: Location::Path(at),
            message: message.into(),
            help: None,
        }
    }

    pub fn warning(code: &'static str, at: KeyPath, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, at, message)
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
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
    pub source_line: String,
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(
            f,
            "{}:{}:{}: {level}[{}]: {}",
            self.file, self.line, self.column, self.code, self.message
        )?;
        if !self.source_line.is_empty() {
            let (shown, caret) = excerpt(&self.source_line, self.column);
            writeln!(f, "    | {shown}")?;
            let pad: String = shown
                .chars()
                .take(caret)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(f, "    | {pad}^")?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "    = help: {help}")?;
        }
        Ok(())
    }
}

/// At most `WIDTH` characters of a source line around `column`, control
/// characters made visible, and the caret's offset in what is shown.
fn excerpt(line: &str, column: usize) -> (String, usize) {
    const WIDTH: usize = 120;
    let chars: Vec<char> = line.chars().collect();
    let col = column.saturating_sub(1).min(chars.len());
    let start = col.saturating_sub(WIDTH / 2);
    let end = (start + WIDTH).min(chars.len());
    let mut shown = String::new();
    let mut caret = col - start;
    if start > 0 {
        shown.push('…');
        caret += 1;
    }
    for &c in &chars[start..end] {
        if c.is_control() && c != '\t' {
            shown.push('\u{fffd}');
        } else {
            shown.push(c);
        }
    }
    if end < chars.len() {
        shown.push('…');
    }
    (shown, caret)
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

pub fn source_line(source: &str, line: usize) -> String {
    source
        .lines()
        .nth(line.saturating_sub(1))
        .unwrap_or("")
        .trim_end_matches('\r')
        .to_string()
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
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 10), (2, 4));
    }
}
