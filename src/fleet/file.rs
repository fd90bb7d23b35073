//! Fleet files: a TOML file with a `[fleet]` table listing spec files,
//! relative to the fleet file's directory:
//!
//! ```toml
//! [fleet]
//! specs = ["example-org.toml", "example-com.toml"]
//! ```

use camino::{Utf8Path, Utf8PathBuf};
use toml_edit::{ImDocument, Item};

use crate::diag::{Diagnostic, KeyPath, Location, Report};
use crate::spec::Source;

const HELP: &str =
    "a fleet file holds one table, `[fleet]`, with `specs = [\"a.toml\", ...]` (paths relative to the fleet file)";

/// Whether `path` is a fleet file: it has a `[fleet]` table header. An
/// unreadable file is not (reading it as a spec reports the problem).
pub fn is_fleet_file(path: &Utf8Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| has_fleet_table(&text))
}

fn has_fleet_table(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim();
        l.strip_prefix('[')
            .and_then(|r| r.split('#').next())
            .is_some_and(|r| r.trim().trim_end_matches(']').trim() == "fleet")
    })
}

/// The spec files a fleet file lists, or its located diagnostics.
pub fn read_fleet_file(path: &Utf8Path) -> anyhow::Result<Result<Vec<Utf8PathBuf>, Report>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read fleet file {path}: {e}"))?;
    let source = Source::new(path.as_str(), text.clone());
    let doc = match ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let d = Diagnostic {
                location: Location::Span(span),
                ..Diagnostic::error(
                    "fleet.file",
                    KeyPath::root(),
                    e.message().trim().to_string(),
                )
            };
            return Ok(Err(source.render_all(&[d])));
        }
    };
    let dir = path.parent().unwrap_or(Utf8Path::new(""));
    let (specs, diags) = listed(doc.as_table(), dir);
    if diags.is_empty() {
        Ok(Ok(specs))
    } else {
        Ok(Err(source.render_all(&diags)))
    }
}

/// The listed paths (joined to `dir`) and what is wrong with the file.
fn listed(root: &toml_edit::Table, dir: &Utf8Path) -> (Vec<Utf8PathBuf>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut specs = Vec::new();
    let error = |at: KeyPath, msg: String| Diagnostic::error("fleet.file", at, msg).help(HELP);
    for (key, _) in root.iter().filter(|(k, _)| *k != "fleet") {
        diags.push(error(
            KeyPath::root().key(key),
            format!("unknown key `{key}` in a fleet file"),
        ));
    }
    let Some(fleet) = root.get("fleet").and_then(Item::as_table_like) else {
        diags.push(error(KeyPath::root(), "no `[fleet]` table".into()));
        return (specs, diags);
    };
    let at = KeyPath::root().key("fleet");
    for (key, _) in fleet.iter().filter(|(k, _)| *k != "specs") {
        diags.push(error(at.key(key), format!("unknown key `fleet.{key}`")));
    }
    let Some(list) = fleet.get("specs").and_then(Item::as_array) else {
        diags.push(error(
            at.key("specs"),
            "`fleet.specs` must be a list of spec file paths".into(),
        ));
        return (specs, diags);
    };
    if list.is_empty() {
        diags.push(error(at.key("specs"), "`fleet.specs` is empty".into()));
    }
    for (i, value) in list.iter().enumerate() {
        let here = at.key("specs").index(i);
        let Some(rel) = value.as_str() else {
            diags.push(error(here, "a spec path must be a string".into()));
            continue;
        };
        let spec = dir.join(rel);
        if !spec.is_file() {
            diags.push(
                Diagnostic::error("fleet.spec_missing", here, format!("no spec file {spec}"))
                    .help("paths are relative to the fleet file's directory"),
            );
        } else if is_fleet_file(&spec) {
            diags.push(error(
                here,
                format!("{spec} is a fleet file; a fleet file lists specs only"),
            ));
        } else {
            specs.push(spec);
        }
    }
    (specs, diags)
}

#[cfg(test)]
mod tests {
    use super::has_fleet_table;

    #[test]
    fn a_fleet_table_header_makes_a_fleet_file() {
        assert!(has_fleet_table("[fleet]\nspecs = []\n"));
        assert!(has_fleet_table("# x\n  [ fleet ] # the specs\n"));
        assert!(!has_fleet_table("[fleet.x]\n"));
        assert!(!has_fleet_table("version = 1\n[homeserver]\n"));
        assert!(!has_fleet_table("x = \"[fleet]\"\n"));
    }
}
