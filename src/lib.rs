//! masgen: compile a Matrix homeserver + MAS spec into a reviewable NixOS flake.
//!
//! The pipeline, one module per stage:
//! `spec` (read TOML) → `model` (validate into typed values) → `lower` (per
//! host, per phase settings and units) → `emit` (files in memory) →
//! `write` (the only stage touching the disk); `diff` and `plan` read the
//! results.

pub mod apply;
pub mod diag;
pub mod diff;
pub mod emit;
pub mod explain;
pub mod fleet;
pub mod import;
pub mod lower;
pub mod model;
pub mod nix;
pub mod par;
pub mod plan;
pub mod rules;
pub mod secrets;
pub mod spec;
pub mod system;
pub mod write;

use camino::Utf8Path;

use diag::Report;

/// A spec that passed validation, with its warnings.
pub struct Checked {
    pub homeserver: model::Homeserver,
    pub warnings: Report,
    pub source: spec::Source,
}

/// Reads and validates a spec. `Err` holds every diagnostic (errors first).
pub fn check_source(source: spec::Source) -> Result<Checked, Report> {
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

/// Reads a spec file from disk and validates it; the report keeps the
/// first [`diag::MAX_SHOWN`] diagnostics, with source excerpts.
pub fn check_file(path: &Utf8Path) -> anyhow::Result<Result<Checked, Report>> {
    read_and_check(path, false)
}

/// As [`check_file`], but the report keeps every diagnostic, without source
/// excerpts: for the machine formats (`masgen check --format json|github`).
pub fn check_file_all(path: &Utf8Path) -> anyhow::Result<Result<Checked, Report>> {
    read_and_check(path, true)
}

fn read_and_check(path: &Utf8Path, all: bool) -> anyhow::Result<Result<Checked, Report>> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read spec {path}: {e}"))?;
    Ok(match String::from_utf8(bytes) {
        Ok(text) => {
            let source = spec::Source::new(path.as_str(), text);
            check_source(if all {
                source.all_diagnostics()
            } else {
                source
            })
        }
        Err(e) => Err(spec::not_utf8(path.as_str(), e.as_bytes(), e.utf8_error())),
    })
}

/// How plans name the flake of an output directory: a path Nix reads as a
/// local flake (`./out` in `./out#matrix`; a bare `out` would be looked up in
/// the flake registry), relative to the directory that holds it, never a
/// machine-specific path, so the same spec gives the same files anywhere.
pub fn flake_ref(output: &Utf8Path) -> String {
    match output.file_name() {
        Some(name) => format!("./{name}"),
        None => ".".to_string(),
    }
}

/// Lowers and emits the output tree of a validated spec, for an output
/// directory `./out`.
pub fn build_tree(checked: &Checked) -> anyhow::Result<(lower::Lowered, emit::OutputTree)> {
    build_tree_for(checked, "./out")
}

/// Lowers and emits the output tree. `out_dir` is how the plan's commands
/// name the output directory (`out` in `nixos-rebuild switch --flake out#matrix`).
pub fn build_tree_for(
    checked: &Checked,
    out_dir: &str,
) -> anyhow::Result<(lower::Lowered, emit::OutputTree)> {
    let hs = &checked.homeserver;
    let lowered = lower::lower(hs);
    let spec_name = Utf8Path::new(&checked.source.name)
        .file_name()
        .unwrap_or("spec.toml");
    let inputs = emit::Inputs {
        spec_name,
        spec_text: &checked.source.text,
    };

    let (mut extra, plan) = own_plan(hs, out_dir);
    extra.extend(emit::rehearsal::files(
        hs,
        &lowered,
        plan.as_ref().map_err(String::as_str),
        &inputs,
    ));
    let tree = emit::emit(&lowered, &inputs, extra)?;
    Ok((lowered, tree))
}

/// The build's own plan (`PLAN.md`, `plan.json`): from where a host of the
/// spec's mode starts; with the plan as data, or why there is none.
pub fn own_plan(
    hs: &model::Homeserver,
    out_dir: &str,
) -> (emit::OutputTree, Result<serde_json::Value, String>) {
    let from = match hs.mode {
        model::Mode::Fresh => plan::HostState::Fresh,
        model::Mode::Migrate => plan::HostState::SynapseOnly,
    };
    let opts = plan::Options {
        out_dir: out_dir.to_string(),
        ..Default::default()
    };
    let mut extra = emit::OutputTree::new();
    match plan::plan(hs, from, OWN_PLAN_SOURCE, &opts) {
        Ok(p) => {
            let value = plan::to_value(&p);
            extra.insert("PLAN.md".into(), plan::render_markdown(&p));
            extra.insert("plan.json".into(), plan::render_json(&p));
            (extra, Ok(value))
        }
        Err(refusal) => {
            extra.insert(
                "PLAN.md".into(),
                format!("<!-- @generated by masgen -->\n# No plan\n\n{refusal}\n"),
            );
            (extra, Err(format!("masgen build made no plan: {refusal}")))
        }
    }
}

/// Where the build's own plan starts, as its heading says.
pub const OWN_PLAN_SOURCE: &str = "the spec's mode (a host without MAS)";

/// The annotated starter spec `masgen init` prints: an example, whose
/// `#:schema` directive points into this repository, with one that points
/// next to the user's spec instead (a file `masgen schema` writes: it works
/// offline and matches this masgen's spec format; docs/guide.md "Editor").
pub fn starter_spec(existing: bool) -> String {
    let example = if existing {
        include_str!("../examples/migrate-local.toml")
    } else {
        include_str!("../examples/fresh.toml")
    };
    let body = example
        .strip_prefix(EXAMPLE_SCHEMA_DIRECTIVE)
        .expect("every example starts with its #:schema directive");
    format!("{INIT_SCHEMA_DIRECTIVE}{body}")
}

/// The first line of every `examples/*.toml`.
pub const EXAMPLE_SCHEMA_DIRECTIVE: &str = "#:schema ../docs/masgen-spec.schema.json\n";

/// The first lines of `masgen init`'s output.
pub const INIT_SCHEMA_DIRECTIVE: &str = "#:schema ./masgen-spec.schema.json\n\
# Editor checks and completion (Even Better TOML, taplo) read the schema next to\n\
# this spec; write it once with `masgen schema > masgen-spec.schema.json`.\n";
