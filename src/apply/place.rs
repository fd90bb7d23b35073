//! Where each command of a step runs. Without `--target-host` masgen runs
//! on the host and everything runs here. With it, the host's units and
//! checks run over SSH, while the deploy tool runs here, where the output
//! tree is, and reaches the host itself (`nixos-rebuild --target-host`,
//! or Colmena's node): the same split `masgen plan` prints.

use anyhow::Result;

use super::host::Host;
use crate::plan::{self, Step};

pub struct Places<'a> {
    /// The host: this machine, or `--target-host` over SSH.
    pub host: &'a Host,
    /// This machine, in the directory that holds the output tree.
    pub here: &'a Host,
    /// The options the plan was made with (its command builders).
    pub plan: &'a plan::Options,
}

impl Places<'_> {
    /// Where a command (or gate check) of the plan runs.
    pub fn of(&self, command: &str) -> &Host {
        if self.plan.runs_here(command) {
            self.here
        } else {
            self.host
        }
    }

    /// Where a step's commands run: they share one shell, so one place.
    pub fn of_step(&self, step: &Step) -> Result<&Host> {
        let here: Vec<bool> = step
            .commands
            .iter()
            .map(|c| self.plan.runs_here(c))
            .collect();
        if here.iter().all(|h| *h) && !here.is_empty() {
            return Ok(self.here);
        }
        anyhow::ensure!(
            !here.contains(&true),
            "step `{}` mixes commands for this machine and for the host; this is a bug in masgen's plan",
            step.id
        );
        Ok(self.host)
    }

    /// ` (here)` for a command that runs here while the host is remote.
    pub fn note(&self, command: &str) -> &'static str {
        if self.host.target().is_some() && self.plan.runs_here(command) {
            " (here)"
        } else {
            ""
        }
    }
}

/// How the rebuild steps reach the host, when not by running there.
pub fn deploying_from_here(popts: &plan::Options) -> String {
    match (popts.deploy, &popts.target_host) {
        (plan::Deploy::Colmena, _) => " (deploying with colmena from here)".into(),
        (plan::Deploy::NixosRebuild, Some(t)) => {
            format!(" (deploying from here: nixos-rebuild --target-host {t})")
        }
        (plan::Deploy::NixosRebuild, None) => String::new(),
    }
}

/// apply runs on one machine (here, or `--target-host`): a selection of
/// steps on several hosts (a homeserver split over hosts) cannot run there.
pub fn one_host(steps: &[Step], target: Option<&str>) -> Result<(), String> {
    let mut hosts: Vec<&str> = steps.iter().map(|s| s.host.as_str()).collect();
    hosts.sort_unstable();
    hosts.dedup();
    if hosts.len() > 1 {
        let machine = match target {
            Some(t) => format!("--target-host {t} names one machine"),
            None => "apply runs the steps on this machine".to_string(),
        };
        return Err(format!(
            "{machine}, but the steps run on the hosts {}; apply them a host at a time (--only STEP / --until STEP) on each host itself",
            hosts.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str, host: &str) -> Step {
        Step {
            id: id.into(),
            host: host.into(),
            title: String::new(),
            kind: plan::StepKind::Manual,
            commands: vec![],
            gate: plan::Gate {
                condition: String::new(),
                check: vec![],
                warnings_only: None,
            },
            synapse: plan::Downtime::None,
            undo: plan::Undo {
                possible: true,
                how: String::new(),
            },
            warnings: vec![],
            reaches: plan::HostState::Delegated,
        }
    }

    #[test]
    fn a_target_host_is_one_host_of_the_steps() {
        let one = [step("a", "matrix"), step("b", "matrix")];
        let two = [step("a", "matrix"), step("b", "mas")];
        assert_eq!(one_host(&one, Some("root@m")), Ok(()));
        let here = one_host(&two, None).unwrap_err();
        assert!(
            here.starts_with("apply runs the steps on this machine"),
            "{here}"
        );
        let err = one_host(&two, Some("root@m")).unwrap_err();
        assert!(err.contains("steps run on the hosts mas, matrix"), "{err}");
    }
}
