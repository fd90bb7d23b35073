//! One function per subcommand; each returns the process exit code.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use camino::Utf8Path;

use masgen::diag::Report;
use masgen::{build_tree_for, check_file, write};

use crate::cli::{CheckFormat, Cli, Command};

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Init { existing } => init(existing),
        Command::Ulid => {
            println!("{}", ulid::Ulid::new());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { specs, format } => {
            let Some(files) = crate::fleet_cmd::resolve(&specs)? else {
                return Ok(ExitCode::from(2));
            };
            match files.as_slice() {
                [spec] => check(spec, format),
                _ => crate::fleet_cmd::check(&files, format),
            }
        }
        Command::Build {
            specs,
            output,
            check,
        } => build(&specs, &output, check),
        Command::Plan(args) => crate::plan_cmd::plan(args),
        Command::Import {
            source,
            output,
            force,
            format,
        } => import(source, output.as_deref(), force, format),
        Command::Apply(args) => crate::apply_cmd::run(args),
        Command::Diff {
            specs,
            only,
            against,
            against_rev,
            system,
            output,
            format,
        } => {
            let Some(files) = crate::fleet_cmd::resolve(&specs)? else {
                return Ok(ExitCode::from(2));
            };
            let spec = match (files.as_slice(), only) {
                ([spec], _) => spec.clone(),
                // A fleet's tree holds every homeserver: one built alone differs.
                (_, Some(_)) if against.is_some() => anyhow::bail!(
                    "--against compares the whole fleet's tree: drop --only (it is for --against-rev and --system)"
                ),
                (_, Some(name)) => match crate::fleet_cmd::only_spec(&files, &name)? {
                    Some(spec) => spec,
                    None => return Ok(ExitCode::from(2)),
                },
                (_, None) => {
                    return crate::fleet_cmd::diff(&files, against, against_rev, system, format)
                }
            };
            diff(&spec, against, against_rev, system, &output, format)
        }
        Command::Secrets { spec, out } => secrets(&spec, &out),
        Command::Explain { code } => explain(code.as_deref()),
        Command::Schema => {
            let schema = masgen::spec::schema::json_schema();
            std::io::stdout().lock().write_all(schema.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => completions(shell),
        Command::Man { out_dir } => man(out_dir.as_deref()),
    }
}

fn secrets(spec: &Utf8Path, dir: &Utf8Path) -> Result<ExitCode> {
    use masgen::secrets::{self, Outcome};
    let Some(checked) = load(spec, "no secret was made")? else {
        return Ok(ExitCode::from(2));
    };
    let files = secrets::secret_files(&checked.homeserver);
    let outcomes = secrets::create_missing(&files, dir)?;
    let mut problems = 0;
    for (f, outcome) in files.iter().zip(&outcomes) {
        let target = dir.join(f.name());
        match outcome {
            Outcome::Created => eprintln!("created {target} ({}) for {}", f.describe(), f.key),
            Outcome::Kept { problem: None } => eprintln!("kept {target}: it exists"),
            Outcome::Kept { problem: Some(p) } => {
                problems += 1;
                eprintln!("warning: kept {target}, but {p}; fix or remove it and run again");
            }
            Outcome::OnHost => eprintln!("skipped: {} for {}: {}", f.path, f.key, f.describe()),
            Outcome::External => eprintln!(
                "not made: {target} for {} ({}); create it yourself",
                f.key,
                f.describe()
            ),
        }
    }
    std::io::stdout()
        .lock()
        .write_all(secrets::deploy_lines(&files, dir).as_bytes())?;
    Ok(if problems > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn explain(code: Option<&str>) -> Result<ExitCode> {
    use masgen::explain;
    let mut out = std::io::stdout().lock();
    let Some(code) = code else {
        // The list: each code with the first paragraph of its explanation.
        for (code, text) in explain::all() {
            let first = text.split("\n\n").next().unwrap_or("");
            let first: Vec<&str> = first.split_whitespace().collect();
            writeln!(out, "{code:36} {}", first.join(" "))?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    // Accept the code as printed in a diagnostic: `error[secret.literal]`.
    let code = code
        .trim_start_matches("error[")
        .trim_start_matches("warning[");
    let code = code.trim_start_matches("refused [").trim_end_matches(']');
    match explain::explain(code) {
        Some(text) => {
            writeln!(out, "{code}\n\n{text}")?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let similar = explain::similar(code);
            let hint = if similar.is_empty() {
                "`masgen explain` lists every code".to_string()
            } else {
                format!("codes of that family: {}", similar.join(", "))
            };
            eprintln!("error: no explanation for `{code}`; {hint}");
            Ok(ExitCode::from(2))
        }
    }
}

fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    // Into memory first: `generate` panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "masgen", &mut script);
    std::io::stdout().lock().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}

fn man(out_dir: Option<&Utf8Path>) -> Result<ExitCode> {
    let cmd = <Cli as clap::CommandFactory>::command();
    match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {dir}: {e}"))?;
            clap_mangen::generate_to(cmd, dir)
                .map_err(|e| anyhow::anyhow!("cannot write the man pages into {dir}: {e}"))?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            std::io::stdout().lock().write_all(&page)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_diagnostics(diags: &Report) {
    let text = diags.to_text(stderr_color());
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

fn summary(diags: &Report) -> String {
    diags.summary()
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

fn check(spec: &Utf8Path, format: CheckFormat) -> Result<ExitCode> {
    use masgen::diag::format;
    let render = match format {
        CheckFormat::Text => return check_text(spec),
        CheckFormat::Json => format::json_lines,
        CheckFormat::Github => format::github,
    };
    // Every diagnostic: the cap of the text format is for a reader.
    let result = match masgen::check_file_all(spec) {
        Ok(result) => result,
        Err(err) => {
            if format == CheckFormat::Github {
                println!("::error::{}", format::escape_data(&format!("{err:#}")));
            }
            return Err(err);
        }
    };
    // stdout holds only the rendered diagnostics; the rest goes to stderr.
    let (diags, ok) = match &result {
        Ok(checked) => (&checked.warnings, true),
        Err(diags) => (diags, false),
    };
    std::io::stdout()
        .lock()
        .write_all(render(&diags[..]).as_bytes())?;
    if let Ok(checked) = &result {
        eprintln!("note: {}", pin_note(checked));
    }
    eprintln!(
        "{spec}: {} ({})",
        if ok { "ok" } else { "failed" },
        summary(diags)
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn check_text(spec: &Utf8Path) -> Result<ExitCode> {
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

fn build(specs: &[camino::Utf8PathBuf], output: &Utf8Path, check_only: bool) -> Result<ExitCode> {
    let Some(files) = crate::fleet_cmd::resolve(specs)? else {
        return Ok(ExitCode::from(2));
    };
    let (tree, fleet, lowered) = match files.as_slice() {
        [spec] => {
            let Some(checked) = load(spec, "nothing was written")? else {
                return Ok(ExitCode::from(2));
            };
            let (lowered, tree) = build_tree_for(&checked, &masgen::flake_ref(output))?;
            eprintln!("note: {}", pin_note(&checked));
            crate::fleet_cmd::print_dropped(std::slice::from_ref(&lowered))?;
            (tree, None, vec![lowered])
        }
        _ => {
            let Some(fleet) = crate::fleet_cmd::load(&files, "nothing was written")? else {
                return Ok(ExitCode::from(2));
            };
            let (lowered, tree) = crate::fleet_cmd::build_tree(&fleet, output)?;
            (tree, Some(fleet), lowered)
        }
    };
    let spec = crate::fleet_cmd::spec_args(specs);
    // The lowering is not needed any more: freed while the tree is written.
    let report = masgen::par::both(
        move || drop(lowered),
        || write::write_tree(output, &tree, check_only),
    )
    .1?;
    // The process ends here: freeing a fleet's specs and tree (100 MB in
    // small pieces) one by one takes longer than the rest of the exit.
    std::mem::forget(tree);
    std::mem::forget(fleet);
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

pub(crate) fn diff(
    spec: &Utf8Path,
    against: Option<camino::Utf8PathBuf>,
    against_rev: Option<String>,
    system: Vec<String>,
    output: &Utf8Path,
    format: crate::cli::Format,
) -> Result<ExitCode> {
    use masgen::diff::{self, Baseline, Outcome};
    use masgen::plan::{HostFlag, PerHost};
    let roots = PerHost::parse(HostFlag::System, &system).map_err(anyhow::Error::msg)?;
    let system = (!roots.is_empty()).then_some(());
    let baseline = match (against, against_rev, system) {
        (Some(dir), None, None) => Baseline::Tree(dir),
        (None, Some(rev), None) => Baseline::Rev(rev),
        (None, None, Some(())) => Baseline::System(Default::default()),
        _ => anyhow::bail!(
            "`masgen diff` needs exactly one of --against DIR, --against-rev REV, --system ROOT"
        ),
    };
    let Some(checked) = load(spec, "nothing compared")? else {
        return Ok(ExitCode::from(2));
    };
    // Each host against its own root: a bare root is the one host's.
    let baseline = match baseline {
        Baseline::System(_) => {
            let hs = &checked.homeserver;
            if let Err(refusal) = roots.check(HostFlag::System, hs, &[]) {
                eprintln!("{refusal}");
                return Ok(ExitCode::from(2));
            }
            Baseline::System(
                hs.hosts
                    .keys()
                    .filter_map(|h| roots.of(h).map(|r| (h.clone(), r.into())))
                    .collect(),
            )
        }
        other => other,
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
            let color = stdout_color();
            diff::render::text(&changeset, color)
        }
        crate::cli::Format::Markdown => diff::render::markdown(&changeset),
        crate::cli::Format::Json => diff::render::json(&changeset),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::from(u8::from(changeset.changed)))
}

fn import(
    source: crate::cli::ImportSource,
    output: Option<&Utf8Path>,
    force: bool,
    format: crate::cli::ReportFormat,
) -> Result<ExitCode> {
    use crate::cli::ImportSource;
    use masgen::import;
    if let Some(path) = output {
        anyhow::ensure!(
            force || !path.exists(),
            "{path} exists (it may hold your edits); give another --output, or --force to replace it"
        );
    }
    let name = output.map(|o| o.as_str()).unwrap_or("spec.toml");
    let imported = match source {
        ImportSource::Nixos { system } => import::nixos::import(&system, name),
        ImportSource::Synapse { homeserver, config } => {
            let files: Vec<_> = std::iter::once(homeserver).chain(config).collect();
            import::synapse::import(&files, name)
        }
        ImportSource::Mdad { vars } => import::mdad::import(&vars, name),
    }?;
    let report = match format {
        crate::cli::ReportFormat::Json => import::render_json(&imported.report),
        crate::cli::ReportFormat::Text => import::render_text(&imported.report),
    };
    match output {
        Some(path) => {
            masgen::write::write_file(path, imported.spec.as_bytes())?;
        }
        None => std::io::stdout()
            .lock()
            .write_all(imported.spec.as_bytes())?,
    }
    std::io::stderr().lock().write_all(report.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Whether to colour stdout, by the common conventions: `NO_COLOR` (any
/// non-empty value) turns colour off (https://no-color.org); otherwise
/// `CLICOLOR_FORCE` (non-empty, not `0`) turns it on even when stdout is not
/// a terminal, e.g. in CI logs (https://bixense.com/clicolors/); otherwise
/// colour when stdout is a terminal.
pub(crate) fn stdout_color() -> bool {
    use std::io::IsTerminal;
    color_for(std::io::stdout().is_terminal())
}

/// The same for stderr, where diagnostics go.
fn stderr_color() -> bool {
    use std::io::IsTerminal;
    color_for(std::io::stderr().is_terminal())
}

fn color_for(terminal: bool) -> bool {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    decide_color(
        var("NO_COLOR").is_some(),
        var("CLICOLOR_FORCE").is_some_and(|v| v != "0"),
        terminal,
    )
}

fn decide_color(no_color: bool, force: bool, terminal: bool) -> bool {
    !no_color && (force || terminal)
}

#[cfg(test)]
mod tests {
    use super::decide_color;

    #[test]
    fn no_color_beats_clicolor_force_which_beats_no_terminal() {
        assert!(!decide_color(true, true, true));
        assert!(!decide_color(true, false, true));
        assert!(decide_color(false, true, false));
        assert!(decide_color(false, false, true));
        assert!(!decide_color(false, false, false));
    }
}
