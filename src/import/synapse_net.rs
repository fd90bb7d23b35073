//! Where Synapse is reached and what it connects to, for `import synapse`:
//! `public_baseurl`, `database`, `listeners`.

use serde_json::{Map, Value};

use super::writer::put;
use super::{show, Ctx};

pub(super) fn public_baseurl(ctx: &mut Ctx, v: &Value, file: &str) {
    let Some(url) = v.as_str() else { return };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let Some(rest) = rest else {
        ctx.human(
            file,
            "public_baseurl",
            "not an http(s) URL: set synapse.public_hostname by hand",
        );
        return;
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_only = host.split(':').next().unwrap_or(host);
    put(
        ctx.spec.table("synapse"),
        "public_hostname",
        host_only,
        &format!("{file}: public_baseurl"),
    );
    // MAS at <public hostname>/auth, like MDAD's default.
    put(
        ctx.spec.table("mas"),
        "hostname",
        host_only,
        "the public hostname (choose another if you like)",
    );
    ctx.mapped(
        file,
        "public_baseurl",
        &["synapse.public_hostname", "mas.hostname"],
        "masgen serves https on port 443",
    );
    if !path.is_empty() || host.contains(':') || url.starts_with("http://") {
        ctx.human(
            file,
            "public_baseurl",
            &format!(
                "`{url}` has a port, a path or plain http: masgen writes https://{host_only}/"
            ),
        );
    }
}

pub(super) fn database(ctx: &mut Ctx, v: &Value, file: &str) -> anyhow::Result<()> {
    let name = v.get("name").and_then(Value::as_str).unwrap_or("sqlite3");
    let empty = Map::new();
    let args = v.get("args").and_then(Value::as_object).unwrap_or(&empty);
    if name == "sqlite3" {
        anyhow::bail!("{file}: database: Synapse uses SQLite; a migration to MAS needs PostgreSQL (syn2mas reads PostgreSQL only). Port the database first (synapse_port_db), then import again");
    }
    if name != "psycopg2" {
        anyhow::bail!("{file}: database.name: `{name}` is not a database engine Synapse knows (psycopg2 or sqlite3)");
    }
    let host = args
        .get("host")
        .and_then(Value::as_str)
        .unwrap_or("/run/postgresql");
    let loopback = ["localhost", "127.0.0.1", "::1"].contains(&host);
    if !host.starts_with('/') && !loopback {
        anyhow::bail!("{file}: database.args.host: Synapse's database is on `{host}`; masgen supports only the homeserver host's own PostgreSQL over its unix socket (peer authentication). Move the database to this host first, then import again");
    }
    let t = ctx.spec.table("synapse.database");
    let from = |k: &str| format!("{file}: database.args.{k}");
    let db = args
        .get("database")
        .or_else(|| args.get("dbname"))
        .and_then(Value::as_str)
        .unwrap_or("matrix-synapse");
    put(t, "name", db, &from("database"));
    put(
        t,
        "user",
        "matrix-synapse",
        "peer authentication: the service's OS user",
    );
    if host.starts_with('/') && host != "/run/postgresql" {
        put(t, "host", host, &from("host"));
    }
    if let Some(port) = args.get("port").and_then(Value::as_i64) {
        if port != 5432 {
            put(t, "port", port, &from("port"));
        }
    }
    ctx.mapped(file, "database.name", &[], "psycopg2: PostgreSQL");
    ctx.mapped(
        file,
        "database.args.database",
        &["synapse.database.name"],
        "",
    );
    for (k, val) in args {
        let key = format!("database.args.{k}");
        match k.as_str() {
            "database" | "dbname" => {}
            "user" if val.as_str() == Some("matrix-synapse") => ctx.mapped(file, &key, &["synapse.database.user"], ""),
            "user" => ctx.human(file, &key, &format!("Synapse logs in as {} today; masgen uses peer authentication as `matrix-synapse`: grant that role the database (ALTER DATABASE … OWNER TO \"matrix-synapse\") before building", show(val))),
            "host" if loopback => ctx.human(file, &key, &format!("Synapse connects over TCP to {host} today; the spec uses the same server's unix socket with peer authentication: check the socket before building")),
            "host" => ctx.mapped(file, &key, &["synapse.database.host"], ""),
            "port" => ctx.mapped(file, &key, &["synapse.database.port"], ""),
            "password" => ctx.dropped(file, &key, "a secret, not copied, and not needed: peer authentication over the socket"),
            // masgen's lower/synapse.rs writes cp_min 5, cp_max 10.
            "cp_min" | "cp_max" => {
                let same = val.as_i64() == Some(if k == "cp_min" { 5 } else { 10 });
                if same {
                    ctx.dropped(file, &key, "masgen writes the same value (cp_min 5, cp_max 10)");
                } else {
                    ctx.human(file, &key, "masgen writes cp_min 5, cp_max 10 and cannot carry another pool size yet: phase 1 changes it");
                }
            }
            _ => ctx.human(file, &key, "masgen writes database.args itself and cannot carry it yet"),
        }
    }
    for (k, _) in v.as_object().into_iter().flatten() {
        if k != "name" && k != "args" {
            ctx.human(
                file,
                &format!("database.{k}"),
                "masgen writes the database block itself and cannot carry it yet",
            );
        }
    }
    Ok(())
}

pub(super) fn listeners(ctx: &mut Ctx, v: &Value, file: &str) {
    let list = v.as_array().cloned().unwrap_or_default();
    let client = list.iter().position(|l| {
        l.get("type").and_then(Value::as_str) == Some("http")
            && l.pointer("/resources")
                .and_then(Value::as_array)
                .is_some_and(|r| {
                    r.iter().any(|r| {
                        r.get("names")
                            .and_then(Value::as_array)
                            .is_some_and(|n| n.iter().any(|n| n == "client"))
                    })
                })
    });
    for (i, l) in list.iter().enumerate() {
        let key = format!("listeners[{i}]");
        if Some(i) == client {
            let t = ctx.spec.table("synapse.listener");
            if let Some(port) = l.get("port").and_then(Value::as_i64) {
                put(t, "port", port, &format!("{file}: {key}.port"));
            }
            if let Some(a) = l.pointer("/bind_addresses/0").and_then(Value::as_str) {
                put(t, "address", a, &format!("{file}: {key}.bind_addresses[0]"));
            }
            ctx.mapped(
                file,
                &key,
                &["synapse.listener.port", "synapse.listener.address"],
                "masgen writes one loopback http listener (client, federation) behind nginx",
            );
        } else {
            ctx.human(
                file,
                &key,
                "masgen writes one client/federation listener only: add this listener by hand",
            );
        }
    }
}
