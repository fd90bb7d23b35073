//! `flake.nixpkgs`: what the pinned nixpkgs deploys must agree with the spec.
//! The Synapse masgen designs for is the one the pin ships, and an ACME
//! module that needs an account address gets one. The table of branches is
//! model/nixpkgs.rs.

use super::*;
use crate::model::nixpkgs::{self, Branch};

/// The pin as validated: its flake reference and the Synapse version text
/// `check_synapse` parses (written in the spec, or derived from the pin).
pub(super) struct Pin {
    pub url: String,
    pub synapse_version: String,
}

pub(super) fn check_pin(c: &mut Checker, spec: &SpecFile) -> Pin {
    let url = spec
        .flake
        .nixpkgs
        .clone()
        .unwrap_or_else(nixpkgs::default_url);
    let branch = nixpkgs::branch_of(&url);
    if let Some(b) = branch.filter(|b| b.end_of_life) {
        c.warn(
            "nixpkgs.end_of_life",
            at("flake.nixpkgs"),
            format!(
                "`{}` is end of life: the host gets no security updates for Synapse, MAS or nginx",
                b.name
            ),
            format!("pin a maintained branch ({})", maintained_branches()),
        );
    }
    let synapse_version = synapse_version(c, spec, &url, branch);
    check_acme_email(c, &spec.proxy, &url, branch);
    Pin {
        url,
        synapse_version,
    }
}

fn synapse_version(
    c: &mut Checker,
    spec: &SpecFile,
    url: &str,
    branch: Option<&'static Branch>,
) -> String {
    let Some(written) = &spec.synapse.version else {
        if let Some(b) = branch {
            return b.synapse_version().to_string();
        }
        c.error(
            "synapse.version.required",
            at("synapse"),
            format!("`synapse.version` is missing, and masgen cannot tell which Synapse `{url}` deploys"),
            format!(
                "write the Synapse release line this nixpkgs ships, e.g. `version = \"1.157\"`, or pin a branch masgen knows ({})",
                known_branches()
            ),
        );
        return nixpkgs::branch_of(&nixpkgs::default_url())
            .map(|b| b.synapse_version().to_string())
            .unwrap_or_default();
    };
    if let (Some(b), Some(v)) = (branch, parse_version(written)) {
        if (v.major, v.minor) < b.synapse {
            c.error(
                "nixpkgs.synapse_version",
                at("synapse.version"),
                format!(
                    "`{}` deploys Synapse {}.{} or newer, not {v}: masgen would design the configuration for a Synapse the host does not run",
                    b.name, b.synapse.0, b.synapse.1
                ),
                format!(
                    "remove `synapse.version` to design for {}.{}, write the release the host will run, or set `flake.nixpkgs` to a nixpkgs that ships Synapse {v} (a commit is taken as written)",
                    b.synapse.0, b.synapse.1
                ),
            );
        }
    }
    written.clone()
}

fn check_acme_email(
    c: &mut Checker,
    proxy: &raw::ProxySpec,
    url: &str,
    branch: Option<&'static Branch>,
) {
    let acme = matches!(proxy.tls.as_deref(), None | Some("acme"));
    let from_host = proxy.acme_email_from_host == Some(true);
    if from_host && proxy.acme_email.is_some() {
        c.error(
            "proxy.acme_email_from_host",
            at("proxy.acme_email_from_host"),
            "`acme_email` and `acme_email_from_host` both say where the ACME address comes from",
            "keep `acme_email` for masgen to set `security.acme.defaults.email`, or remove it if the host's own configuration sets that option",
        );
    }
    if !acme || from_host || proxy.acme_email.is_some() {
        return;
    }
    if let Some(b) = branch.filter(|b| b.acme_email_required) {
        c.error(
            "nixpkgs.acme_email",
            at(if proxy.tls.is_some() { "proxy.tls" } else { "proxy" }),
            format!(
                "`{url}` is {}, whose ACME module masgen takes to need an account address (before nixpkgs#489983 it asserts \"You must define `security.acme.certs.<name>.email` or `security.acme.defaults.email` to register with the CA\")",
                b.name
            ),
            "set `proxy.acme_email = \"admin@example.org\"`, or `proxy.acme_email_from_host = true` if the host's own configuration sets `security.acme.defaults.email`",
        );
    }
}

fn known_branches() -> String {
    nixpkgs::BRANCHES
        .iter()
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn maintained_branches() -> String {
    nixpkgs::BRANCHES
        .iter()
        .filter(|b| !b.end_of_life)
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(", ")
}
