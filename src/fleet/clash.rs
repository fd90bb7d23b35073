//! What two specs of a fleet must not share: a host (a host runs one
//! homeserver), a listener port on a host, a public hostname (nginx serves
//! one virtual host per name, MAS and Synapse one homeserver each), a
//! configuration name (one flake attribute each). The later spec gets the
//! error, pointing at the earlier one: the earlier spec is still fine.

use std::collections::HashMap;

use crate::diag::{Diagnostic, KeyPath, Related, Rendered, Report, Severity};
use crate::model::{Homeserver, Mode};
use crate::spec::Source;

use super::Spec;

/// What a spec claims, for the fleet to hold once.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Claim {
    Host(String),
    /// A `nixosConfigurations` name, with the host it is for.
    Configuration(String),
    Port(String, u16),
    Hostname(String),
}

/// One claim of one spec: where it is written, and a label for notes.
struct Held {
    claim: Claim,
    host: String,
    at: KeyPath,
    what: String,
}

/// Turns every spec that clashes with an earlier one into a failed spec.
pub(super) fn check(specs: &mut [Spec]) {
    // Each spec's claims on every core (finding where each is written is
    // the costly part); held against each other in order.
    let claimed = crate::par::map(specs, 16, |spec| match &spec.result {
        Ok(checked) => claims(&checked.homeserver, &checked.source),
        Err(_) => Vec::new(),
    });
    let mut first: HashMap<Claim, (usize, Held)> = HashMap::new();
    let mut found: Vec<(usize, Rendered)> = Vec::new();
    for (i, (spec, claimed)) in specs.iter().zip(claimed).enumerate() {
        let Ok(checked) = &spec.result else { continue };
        let source = &checked.source;
        for held in claimed {
            match first.get(&held.claim) {
                None => {
                    first.insert(held.claim.clone(), (i, held));
                }
                Some((j, _)) if *j == i => {}
                Some((j, earlier)) => {
                    let Ok(other) = &specs[*j].result else {
                        continue;
                    };
                    if let Some(d) = clash(&held, earlier, &other.homeserver.server_name) {
                        let Some(mut rendered) = source.render_all(&[d]).shown.pop() else {
                            continue;
                        };
                        let (line, column) = other
                            .source
                            .line_col(other.source.span_of(&earlier.at).start);
                        rendered.related = Some(Related {
                            file: other.source.name.clone(),
                            line,
                            column,
                            label: format!(
                                "{} of `{}`",
                                earlier.what, other.homeserver.server_name
                            ),
                            excerpt: None,
                        });
                        found.push((i, rendered));
                    }
                }
            }
        }
    }
    for (i, rendered) in found {
        let spec = &mut specs[i];
        let report = match std::mem::replace(&mut spec.result, Err(Report::default())) {
            Ok(checked) => checked.warnings,
            Err(report) => report,
        };
        spec.result = Err(with_error(report, rendered));
    }
}

/// `report` with one more error, errors first.
fn with_error(mut report: Report, error: Rendered) -> Report {
    let at = report
        .shown
        .iter()
        .position(|d| d.severity != Severity::Error)
        .unwrap_or(report.shown.len());
    report.shown.insert(at, error);
    report.errors += 1;
    report
}

/// The diagnostic for `held`, claimed before as `earlier` by `other`.
fn clash(held: &Held, earlier: &Held, other: &str) -> Option<Diagnostic> {
    let d = match &held.claim {
        Claim::Host(name) => Diagnostic::error(
            "fleet.host_taken",
            held.at.clone(),
            format!("host `{name}` belongs to another homeserver of the fleet (`{other}`)"),
        )
        .help("a host runs one homeserver: rename the host here, or build the specs into separate output trees"),
        // The same host on both sides is reported as a host clash.
        Claim::Configuration(_) if held.host == earlier.host => return None,
        Claim::Configuration(name) => Diagnostic::error(
            "fleet.configuration_taken",
            held.at.clone(),
            format!("configuration `{name}` (host `{}`) is also a configuration of `{other}` (host `{}`)", held.host, earlier.host),
        )
        .help("rename one host: each configuration is one `nixosConfigurations` attribute of the fleet's flake"),
        Claim::Port(host, port) => Diagnostic::error(
            "fleet.port_taken",
            held.at.clone(),
            format!("port {port} on host `{host}` is also {} of `{other}`", earlier.what),
        )
        .help("give one of the listeners another port"),
        Claim::Hostname(name) => Diagnostic::error(
            "fleet.hostname_taken",
            held.at.clone(),
            format!("`{name}` is also {} of `{other}`", earlier.what),
        )
        .help("each homeserver needs hostnames of its own: nginx serves one virtual host per name"),
    };
    Some(d)
}

/// Everything `hs` claims, with where its spec says so.
fn claims(hs: &Homeserver, source: &Source) -> Vec<Held> {
    // Where a value is written, else a fallback (a default is not written).
    let at = |path: &str, fallback: &str| {
        let p = KeyPath::parse(path);
        if source.span_of_exact(&p).is_some() {
            p
        } else {
            KeyPath::parse(fallback)
        }
    };
    let mut out = Vec::new();
    for name in hs.hosts.keys() {
        let here = at(&format!("hosts.{name}"), "homeserver.host");
        let mut configurations = vec![name.clone()];
        if hs.mode == Mode::Migrate {
            configurations.push(format!("{name}-prepare"));
        }
        for c in configurations {
            out.push(Held {
                claim: Claim::Configuration(c.clone()),
                host: name.clone(),
                at: here.clone(),
                what: format!("configuration `{c}`"),
            });
        }
        out.push(Held {
            claim: Claim::Host(name.clone()),
            host: name.clone(),
            at: here,
            what: format!("host `{name}`"),
        });
    }
    let ports = [
        (
            &hs.synapse.host,
            hs.synapse.port,
            "synapse.listener.port",
            "synapse",
            "Synapse's listener",
        ),
        (
            &hs.mas.host,
            hs.mas.port,
            "mas.listener.port",
            "mas",
            "MAS's listener",
        ),
        (
            &hs.mas.host,
            hs.mas.health_port,
            "mas.listener.health_port",
            "mas",
            "MAS's health listener",
        ),
    ];
    for (host, port, path, fallback, what) in ports {
        out.push(Held {
            claim: Claim::Port(host.clone(), port),
            host: host.clone(),
            at: at(path, fallback),
            what: what.to_string(),
        });
    }
    let names = [
        (
            &hs.server_name,
            "homeserver.server_name",
            "homeserver",
            "the server name",
        ),
        (
            &hs.synapse.public_hostname,
            "synapse.public_hostname",
            "homeserver.server_name",
            "Synapse's public hostname",
        ),
        (
            &hs.mas.hostname,
            "mas.hostname",
            "synapse.public_hostname",
            "MAS's public hostname",
        ),
    ];
    let mut seen = Vec::new();
    for (name, path, fallback, what) in names {
        // Synapse and MAS of one homeserver may share a hostname.
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        out.push(Held {
            claim: Claim::Hostname(name.to_ascii_lowercase()),
            host: String::new(),
            at: at(path, fallback),
            what: what.to_string(),
        });
    }
    out
}
