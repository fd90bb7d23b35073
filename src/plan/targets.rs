//! Flags that name a host: `--target-host` (how to reach it) and
//! `--system` (its system root). A homeserver on one host takes a bare
//! value; one split over hosts takes `NAME=VALUE` for each host it needs,
//! NAME a host of the spec's `[hosts]`.

use std::collections::BTreeMap;

use super::Refusal;
use crate::model::Homeserver;

/// The values of a flag that names hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerHost {
    /// A bare value: the homeserver's one host.
    pub one: Option<String>,
    /// `NAME=VALUE`: each host by its name in the spec.
    pub each: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFlag {
    TargetHost,
    System,
}

impl HostFlag {
    fn name(self) -> &'static str {
        match self {
            HostFlag::TargetHost => "--target-host",
            HostFlag::System => "--system",
        }
    }

    fn example(self) -> &'static str {
        match self {
            HostFlag::TargetHost => "USER@HOST",
            HostFlag::System => "ROOT",
        }
    }
}

/// The refusals of a flag: a name that is no host, a bare value for a
/// split homeserver, a needed host left out (docs/codes.md).
struct Codes {
    unknown_code: &'static str,
    split_code: &'static str,
    missing_code: &'static str,
}

const TARGET_HOST_CODES: Codes = Codes {
    unknown_code: "plan.target_host_unknown",
    split_code: "plan.target_host_split",
    missing_code: "plan.target_host_missing",
};

const SYSTEM_CODES: Codes = Codes {
    unknown_code: "plan.system_unknown",
    split_code: "plan.system_split",
    missing_code: "plan.system_missing",
};

impl PerHost {
    /// A bare value (or none): a homeserver on one host.
    pub fn one(value: Option<String>) -> PerHost {
        PerHost {
            one: value,
            each: BTreeMap::new(),
        }
    }

    /// From a flag's values: one bare value, or `NAME=VALUE` each name once.
    pub fn parse(flag: HostFlag, values: &[String]) -> Result<PerHost, String> {
        let (f, ex) = (flag.name(), flag.example());
        let mut p = PerHost::default();
        for v in values {
            match v.split_once('=') {
                Some((name, value)) if name.is_empty() || value.is_empty() => {
                    return Err(format!(
                        "{f} {v}: give NAME={ex}, NAME a host of the spec's [hosts]"
                    ))
                }
                Some((name, value)) => {
                    if p.each.insert(name.into(), value.into()).is_some() {
                        return Err(format!("{f} {name}=…: given twice"));
                    }
                }
                None if p.one.is_none() => p.one = Some(v.clone()),
                None => {
                    return Err(format!(
                        "{f} {v}: a second value without a host name; name each host as NAME={ex}"
                    ))
                }
            }
        }
        if p.one.is_some() && !p.each.is_empty() {
            return Err(format!(
                "{f}: give {ex} (a homeserver on one host) or NAME={ex} for each host, not both"
            ));
        }
        Ok(p)
    }

    pub fn is_empty(&self) -> bool {
        self.one.is_none() && self.each.is_empty()
    }

    /// The value for `host`; `None` when the flag was not given for it.
    pub fn of(&self, host: &str) -> Option<&str> {
        self.each
            .get(host)
            .or(self.one.as_ref())
            .map(String::as_str)
    }

    /// Refuses names that are not hosts of `hs`, a bare value for a
    /// homeserver split over hosts, and, once any host is named, a host of
    /// `needed` left out.
    pub fn check(&self, flag: HostFlag, hs: &Homeserver, needed: &[String]) -> Result<(), Refusal> {
        let (f, ex) = (flag.name(), flag.example());
        let codes = match flag {
            HostFlag::TargetHost => TARGET_HOST_CODES,
            HostFlag::System => SYSTEM_CODES,
        };
        let hosts: Vec<&str> = hs.hosts.keys().map(String::as_str).collect();
        let named: Vec<String> = if needed.is_empty() {
            hosts.iter().map(|h| h.to_string()).collect()
        } else {
            needed.to_vec()
        };
        let each_needed = named
            .iter()
            .map(|h| format!("{f} {h}={ex}"))
            .collect::<Vec<_>>()
            .join(" ");
        if let Some(name) = self.each.keys().find(|n| !hosts.contains(&n.as_str())) {
            return Err(Refusal {
                code: codes.unknown_code,
                reason: format!("{f} {name}=…: `{name}` is not a host of {}", hs.server_name),
                help: format!("its hosts: {}", hosts.join(", ")),
            });
        }
        if hs.is_split() && self.one.is_some() {
            return Err(Refusal {
                code: codes.split_code,
                reason: format!(
                    "{f} {ex} names one host, and this homeserver is split over the hosts {}",
                    hosts.join(", ")
                ),
                help: format!("name each host: {each_needed}"),
            });
        }
        let missing: Vec<&str> = needed
            .iter()
            .map(String::as_str)
            .filter(|h| !self.each.is_empty() && !self.each.contains_key(*h))
            .collect();
        if !missing.is_empty() {
            return Err(Refusal {
                code: codes.missing_code,
                reason: format!(
                    "{f} names some hosts of {} but not {}",
                    hs.server_name,
                    missing.join(", ")
                ),
                help: format!("name each host it needs: {each_needed}"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Result<PerHost, String> {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        PerHost::parse(HostFlag::TargetHost, &values)
    }

    #[test]
    fn bare_or_named_each_once() {
        let one = parse(&["root@m"]).unwrap();
        assert_eq!(one.of("anything"), Some("root@m"));
        let each = parse(&["a=root@a", "b=root@b"]).unwrap();
        assert_eq!(
            (each.of("a"), each.of("b"), each.of("c")),
            (Some("root@a"), Some("root@b"), None)
        );
        assert!(PerHost::default().is_empty() && !one.is_empty() && !each.is_empty());
        for (bad, says) in [
            (&["a=x", "a=y"][..], "given twice"),
            (&["x", "y"][..], "a second value without a host name"),
            (&["x", "a=y"][..], "not both"),
            (&["=x"][..], "give NAME=USER@HOST"),
            (&["a="][..], "give NAME=USER@HOST"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }
}
