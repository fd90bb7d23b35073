//! The text rendering of diagnostics, by annotate-snippets (the renderer
//! rustc uses): `error[code]: message`, ` --> file:line:column`, the source
//! line with the span underlined, a second location if any, `= help: ...`.
//!
//! Why annotate-snippets rather than codespan-reporting or miette: it is
//! rustc's own renderer (maintained by the Rust project), so the layout is
//! the one Rust users and their editors already read; it takes a snippet of
//! source with its first line number, so masgen hands it only the lines
//! around each span and never the whole file (error reporting on a 10 MB
//! spec stays linear); it depends on nothing but anstyle, which clap
//! already brings; and it has no global state (miette's hook) or stream
//! types (codespan's termcolor) to set up, colour being a plain switch.

use std::borrow::Cow;
use std::ops::Range;

use annotate_snippets::{AnnotationKind, Group, Level, Origin, Renderer, Snippet};

use super::{Rendered, Severity};

/// How many characters of a line an excerpt keeps after the span's start;
/// the renderer cuts what is wider than the terminal anyway.
const WIDTH: usize = 120;

/// Up to this column (in characters) the excerpt is the line from its start,
/// so the renderer computes the column itself; further right, only a window
/// around the span is kept (a 10 MB line is not handed over 50 times) and
/// the location is given apart from the excerpt.
const FAR: usize = 1000;

/// A piece of one source line, as handed to the renderer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excerpt {
    /// The line's 1-based number.
    pub line: usize,
    /// The text, control characters the renderer would pass through made
    /// visible; starts with `…` when it starts after the line's start.
    pub text: String,
    /// The span in `text` (bytes), cut to the line.
    pub span: Range<usize>,
    /// Whether `text` starts after the line's start (then the location is
    /// printed from the rendered diagnostic's line and column).
    pub elided: bool,
}

impl Excerpt {
    /// The excerpt of `line` (the line's text without its line ending) for
    /// a span starting at byte `start` of it and ending at byte `end` (or at
    /// the line's end). Costs O(WIDTH) past the span's start and, only when
    /// the span starts beyond [`FAR`] bytes, a scan of the line up to it.
    pub fn new(number: usize, line: &str, start: usize, end: usize) -> Self {
        let start = floor_char(line, start.min(line.len()));
        let end = floor_char(line, end.clamp(start, line.len()));
        // The window's start: the line's start, or WIDTH/2 characters before
        // the span when the span is far right.
        let from = if start <= FAR {
            0
        } else {
            line[..start]
                .char_indices()
                .rev()
                .nth(WIDTH / 2 - 1)
                .map_or(0, |(i, _)| i)
        };
        // WIDTH characters from the span's start; a longer span is cut.
        let to = line[start..]
            .char_indices()
            .nth(WIDTH)
            .map_or(line.len(), |(i, _)| start + i);
        let end = end.min(to);
        let elided = from > 0;
        let mut text = String::with_capacity(to - from + 3);
        if elided {
            text.push('…');
        }
        let mut span = 0..0;
        for (i, c) in line[from..to].char_indices() {
            if from + i == start {
                span.start = text.len();
            }
            if from + i == end {
                span.end = text.len();
            }
            push_visible(&mut text, c);
        }
        if start == to {
            span.start = text.len();
        }
        if end == to {
            span.end = text.len();
        }
        Excerpt {
            line: number,
            text,
            span,
            elided,
        }
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn is_c1(c: char) -> bool {
    ('\u{80}'..='\u{9f}').contains(&c)
}

/// A source character as handed to the renderer: C1 control characters
/// (U+009B is a one-byte CSI to some terminals) as U+FFFD, one character
/// for one so that the renderer's column stays the source's. The renderer
/// itself replaces C0 controls, DEL and the bidirectional overrides by
/// visible symbols (`␛` for ESC) and tabs by spaces, as rustc does.
fn push_visible(out: &mut String, c: char) {
    out.push(if is_c1(c) { '\u{fffd}' } else { c });
}

/// A message, label or file name with C1 control characters as `\u{9b}`.
fn visible(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_c1) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_c1(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn level(s: Severity) -> Level<'static> {
    match s {
        Severity::Error => Level::ERROR,
        Severity::Warning => Level::WARNING,
    }
}

/// One diagnostic as text (without a final newline), with ANSI colours when
/// `color`.
pub fn render(d: &Rendered, color: bool) -> String {
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    let file = visible(&d.file);
    let message = visible(&d.message);
    let help = d.help.as_deref().map(visible);
    let title = level(d.severity).primary_title(message.as_ref()).id(d.code);
    // The excerpt that the location line can be computed from, or the
    // location alone (a far column, or a machine format's diagnostic).
    let near = d.excerpt.as_ref().filter(|e| !e.elided);
    let mut rest: Option<Group<'_>> = None;
    let group = match near {
        Some(e) => title.element(snippet(e, file.as_ref(), AnnotationKind::Primary, None)),
        None => {
            let origin = Origin::path(file.as_ref())
                .line(d.line)
                .char_column(d.column);
            if let Some(e) = &d.excerpt {
                // A group of its own: in the title's group a source without
                // a path would be printed as a second, unnamed location.
                rest = Some(
                    Group::with_level(level(d.severity)).element(
                        Snippet::source(e.text.as_str())
                            .line_start(e.line)
                            .annotation(AnnotationKind::Primary.span(e.span.clone())),
                    ),
                );
            }
            title.element(origin)
        }
    };
    let related_label = d.related.as_ref().map(|r| visible(&r.label));
    let related_file = d.related.as_ref().map(|r| visible(&r.file));
    let mut group = group;
    if let (Some(r), Some(label), Some(related_file)) = (&d.related, &related_label, &related_file)
    {
        group = match r.excerpt.as_ref().filter(|e| !e.elided) {
            Some(e) => group.element(snippet(
                e,
                related_file.as_ref(),
                AnnotationKind::Context,
                Some(label.as_ref()),
            )),
            None => group
                .element(
                    Origin::path(related_file.as_ref())
                        .line(r.line)
                        .char_column(r.column),
                )
                .element(Level::NOTE.message(label.as_ref())),
        };
    }
    let help_element = help.as_ref().map(|h| Level::HELP.message(h.as_ref()));
    let report: Vec<Group<'_>> = match (rest, help_element) {
        (Some(rest), Some(h)) => vec![group, rest.element(h)],
        (Some(rest), None) => vec![group, rest],
        (None, Some(h)) => vec![group.element(h)],
        (None, None) => vec![group],
    };
    renderer.render(&report)
}

fn snippet<'a>(
    e: &'a Excerpt,
    file: &'a str,
    kind: AnnotationKind,
    label: Option<&'a str>,
) -> Snippet<'a, annotate_snippets::Annotation<'a>> {
    Snippet::source(e.text.as_str())
        .line_start(e.line)
        .path(file)
        .annotation(kind.span(e.span.clone()).label(label))
}

#[cfg(test)]
mod tests {
    use super::super::Related;
    use super::*;

    fn diag(excerpt: Option<Excerpt>, column: usize) -> Rendered {
        Rendered {
            severity: Severity::Error,
            code: "value.port",
            file: "spec.toml".into(),
            line: 7,
            column,
            end_line: 7,
            end_column: column + 1,
            message: "port 0 is out of range".into(),
            help: Some("use a port in 1..=65535".into()),
            excerpt,
            related: None,
        }
    }

    #[test]
    fn a_near_span_is_rendered_with_its_line_and_column() {
        let line = "port = 0";
        let text = render(&diag(Some(Excerpt::new(7, line, 7, 8)), 8), false);
        assert_eq!(
            text,
            "error[value.port]: port 0 is out of range\n \
             --> spec.toml:7:8\n  \
             |\n\
             7 | port = 0\n  \
             |        ^\n  \
             |\n  \
             = help: use a port in 1..=65535"
        );
    }

    #[test]
    fn control_characters_are_made_visible() {
        // ESC by the renderer (as rustc does), C1's CSI by masgen.
        let line = "a = \"\u{1b}[31m\u{9b}31m\" # x";
        let at = line.find('#').unwrap();
        let text = render(&diag(Some(Excerpt::new(7, line, at, at + 1)), 17), false);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{9b}'),
            "{text}"
        );
        assert!(text.contains("\u{fffd}31m"), "{text}");
        // The column is the source's, counted before any escaping.
        assert!(text.contains("--> spec.toml:7:17\n"), "{text}");
        let caret_line = text.lines().find(|l| l.contains('^')).unwrap();
        let source_line = text.lines().find(|l| l.contains("# x")).unwrap();
        let col = |l: &str, c: char| l.chars().position(|x| x == c);
        assert_eq!(col(caret_line, '^'), col(source_line, '#'), "{text}");
    }

    #[test]
    fn a_far_span_keeps_its_column_and_a_window_of_the_line() {
        let line = "x".repeat(100_000) + " = 1";
        let at = 100_001;
        let e = Excerpt::new(7, &line, at, at + 1);
        assert!(e.elided && e.text.chars().count() < 2 * WIDTH, "{}", e.text);
        assert_eq!(&e.text[e.span.clone()], "=");
        let text = render(&diag(Some(e), at + 1), false);
        assert!(text.contains("--> spec.toml:7:100002\n"), "{text}");
        assert!(text.contains("= help: use a port"), "{text}");
        assert!(text.lines().any(|l| l.ends_with('^')), "{text}");
    }

    #[test]
    fn a_related_location_is_shown_with_its_label() {
        let mut d = diag(Some(Excerpt::new(7, "port = 0", 7, 8)), 8);
        d.related = Some(Related {
            file: "spec.toml".into(),
            line: 3,
            column: 10,
            label: "the issuer MAS discovers".into(),
            excerpt: Some(Excerpt::new(3, "issuer = \"x\"", 9, 12)),
        });
        let text = render(&d, false);
        assert!(text.contains("::: spec.toml:3:10\n"), "{text}");
        assert!(text.contains("--- the issuer MAS discovers"), "{text}");
    }

    #[test]
    fn colour_is_a_switch() {
        let d = diag(Some(Excerpt::new(7, "port = 0", 7, 8)), 8);
        assert!(!render(&d, false).contains('\u{1b}'));
        assert!(render(&d, true).contains("\u{1b}["));
    }

    #[test]
    fn spans_at_the_line_end_and_past_it_are_kept() {
        let e = Excerpt::new(1, "key = ", 6, 6);
        assert_eq!(e.span, 6..6);
        let e = Excerpt::new(1, "a = [1", 4, 99);
        assert_eq!(&e.text[e.span.clone()], "[1");
        let e = Excerpt::new(1, "", 0, 0);
        assert_eq!((e.text.as_str(), e.span.clone()), ("", 0..0));
    }
}
