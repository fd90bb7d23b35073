//! `masgen apply`: its flags, and the signal handlers that let a step's
//! end reach the journal when the run is cut off.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Result;
use camino::Utf8PathBuf;
use masgen::apply::{self, DEFAULT_JOURNAL_DIR, DEFAULT_SYSTEM};

/// Run the plan on the host, gate by gate, with a journal (see docs/guide.md).
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The spec, or a fleet's specs (or fleet file) with --homeserver.
    #[arg(required = true, value_name = "SPEC")]
    specs: Vec<Utf8PathBuf>,
    /// Of a fleet, the homeserver to apply: its server name or its spec's
    /// file stem (as `masgen plan --only`). Needed when the fleet has several.
    #[arg(long, value_name = "NAME")]
    homeserver: Option<String>,
    /// How the rebuild steps deploy a configuration, as for `masgen plan`.
    #[arg(long, value_enum, default_value_t = crate::cli::Deploy::NixosRebuild)]
    deploy: crate::cli::Deploy,
    /// The output tree `masgen build` wrote (the plan's commands name it).
    #[arg(short, long, default_value = "out")]
    output: Utf8PathBuf,
    /// The host's system root [default: /run/current-system, or $MASGEN_APPLY_SYSTEM].
    #[arg(long)]
    system: Option<String>,
    /// Where the journal goes on the host [default: /var/lib/masgen/journal, or $MASGEN_APPLY_JOURNAL].
    #[arg(long)]
    journal: Option<String>,
    /// The host, when it is not this machine (e.g. root@matrix.example.com): its units,
    /// checks and journal over SSH; nixos-rebuild runs here with --target-host.
    /// A homeserver split over hosts needs NAME=USER@HOST for each host of the spec.
    #[arg(long = "target-host", value_name = "[NAME=]USER@HOST")]
    target_host: Vec<String>,
    /// With --deploy colmena: the hive Colmena reads (its --config) [default: OUT/flake.nix].
    #[arg(long = "colmena-config", value_name = "PATH")]
    colmena_config: Option<String>,
    /// Confirm the steps with downtime or without a clean undo in advance.
    #[arg(long)]
    yes: bool,
    /// Go on after syn2mas warnings (exit 11), once you have read them.
    #[arg(long = "accept-warnings")]
    accept_warnings: bool,
    /// Stop after this step.
    #[arg(long, value_name = "STEP")]
    until: Option<String>,
    /// Run only this step.
    #[arg(long, value_name = "STEP")]
    only: Option<String>,
    /// Print what would run; run nothing, write nothing.
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// Apply the rollback plan (back to Synapse's own logins).
    #[arg(long)]
    rollback: bool,
    /// Acknowledge a risk the plan would otherwise refuse (repeatable), as for `masgen plan`.
    #[arg(long = "acknowledge", value_name = "RISK")]
    acknowledge: Vec<String>,
}

pub fn run(args: ApplyArgs) -> Result<ExitCode> {
    for ack in &args.acknowledge {
        anyhow::ensure!(
            masgen::plan::ACKNOWLEDGEMENTS.contains(&ack.as_str()),
            "unknown acknowledgement `{ack}`; known: {}",
            masgen::plan::ACKNOWLEDGEMENTS.join(", ")
        );
    }
    anyhow::ensure!(
        args.colmena_config.is_none() || args.deploy == crate::cli::Deploy::Colmena,
        "--colmena-config names Colmena's hive: it goes with --deploy colmena"
    );
    let Some(files) = crate::fleet_cmd::resolve(&args.specs)? else {
        return Ok(ExitCode::from(2));
    };
    let Some((members, chosen)) = crate::fleet_cmd::load_one(
        &files,
        "--homeserver",
        args.homeserver.as_deref(),
        "nothing applied",
    )?
    else {
        return Ok(ExitCode::from(2));
    };
    // The commands use the flake in out/: it must be what these specs build.
    let refs: Vec<&masgen::Checked> = members.iter().collect();
    let (_, tree) = masgen::fleet::build_tree(&refs, &masgen::flake_ref(&args.output))?;
    let built = crate::fleet_cmd::spec_args(&args.specs);
    let report = masgen::write::write_tree(&args.output, &tree, true).map_err(|e| {
        anyhow::anyhow!(
            "{} cannot be checked against the spec: {e:#}; build it first (`masgen build {built} -o {0}`), then apply",
            args.output,
        )
    })?;
    if !report.is_clean() {
        eprintln!(
            "refused: {} is not what `masgen build {built} -o {0}` writes ({} missing, {} stale, {} extra); build it first, then apply",
            args.output,
            report.created.len(),
            report.updated.len(),
            report.removed.len()
        );
        return Ok(ExitCode::from(2));
    }
    let checked = &members[chosen];
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let opts = apply::Options {
        output: args.output,
        system: args
            .system
            .or_else(|| env("MASGEN_APPLY_SYSTEM"))
            .unwrap_or_else(|| DEFAULT_SYSTEM.into()),
        journal_dir: args
            .journal
            .or_else(|| env("MASGEN_APPLY_JOURNAL"))
            .unwrap_or_else(|| DEFAULT_JOURNAL_DIR.into()),
        targets: masgen::plan::PerHost::parse(
            masgen::plan::HostFlag::TargetHost,
            &args.target_host,
        )
        .map_err(anyhow::Error::msg)?,
        deploy: match args.deploy {
            crate::cli::Deploy::NixosRebuild => masgen::plan::Deploy::NixosRebuild,
            crate::cli::Deploy::Colmena => masgen::plan::Deploy::Colmena,
        },
        colmena_config: args.colmena_config,
        path_prefix: env("MASGEN_APPLY_PATH"),
        yes: args.yes,
        accept_warnings: args.accept_warnings,
        until: args.until,
        only: args.only,
        dry_run: args.dry_run,
        rollback: args.rollback,
        acknowledged: args.acknowledge.into_iter().collect(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        // A second signal ends masgen at once (e.g. Ctrl-C at a prompt).
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let outcome = apply::apply(&checked.homeserver, &opts, stop)?;
    Ok(ExitCode::from(outcome.code()))
}
