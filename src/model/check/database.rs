//! `[synapse.database]` / `[mas.database]`: the service's host's own
//! PostgreSQL over its unix socket (peer authentication), or the PostgreSQL
//! of another host of the spec over TCP with a password file.

use super::placement::Placement;
use super::*;

const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

pub(super) fn check_database(
    c: &mut Checker,
    prefix: &str,
    d: &raw::DatabaseSpec,
    default_name: &str,
    service_user: &str,
    // Whether NixOS creates it (else it exists already and is the operator's).
    created: bool,
    // The spec's hosts, and the host the service runs on.
    (place, service_host): (&Placement, &str),
) -> Database {
    let engine = check_engine(c, prefix, d);
    let name = d.name.clone().unwrap_or_else(|| default_name.to_string());
    let user = d.user.clone().unwrap_or_else(|| name.clone());
    check_identifiers(c, prefix, &name, &user);
    let port = d
        .port
        .map(|p| c.port(&format!("{prefix}.port"), Some(p), 5432));
    // A `[hosts]` name: that host's PostgreSQL, over its socket when it is
    // the service's own host, else over TCP.
    let server = d
        .host
        .clone()
        .filter(|h| place.is_host(h) && h != service_host);
    let host = match (&d.host, &server) {
        (_, Some(s)) => place.addresses[s].clone().unwrap_or_else(|| s.clone()),
        (Some(h), None) if !place.is_host(h) => h.clone(),
        _ => "/run/postgresql".into(),
    };
    let socket = server.is_none() && host.starts_with('/');
    let local = server.is_none() && d.local.unwrap_or(socket);
    if server.is_none() && (!local || !socket) {
        c.error(
            "database.remote_unsupported",
            at(&format!("{prefix}.host")),
            format!("database host `{host}` is neither this host's PostgreSQL socket nor a host of this spec"),
            "run PostgreSQL on a host of the spec: add `[hosts.<name>]` with its `address` and set `host = \"<name>\"` (masgen then manages it and connects over TCP with `password_file`); a database masgen does not manage is not supported yet",
        );
    }
    if let Some(s) = &server {
        check_remote(c, prefix, d, (s, &user), port, engine);
    } else if d.password_file.is_some() {
        c.error(
            "database.password_file",
            at(&format!("{prefix}.password_file")),
            "a database password is not needed: the services log in to the local PostgreSQL by peer authentication",
            "remove `password_file`",
        );
    }
    check_ssl_mode(c, prefix, d, server.is_none());
    // Over the unix socket PostgreSQL authenticates by OS user (peer), and
    // the service runs as `service_user`.
    if engine == DbEngine::Postgresql && socket && user != service_user {
        c.error(
            "database.peer_user",
            at(&format!("{prefix}.user")),
            format!("role `{user}` cannot log in over the unix socket: peer authentication maps the service's OS user `{service_user}` to a role of the same name"),
            format!("use `user = \"{service_user}\"`"),
        );
    }
    // nixpkgs' ensureDBOwnership needs the database named like its owner.
    if created && engine == DbEngine::Postgresql && name != user {
        c.error(
            "database.name_user",
            at(&format!("{prefix}.name")),
            format!("database `{name}` must be named like its owner role `{user}`: NixOS creates it with ensureDBOwnership, which requires that"),
            format!("use `name = \"{user}\"`"),
        );
    }
    Database {
        engine,
        name,
        user,
        host,
        port: if server.is_some() {
            port.or(Some(5432))
        } else {
            port
        },
        local,
        password_file: server.as_ref().and(d.password_file.clone()),
        ssl_mode: server.as_ref().and(d.ssl_mode.clone()),
        server,
    }
}

/// `engine`: PostgreSQL (the default) or SQLite, by any of Synapse's names.
fn check_engine(c: &mut Checker, prefix: &str, d: &raw::DatabaseSpec) -> DbEngine {
    match d.engine.as_deref() {
        None | Some("postgresql") | Some("postgres") | Some("psycopg2") => DbEngine::Postgresql,
        Some("sqlite") | Some("sqlite3") => DbEngine::Sqlite,
        Some(other) => {
            c.error(
                "database.engine",
                at(&format!("{prefix}.engine")),
                format!("unknown database engine `{other}`"),
                "use `postgresql`",
            );
            DbEngine::Postgresql
        }
    }
}

/// The database and role names are plain identifiers (masgen writes them
/// into SQL and `pg_hba` lines unquoted).
fn check_identifiers(c: &mut Checker, prefix: &str, name: &str, user: &str) {
    for (key, v) in [("name", name), ("user", user)] {
        if v.is_empty()
            || !v
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            c.error(
                "database.name",
                at(&format!("{prefix}.{key}")),
                format!("`{v}` is not a plain PostgreSQL identifier"),
                "use letters, digits, `-` and `_`",
            );
        }
    }
}

/// A database on another host of the spec (`server`): PostgreSQL over TCP
/// with a password, on masgen's port.
fn check_remote(
    c: &mut Checker,
    prefix: &str,
    d: &raw::DatabaseSpec,
    (s, user): (&str, &str),
    port: Option<u16>,
    engine: DbEngine,
) {
    if engine != DbEngine::Postgresql {
        c.error(
            "database.engine",
            at(&format!("{prefix}.engine")),
            format!("an SQLite database cannot live on host `{s}`"),
            "use PostgreSQL for a database on another host",
        );
    }
    match &d.password_file {
        None => c.error(
            "database.password_required",
            at(&format!("{prefix}.host")),
            format!("role `{user}` logs in to `{s}`'s PostgreSQL over TCP, which needs a password"),
            format!("add `password_file = \"/run/secrets/{user}-db\"`: the same file on this service's host and on `{s}` (masgen sets the role's password from it)"),
        ),
        Some(_) => c.abs_path(&format!("{prefix}.password_file"), &d.password_file),
    }
    if let Some(p) = port.filter(|p| *p != crate::lower::POSTGRES_PORT) {
        c.error(
            "database.port",
            at(&format!("{prefix}.port")),
            format!(
                "masgen's PostgreSQL on host `{s}` listens on port {}, not {p}",
                crate::lower::POSTGRES_PORT
            ),
            "remove `port`",
        );
    }
    if d.local == Some(true) {
        c.error(
            "database.local",
            at(&format!("{prefix}.local")),
            format!("the database lives on host `{s}`, not on this service's host"),
            "remove `local`",
        );
    }
}

/// `ssl_mode` is for a database over TCP, and one of libpq's modes.
fn check_ssl_mode(c: &mut Checker, prefix: &str, d: &raw::DatabaseSpec, socket_only: bool) {
    match &d.ssl_mode {
        Some(m) if socket_only => c.error(
            "database.ssl_mode",
            at(&format!("{prefix}.ssl_mode")),
            format!("`ssl_mode = \"{m}\"` applies to a database over TCP; this one is reached over the unix socket"),
            "remove `ssl_mode`",
        ),
        Some(m) if !SSL_MODES.contains(&m.as_str()) => c.error(
            "database.ssl_mode",
            at(&format!("{prefix}.ssl_mode")),
            format!("unknown `ssl_mode` `{m}`"),
            format!("use one of {}", SSL_MODES.join(", ")),
        ),
        _ => {}
    }
}
