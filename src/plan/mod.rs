//! Stage 6: the ordered activation steps that take a host from where it is
//! to where the spec says, one gated step at a time. Reads, never writes.

mod hosts;
mod layout;
mod render;
mod rollback;
mod safety;
mod state;
mod steps;
mod targets;

use std::collections::BTreeSet;

use serde::Serialize;

pub use render::{render_json, render_markdown, render_text, to_value};
pub use safety::check_safety;
pub use state::{
    detect, locate, HostState, Located, Record, Roots, StateSource, DRY_RUN_STAMP, MIGRATED_STAMP,
};
pub use targets::{HostFlag, PerHost};

use crate::lower::{configuration_name, Phase};
use crate::model::Homeserver;

/// Version of the `plan.json` format (docs/plan.md). 2: gate checks are
/// commands with the result they must have, not only text.
pub const PLAN_SCHEMA_VERSION: u32 = 2;

/// Risks a plan refuses until the operator acknowledges them by name.
pub const ACK_PASSWORD_PROVIDERS: &str = "password-providers-stop-working";
pub const ACK_ROLLBACK: &str = "rollback-breaks-mas-sessions";
/// A claim (`--from`) behind what the system root shows: the plan repeats
/// steps the host has done.
pub const ACK_REPEAT: &str = "plan-repeats-done-steps";
/// Every acknowledgement `--acknowledge` takes.
pub const ACKNOWLEDGEMENTS: [&str; 3] = [ACK_PASSWORD_PROVIDERS, ACK_ROLLBACK, ACK_REPEAT];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    Rebuild,
    RunUnit,
    Check,
    Manual,
}

/// Whether Synapse serves users during a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Downtime {
    /// Synapse keeps serving.
    None,
    /// Synapse restarts (seconds).
    Restart,
    /// Synapse is stopped for the whole step.
    Down,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gate {
    /// What must hold before going on.
    pub condition: String,
    /// Commands whose results show whether it holds: it holds when every
    /// check passes (an empty list: a manual step, nothing to check).
    pub check: Vec<Check>,
    /// For syn2mas steps: when the gate fails and this check passes, only
    /// warnings failed it (exit 11); `masgen apply --accept-warnings` goes on.
    pub warnings_only: Option<Check>,
}

/// The exit status a check command must end with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exit {
    Any,
    Zero,
    Nonzero,
}

/// One machine-checkable part of a gate: a shell command (`sh -c`) and
/// what its result must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub command: String,
    pub exit: Exit,
    /// Lines stdout must have (whole lines, surrounding blanks trimmed).
    pub stdout_has: Vec<String>,
    /// Lines stdout must not have.
    pub stdout_lacks: Vec<String>,
}

impl Check {
    /// Whether a result meets the check; `Err` says why not.
    pub fn judge(&self, code: Option<i32>, stdout: &str) -> Result<(), String> {
        let ok = match self.exit {
            Exit::Any => true,
            Exit::Zero => code == Some(0),
            Exit::Nonzero => code.is_some_and(|c| c != 0),
        };
        if !ok {
            let got = code.map_or("no exit status (killed)".to_string(), |c| c.to_string());
            return Err(format!(
                "exit status {got}, expected {}",
                self.describe_exit()
            ));
        }
        let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
        if let Some(l) = self
            .stdout_has
            .iter()
            .find(|l| !lines.contains(&l.as_str()))
        {
            return Err(format!("stdout has no line `{l}`"));
        }
        if let Some(l) = self
            .stdout_lacks
            .iter()
            .find(|l| lines.contains(&l.as_str()))
        {
            return Err(format!("stdout has the line `{l}`"));
        }
        Ok(())
    }

    fn describe_exit(&self) -> &'static str {
        match self.exit {
            Exit::Any => "any",
            Exit::Zero => "0",
            Exit::Nonzero => "non-zero",
        }
    }

    /// What the check expects, in words (text and markdown plans).
    pub fn expectation(&self) -> String {
        let mut parts = Vec::new();
        if self.exit != Exit::Any {
            parts.push(format!("exits {}", self.describe_exit()));
        }
        for l in &self.stdout_has {
            parts.push(format!("prints `{l}`"));
        }
        for l in &self.stdout_lacks {
            parts.push(format!("does not print `{l}`"));
        }
        parts.join(", ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Undo {
    pub possible: bool,
    pub how: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub id: String,
    pub host: String,
    pub title: String,
    pub kind: StepKind,
    pub commands: Vec<String>,
    pub gate: Gate,
    pub synapse: Downtime,
    pub undo: Undo,
    pub warnings: Vec<String>,
    /// The host's state once the step's gate holds.
    pub reaches: HostState,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub schema_version: u32,
    pub server_name: String,
    pub host: String,
    pub from: HostState,
    pub source: String,
    pub to: HostState,
    pub rollback: bool,
    pub steps: Vec<Step>,
    /// Ids of the first and last steps during which Synapse is down.
    pub downtime: Option<(String, String)>,
    /// Warnings of the spec that apply to the whole plan.
    pub warnings: Vec<String>,
}

/// Why masgen will not produce a plan, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub code: &'static str,
    pub reason: String,
    pub help: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused [{}]: {}\n  help: {}",
            self.code, self.reason, self.help
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// How commands name the output flake (`./out` in `./out#matrix`).
    pub out_dir: String,
    pub rollback: bool,
    pub acknowledged: BTreeSet<String>,
    /// What the system root shows (nothing when none was read).
    pub record: Record,
    /// How rebuild steps deploy a configuration.
    pub deploy: Deploy,
    /// The hosts that are not the machine masgen runs on (`--target-host`):
    /// nixos-rebuild then builds here and activates there.
    pub targets: PerHost,
    /// The hive Colmena reads (`--config`): the output tree's flake by
    /// default; Colmena ≥ 0.5 needs a flake with `colmenaHive` instead.
    pub colmena_config: Option<String>,
}

/// The tool a plan's rebuild steps deploy with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Deploy {
    /// `nixos-rebuild switch --flake OUT#CONFIGURATION`, run on the host
    /// (with `--target-host USER@HOST`: run here, activated there).
    #[default]
    NixosRebuild,
    /// `colmena apply --on CONFIGURATION`, run where the flake is, with the
    /// flake's `colmena` hive (its node of that name deploys to the host).
    Colmena,
}

/// What shows that `nixos-rebuild build` built: the link it leaves in the
/// directory it ran in.
const BUILT_LINK_CHECK: &str = "test -e ./result";

impl Options {
    /// The command that builds `host`'s configuration of `phase` and makes
    /// it the host's.
    pub fn switch_command(&self, host: &str, phase: Phase) -> String {
        let out = &self.out_dir;
        let cfg = configuration_name(host, phase);
        match (self.deploy, self.targets.of(host)) {
            (Deploy::NixosRebuild, None) => format!("nixos-rebuild switch --flake {out}#{cfg}"),
            // nixos-rebuild builds here, copies the closure and activates
            // over SSH (nixpkgs nixos-rebuild.sh and nixos-rebuild-ng).
            (Deploy::NixosRebuild, Some(target)) => {
                let target = shell_word(target);
                format!("nixos-rebuild switch --flake {out}#{cfg} --target-host {target}")
            }
            (Deploy::Colmena, _) => format!(
                "colmena apply --config {} --on {cfg} switch",
                self.colmena_config()
            ),
        }
    }

    /// The command that builds `host`'s configuration of `phase` without
    /// activating it. With `--target-host` too it builds here, where the
    /// switch builds.
    pub fn build_command(&self, host: &str, phase: Phase) -> String {
        let out = &self.out_dir;
        let cfg = configuration_name(host, phase);
        match self.deploy {
            Deploy::NixosRebuild => format!("nixos-rebuild build --flake {out}#{cfg}"),
            Deploy::Colmena => format!(
                "colmena build --config {} --on {cfg}",
                self.colmena_config()
            ),
        }
    }

    /// The check that the build succeeded: nixos-rebuild leaves `./result`;
    /// Colmena keeps no link, and building again is a no-op that succeeds
    /// only when the first build did.
    pub fn built_check(&self, host: &str, phase: Phase) -> String {
        match self.deploy {
            Deploy::NixosRebuild => BUILT_LINK_CHECK.to_string(),
            Deploy::Colmena => self.build_command(host, phase),
        }
    }

    /// The hive Colmena's commands name.
    pub fn colmena_config(&self) -> String {
        match &self.colmena_config {
            Some(path) => shell_word(path),
            None => format!("{}/flake.nix", self.out_dir),
        }
    }

    /// Whether the deploy tool runs where the output tree is and reaches
    /// the host itself (Colmena; nixos-rebuild with `--target-host`).
    pub fn deploys_from_here(&self) -> bool {
        self.deploy == Deploy::Colmena || !self.targets.is_empty()
    }

    /// Whether a command of the plan runs where the output tree is rather
    /// than on the host: the deploy tool's commands and the build's check
    /// when [`Self::deploys_from_here`]; everything else (units, checks of
    /// the services) runs on the host.
    pub fn runs_here(&self, command: &str) -> bool {
        if !self.deploys_from_here() {
            return false;
        }
        let flake = |tool: &str| {
            command.starts_with(tool)
                && (command.contains(&format!(" --flake {}#", self.out_dir))
                    || command.contains(&format!(" --config {} ", self.colmena_config())))
        };
        flake("nixos-rebuild ")
            || flake("colmena ")
            || (self.deploy == Deploy::NixosRebuild && command == BUILT_LINK_CHECK)
    }
}

/// A value the user gave (a host, a path) as one shell word: as it is when
/// plain, else single-quoted.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-[]".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Plans the steps from `from` to the spec's target (or back, with `rollback`).
pub fn plan(
    hs: &Homeserver,
    from: HostState,
    source: &str,
    opts: &Options,
) -> Result<Plan, Refusal> {
    // Synapse's host: the one host, or where the homeserver's users are served.
    let host = hs.synapse.host.clone();
    let l = layout::Layout::of(hs);
    opts.targets.check(HostFlag::TargetHost, hs, &l.order)?;
    safety::check_state(hs.mode, from, opts)?;
    let (to, mut steps) = if opts.rollback {
        rollback::rollback(hs, &host, from, opts)?
    } else {
        steps::forward(hs, &host, from, opts)?
    };
    check_safety(hs.mode, &steps, &opts.record)?;
    let mut warnings = steps::spec_warnings(hs);
    if let Some(shown) = opts.record.shown().filter(|s| *s > from) {
        mark_repeats(hs, &host, shown, opts, &mut steps);
        warnings.insert(0, format!("the plan starts at `{from}` as claimed, although the system shows `{shown}` (acknowledged with --acknowledge {ACK_REPEAT}): steps marked as repeating were done already"));
    }
    let down: Vec<&Step> = steps
        .iter()
        .filter(|s| s.synapse == Downtime::Down)
        .collect();
    let downtime = match (down.first(), down.last()) {
        (Some(a), Some(b)) => Some((a.id.clone(), b.id.clone())),
        _ => None,
    };
    Ok(Plan {
        schema_version: PLAN_SCHEMA_VERSION,
        server_name: hs.server_name.clone(),
        host,
        from,
        source: source.to_string(),
        to,
        rollback: opts.rollback,
        steps,
        downtime,
        warnings,
    })
}

/// Marks the steps a plan from the state the system shows would not have.
fn mark_repeats(hs: &Homeserver, host: &str, shown: HostState, opts: &Options, steps: &mut [Step]) {
    // Only forward plans repeat (safety::check_state refuses the rest).
    let from_shown = steps::forward(hs, host, shown, opts);
    let kept: BTreeSet<String> = from_shown
        .map(|(_, s)| s.into_iter().map(|s| s.id).collect())
        .unwrap_or_default();
    for s in steps.iter_mut().filter(|s| !kept.contains(&s.id)) {
        s.warnings.insert(
            0,
            format!("the system shows this done (`{shown}`): this step repeats it"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(deploy: Deploy, target: Option<&str>) -> Options {
        Options {
            out_dir: "./out".into(),
            deploy,
            targets: PerHost::one(target.map(String::from)),
            ..Default::default()
        }
    }

    #[test]
    fn a_check_judges_exit_status_and_lines() {
        let check = |exit| Check {
            command: String::new(),
            exit,
            stdout_has: vec!["ok".into()],
            stdout_lacks: vec!["bad".into()],
        };
        let nonzero = check(Exit::Nonzero);
        assert!(nonzero.judge(Some(1), "ok").is_ok());
        assert!(nonzero.judge(Some(0), "ok").is_err());
        assert!(nonzero.judge(None, "ok").is_err());
        let zero = check(Exit::Zero);
        assert!(zero.judge(Some(0), " ok \n").is_ok());
        assert!(zero.judge(Some(1), "ok").is_err());
        assert!(check(Exit::Any).judge(Some(7), "ok").is_ok());
        assert!(zero.judge(Some(0), "okay").is_err());
        assert!(zero.judge(Some(0), "ok\nbad").is_err());
    }

    #[test]
    fn a_target_host_is_one_shell_word() {
        let o = opts(Deploy::NixosRebuild, Some("root@h; rm -rf /"));
        assert_eq!(
            o.switch_command("m", Phase::Final),
            "nixos-rebuild switch --flake ./out#m --target-host 'root@h; rm -rf /'"
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("root@[2001:db8::1]"), "root@[2001:db8::1]");
    }

    #[test]
    fn what_runs_here() {
        let local = opts(Deploy::NixosRebuild, None);
        assert!(!local.runs_here(&local.switch_command("m", Phase::Final)));
        let remote = opts(Deploy::NixosRebuild, Some("root@h"));
        assert!(remote.runs_here(&remote.switch_command("m", Phase::Final)));
        assert!(remote.runs_here(&remote.build_command("m", Phase::Final)));
        assert!(remote.runs_here(&remote.built_check("m", Phase::Final)));
        assert!(!remote.runs_here("systemctl start masgen-backup.service"));
        // The rollback's switch to a generation runs on the host.
        assert!(!remote.runs_here("nixos-rebuild switch --rollback"));
        let colmena = opts(Deploy::Colmena, None);
        assert!(colmena.runs_here(&colmena.switch_command("m", Phase::Final)));
        assert!(colmena.runs_here(&colmena.built_check("m", Phase::Final)));
        assert!(!colmena.runs_here("test -e ./result"));
    }
}
