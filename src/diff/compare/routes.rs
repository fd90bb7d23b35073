//! nginx: virtual hosts and their routes, tree vs tree and system vs tree.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::system::SystemState;

use super::super::changeset::*;
use super::super::nginx;
use super::super::state::{ConfigState, Vhost};
use super::super::values;

pub(super) fn compare_vhosts(
    old: &BTreeMap<String, Vhost>,
    new: &BTreeMap<String, Vhost>,
) -> (Vec<VhostChange>, Vec<RouteChange>) {
    let mut vhosts = Vec::new();
    let mut routes = Vec::new();
    let empty = Vhost {
        options: Map::new(),
        locations: BTreeMap::new(),
    };
    for name in old.keys().chain(new.keys()).collect::<BTreeSet<_>>() {
        let (o, n) = (old.get(name), new.get(name));
        match (o, n) {
            (None, Some(v)) => vhosts.push(VhostChange {
                server_name: name.clone(),
                change: Change::Added,
                reasons: describe_options(&v.options),
            }),
            (Some(_), None) => vhosts.push(VhostChange {
                server_name: name.clone(),
                change: Change::Removed,
                reasons: vec![],
            }),
            (Some(a), Some(b)) if a.options != b.options => {
                let reasons = values::diff(
                    &Value::Object(a.options.clone()),
                    &Value::Object(b.options.clone()),
                )
                .iter()
                .map(|c| {
                    format!(
                        "{}: {} → {}",
                        c.path,
                        values::show(c.old.as_ref()),
                        values::show(c.new.as_ref())
                    )
                })
                .collect();
                vhosts.push(VhostChange {
                    server_name: name.clone(),
                    change: Change::Changed,
                    reasons,
                });
            }
            _ => {}
        }
        let (ol, nl) = (
            &o.unwrap_or(&empty).locations,
            &n.unwrap_or(&empty).locations,
        );
        for matcher in ol.keys().chain(nl.keys()).collect::<BTreeSet<_>>() {
            let (a, b) = (ol.get(matcher), nl.get(matcher));
            let change = match (a, b) {
                (None, Some(_)) => Change::Added,
                (Some(_), None) => Change::Removed,
                (Some(x), Some(y)) if x != y => Change::Changed,
                _ => continue,
            };
            routes.push(route(name, matcher, change, a, b));
        }
    }
    (vhosts, routes)
}

/// One route that changed, old and new target as they are.
fn route(
    server_name: &str,
    matcher: &str,
    change: Change,
    old: Option<&RouteTarget>,
    new: Option<&RouteTarget>,
) -> RouteChange {
    RouteChange {
        server_name: server_name.to_string(),
        matcher: matcher.to_string(),
        change,
        old: old.cloned(),
        new: new.cloned(),
        compat: is_compat(matcher),
    }
}

pub(super) fn describe_options(options: &Map<String, Value>) -> Vec<String> {
    options
        .iter()
        .map(|(k, v)| format!("{k}: {}", values::show(Some(v))))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// MAS's login compatibility route (`~ ^/_matrix/client/(.*)/(login|logout|refresh)`).
pub(super) fn is_compat(matcher: &str) -> bool {
    matcher.contains("login|logout|refresh")
}

pub(super) fn route_summary(vhosts: &[VhostChange], routes: &[RouteChange]) -> String {
    let r = |c: Change| routes.iter().filter(|x| x.change == c).count();
    let v = |c: Change| vhosts.iter().filter(|x| x.change == c).count();
    let mut parts = Vec::new();
    for (one, many, k) in [
        (
            "virtual host added",
            "virtual hosts added",
            v(Change::Added),
        ),
        (
            "virtual host removed",
            "virtual hosts removed",
            v(Change::Removed),
        ),
        (
            "virtual host changed",
            "virtual hosts changed",
            v(Change::Changed),
        ),
        ("route added", "routes added", r(Change::Added)),
        ("route removed", "routes removed", r(Change::Removed)),
        ("route changed", "routes changed", r(Change::Changed)),
    ] {
        if k > 0 {
            parts.push(format!("{k} {}", if k == 1 { one } else { many }));
        }
    }
    format!("nginx: {}", parts.join(", "))
}

/// Hosts with MAS's login compatibility route.
pub(super) fn compat_hosts(vhosts: &BTreeMap<String, Vhost>) -> BTreeSet<String> {
    vhosts
        .iter()
        .filter(|(_, v)| v.locations.keys().any(|m| is_compat(m)))
        .map(|(k, _)| k.clone())
        .collect()
}

/// The system's nginx routes vs a configuration's virtual hosts. Virtual
/// hosts and locations only the system has are removed when another
/// configuration of the host defines them (masgen put them there), and
/// reported as unmanaged otherwise.
pub(super) fn compare_system_routes(
    theirs: &BTreeMap<String, nginx::Routes>,
    ours: &BTreeMap<String, Vhost>,
    siblings: &[&ConfigState],
) -> (Vec<VhostChange>, Vec<RouteChange>, Vec<String>) {
    let sibling_vhosts: Vec<BTreeMap<String, Vhost>> =
        siblings.iter().map(|c| c.vhosts()).collect();
    let masgen_has = |host: &str, matcher: Option<&str>| {
        sibling_vhosts.iter().any(|v| match (v.get(host), matcher) {
            (Some(_), None) => true,
            (Some(h), Some(m)) => h.locations.contains_key(m),
            (None, _) => false,
        })
    };
    let mut vhosts = Vec::new();
    let mut routes = Vec::new();
    let mut unmanaged = Vec::new();
    let empty = nginx::Routes::new();
    for name in theirs.keys().chain(ours.keys()).collect::<BTreeSet<_>>() {
        let (t, o) = (theirs.get(name), ours.get(name));
        match (t, o) {
            (Some(_), None) if !masgen_has(name, None) => {
                unmanaged.push(format!("nginx.virtualHosts.{name}"));
                continue;
            }
            (Some(_), None) => vhosts.push(VhostChange {
                server_name: name.clone(),
                change: Change::Removed,
                reasons: vec![],
            }),
            (None, Some(v)) => vhosts.push(VhostChange {
                server_name: name.clone(),
                change: Change::Added,
                reasons: describe_options(&v.options),
            }),
            _ => {}
        }
        let old = t.unwrap_or(&empty);
        let new: nginx::Routes = o
            .map(|v| {
                v.locations
                    .iter()
                    .map(|(k, r)| (k.clone(), nginx::normalize(r)))
                    .collect()
            })
            .unwrap_or_default();
        for matcher in old.keys().chain(new.keys()).collect::<BTreeSet<_>>() {
            let (a, b) = (old.get(matcher), new.get(matcher));
            let change = match (a, b) {
                (None, Some(_)) => Change::Added,
                (Some(_), None) if o.is_some() && !masgen_has(name, Some(matcher)) => {
                    unmanaged.push(format!("nginx.virtualHosts.{name}.locations.{matcher:?}"));
                    continue;
                }
                (Some(_), None) => Change::Removed,
                (Some(x), Some(y)) if x != y => Change::Changed,
                _ => continue,
            };
            routes.push(route(name, matcher, change, a, b));
        }
    }
    (vhosts, routes, unmanaged)
}

/// The routes of the system's nginx config, or why there are none to compare;
/// `None` without nginx.service.
pub(super) fn nginx_routes(
    sys: &SystemState,
) -> Option<Result<BTreeMap<String, nginx::Routes>, String>> {
    sys.nginx_config.as_ref().map(|config| {
        let (conf, text) = config.as_ref().map_err(String::clone)?;
        nginx::routes(text).map_err(|e| format!("{conf}: {e}"))
    })
}
