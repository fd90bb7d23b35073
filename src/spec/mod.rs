//! Stage 1: read the spec file. TOML syntax, types, unknown keys and literal
//! secrets are checked here; meaning is checked in `model`.

mod floats;
pub mod raw;
mod render;
pub mod schema;
mod syntax;

use std::collections::{BTreeSet, BinaryHeap};
use std::ops::Range;

pub use raw::SpecFile;
use toml_edit::{ImDocument, Item, Value};

use crate::diag::{Diagnostic, Key, KeyPath, LineIndex, Location, Report, Severity, MAX_SHOWN};
use crate::rules::secrets;

/// The spec format this masgen reads.
pub const SPEC_VERSION: u32 = 1;

/// A spec file's text, kept to point diagnostics at lines and columns.
pub struct Source {
    pub name: String,
    pub text: String,
    doc: Result<ImDocument<String>, toml_edit::TomlError>,
    lines: LineIndex,
    /// How many diagnostics are kept (and rendered with source excerpts);
    /// `None` keeps every one, without excerpts, for the machine formats.
    cap: Option<usize>,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let doc = ImDocument::parse(text.clone());
        let lines = LineIndex::new(&text);
        Source {
            name: name.into(),
            text,
            doc,
            lines,
            cap: Some(MAX_SHOWN),
        }
    }

    /// Keeps every diagnostic instead of the first [`MAX_SHOWN`] (for
    /// `masgen check --format json|github`), without source excerpts: the
    /// cost stays linear in the number of diagnostics and the file's size.
    pub fn all_diagnostics(mut self) -> Self {
        self.cap = None;
        self
    }

    /// How many diagnostics of a kind are kept; `usize::MAX` for all.
    pub(crate) fn cap(&self) -> usize {
        self.cap.unwrap_or(usize::MAX)
    }

    /// Frees the parsed document (it holds several times the text) once no
    /// diagnostic will point into the spec: a fleet keeps a thousand specs.
    /// Spans are `0..0` afterwards.
    pub fn release_document(&mut self) {
        self.doc = ImDocument::parse(String::new());
    }

    /// Byte range of the value at `path`, or of the deepest part of it that exists.
    pub fn span_of(&self, path: &KeyPath) -> Range<usize> {
        let Ok(doc) = &self.doc else { return 0..0 };
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

    /// Byte range of the value at `path` when every part of it exists.
    pub fn span_of_exact(&self, path: &KeyPath) -> Option<Range<usize>> {
        let doc = self.doc.as_ref().ok()?;
        let mut span = None;
        let mut item = Node::Item(doc.as_item());
        for key in &path.0 {
            let (s, next) = item.child(key);
            span = s.or(span);
            item = next?;
        }
        span
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        self.lines.line_col(&self.text, offset)
    }

    fn offset(&self, location: &Location) -> usize {
        match location {
            Location::Path(path) => self.span_of(path).start,
            Location::Span(span) => span.start,
        }
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

/// The diagnostic for a spec file that is not UTF-8: the byte offset and
/// bytes of the first bad sequence, and its line and column in the valid
/// text before it.
pub fn not_utf8(name: &str, bytes: &[u8], err: std::str::Utf8Error) -> Report {
    let at = err.valid_up_to();
    let len = err.error_len().unwrap_or(bytes.len() - at);
    let bad: Vec<String> = bytes[at..at + len]
        .iter()
        .map(|b| format!("0x{b:02x}"))
        .collect();
    // The lossy text has the same bytes up to `at`, so positions agree.
    let source = Source::new(name, String::from_utf8_lossy(bytes).into_owned());
    let diag = Diagnostic {
        severity: Severity::Error,
        code: "spec.encoding",
        location: Location::Span(at..at),
        message: format!(
            "the spec is not valid UTF-8: byte offset {at} holds {}",
            bad.join(" ")
        ),
        help: Some("TOML files are UTF-8; save the spec as UTF-8 (e.g. `iconv -f LATIN1 -t UTF-8 spec.toml`)".into()),
        cause: None,
        related: None,
        omitted: 0,
    };
    source.render_all(&[diag])
}

/// Parses and type-checks a spec. On failure returns every diagnostic found.
pub fn load(source: &Source) -> Result<SpecFile, Vec<Diagnostic>> {
    let doc = match &source.doc {
        Ok(doc) => doc,
        Err(err) => return Err(vec![syntax::diagnostic(source, err)]),
    };

    let mut diags = Vec::new();
    let mut secret_paths = BTreeSet::new();
    walk_item(doc.as_item(), &KeyPath::root(), &mut |path, key, value| {
        check_literal_secret(path, key, value, &mut diags, &mut secret_paths)
    });
    walk_item(doc.as_item(), &KeyPath::root(), &mut |path, _, value| {
        floats::check_finite(path, value, &mut diags)
    });

    // Unknown keys: the first `MAX_SHOWN` in file order are kept, the rest
    // only counted, so that a huge spec of typos costs no memory per key
    // (the machine formats keep them all).
    let mut unknown: BinaryHeap<(usize, KeyPath)> = BinaryHeap::new();
    let mut more_unknown = 0;
    let de = toml::Deserializer::new(&source.text);
    let parsed: Result<SpecFile, _> = serde_ignored::deserialize(de, |p| {
        let path = ignored_path(&p);
        if secret_paths.contains(&path) {
            return;
        }
        unknown.push((source.span_of(&path).start, path));
        if unknown.len() > source.cap() {
            unknown.pop();
            more_unknown += 1;
        }
    });
    let first_unknown = diags.len();
    for (_, path) in unknown.into_sorted_vec() {
        let name = path.to_string();
        diags.push(
            Diagnostic::error("spec.unknown_key", path, format!("unknown key `{name}`"))
                .help("check the spelling against `masgen init` output or docs/guide.md; settings masgen does not model go in `extra_settings`"),
        );
    }
    if let Some(last) = diags[first_unknown..].last_mut() {
        last.omitted = more_unknown;
    }
    // Another format version is the root cause of every other complaint
    // about the file's keys and types: say it first.
    let version = doc.get("version").and_then(Item::as_integer);
    if let Some(v) = version.filter(|v| *v != i64::from(SPEC_VERSION)) {
        let at = KeyPath::parse("version");
        for d in diags.iter_mut().filter(|d| d.code == "spec.unknown_key") {
            d.cause = Some(at.clone());
        }
        diags.push(
            Diagnostic::error(
                "spec.version",
                at,
                format!("spec format version {v} is not supported by this masgen"),
            )
            .help(format!("this masgen reads `version = {SPEC_VERSION}`")),
        );
    }
    let version_error = diags.iter().any(|d| d.code == "spec.version");
    match parsed {
        // A version other than SPEC_VERSION was reported above (an integer
        // `version` is what a parsed spec's `version` is).
        Ok(spec) => {
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
            } else if message.contains("map, expected an array") {
                "this key is a list of tables: write each entry as `[[...]]` (double brackets), not `[...]`"
            } else {
                "give this key a value of the expected type"
            };
            diags.push(Diagnostic {
                severity: Severity::Error,
                code: "spec.type",
                location,
                message,
                help: Some(help.into()),
                related: None,
                cause: version_error.then(|| KeyPath::parse("version")),
                omitted: 0,
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

/// Whether a key names a secret when given a literal value: the exact
/// names, plus any `*_secret` / `*_password` (the file forms end in
/// `_file`/`_path`). `masgen import` uses the same rule.
pub fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS.contains(&key) || key.ends_with("_secret") || key.ends_with("_password")
}

fn check_literal_secret(
    path: &KeyPath,
    key: &str,
    value: &Value,
    diags: &mut Vec<Diagnostic>,
    secret_paths: &mut BTreeSet<KeyPath>,
) {
    let name = path.to_string();
    if is_secret_key(key)
        && !matches!(
            value,
            Value::InlineTable(_) | Value::Array(_) | Value::Boolean(_)
        )
    {
        secret_paths.insert(path.clone());
        diags.push(
            Diagnostic::error(
                "secret.literal",
                path.clone(),
                format!("`{name}` holds a literal secret; secrets must never be written into the spec, the generated tree or the Nix store"),
            )
            .help(secrets::literal_secret_help(path, key)),
        );
        return;
    }
    if let Err((code, message, help)) = secrets::check_file_key(path, key, is_secret_key) {
        diags.push(Diagnostic::error(code, path.clone(), message).help(help));
        return;
    }
    if let Value::String(s) = value {
        if s.value().contains("-----BEGIN") {
            secret_paths.insert(path.clone());
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
        assert_eq!(src.line_col(span.start), (7, 34));
        let span = src.span_of(&KeyPath::parse("mas.upstream_providers[1].id"));
        assert_eq!(src.line_col(span.start), (6, 1));
    }

    /// `span_of_exact` answers only for a path written in full, where
    /// `span_of` falls back to the deepest part that exists.
    #[test]
    fn exact_spans_need_every_part_of_the_path() {
        let src = Source::new("s.toml", "[hosts.a]\nsystem = \"x86_64-linux\"\n");
        let written = src.span_of_exact(&KeyPath::parse("hosts.a.system"));
        assert_eq!(written.map(|r| src.line_col(r.start)), Some((2, 1)));
        assert_eq!(src.span_of_exact(&KeyPath::parse("hosts.a.address")), None);
        assert_eq!(src.span_of_exact(&KeyPath::parse("hosts.b")), None);
        let fallback = src.span_of(&KeyPath::parse("hosts.a.address"));
        assert_eq!(src.line_col(fallback.start).0, 1);
    }

    /// A spec cut inside a character names every byte of the piece it has
    /// (the sequence runs to the end of the file), and where it starts.
    #[test]
    fn a_truncated_character_is_named_whole() {
        let mut bytes = b"version = 1\n# price in ".to_vec();
        bytes.extend_from_slice(&[0xe2, 0x82]);
        let err = std::str::from_utf8(&bytes).unwrap_err();
        let report = not_utf8("cut.toml", &bytes, err);
        let d = &report.shown[0];
        assert_eq!(
            d.message,
            "the spec is not valid UTF-8: byte offset 23 holds 0xe2 0x82"
        );
        assert_eq!((d.line, d.column), (2, 12));
    }

    /// A type error follows from a wrong `version` (the format differs),
    /// and from nothing else: an unknown key beside it is no cause.
    #[test]
    fn only_a_wrong_version_causes_a_type_error() {
        for (version, caused) in [(1, false), (2, true)] {
            let text = format!("version = {version}\nbogus = 1\n[homeserver]\nserver_name = 5\n");
            let diags = load(&Source::new("s.toml", text)).unwrap_err();
            let typed = diags
                .iter()
                .find(|d| d.code == "spec.type")
                .expect("a type error");
            assert_eq!(
                typed.cause.is_some(),
                caused,
                "version {version}: {diags:?}"
            );
        }
    }

    /// A released spec keeps its text but no longer locates keys (what a
    /// fleet of a thousand specs relies on to stay small).
    #[test]
    fn a_released_document_locates_nothing() {
        let mut src = Source::new("s.toml", "[mas]\nhostname = \"x\"\n");
        let path = KeyPath::parse("mas.hostname");
        assert_ne!(src.span_of(&path), 0..0);
        src.release_document();
        assert_eq!(src.span_of(&path), 0..0);
        assert_eq!(src.span_of_exact(&path), None);
    }

    /// Every masgen `*_file` key the literal-secret help suggests is a key
    /// the spec really has: written at its place, none is unknown.
    #[test]
    fn masgen_file_forms_are_spec_keys() {
        use crate::rules::secrets::{Consumer, FILE_FORMS};
        let mut doc: toml_edit::DocumentMut = format!(
            "{}\n{}",
            crate::starter_spec(true),
            r#"
[synapse.oidc_config]
issuer = "https://sso.example.com"
client_id = "synapse"
[[synapse.oidc_providers]]
idp_id = "sso"
issuer = "https://sso.example.com"
client_id = "synapse"
[mas.database]
name = "matrix-authentication-service"
[[mas.upstream_providers]]
id = "01H8PKNWKKRPCBW4YGH1RWV279"
client_id = "mas"
token_endpoint_auth_method = "client_secret_basic"
"#
        )
        .parse()
        .unwrap();
        let mut written = Vec::new();
        for f in FILE_FORMS.iter().filter(|f| f.consumer == Consumer::Masgen) {
            let mut table = doc.as_table_mut();
            for part in f.table.split('.') {
                table = match part.strip_suffix("[]") {
                    Some(name) => table[name]
                        .as_array_of_tables_mut()
                        .and_then(|a| a.get_mut(0))
                        .unwrap_or_else(|| panic!("no [[{}]] in the fixture", f.table)),
                    None => table[part]
                        .as_table_mut()
                        .unwrap_or_else(|| panic!("no [{}] in the fixture", f.table)),
                };
            }
            let file = f.file.expect("masgen has a file form for each");
            table[file] = toml_edit::value("/run/secrets/x");
            written.push(format!("{}.{file}", f.table));
        }
        let source = Source::new("forms.toml", doc.to_string());
        let diags = match load(&source) {
            Ok(_) => Vec::new(),
            Err(diags) => diags,
        };
        let wrong: Vec<_> = diags
            .iter()
            .filter(|d| d.code.starts_with("spec.") || d.code.starts_with("secret."))
            .map(|d| format!("{}: {}", d.code, d.message))
            .collect();
        assert!(wrong.is_empty(), "{wrong:?} (wrote {written:?})");
        assert!(written.len() >= 15, "{written:?}");
    }

    /// The literal-secret check's name rule: listed names, and any name
    /// ending in `_secret` or `_password`; file forms are not secrets.
    #[test]
    fn secret_names() {
        for key in [
            "smtp_pass",
            "macaroon_secret_key",
            "key",
            "webhook_secret",
            "relay_password",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "client_secret_path",
            "password_file",
            "secret_key_file",
            "public_key",
            "passwords",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }
}
