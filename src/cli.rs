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
    /// Validate a spec: print diagnostics, exit 0 (ok, maybe warnings) or 2.
    Check { spec: Utf8PathBuf },
    /// Write the flake, host modules, reference renders and plan.
    Build {
        spec: Utf8PathBuf,
        /// Output directory.
        #[arg(short, long, default_value = "out")]
        output: Utf8PathBuf,
        /// Write nothing; exit 1 and list stale files when the output differs.
        #[arg(long)]
        check: bool,
    },
    /// Print the ordered activation steps from the host's current state.
    Plan {
        spec: Utf8PathBuf,
        /// The current state as you claim it: fresh, synapse-only, mas-prepared, migrated,
        /// delegated. With --system, the system must agree.
        #[arg(long)]
        from: Option<String>,
        /// Claim the current state from a previous output tree's manifest.
        #[arg(long)]
        against: Option<Utf8PathBuf>,
        /// Read the current state from a NixOS system root (e.g. /run/current-system):
        /// its evidence beats --from and --against.
        #[arg(long)]
        system: Option<Utf8PathBuf>,
        /// Output directory the commands refer to.
        #[arg(short, long, default_value = "out")]
        output: Utf8PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Plan the way back to Synapse's own logins (`synapse-only`) instead.
        #[arg(long)]
        rollback: bool,
        /// Acknowledge a risk the plan would otherwise refuse (repeatable):
        /// `password-providers-stop-working`, `rollback-breaks-mas-sessions`, `plan-repeats-done-steps`.
        #[arg(long = "acknowledge", value_name = "RISK")]
        acknowledge: Vec<String>,
    },
    /// Run the plan on the host gate by gate, with a journal; resumable.
    Apply(crate::apply_cmd::ApplyArgs),
    /// Show what a build would change, against a previous tree, a git revision or a system.
    Diff {
        spec: Utf8PathBuf,
        /// A previous output tree.
        #[arg(long)]
        against: Option<Utf8PathBuf>,
        /// A git revision of the repository holding the spec.
        #[arg(long = "against-rev")]
        against_rev: Option<String>,
        /// A NixOS system root (e.g. /run/current-system).
        #[arg(long)]
        system: Option<Utf8PathBuf>,
        /// Output directory inside the repository (for --against-rev).
        #[arg(short, long, default_value = "out")]
        output: Utf8PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}
