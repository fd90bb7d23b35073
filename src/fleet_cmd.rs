//! The fleet side of `check`, `build`, `plan` and `diff`: several specs
//! (or fleet files listing them) given at once.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use masgen::fleet::{self, Fleet};

use crate::cli::CheckFormat;

/// The spec files the arguments name, fleet files expanded; `None` after
/// printing a fleet file's diagnostics.
pub fn resolve(inputs: &[Utf8PathBuf]) -> Result<Option<Vec<Utf8PathBuf>>> {
    match fleet::expand(inputs)? {
        Ok(specs) => Ok(Some(specs)),
        Err(report) => {
            let _ = write!(std::io::stderr().lock(), "{report}");
            eprintln!("fleet file failed ({}); nothing was read", report.summary());
            Ok(None)
        }
    }
}

/// Reads and validates every spec of a fleet and checks them against each
/// other, printing each spec's diagnostics and whether it is fine. `None`:
/// some spec failed, and the command should exit 2.
pub fn load(specs: &[Utf8PathBuf], what_happened: &str) -> Result<Option<Fleet>> {
    let fleet = fleet::load(specs)?;
    let mut failed = 0;
    // Thousands of lines: written in large pieces, not a call each.
    let mut err = std::io::BufWriter::new(std::io::stderr().lock());
    for spec in &fleet.specs {
        match &spec.result {
            Ok(checked) => {
                write!(err, "{}", checked.warnings)?;
                writeln!(err, "{}: ok ({})", spec.path, checked.warnings.summary())?;
            }
            Err(report) => {
                failed += 1;
                write!(err, "{report}")?;
                writeln!(err, "{}: failed ({})", spec.path, report.summary())?;
            }
        }
    }
    let total = fleet.specs.len();
    if failed > 0 {
        writeln!(
            err,
            "fleet: {failed} of {total} specs failed, {} fine; {what_happened}",
            total - failed
        )?;
        return Ok(None);
    }
    Ok(Some(fleet))
}

/// `masgen check` of several specs.
pub fn check(specs: &[Utf8PathBuf], format: CheckFormat) -> Result<ExitCode> {
    use masgen::diag::format as fmt;
    if format == CheckFormat::Text {
        return Ok(match load(specs, "nothing was written")? {
            Some(fleet) => {
                let mut out = std::io::stdout().lock();
                for spec in &fleet.specs {
                    if let Ok(checked) = &spec.result {
                        let note = masgen::model::nixpkgs::describe(&checked.homeserver.nixpkgs);
                        writeln!(out, "{}: {note}", spec.path)?;
                    }
                }
                eprintln!("fleet: {} specs ok", fleet.specs.len());
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        });
    }
    let render = match format {
        CheckFormat::Github => fmt::github,
        _ => fmt::json_lines,
    };
    let fleet = fleet::load(specs)?;
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    for spec in &fleet.specs {
        let (diags, ok) = match &spec.result {
            Ok(checked) => (&checked.warnings, true),
            Err(report) => (report, false),
        };
        failed += usize::from(!ok);
        out.write_all(render(&diags[..]).as_bytes())?;
        eprintln!(
            "{}: {} ({})",
            spec.path,
            if ok { "ok" } else { "failed" },
            diags.summary()
        );
    }
    Ok(if failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The lowering and output tree of a fleet, after printing what the build
/// drops.
pub fn build_tree(
    fleet: &Fleet,
    output: &Utf8Path,
) -> Result<(Vec<masgen::lower::Lowered>, masgen::emit::OutputTree)> {
    let members = fleet.checked();
    let (lowered, tree) = fleet::build_tree(&members, &masgen::flake_ref(output))?;
    print_dropped(&lowered)?;
    Ok((lowered, tree))
}

/// A note for each setting a configuration leaves out.
pub fn print_dropped(lowered: &[masgen::lower::Lowered]) -> Result<()> {
    let mut err = std::io::BufWriter::new(std::io::stderr().lock());
    for l in lowered {
        for phase in &l.phases {
            for d in &phase.dropped {
                writeln!(
                    err,
                    "note: `{}` is dropped from `{}`: {}",
                    d.setting, phase.configuration, d.reason
                )?;
            }
        }
    }
    err.flush()?;
    Ok(())
}

/// How the fleet's specs are named in a hint to run a command again.
pub fn spec_args(specs: &[Utf8PathBuf]) -> String {
    let names: Vec<&str> = specs.iter().map(|s| s.as_str()).collect();
    names.join(" ")
}

/// Whether `name` (of `flag`, e.g. `--only`) names the homeserver of the
/// one spec given: its server name or its file stem.
pub fn check_name(
    spec: &Utf8Path,
    checked: &masgen::Checked,
    flag: &str,
    name: &str,
) -> Result<()> {
    let stem = spec.file_stem().unwrap_or_default();
    anyhow::ensure!(
        name == checked.homeserver.server_name || name == stem,
        "{flag} {name}: the spec's homeserver is `{}` (file stem `{stem}`)",
        checked.homeserver.server_name
    );
    Ok(())
}

/// Every validated spec of `specs` (one, or a fleet) and the index of the
/// homeserver `flag NAME` names, which is needed when there are several:
/// one command never acts on several homeservers unasked. `None` after
/// printing why a spec failed.
pub fn load_one(
    specs: &[Utf8PathBuf],
    flag: &str,
    name: Option<&str>,
    what_happened: &str,
) -> Result<Option<(Vec<masgen::Checked>, usize)>> {
    if let [spec] = specs {
        let Some(checked) = crate::commands::load(spec, what_happened)? else {
            return Ok(None);
        };
        if let Some(name) = name {
            check_name(spec, &checked, flag, name)?;
        }
        return Ok(Some((vec![checked], 0)));
    }
    let Some(mut fleet) = load(specs, what_happened)? else {
        return Ok(None);
    };
    let chosen = match name {
        Some(name) => fleet
            .select_by(flag, Some(name))
            .map_err(anyhow::Error::msg)?
            .first()
            .map(|c| c.source.name.clone()),
        None => None,
    };
    let members: Vec<masgen::Checked> = fleet
        .specs
        .drain(..)
        .filter_map(|s| s.result.ok())
        .collect();
    let index = match chosen {
        Some(source) => members.iter().position(|c| c.source.name == source),
        None if members.len() == 1 => Some(0),
        None => {
            let names: Vec<&str> = members
                .iter()
                .map(|c| c.homeserver.server_name.as_str())
                .collect();
            anyhow::bail!(
                "the fleet has {} homeservers ({}); name the one to act on with {flag} NAME (a server name or spec file stem): one run never applies several homeservers' migrations",
                members.len(),
                names.join(", ")
            );
        }
    };
    let index = index.ok_or_else(|| anyhow::anyhow!("{flag}: no homeserver selected"))?;
    Ok(Some((members, index)))
}

/// The spec of the homeserver `--only NAME` names; `None` after printing
/// why the fleet failed.
pub fn only_spec(specs: &[Utf8PathBuf], name: &str) -> Result<Option<Utf8PathBuf>> {
    let Some(fleet) = load(specs, "nothing compared")? else {
        return Ok(None);
    };
    let selected = fleet.select(Some(name)).map_err(anyhow::Error::msg)?;
    let Some(checked) = selected.first() else {
        anyhow::bail!("--only {name}: no homeserver selected");
    };
    let path = fleet
        .specs
        .iter()
        .find(|s| s.path.as_str() == checked.source.name)
        .map(|s| s.path.clone());
    Ok(path)
}

/// `masgen diff` of a whole fleet: its tree against a previous output tree.
pub fn diff(
    specs: &[Utf8PathBuf],
    against: Option<Utf8PathBuf>,
    against_rev: Option<String>,
    system: Vec<String>,
    format: crate::cli::Format,
) -> Result<ExitCode> {
    use masgen::diff::{self, Against};
    let system = (!system.is_empty()).then_some(());
    let dir = match (against, against_rev, system) {
        (Some(dir), None, None) => dir,
        (None, None, None) => anyhow::bail!(
            "`masgen diff` needs exactly one of --against DIR, --against-rev REV, --system ROOT"
        ),
        (None, _, _) => anyhow::bail!(
            "--against-rev and --system compare one homeserver: add --only NAME (a server name or spec file stem)"
        ),
        _ => anyhow::bail!(
            "`masgen diff` needs exactly one of --against DIR, --against-rev REV, --system ROOT"
        ),
    };
    let Some(fleet) = load(specs, "nothing compared")? else {
        return Ok(ExitCode::from(2));
    };
    let (lowered, mut tree) = build_tree(&fleet, &dir)?;
    let label = format!("fleet of {} specs", fleet.specs.len());
    // The specs are not needed any more: their memory goes to the old tree.
    drop(lowered);
    drop(fleet);
    let (old, notes) = diff::input::read_tree_sharing(&dir, &mut tree)?;
    let against = Against::Tree {
        path: dir.to_string(),
    };
    let mut changeset = diff::compare::compare_trees(&label, against, &old, &tree)
        .map_err(|e| anyhow::anyhow!("cannot compare: {e}"))?;
    changeset.notes.splice(0..0, notes);
    let text = match format {
        crate::cli::Format::Text => diff::render::text(&changeset, crate::commands::stdout_color()),
        crate::cli::Format::Markdown => diff::render::markdown(&changeset),
        crate::cli::Format::Json => diff::render::json(&changeset),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::from(u8::from(changeset.changed)))
}
