//! One function per subcommand; each returns the process exit code.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use camino::Utf8Path;

use masgen::diag::Rendered;
use masgen::{build_tree, check_file, write};

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Init { existing } => init(existing),
        Command::Check { spec } => check(&spec),
        Command::Build {
            spec,
            output,
            check,
        } => build(&spec, &output, check),
        Command::Plan { .. } => anyhow::bail!("`masgen plan` is not implemented yet"),
        Command::Diff { .. } => anyhow::bail!("`masgen diff` is not implemented yet"),
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

fn init(existing: bool) -> Result<ExitCode> {
    let text = masgen::starter_spec(existing);
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn check(spec: &Utf8Path) -> Result<ExitCode> {
    match check_file(spec)? {
        Ok(checked) => {
            print_diagnostics(&checked.warnings);
            eprintln!("{spec}: ok ({})", summary(&checked.warnings));
            Ok(ExitCode::SUCCESS)
        }
        Err(diags) => {
            print_diagnostics(&diags);
            eprintln!("{spec}: failed ({}); nothing was written", summary(&diags));
            Ok(ExitCode::from(2))
        }
    }
}

fn build(spec: &Utf8Path, output: &Utf8Path, check_only: bool) -> Result<ExitCode> {
    let checked = match check_file(spec)? {
        Ok(c) => c,
        Err(diags) => {
            print_diagnostics(&diags);
            eprintln!("{spec}: failed ({}); nothing was written", summary(&diags));
            return Ok(ExitCode::from(2));
        }
    };
    print_diagnostics(&checked.warnings);
    let (lowered, tree) = build_tree(&checked)?;
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
    Ok(ExitCode::SUCCESS)
}
