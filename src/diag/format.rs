//! Machine-readable renderings of diagnostics, for `masgen check --format`:
//! JSON Lines for tools, and GitHub Actions workflow commands so a CI run
//! annotates the pull request's lines. The text rendering is `Rendered`'s
//! `Display` in `diag.rs`.

use serde_json::json;

use super::{Rendered, Severity};

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// One JSON object per line and diagnostic (like `rustc --error-format=json`):
/// `code`, `severity`, `file`, 1-based `line`/`column`, `end_line`/
/// `end_column` (exclusive), `message`, `help` (null when there is none).
pub fn json_lines(diags: &[Rendered]) -> String {
    let mut out = String::new();
    for d in diags {
        let object = json!({
            "code": d.code,
            "severity": severity(d.severity),
            "file": d.file,
            "line": d.line,
            "column": d.column,
            "end_line": d.end_line,
            "end_column": d.end_column,
            "message": d.message,
            "help": d.help,
        });
        out.push_str(&object.to_string());
        out.push('\n');
    }
    out
}

/// GitHub Actions workflow commands, one line per diagnostic:
/// `::error file=F,line=L,col=C,endLine=L2,endColumn=C2,title=CODE::message`.
/// The help follows the message on its own line of the annotation.
///
/// GitHub only takes columns for a range on one line (REST API, "Create a
/// check run", `annotations[].start_column`: "Omit this parameter if
/// start_line and end_line have different values"), so a range over several
/// lines is given by lines only.
pub fn github(diags: &[Rendered]) -> String {
    let mut out = String::new();
    for d in diags {
        let mut props = vec![("file", d.file.clone()), ("line", d.line.to_string())];
        if d.end_line == d.line {
            props.push(("col", d.column.to_string()));
            props.push(("endLine", d.end_line.to_string()));
            props.push(("endColumn", d.end_column.max(d.column).to_string()));
        } else {
            props.push(("endLine", d.end_line.to_string()));
        }
        props.push(("title", d.code.to_string()));
        let props: Vec<String> = props
            .iter()
            .map(|(k, v)| format!("{k}={}", escape_property(v)))
            .collect();
        let mut message = d.message.clone();
        if let Some(help) = &d.help {
            message.push_str("\nhelp: ");
            message.push_str(help);
        }
        out.push_str(&format!(
            "::{} {}::{}\n",
            severity(d.severity),
            props.join(","),
            escape_data(&message)
        ));
    }
    out
}

/// A message of a workflow command: `%`, CR and LF escaped, as
/// actions/toolkit's `escapeData` does (packages/core/src/command.ts).
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A property value of a workflow command: as [`escape_data`], plus `:` and
/// `,`, which end a value (toolkit's `escapeProperty`).
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(line: usize, end_line: usize, help: Option<&str>) -> Rendered {
        Rendered {
            severity: Severity::Warning,
            code: "a.code",
            file: "dir,1/spec:x.toml".into(),
            line,
            column: 3,
            end_line,
            end_column: 9,
            message: "100% wrong\r\nreally".into(),
            help: help.map(str::to_string),
            excerpt: None,
            related: None,
        }
    }

    #[test]
    fn github_escapes_data_and_properties() {
        assert_eq!(
            github(&[rendered(4, 4, Some("fix: it, now"))]),
            "::warning file=dir%2C1/spec%3Ax.toml,line=4,col=3,endLine=4,endColumn=9,title=a.code\
             ::100%25 wrong%0D%0Areally%0Ahelp: fix: it, now\n"
        );
    }

    #[test]
    fn github_gives_a_multi_line_range_without_columns() {
        let line = github(&[rendered(4, 6, None)]);
        assert!(
            line.starts_with(
                "::warning file=dir%2C1/spec%3Ax.toml,line=4,endLine=6,title=a.code::"
            ),
            "{line}"
        );
    }

    #[test]
    fn json_has_one_object_per_line() {
        let text = json_lines(&[rendered(4, 4, None), rendered(5, 5, Some("h"))]);
        let objects: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0]["help"], serde_json::Value::Null);
        assert_eq!(objects[1]["message"], "100% wrong\r\nreally");
        assert_eq!(objects[1]["end_column"], 9);
    }
}
