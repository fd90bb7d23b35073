//! `masgen plan`: one homeserver from where its host is, or every
//! homeserver of a fleet (`--only NAME` for one of them).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use camino::Utf8PathBuf;

use masgen::plan::{self, Plan, StateSource};

use crate::cli::{Deploy, Format};

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Spec files, or fleet files listing specs.
    #[arg(required = true, value_name = "SPEC")]
    pub specs: Vec<Utf8PathBuf>,
    /// Of a fleet, only this homeserver: its server name or its spec's file stem.
    #[arg(long, visible_alias = "homeserver", value_name = "NAME")]
    pub only: Option<String>,
    /// How the rebuild steps deploy a configuration.
    #[arg(long, value_enum, default_value_t = Deploy::NixosRebuild)]
    pub deploy: Deploy,
    /// The host, when it is not the machine the plan runs on: nixos-rebuild
    /// builds here and activates there (`--target-host USER@HOST`). A homeserver
    /// split over hosts takes NAME=USER@HOST for each host of the spec.
    #[arg(long = "target-host", value_name = "[NAME=]USER@HOST")]
    pub target_host: Vec<String>,
    /// With --deploy colmena: the hive Colmena reads (its --config) [default: OUT/flake.nix];
    /// Colmena >= 0.5 needs a flake with a `colmenaHive` output (docs/guide.md).
    #[arg(long = "colmena-config", value_name = "PATH")]
    pub colmena_config: Option<String>,
    /// The current state as you claim it: fresh, synapse-only, mas-prepared, migrated,
    /// delegated. With --system, the system must agree.
    #[arg(long)]
    pub from: Option<String>,
    /// Claim the current state from a previous output tree's manifest.
    #[arg(long)]
    pub against: Option<Utf8PathBuf>,
    /// Read the current state from a NixOS system root (e.g. /run/current-system):
    /// its evidence beats --from and --against. A homeserver split over hosts
    /// takes NAME=ROOT for Synapse's host and MAS's host.
    #[arg(long, value_name = "[NAME=]ROOT")]
    pub system: Vec<String>,
    /// Output directory the commands refer to.
    #[arg(short, long, default_value = "out")]
    pub output: Utf8PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Plan the way back to Synapse's own logins (`synapse-only`) instead.
    #[arg(long)]
    pub rollback: bool,
    /// Acknowledge a risk the plan would otherwise refuse (repeatable):
    /// `password-providers-stop-working`, `rollback-breaks-mas-sessions`, `plan-repeats-done-steps`.
    #[arg(long = "acknowledge", value_name = "RISK")]
    pub acknowledge: Vec<String>,
}

pub fn plan(args: PlanArgs) -> Result<ExitCode> {
    for ack in &args.acknowledge {
        if !plan::ACKNOWLEDGEMENTS.contains(&ack.as_str()) {
            anyhow::bail!(
                "unknown acknowledgement `{ack}`; known: {}",
                plan::ACKNOWLEDGEMENTS.join(", ")
            );
        }
    }
    anyhow::ensure!(
        args.colmena_config.is_none() || args.deploy == Deploy::Colmena,
        "--colmena-config names Colmena's hive: it goes with --deploy colmena"
    );
    let Some(files) = crate::fleet_cmd::resolve(&args.specs)? else {
        return Ok(ExitCode::from(2));
    };
    let selected: Vec<masgen::Checked> = match files.as_slice() {
        [spec] => {
            let Some(checked) = crate::commands::load(spec, "no plan")? else {
                return Ok(ExitCode::from(2));
            };
            if let Some(name) = &args.only {
                crate::fleet_cmd::check_name(spec, &checked, "--only", name)?;
            }
            vec![checked]
        }
        _ => {
            let Some(mut fleet) = crate::fleet_cmd::load(&files, "no plan")? else {
                return Ok(ExitCode::from(2));
            };
            let keep: Vec<String> = fleet
                .select(args.only.as_deref())
                .map_err(anyhow::Error::msg)?
                .iter()
                .map(|c| c.source.name.clone())
                .collect();
            fleet
                .specs
                .drain(..)
                .filter_map(|s| s.result.ok())
                .filter(|c| keep.contains(&c.source.name))
                .collect()
        }
    };
    let plans = match selected.as_slice() {
        [one] => match plan_one(one, &args)? {
            Ok(p) => vec![p],
            Err(code) => return Ok(code),
        },
        many => match plan_fleet(many, &args)? {
            Ok(plans) => plans,
            Err(code) => return Ok(code),
        },
    };
    let text = render(&plans, args.format);
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn options(args: &PlanArgs, record: plan::Record) -> Result<plan::Options> {
    let targets = plan::PerHost::parse(plan::HostFlag::TargetHost, &args.target_host)
        .map_err(anyhow::Error::msg)?;
    Ok(plan::Options {
        out_dir: masgen::flake_ref(&args.output),
        rollback: args.rollback,
        acknowledged: args.acknowledge.iter().cloned().collect(),
        record,
        deploy: match args.deploy {
            Deploy::NixosRebuild => plan::Deploy::NixosRebuild,
            Deploy::Colmena => plan::Deploy::Colmena,
        },
        targets,
        colmena_config: args.colmena_config.clone(),
    })
}

/// One homeserver, from where its host is (`--from`, `--against`, `--system`).
fn plan_one(checked: &masgen::Checked, args: &PlanArgs) -> Result<Result<Plan, ExitCode>> {
    let claim = match (&args.from, &args.against) {
        (Some(_), Some(_)) => anyhow::bail!(
            "give one of --from and --against: both say where the host is (add --system to check either against the host)"
        ),
        (Some(f), None) => Some(StateSource::Flag(f)),
        (None, Some(a)) => Some(StateSource::Manifest(a)),
        (None, None) => None,
    };
    let hs = &checked.homeserver;
    let system =
        plan::PerHost::parse(plan::HostFlag::System, &args.system).map_err(anyhow::Error::msg)?;
    // State lives on Synapse's host (its unit, whether it delegates) and on
    // MAS's (its unit, the stamps of its tasks).
    let mut needed = vec![hs.synapse.host.clone(), hs.mas.host.clone()];
    needed.dedup();
    if let Err(refusal) = system.check(plan::HostFlag::System, hs, &needed) {
        eprintln!("{refusal}");
        return Ok(Err(ExitCode::from(2)));
    }
    let roots = match (system.of(&hs.synapse.host), system.of(&hs.mas.host)) {
        (Some(s), Some(m)) => Some((Utf8PathBuf::from(s), Utf8PathBuf::from(m))),
        _ => None,
    };
    let located = plan::locate(
        claim.as_ref(),
        roots
            .as_ref()
            .map(|(s, m)| plan::Roots { synapse: s, mas: m }),
    )?;
    let opts = options(args, located.record)?;
    Ok(
        plan::plan(hs, located.state, &located.how, &opts).map_err(|refusal| {
            eprintln!("{refusal}");
            ExitCode::from(2)
        }),
    )
}

/// Every selected homeserver of a fleet, each from where a host of its
/// spec's mode starts: where each host is cannot be one flag for all.
fn plan_fleet(
    selected: &[masgen::Checked],
    args: &PlanArgs,
) -> Result<Result<Vec<Plan>, ExitCode>> {
    if args.from.is_some() || args.against.is_some() || !args.system.is_empty() {
        anyhow::bail!(
            "--from, --against and --system say where one host is: with several homeservers, add --only NAME (a server name or spec file stem)"
        );
    }
    if !args.target_host.is_empty() {
        anyhow::bail!(
            "--target-host names the hosts of one homeserver: with several homeservers, add --only NAME (a server name or spec file stem)"
        );
    }
    let opts = options(args, plan::Record::default())?;
    let mut plans = Vec::new();
    let mut refused = false;
    for checked in selected {
        let hs = &checked.homeserver;
        let from = match hs.mode {
            masgen::model::Mode::Fresh => plan::HostState::Fresh,
            masgen::model::Mode::Migrate => plan::HostState::SynapseOnly,
        };
        match plan::plan(hs, from, masgen::OWN_PLAN_SOURCE, &opts) {
            Ok(p) => plans.push(p),
            Err(refusal) => {
                refused = true;
                eprintln!("{}: {refusal}", hs.server_name);
            }
        }
    }
    Ok(if refused {
        Err(ExitCode::from(2))
    } else {
        Ok(plans)
    })
}

fn render(plans: &[Plan], format: Format) -> String {
    match (plans, format) {
        ([one], Format::Text) => plan::render_text(one, crate::commands::stdout_color()),
        ([one], Format::Markdown) => plan::render_markdown(one),
        ([one], Format::Json) => plan::render_json(one),
        (many, Format::Json) => {
            let values: Vec<serde_json::Value> = many
                .iter()
                .map(|p| serde_json::from_str(&plan::render_json(p)).unwrap_or_default())
                .collect();
            let value = serde_json::json!({
                "schema_version": plan::PLAN_SCHEMA_VERSION,
                "plans": values,
            });
            let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
            text.push('\n');
            text
        }
        (many, format) => {
            let color = crate::commands::stdout_color();
            let parts: Vec<String> = many
                .iter()
                .map(|p| match format {
                    Format::Markdown => plan::render_markdown(p),
                    _ => plan::render_text(p, color),
                })
                .collect();
            parts.join("\n")
        }
    }
}
