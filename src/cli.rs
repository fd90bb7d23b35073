//! Command-line arguments, as close to the flags as possible; no I/O here.

use camino::Utf8PathBuf;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "masgen",
    version,
    about = "Compile a Synapse + Matrix Authentication Service spec into a NixOS flake"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print an annotated starter spec.
    Init {
        /// A spec for migrating an existing Synapse with users (default: a fresh install).
        #[arg(long)]
        existing: bool,
    },
    /// Print a new ULID, for `mas.upstream_providers[].id`.
    Ulid,
    /// Validate specs: print diagnostics, exit 0 (ok, maybe warnings) or 2.
    /// Several specs (or a fleet file listing them) are also checked against
    /// each other: hosts, ports on a host, hostnames.
    Check {
        /// Spec files, or fleet files listing specs.
        #[arg(required = true, value_name = "SPEC")]
        specs: Vec<Utf8PathBuf>,
        /// How to print the diagnostics: text (stderr), json (one object per line, stdout)
        /// or github (GitHub Actions workflow commands, stdout: annotations on the PR's lines).
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// Write the flake, host modules, reference renders and plan; several
    /// specs (a fleet) make one flake for all of them.
    Build {
        /// Spec files, or fleet files listing specs.
        #[arg(required = true, value_name = "SPEC")]
        specs: Vec<Utf8PathBuf>,
        /// Output directory.
        #[arg(short, long, default_value = "out")]
        output: Utf8PathBuf,
        /// Write nothing; exit 1 and list stale files when the output differs.
        #[arg(long)]
        check: bool,
    },
    /// Print the ordered activation steps from the host's current state.
    Plan(crate::plan_cmd::PlanArgs),
    /// Write a first `migrate` spec from what the host runs today, with a
    /// report of every input key on stderr.
    Import {
        #[command(subcommand)]
        source: ImportSource,
        /// Write the spec here instead of stdout.
        #[arg(short, long, global = true)]
        output: Option<Utf8PathBuf>,
        /// Replace an existing --output file (it may hold your edits).
        #[arg(long, global = true)]
        force: bool,
        /// The report's format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text, global = true)]
        format: ReportFormat,
    },
    /// Run the plan on the host gate by gate, with a journal; resumable.
    Apply(crate::apply_cmd::ApplyArgs),
    /// Show what a build would change, against a previous tree, a git revision or a system.
    Diff {
        /// Spec files, or fleet files listing specs.
        #[arg(required = true, value_name = "SPEC")]
        specs: Vec<Utf8PathBuf>,
        /// Of a fleet, only this homeserver (its server name or spec file stem),
        /// compared as if built alone; needed for --against-rev and --system.
        #[arg(long, value_name = "NAME")]
        only: Option<String>,
        /// A previous output tree.
        #[arg(long)]
        against: Option<Utf8PathBuf>,
        /// A git revision of the repository holding the spec.
        #[arg(long = "against-rev")]
        against_rev: Option<String>,
        /// A NixOS system root (e.g. /run/current-system). A homeserver split over
        /// hosts takes NAME=ROOT for each host to compare.
        #[arg(long, value_name = "[NAME=]ROOT")]
        system: Vec<String>,
        /// Output directory inside the repository (for --against-rev).
        #[arg(short, long, default_value = "out")]
        output: Utf8PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Create the missing secret files the spec names (random keys, PEM signing keys) in DIR,
    /// never overwriting one and never the pepper; print sops-nix and agenix declarations.
    Secrets {
        spec: Utf8PathBuf,
        /// Where to create them (mode 0700; files 0600), to encrypt from there.
        #[arg(long, value_name = "DIR")]
        out: Utf8PathBuf,
    },
    /// Explain a diagnostic or plan refusal code (e.g. `secret.literal`): why it matters,
    /// what Synapse, MAS and syn2mas do, how to fix it. Without a code, list them all.
    Explain { code: Option<String> },
    /// Print the spec's JSON Schema, for editors (taplo's `#:schema` directive), e.g.
    /// `masgen schema > masgen-spec.schema.json`.
    Schema,
    /// Print a shell completion script (e.g. `source <(masgen completions bash)`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `masgen man > masgen.1`.
    Man {
        /// Write `masgen.1` and one `masgen-<command>.1` per command into DIR instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<Utf8PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportSource {
    /// A NixOS host running services.matrix-synapse: its system root.
    Nixos {
        #[arg(long, default_value = "/run/current-system")]
        system: Utf8PathBuf,
    },
    /// Synapse config files, merged as Synapse merges them (later files win per top-level key).
    Synapse {
        /// The main config file (homeserver.yaml).
        homeserver: Utf8PathBuf,
        /// More config files (repeatable), as `--config-path` would give them.
        #[arg(long = "config")]
        config: Vec<Utf8PathBuf>,
    },
    /// A matrix-docker-ansible-deploy inventory: inventory/host_vars/<host>/vars.yml.
    Mdad { vars: Utf8PathBuf },
}

/// How `masgen import` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
    Github,
}

/// How a plan's rebuild steps deploy a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Deploy {
    /// `nixos-rebuild switch --flake OUT#CONFIGURATION` (with `--target-host`: run here).
    NixosRebuild,
    /// `colmena apply --on CONFIGURATION`, with the flake's `colmena` hive.
    Colmena,
}
