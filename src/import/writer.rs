//! The spec an import writes (TOML with a comment on each value saying where
//! it came from) and the report (text for stderr, or JSON).

use toml_edit::{ArrayOfTables, DocumentMut, Item as TomlItem, Table, Value as TomlValue};

use super::{Ctx, FinalDrop, Imported, Report, Status, SECRETS_DIR};

/// A spec under construction. Tables are created in the order a reader
/// expects them (homeserver, synapse, mas, proxy).
pub struct SpecOut {
    doc: DocumentMut,
}

impl Default for SpecOut {
    fn default() -> Self {
        Self::new()
    }
}

impl SpecOut {
    pub fn new() -> SpecOut {
        let mut doc = DocumentMut::new();
        doc.decor_mut().set_prefix(
            "# masgen spec written by `masgen import`: each value says where it came from.\n\
             # Review it, create the secret files the import report lists, then\n\
             # `masgen check` and `masgen build`.\n",
        );
        doc.insert("version", toml_edit::value(1));
        let mut out = SpecOut { doc };
        for t in [
            "homeserver",
            "synapse",
            "synapse.database",
            "synapse.listener",
            "mas",
        ] {
            out.table(t);
        }
        out
    }

    /// The table at a dotted path, created when missing.
    pub fn table(&mut self, path: &str) -> &mut Table {
        let mut t = self.doc.as_table_mut();
        for seg in path.split('.') {
            let entry = t.entry(seg).or_insert_with(|| {
                let mut n = Table::new();
                n.set_implicit(false);
                TomlItem::Table(n)
            });
            t = entry.as_table_mut().expect("import builds tables only");
        }
        t
    }

    /// Appends a table to the array of tables at `path` (`[[path]]`).
    pub fn push(&mut self, path: &str) -> &mut Table {
        let (parent, key) = path.rsplit_once('.').expect("a nested array");
        let t = self.table(parent);
        let arr = t
            .entry(key)
            .or_insert_with(|| TomlItem::ArrayOfTables(ArrayOfTables::new()))
            .as_array_of_tables_mut()
            .expect("an array of tables");
        arr.push(Table::new());
        arr.get_mut(arr.len() - 1).expect("just pushed")
    }

    pub fn render(&self) -> String {
        // Empty tables (no key set) would print bare headers.
        let mut doc = self.doc.clone();
        for key in ["synapse.listener", "synapse.database"] {
            let (a, b) = key.split_once('.').expect("dotted");
            if let Some(t) = doc[a].as_table_mut() {
                if t.get(b)
                    .and_then(|i| i.as_table())
                    .is_some_and(|t| t.is_empty())
                {
                    t.remove(b);
                }
            }
        }
        let mut text = doc.to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text
    }
}

/// Sets `key = value  # from` in a table.
pub fn put(t: &mut Table, key: &str, value: impl Into<TomlValue>, from: &str) {
    let mut v: TomlValue = value.into();
    if !from.is_empty() {
        v.decor_mut().set_suffix(format!("  # {from}"));
    }
    t.insert(key, TomlItem::Value(v));
}

/// A JSON value as TOML (YAML nulls have no TOML form: `None`).
pub fn to_toml(v: &serde_json::Value) -> Option<TomlValue> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => (*b).into(),
        J::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64()?.into(),
        },
        J::String(s) => s.as_str().into(),
        J::Array(a) => {
            let mut arr = toml_edit::Array::new();
            for x in a {
                arr.push(to_toml(x)?);
            }
            TomlValue::Array(arr)
        }
        J::Object(m) => {
            let mut t = toml_edit::InlineTable::new();
            for (k, x) in m {
                if let Some(x) = to_toml(x) {
                    t.insert(k, x);
                }
            }
            TomlValue::InlineTable(t)
        }
    })
}

/// Adds what every migrate spec needs and the source cannot know (MAS's own
/// secrets), checks the spec the way `masgen check` does, lists what the
/// final configuration drops, and returns spec and report.
pub fn finish(mut ctx: Ctx, spec_name: &str) -> anyhow::Result<Imported> {
    let hs = ctx.spec.table("homeserver");
    hs.insert("mode", toml_edit::value("migrate"));
    let mas_secrets = [
        (
            "encryption_file",
            "mas-encryption",
            "a new MAS encryption key: `openssl rand -hex 32 | tr -d '\\n'` (64 hex digits, no newline: MAS decodes the whole file), or `masgen secrets`",
        ),
        (
            "shared_secret_file",
            "mas-synapse-secret",
            "a new secret MAS and Synapse share: `openssl rand -hex 32` (readable by matrix-synapse)",
        ),
    ];
    for (key, name, content) in mas_secrets {
        let path = format!("{SECRETS_DIR}/{name}");
        let mas = ctx.spec.table("mas");
        if mas.get(key).is_none() {
            put(mas, key, path.as_str(), "new: MAS needs it");
            ctx.secret_file(&path, content);
        }
    }
    if ctx.spec.table("mas").get("signing_keys").is_none() {
        let path = format!("{SECRETS_DIR}/mas-rsa.pem");
        let k = ctx.spec.push("mas.signing_keys");
        put(k, "kid", "rsa", "new: MAS signs its tokens with it");
        put(k, "key_file", path.as_str(), "");
        ctx.secret_file(
            &path,
            "a new RSA key: `openssl genrsa 4096` (or `mas-cli config generate`)",
        );
    }
    let spec = ctx.spec.render();

    let source = crate::spec::Source::new(spec_name, spec.clone());
    let checked = match crate::check_source(source) {
        Ok(c) => c,
        Err(diags) => {
            // Never the spec or the diagnostics' source lines: they could
            // show a value the import failed to recognise as a secret.
            let text: Vec<String> = diags.iter().map(brief).collect();
            anyhow::bail!(
                "the imported spec does not pass `masgen check` (a bug in `masgen import`, or an input it cannot express); nothing was written:\n{}",
                text.join("\n")
            );
        }
    };
    ctx.report.check_warnings = checked.warnings.iter().map(brief).collect();
    let lowered = crate::lower::lower(&checked.homeserver);
    for phase in &lowered.phases {
        for d in &phase.dropped {
            ctx.report.final_drops.push(FinalDrop {
                setting: d.setting.clone(),
                reason: d.reason.clone(),
            });
        }
    }
    Ok(Imported {
        spec,
        report: ctx.report,
    })
}

/// A diagnostic without its source line.
fn brief(d: &crate::diag::Rendered) -> String {
    let level = match d.severity {
        crate::diag::Severity::Error => "error",
        _ => "warning",
    };
    let mut s = format!(
        "{}:{}:{}: {level}[{}]: {}",
        d.file, d.line, d.column, d.code, d.message
    );
    if let Some(help) = &d.help {
        s.push_str(&format!(" ({help})"));
    }
    s
}

/// The report as text, one line per input key.
pub fn render_text(r: &Report) -> String {
    let mut out = format!("masgen import {}: read {}\n", r.source, r.files.join(", "));
    for (status, title) in [
        (Status::Mapped, "mapped"),
        (Status::Dropped, "dropped"),
        (Status::NeedsHuman, "needs a human"),
    ] {
        let items: Vec<_> = r.items.iter().filter(|i| i.status == status).collect();
        if items.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{title} ({}):\n", items.len()));
        for i in items {
            let mut line = format!("  {}: {}", i.file, i.key);
            if !i.to.is_empty() {
                line.push_str(&format!(" -> {}", i.to.join(", ")));
            }
            if !i.why.is_empty() {
                line.push_str(&format!(" ({})", i.why));
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    if !r.secret_files.is_empty() {
        out.push_str("\nsecret files to create before building (values are never printed):\n");
        for s in &r.secret_files {
            out.push_str(&format!("  {}: {}\n", s.path, s.content));
        }
    }
    if !r.final_drops.is_empty() {
        out.push_str("\nthe final (delegated) configuration drops:\n");
        for d in &r.final_drops {
            out.push_str(&format!("  {}: {}\n", d.setting, d.reason));
        }
    }
    if !r.check_warnings.is_empty() {
        out.push_str("\nmasgen check warns about the written spec:\n");
        for w in &r.check_warnings {
            for l in w.lines() {
                out.push_str(&format!("  {l}\n"));
            }
        }
    }
    let humans = r
        .items
        .iter()
        .filter(|i| i.status == Status::NeedsHuman)
        .count();
    out.push_str(&format!(
        "\n{} mapped, {} dropped, {} need a human, {} secret file(s) to create\n",
        r.items
            .iter()
            .filter(|i| i.status == Status::Mapped)
            .count(),
        r.items
            .iter()
            .filter(|i| i.status == Status::Dropped)
            .count(),
        humans,
        r.secret_files.len()
    ));
    out
}

pub fn render_json(r: &Report) -> String {
    let mut s = serde_json::to_string_pretty(r).expect("a report serializes");
    s.push('\n');
    s
}
