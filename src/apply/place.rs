//! Where each command of a step runs. Without `--target-host` masgen runs
//! on the host and everything runs here. With it, each host's units and
//! checks run over SSH, while the deploy tool runs here, where the output
//! tree is, and reaches the host itself (`nixos-rebuild --target-host`,
//! or Colmena's node): the same split `masgen plan` prints. A homeserver
//! split over hosts is applied from here with a target for each host.

use anyhow::Result;

use std::collections::BTreeMap;

use super::host::Host;
use crate::plan::{self, Step};

pub struct Places<'a> {
    /// Each host of the homeserver by its name in the spec: this machine,
    /// or its `--target-host` over SSH.
    pub hosts: &'a BTreeMap<String, Host>,
    /// This machine, in the directory that holds the output tree.
    pub here: &'a Host,
    /// The options the plan was made with (its command builders).
    pub plan: &'a plan::Options,
}

impl Places<'_> {
    /// The host named `name` (the spec's hosts are all there).
    pub fn host(&self, name: &str) -> Result<&Host> {
        self.hosts.get(name).ok_or_else(|| {
            anyhow::anyhow!("no host `{name}` in the spec; this is a bug in masgen's plan")
        })
    }

    /// Where a command (or gate check) of a step on `host` runs.
    pub fn of(&self, host: &str, command: &str) -> Result<&Host> {
        if self.plan.runs_here(command) {
            Ok(self.here)
        } else {
            self.host(host)
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
        self.host(&step.host)
    }

    /// ` (here)` for a command that runs here while the host is remote.
    pub fn note(&self, host: &str, command: &str) -> &'static str {
        let remote = self.hosts.get(host).is_some_and(|h| h.target().is_some());
        if remote && self.plan.runs_here(command) {
            " (here)"
        } else {
            ""
        }
    }

    /// The hosts, as the run's first line names them.
    pub fn describe(&self) -> String {
        if self.hosts.len() == 1 {
            return self.hosts.values().map(Host::describe).collect();
        }
        self.hosts
            .iter()
            .map(|(name, h)| format!("{name} ({})", h.describe()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How the rebuild steps reach the host, when not by running there.
pub fn deploying_from_here(popts: &plan::Options) -> String {
    let t = &popts.targets;
    match (popts.deploy, &t.one) {
        (plan::Deploy::Colmena, _) => " (deploying with colmena from here)".into(),
        (plan::Deploy::NixosRebuild, Some(one)) => {
            format!(" (deploying from here: nixos-rebuild --target-host {one})")
        }
        (plan::Deploy::NixosRebuild, None) if !t.each.is_empty() => {
            " (deploying from here: nixos-rebuild --target-host to each host)".into()
        }
        (plan::Deploy::NixosRebuild, None) => String::new(),
    }
}
