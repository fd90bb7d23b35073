//! One function per subcommand; each returns the process exit code.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use camino::Utf8Path;

use masgen::diag::Rendered;
use masgen::{build_tree_for, check_file, write};

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Init { existing } => init(existing),
        Command::Ulid => {
            println!("{}", ulid::Ulid::new());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { spec } => check(&spec),
        Command::Build {
            spec,
            output,
            check,
        } => build(&spec, &output, check),
        Command::Plan {
            spec,
            from,
            against,
            system,
            output,
            format,
            rollback,
            acknowledge,
        } => plan(
            &spec,
            from,
            against,
            system,
            &output,
            format,
            rollback,
            acknowledge,
        ),
        Command::Apply(args) => crate::apply_cmd::run(args),
        Command::Diff {
            spec,
            against,
            against_rev,
            system,
            output,
            format,
        } => diff(&spec, against, against_rev, system, &output, format),
    }
}

fn print_diagnostics(diags: &[Rendered]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = write!(err, "{d}");
    }
}

fn summary(diags: &[Rendered]) -> String {
    let errors = diags
        .iter()
        .filter(|d| d.severity == masgen::diag::Severity::Error)
        .count();
    let warnings = diags.len() - errors;
    format!("{errors} error(s), {warnings} warning(s)")
}

/// Reads and validates a spec, printing its diagnostics. `None` means it
/// failed and the command should exit 2 (`what_happened` ends the summary).
pub(crate) fn load(spec: &Utf8Path, what_happened: &str) -> Result<Option<masgen::Checked>> {
    match check_file(spec)? {
        Ok(checked) => {
            print_diagnostics(&checked.warnings);
            Ok(Some(checked))
        }
        Err(diags) => {
            print_diagnostics(&diags);
            eprintln!("{spec}: failed ({}); {what_happened}", summary(&diags));
            Ok(None)
        }
    }
}

fn pin_note(checked: &masgen::Checked) -> String {
    masgen::model::nixpkgs::describe(&checked.homeserver.nixpkgs)
}

fn init(existing: bool) -> Result<ExitCode> {
    let text = masgen::starter_spec(existing);
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn check(spec: &Utf8Path) -> Result<ExitCode> {
    match load(spec, "nothing was written")? {
        Some(checked) => {
            // Which MAS module and Synapse the pinned nixpkgs brings (stdout: not a diagnostic).
            println!("{}", pin_note(&checked));
            eprintln!("{spec}: ok ({})", summary(&checked.warnings));
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::from(2)),
    }
}

fn build(spec: &Utf8Path, output: &Utf8Path, check_only: bool) -> Result<ExitCode> {
    let Some(checked) = load(spec, "nothing was written")? else {
        return Ok(ExitCode::from(2));
    };
    let (lowered, tree) = build_tree_for(&checked, &masgen::flake_ref(output))?;
    eprintln!("note: {}", pin_note(&checked));
    for phase in &lowered.phases {
        for d in &phase.dropped {
            eprintln!(
                "note: `{}` is dropped from `{}`: {}",
                d.setting, phase.configuration, d.reason
            );
        }
    }
    let report = write::write_tree(output, &tree, check_only)?;
    if check_only {
        if report.is_clean() {
            eprintln!("{output}: up to date");
            return Ok(ExitCode::SUCCESS);
        }
        for (what, list) in [
            ("missing", &report.created),
            ("stale", &report.updated),
            ("no longer generated", &report.removed),
        ] {
            for p in list {
                println!("{what}: {}", output.join(p));
            }
        }
        eprintln!("{output}: out of date; run `masgen build {spec} -o {output}`");
        return Ok(ExitCode::from(1));
    }
    eprintln!(
        "{output}: {} created, {} updated, {} removed, {} unchanged",
        report.created.len(),
        report.updated.len(),
        report.removed.len(),
        report.unchanged
    );
    for p in &report.kept_aside {
        eprintln!(
            "warning: {p} appeared in {output} while masgen wrote it, and its path is taken: it was left where it is; move it back by hand"
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
fn plan(
    spec: &Utf8Path,
    from: Option<String>,
    against: Option<camino::Utf8PathBuf>,
    system: Option<camino::Utf8PathBuf>,
    output: &Utf8Path,
    format: crate::cli::Format,
    rollback: bool,
    acknowledge: Vec<String>,
) -> Result<ExitCode> {
    use masgen::plan::{self, StateSource};
    let Some(checked) = load(spec, "no plan")? else {
        return Ok(ExitCode::from(2));
    };
    let claim = match (&from, &against) {
        (Some(_), Some(_)) => anyhow::bail!(
            "give one of --from and --against: both say where the host is (add --system to check either against the host)"
        ),
        (Some(f), None) => Some(StateSource::Flag(f)),
        (None, Some(a)) => Some(StateSource::Manifest(a)),
        (None, None) => None,
    };
    for ack in &acknowledge {
        if !plan::ACKNOWLEDGEMENTS.contains(&ack.as_str()) {
            anyhow::bail!(
                "unknown acknowledgement `{ack}`; known: {}",
                plan::ACKNOWLEDGEMENTS.join(", ")
            );
        }
    }
    let located = plan::locate(claim.as_ref(), system.as_deref())?;
    let opts = plan::Options {
        out_dir: masgen::flake_ref(output),
        rollback,
        acknowledged: acknowledge.into_iter().collect(),
        record: located.record,
    };
    let plan = match plan::plan(&checked.homeserver, located.state, &located.how, &opts) {
        Ok(p) => p,
        Err(refusal) => {
            eprintln!("{refusal}");
            return Ok(ExitCode::from(2));
        }
    };
    let text = match format {
        crate::cli::Format::Text => {
            use std::io::IsTerminal;
            let color = std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal();
            plan::render_text(&plan, color)
        }
        crate::cli::Format::Markdown => plan::render_markdown(&plan),
        crate::cli::Format::Json => plan::render_json(&plan),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn diff(
    spec: &Utf8Path,
    against: Option<camino::Utf8PathBuf>,
    against_rev: Option<String>,
    system: Option<camino::Utf8PathBuf>,
    output: &Utf8Path,
    format: crate::cli::Format,
) -> Result<ExitCode> {
    use masgen::diff::{self, Baseline, Outcome};
    let baseline = match (against, against_rev, system) {
        (Some(dir), None, None) => Baseline::Tree(dir),
        (None, Some(rev), None) => Baseline::Rev(rev),
        (None, None, Some(root)) => Baseline::System(root),
        _ => anyhow::bail!(
            "`masgen diff` needs exactly one of --against DIR, --against-rev REV, --system ROOT"
        ),
    };
    let Some(checked) = load(spec, "nothing compared")? else {
        return Ok(ExitCode::from(2));
    };
    let changeset = match diff::diff(spec, &checked, &baseline, output)? {
        Outcome::Changes(c) => c,
        Outcome::InvalidSpec { which, diagnostics } => {
            print_diagnostics(&diagnostics);
            eprintln!(
                "{which}: the old spec does not validate ({}); nothing compared",
                summary(&diagnostics)
            );
            return Ok(ExitCode::from(2));
        }
    };
    let text = match format {
        crate::cli::Format::Text => {
            use std::io::IsTerminal;
            let color = std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal();
            diff::render::text(&changeset, color)
        }
        crate::cli::Format::Markdown => diff::render::markdown(&changeset),
        crate::cli::Format::Json => diff::render::json(&changeset),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::from(u8::from(changeset.changed)))
}
