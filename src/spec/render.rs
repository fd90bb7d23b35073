//! Diagnostics of a spec resolved to lines and columns, with the source
//! excerpts the text rendering shows (`diag/text.rs` renders them).

use std::ops::Range;

use super::Source;
use crate::diag::{Diagnostic, Excerpt, Location, Related, Rendered, Report, Severity};

impl Source {
    /// The span a location points at. A span that takes in its line's
    /// newline ends on that line (TOML's errors point at the newline where a
    /// value is missing): a GitHub annotation or JSON range must not run
    /// into the next line.
    fn span(&self, location: &Location) -> Range<usize> {
        let span = match location {
            Location::Path(path) => self.span_of(path),
            Location::Span(span) => span.clone(),
        };
        let end = match self.text.as_bytes().get(span.end.wrapping_sub(1)) {
            Some(b'\n') if span.end > span.start => span.end - 1,
            _ => span.end.max(span.start),
        };
        span.start..end
    }

    /// The excerpt of the line at `line` for a span starting there.
    fn excerpt(&self, line: usize, span: &Range<usize>) -> Excerpt {
        let range = self.lines.line_range(&self.text, line);
        let start = span.start.saturating_sub(range.start);
        let end = span.end.saturating_sub(range.start);
        Excerpt::new(line, &self.text[range], start, end)
    }

    /// Resolves diagnostics to lines and columns (all offsets in one pass),
    /// with source excerpts when `excerpts`.
    fn render(&self, diags: &[&Diagnostic], excerpts: bool) -> Vec<Rendered> {
        let spans: Vec<(Range<usize>, Option<Range<usize>>)> = diags
            .iter()
            .map(|d| {
                let related = d.related.as_ref().map(|(p, _)| self.span_of(p));
                (self.span(&d.location), related)
            })
            .collect();
        let mut offsets = Vec::with_capacity(spans.len() * 3);
        for (span, related) in &spans {
            offsets.extend([span.start, span.end]);
            offsets.push(related.as_ref().map_or(0, |r| r.start));
        }
        let positions = self.lines.line_cols(&self.text, &offsets);
        diags
            .iter()
            .zip(&spans)
            .zip(positions.chunks(3))
            .map(|((diag, (span, related)), pos)| {
                let [(line, column), (end_line, end_column), (rel_line, rel_column)] =
                    [pos[0], pos[1], pos[2]];
                Rendered {
                    severity: diag.severity,
                    code: diag.code,
                    file: self.name.clone(),
                    line,
                    column,
                    end_line,
                    end_column,
                    message: match &diag.cause {
                        Some(cause) => {
                            format!("{} (follows from `{cause}`, reported above)", diag.message)
                        }
                        None => diag.message.clone(),
                    },
                    help: diag.help.as_deref().map(str::to_string),
                    excerpt: excerpts.then(|| self.excerpt(line, span)),
                    related: diag.related.as_ref().zip(related.as_ref()).map(
                        |((_, label), span)| Related {
                            file: self.name.clone(),
                            line: rel_line,
                            column: rel_column,
                            label: label.clone(),
                            excerpt: excerpts.then(|| self.excerpt(rel_line, span)),
                        },
                    ),
                }
            })
            .collect()
    }

    /// Errors first, then warnings; each in file order, except that a
    /// diagnostic with a `cause` comes right after the one at its cause.
    /// Only the first [`crate::diag::MAX_SHOWN`] are rendered unless
    /// [`Self::all_diagnostics`] was asked for; all are counted. The cost is
    /// a span lookup and a sort per diagnostic plus one pass over the text.
    pub fn render_all(&self, diags: &[Diagnostic]) -> Report {
        let mut keyed: Vec<(Severity, usize, bool, usize, &Diagnostic)> = diags
            .iter()
            .map(|d| {
                let own = self.offset(&d.location);
                let anchor = d.cause.as_ref().map_or(own, |c| self.span_of(c).start);
                (d.severity, anchor, d.cause.is_some(), own, d)
            })
            .collect();
        keyed.sort_by(|a, b| {
            (a.0, a.1, a.2, a.3, a.4.code, &a.4.message).cmp(&(
                b.0,
                b.1,
                b.2,
                b.3,
                b.4.code,
                &b.4.message,
            ))
        });
        keyed.dedup_by(|a, b| {
            (a.0, a.3, a.4.code, &a.4.message, &a.4.help)
                == (b.0, b.3, b.4.code, &b.4.message, &b.4.help)
        });
        let count = |sev: Severity| -> usize {
            keyed
                .iter()
                .filter(|k| k.0 == sev)
                .map(|k| 1 + k.4.omitted)
                .sum()
        };
        let kept: Vec<&Diagnostic> = keyed.iter().take(self.cap()).map(|k| k.4).collect();
        Report {
            shown: self.render(&kept, self.cap.is_some()),
            errors: count(Severity::Error),
            warnings: count(Severity::Warning),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spans that end with their line's newline end on that line; others,
    /// and empty ones, are kept as they are.
    #[test]
    fn spans_end_on_their_line() {
        let source = Source::new("s.toml", "a = 1\nb = \nc = 3\n".to_string());
        let span = |r: Range<usize>| source.span(&Location::Span(r));
        assert_eq!(span(10..11), 10..10, "the newline alone");
        assert_eq!(span(6..11), 6..10, "a line with its newline");
        assert_eq!(span(6..9), 6..9, "within a line");
        assert_eq!(span(6..6), 6..6, "empty");
        assert_eq!(span(11..11), 11..11, "empty, right after a newline");
        assert_eq!(span(0..17), 0..16, "the whole file");
    }
}
