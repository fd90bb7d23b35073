//! masgen: compile a Matrix homeserver + MAS spec into a reviewable NixOS flake.
//!
//! The pipeline, one module per stage:
//! `spec` (read TOML) → `model` (validate into typed values) → `lower` (per
//! host, per phase settings and units) → `emit` (files in memory) →
//! `write` (the only stage touching the disk); `diff` and `plan` read the
//! results.

pub mod diag;
pub mod emit;
pub mod lower;
pub mod model;
pub mod nix;
pub mod rules;
pub mod spec;
pub mod write;

use camino::Utf8Path;

use diag::Rendered;

/// A spec that passed validation, with its warnings.
pub struct Checked {
    pub homeserver: model::Homeserver,
    pub warnings: Vec<Rendered>,
    pub source: spec::Source,
}

/// Reads and validates a spec. `Err` holds every diagnostic (errors first).
pub fn check_source(source: spec::Source) -> Result<Checked, Vec<Rendered>> {
    let raw = match spec::load(&source) {
        Ok(raw) => raw,
        Err(diags) => return Err(source.render_all(&diags)),
    };
    let (model, diags) = model::validate(&raw);
    let rendered = source.render_all(&diags);
    match model {
        Some(homeserver) => Ok(Checked {
            homeserver,
            warnings: rendered,
            source,
        }),
        None => Err(rendered),
    }
}

/// Reads a spec file from disk and validates it.
pub fn check_file(path: &Utf8Path) -> anyhow::Result<Result<Checked, Vec<Rendered>>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read spec {path}: {e}"))?;
    Ok(check_source(spec::Source::new(path.as_str(), text)))
}

/// Lowers and emits the output tree of a validated spec.
pub fn build_tree(checked: &Checked) -> anyhow::Result<(lower::Lowered, emit::OutputTree)> {
    let lowered = lower::lower(&checked.homeserver);
    let spec_name = Utf8Path::new(&checked.source.name)
        .file_name()
        .unwrap_or("spec.toml");
    let inputs = emit::Inputs {
        spec_name,
        spec_text: &checked.source.text,
    };
    let tree = emit::emit(
        &checked.homeserver,
        &lowered,
        &inputs,
        emit::OutputTree::new(),
    )?;
    Ok((lowered, tree))
}

/// The annotated starter spec `masgen init` prints.
pub fn starter_spec(existing: bool) -> &'static str {
    if existing {
        include_str!("../examples/migrate-local.toml")
    } else {
        include_str!("../examples/fresh.toml")
    }
}
