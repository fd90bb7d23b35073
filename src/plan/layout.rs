//! Which host each step runs on. On a homeserver of one host every step
//! runs there; split across hosts, PostgreSQL's host is switched first, MAS
//! before Synapse, and the proxy's host last, so the downtime stays one
//! stretch.

use crate::lower::tasks::{MAS_UNIT, SYNAPSE_UNIT};
use crate::model::{Homeserver, Roles};

pub(super) struct Layout {
    pub synapse: String,
    pub mas: String,
    /// Where Synapse's database is (the backup runs there).
    pub synapse_db: String,
    /// Every host, in the order configurations are switched to.
    pub order: Vec<String>,
    /// Hosts whose PostgreSQL other hosts log in to over TCP: masgen sets
    /// the roles' passwords there (modules/postgres-access.nix).
    pub postgres_logins: Vec<String>,
    roles: Vec<(String, Roles)>,
}

impl Layout {
    pub fn of(hs: &Homeserver) -> Layout {
        let roles: Vec<(String, Roles)> =
            hs.hosts.keys().map(|h| (h.clone(), hs.roles(h))).collect();
        let rank = |r: &Roles| match r {
            r if r.synapse || r.proxy => 2,
            r if r.mas => 1,
            _ => 0,
        };
        let mut order: Vec<(u8, String)> = roles
            .iter()
            .map(|(h, r)| {
                let proxy_only = r.proxy && !r.synapse;
                (rank(r) + u8::from(proxy_only), h.clone())
            })
            .collect();
        order.sort();
        let s = &hs.synapse;
        Layout {
            synapse: s.host.clone(),
            mas: hs.mas.host.clone(),
            synapse_db: s.database.on_host(&s.host).unwrap_or(&s.host).to_string(),
            order: order.into_iter().map(|(_, h)| h).collect(),
            postgres_logins: [&s.database.server, &hs.mas.database.server]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
            roles,
        }
    }

    pub fn split(&self) -> bool {
        self.order.len() > 1
    }

    pub fn roles(&self, host: &str) -> Roles {
        self.roles
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, r)| *r)
            .unwrap_or_default()
    }

    /// The long-running units of `host`: what its switch must leave active.
    pub fn units(&self, host: &str) -> Vec<&'static str> {
        let r = self.roles(host);
        let mut units = Vec::new();
        if r.synapse {
            units.push(SYNAPSE_UNIT);
        }
        if r.mas {
            units.push(MAS_UNIT);
        }
        if r.proxy {
            units.push("nginx");
        }
        if r.postgres {
            units.push("postgresql");
        }
        units
    }

    /// What `host` runs, in words.
    pub fn describe(&self, host: &str) -> String {
        let r = self.roles(host);
        let names: Vec<&str> = [
            (r.synapse, "Synapse"),
            (r.mas, "MAS"),
            (r.proxy, "nginx"),
            (r.postgres, "PostgreSQL"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        names.join(", ")
    }
}
