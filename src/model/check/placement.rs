//! Where each service runs: `homeserver.host`, `synapse.host`, `mas.host`,
//! `proxy.host` and the databases' `host`, each naming a `[hosts]` table.
//! A homeserver on several hosts needs every host's `address`; services
//! reached from another host listen on their host's address.

use std::net::IpAddr;

use super::*;

/// The hosts the spec names for each service.
pub(super) struct Placement {
    pub synapse: String,
    pub mas: String,
    pub proxy: String,
    /// Every host of the spec and its address.
    pub addresses: BTreeMap<String, Option<String>>,
}

impl Placement {
    pub fn is_host(&self, name: &str) -> bool {
        self.addresses.contains_key(name)
    }
}

/// Reads the `host` keys; an unknown host is an error (the service stays on
/// `home` so checking goes on).
pub(super) fn place(
    c: &mut Checker,
    spec: &SpecFile,
    home: &str,
    hosts: &BTreeMap<String, Host>,
) -> Placement {
    for (name, h) in &spec.hosts {
        if let Some(a) = &h.address {
            if !(is_hostname(a) || a.parse::<IpAddr>().is_ok()) {
                c.error(
                    "value.address",
                    at("hosts").key(name).key("address"),
                    format!("`{a}` is neither an IP address nor a DNS host name"),
                    "write the address the homeserver's other hosts reach this one at, e.g. `10.0.0.2` or `db.internal`",
                );
            }
        }
    }
    let mut role = |path: &str, value: &Option<String>| -> String {
        match value {
            Some(h) if hosts.contains_key(h) => h.clone(),
            Some(h) => {
                c.error(
                    "host.unknown",
                    at(path),
                    format!("`{h}` is not a host of this spec"),
                    format!(
                        "add a `[hosts.{h}]` table with its `address`, or name one of: {}",
                        names(hosts)
                    ),
                );
                home.to_string()
            }
            None => home.to_string(),
        }
    };
    Placement {
        synapse: role("synapse.host", &spec.synapse.host),
        mas: role("mas.host", &spec.mas.host),
        proxy: role("proxy.host", &spec.proxy.host),
        addresses: hosts
            .iter()
            .map(|(k, h)| (k.clone(), h.address.clone()))
            .collect(),
    }
}

fn names(hosts: &BTreeMap<String, Host>) -> String {
    let v: Vec<String> = hosts.keys().map(|k| format!("`{k}`")).collect();
    v.join(", ")
}

/// Once every service is checked: unused hosts, missing addresses, and the
/// listeners other hosts must reach.
pub(super) fn finish(
    c: &mut Checker,
    spec: &SpecFile,
    hosts: &BTreeMap<String, Host>,
    mode: Mode,
    synapse: &mut Synapse,
    mas: &mut Mas,
    proxy: &Proxy,
) {
    let mut used = BTreeSet::new();
    used.insert(synapse.host.clone());
    used.insert(mas.host.clone());
    used.insert(proxy.host.clone());
    used.extend(synapse.database.server.clone());
    used.extend(mas.database.server.clone());
    for name in hosts.keys().filter(|h| !used.contains(*h)) {
        c.error(
            "host.unused",
            at("hosts").key(name),
            format!("host `{name}` runs nothing of this homeserver"),
            "place a service on it (`synapse.host`, `mas.host`, `proxy.host` or a database's `host`), or remove the table",
        );
    }
    if used.len() < 2 {
        return;
    }
    // syn2mas runs on MAS's host and reads Synapse's database where
    // Synapse's config says: a unix socket on Synapse's host is out of reach.
    if mode == Mode::Migrate
        && mas.host != synapse.host
        && synapse.database.server.is_none()
        && synapse.database.engine == DbEngine::Postgresql
    {
        c.error(
            "host.syn2mas_database",
            at("synapse.database"),
            format!("syn2mas runs on MAS's host `{}` and cannot reach Synapse's database over host `{}`'s unix socket", mas.host, synapse.host),
            "put Synapse's database on MAS's host or a database host of its own (`host` naming that host) with a `password_file`: Synapse and syn2mas then both log in over TCP",
        );
    }
    for name in &used {
        if hosts.get(name).is_some_and(|h| h.address.is_none()) {
            c.error(
                "host.address_required",
                if spec.hosts.contains_key(name) {
                    at("hosts").key(name)
                } else {
                    at("homeserver.host")
                },
                format!("host `{name}` has no `address`, and the homeserver spans several hosts"),
                format!("add `address = \"…\"` to `[hosts.{name}]`: the IP address or DNS name the other hosts reach it at"),
            );
        }
    }
    let address = |h: &str| hosts.get(h).and_then(|h| h.address.clone());
    // Synapse is reached by nginx and by MAS; MAS by nginx and by Synapse.
    let synapse_clients = [&proxy.host, &mas.host];
    if let Some(a) = reachable(
        c,
        "synapse.listener.address",
        &spec.synapse.listener.address,
        &synapse.host,
        &synapse_clients,
        address(&synapse.host),
    ) {
        synapse.listen_address = a;
    }
    // MAS believes X-Forwarded-For only from its trusted proxies: nginx's host.
    if proxy.host != mas.host && spec.mas.trusted_proxies.is_none() {
        match address(&proxy.host).map(|a| (a.parse::<IpAddr>(), a)) {
            Some((Ok(ip), _)) => {
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                mas.trusted_proxies.push(format!("{ip}/{bits}"));
            }
            Some((Err(_), a)) => c.error(
                "host.address_ip",
                at("hosts").key(&proxy.host).key("address"),
                format!("MAS trusts forwarded client addresses only from IP networks, and nginx's host `{}` has the DNS name `{a}`", proxy.host),
                "give the proxy's host an IP `address`, or list nginx's addresses in `mas.trusted_proxies`",
            ),
            None => {}
        }
    }
    let mas_clients = [&proxy.host, &synapse.host];
    if let Some(a) = reachable(
        c,
        "mas.listener.address",
        &spec.mas.listener.address,
        &mas.host,
        &mas_clients,
        address(&mas.host),
    ) {
        mas.listen_address = a;
    }
}

/// The address a listener takes when another host must reach it: the host's
/// own unless the spec set one; a loopback address set by the spec is an error.
fn reachable(
    c: &mut Checker,
    path: &str,
    given: &Option<String>,
    host: &str,
    clients: &[&String],
    own: Option<String>,
) -> Option<String> {
    let remote: Vec<&String> = clients.iter().copied().filter(|h| *h != host).collect();
    let first = remote.first()?;
    match given {
        None => own,
        Some(a) if is_loopback(a) => {
            c.error(
                "host.listen_unreachable",
                at(path),
                format!("`{a}` is a loopback address, and host `{first}` must reach this listener from host `{host}`"),
                "remove the key (the listener then takes its host's `address`), or set an address the other hosts reach",
            );
            None
        }
        Some(_) => None,
    }
}

fn is_loopback(a: &str) -> bool {
    a == "localhost"
        || a.trim_matches(|ch| ch == '[' || ch == ']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
