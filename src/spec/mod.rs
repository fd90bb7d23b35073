//! Stage 1: read the spec file. TOML syntax, types, unknown keys and literal
//! secrets are checked here; meaning is checked in `model`.

mod floats;
pub mod raw;

use std::ops::Range;

pub use raw::SpecFile;
use toml_edit::{ImDocument, Item, Value};

use crate::diag::{line_col, source_line, Diagnostic, Key, KeyPath, Location, Rendered, Severity};

/// The spec format this masgen reads.
pub const SPEC_VERSION: u32 = 1;

/// A spec file's text, kept to point diagnostics at lines and columns.
pub struct Source {
    pub name: String,
    pub text: String,
    doc: Option<ImDocument<String>>,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let doc = ImDocument::parse(text.clone()).ok();
        Source {
            name: name.into(),
            text,
            doc,
        }
    }

    /// Byte range of the value at `path`, or of the deepest part of it that exists.
    pub fn span_of(&self, path: &KeyPath) -> Range<usize> {
        let Some(doc) = &self.doc else { return 0..0 };
        let mut best = 0..0;
        let mut item: Option<Node<'_>> = Some(Node::Item(doc.as_item()));
        for key in &path.0 {
            let Some(node) = item else { break };
            let (span, next) = node.child(key);
            if let Some(span) = span {
                best = span;
            }
            item = next;
        }
        best
    }

    pub fn render(&self, diag: &Diagnostic) -> Rendered {
        let span = match &diag.location {
            Location::Path(path) => self.span_of(path),
            Location::Span(span) => span.clone(),
        };
        let (line, column) = line_col(&self.text, span.start);
        Rendered {
            severity: diag.severity,
            code: diag.code,
            file: self.name.clone(),
            line,
            column,
            message: diag.message.clone(),
            help: diag.help.clone(),
            source_line: source_line(&self.text, line),
        }
    }

    /// Renders diagnostics errors first, then in file order.
    pub fn render_all(&self, diags: &[Diagnostic]) -> Vec<Rendered> {
        let mut rendered: Vec<Rendered> = diags.iter().map(|d| self.render(d)).collect();
        rendered.sort_by(|a, b| {
            (a.severity, a.line, a.column, a.code, &a.message)
                .cmp(&(b.severity, b.line, b.column, b.code, &b.message))
        });
        rendered.dedup();
        rendered
    }
}

enum Node<'a> {
    Item(&'a Item),
    Table(&'a toml_edit::Table),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn child(&self, key: &Key) -> (Option<Range<usize>>, Option<Node<'a>>) {
        match (self, key) {
            (Node::Item(Item::Table(t)), _) => Node::Table(t).child(key),
            (Node::Table(t), Key::Name(n)) => match t.get_key_value(n) {
                Some((k, v)) => (k.span().or_else(|| v.span()), Some(Node::Item(v))),
                None => (None, None),
            },
            (Node::Item(Item::ArrayOfTables(a)), Key::Index(i)) => match a.get(*i) {
                Some(t) => (t.span(), Some(Node::Table(t))),
                None => (None, None),
            },
            (Node::Item(Item::Value(v)), _) => Node::Value(v).child(key),
            (Node::Value(Value::InlineTable(t)), Key::Name(n)) => match t.get_key_value(n) {
                Some((k, v)) => (k.span().or_else(|| v.span()), Some(Node::Item(v))),
                None => (None, None),
            },
            (Node::Value(Value::Array(a)), Key::Index(i)) => match a.get(*i) {
                Some(v) => (v.span(), Some(Node::Value(v))),
                None => (None, None),
            },
            _ => (None, None),
        }
    }
}

/// Key names that hold a secret when given a literal value. Their `_file` /
/// `_path` forms are what the spec must use instead.
const SECRET_KEYS: &[&str] = &[
    "access_key",
    "access_token",
    "api_key",
    "secret_access_key",
    "turn_password",
    "bind_password",
    "recaptcha_private_key",
    "smtp_pass",
    "smtp_password",
    "admin_token",
    "as_token",
    "client_secret",
    "encryption",
    "form_secret",
    "hs_token",
    "key",
    "macaroon_secret_key",
    "password",
    "pepper",
    "private_key",
    "registration_shared_secret",
    "secret",
    "secret_key",
    "shared_secret",
    "turn_shared_secret",
    "worker_replication_secret",
];

/// Parses and type-checks a spec. On failure returns every diagnostic found.
pub fn load(source: &Source) -> Result<SpecFile, Vec<Diagnostic>> {
    let doc = match ImDocument::parse(source.text.as_str()) {
        Ok(doc) => doc,
        Err(err) => {
            let span = err.span().unwrap_or(0..0);
            return Err(vec![Diagnostic {
                severity: Severity::Error,
                code: "toml.syntax",
                location: Location::Span(span),
                // toml_edit puts the reason on later lines ("duplicate key …").
                message: err
                    .message()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(": "),
                help: Some("fix the TOML syntax at this position".into()),
            }]);
        }
    };

    let mut diags = Vec::new();
    let mut secret_paths = Vec::new();
    walk_item(doc.as_item(), &KeyPath::root(), &mut |path, key, value| {
        check_literal_secret(path, key, value, &mut diags, &mut secret_paths)
    });
    walk_item(doc.as_item(), &KeyPath::root(), &mut |path, _, value| {
        floats::check_finite(path, value, &mut diags)
    });

    let mut unknown = Vec::new();
    let de = toml::Deserializer::new(&source.text);
    let parsed: Result<SpecFile, _> =
        serde_ignored::deserialize(de, |p| unknown.push(ignored_path(&p)));
    for path in unknown {
        if secret_paths.contains(&path) {
            continue;
        }
        let name = path.to_string();
        diags.push(
            Diagnostic::error("spec.unknown_key", path, format!("unknown key `{name}`"))
                .help("check the spelling against `masgen init` output or docs/guide.md; settings masgen does not model go in `extra_settings`"),
        );
    }
    match parsed {
        Ok(spec) => {
            if spec.version != SPEC_VERSION {
                diags.push(
                    Diagnostic::error(
                        "spec.version",
                        KeyPath::parse("version"),
                        format!(
                            "spec format version {} is not supported by this masgen",
                            spec.version
                        ),
                    )
                    .help(format!("this masgen reads `version = {SPEC_VERSION}`")),
                );
            }
            if diags.iter().any(Diagnostic::is_error) {
                Err(diags)
            } else {
                Ok(spec)
            }
        }
        Err(err) => {
            let span = err.span();
            let message = plain_types(first_line(err.message()));
            let location = match span {
                Some(span) => Location::Span(span),
                None => Location::Path(KeyPath::root()),
            };
            let help = if message.starts_with("missing field") {
                "add the missing key; `masgen init` prints a complete starter spec"
            } else {
                "give this key a value of the expected type"
            };
            diags.push(Diagnostic {
                severity: Severity::Error,
                code: "spec.type",
                location,
                message,
                help: Some(help.into()),
            });
            Err(diags)
        }
    }
}

/// serde names Rust types ("expected struct HomeserverSpec"); say it in TOML terms.
fn plain_types(message: &str) -> String {
    let mut m = message.to_string();
    if let Some(at) = m.find("expected struct ") {
        m.truncate(at);
        m.push_str("expected a table");
    }
    for (rust, toml) in [
        ("expected i64", "expected an integer"),
        ("expected u32", "expected an integer"),
        ("expected a boolean", "expected `true` or `false`"),
        ("a sequence", "an array"),
        ("expected a map", "expected a table"),
    ] {
        m = m.replace(rust, toml);
    }
    m
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim()
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> KeyPath {
    use serde_ignored::Path;
    match path {
        Path::Root => KeyPath::root(),
        Path::Seq { parent, index } => ignored_path(parent).index(*index),
        Path::Map { parent, key } => ignored_path(parent).key(key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

fn walk_item(item: &Item, path: &KeyPath, f: &mut dyn FnMut(&KeyPath, &str, &Value)) {
    match item {
        Item::Table(t) => walk_table(t.iter(), path, f),
        Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                walk_table(t.iter(), &path.index(i), f);
            }
        }
        Item::Value(v) => walk_value(v, path, f),
        Item::None => {}
    }
}

fn walk_table<'a>(
    entries: impl Iterator<Item = (&'a str, &'a Item)>,
    path: &KeyPath,
    f: &mut dyn FnMut(&KeyPath, &str, &Value),
) {
    for (key, item) in entries {
        let child = path.key(key);
        if let Item::Value(v) = item {
            f(&child, key, v);
        }
        walk_item(item, &child, f);
    }
}

fn walk_value(value: &Value, path: &KeyPath, f: &mut dyn FnMut(&KeyPath, &str, &Value)) {
    match value {
        Value::InlineTable(t) => {
            for (key, v) in t.iter() {
                let child = path.key(key);
                f(&child, key, v);
                walk_value(v, &child, f);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                walk_value(v, &path.index(i), f);
            }
        }
        _ => {}
    }
}

fn check_literal_secret(
    path: &KeyPath,
    key: &str,
    value: &Value,
    diags: &mut Vec<Diagnostic>,
    secret_paths: &mut Vec<KeyPath>,
) {
    let name = path.to_string();
    // Exact names, plus any `*_secret` / `*_password`: those are never
    // anything but the secret itself (the file forms end in `_file`/`_path`).
    let secret_name =
        SECRET_KEYS.contains(&key) || key.ends_with("_secret") || key.ends_with("_password");
    if secret_name
        && !matches!(
            value,
            Value::InlineTable(_) | Value::Array(_) | Value::Boolean(_)
        )
    {
        secret_paths.push(path.clone());
        diags.push(
            Diagnostic::error(
                "secret.literal",
                path.clone(),
                format!("`{name}` holds a literal secret; secrets must never be written into the spec, the generated tree or the Nix store"),
            )
            .help(format!(
                "put the secret in a root-only file outside the Nix store (e.g. /run/secrets/...) and set `{key}_file = \"/path/to/file\"` instead"
            )),
        );
        return;
    }
    if let Value::String(s) = value {
        if s.value().contains("-----BEGIN") {
            secret_paths.push(path.clone());
            diags.push(
                Diagnostic::error(
                    "secret.literal",
                    path.clone(),
                    format!("`{name}` holds a PEM block (a key or certificate) inline"),
                )
                .help("store the key in a file and refer to it with a `*_file` key"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_of_finds_nested_keys() {
        let src = Source::new(
            "s.toml",
            "[mas]\nhostname = \"x\"\n[[mas.upstream_providers]]\nid = \"a\"\n[[mas.upstream_providers]]\nid = \"b\"\nclaims_imports = { localpart = { template = \"t\" } }\n",
        );
        let span = src.span_of(&KeyPath::parse(
            "mas.upstream_providers[1].claims_imports.localpart.template",
        ));
        assert_eq!(line_col(&src.text, span.start), (7, 34));
        let span = src.span_of(&KeyPath::parse("mas.upstream_providers[1].id"));
        assert_eq!(line_col(&src.text, span.start), (6, 1));
    }
}
