//! `[synapse.database]` / `[mas.database]`: the host's own PostgreSQL.

use super::*;

pub(super) fn check_database(
    c: &mut Checker,
    prefix: &str,
    d: &raw::DatabaseSpec,
    default_name: &str,
    service_user: &str,
    // Whether NixOS creates it (else it exists already and is the operator's).
    created: bool,
) -> Database {
    let engine = match d.engine.as_deref() {
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
    };
    let name = d.name.clone().unwrap_or_else(|| default_name.to_string());
    let user = d.user.clone().unwrap_or_else(|| name.clone());
    for (key, v) in [("name", &name), ("user", &user)] {
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
    let host = d.host.clone().unwrap_or_else(|| "/run/postgresql".into());
    let port = d
        .port
        .map(|p| c.port(&format!("{prefix}.port"), Some(p), 5432));
    // Only the host's own PostgreSQL over its unix socket: TCP logins (even
    // on loopback) need passwords, which masgen does not manage yet.
    let socket = host.starts_with('/');
    let local = d.local.unwrap_or(socket);
    if !local || !socket {
        c.error(
            "database.remote_unsupported",
            at(&format!("{prefix}.host")),
            format!("database host `{host}` is not this host's PostgreSQL socket"),
            "this masgen runs PostgreSQL on the homeserver's host and connects over its unix socket (/run/postgresql) with peer authentication; TCP and remote databases are not supported yet",
        );
    }
    if d.password_file.is_some() {
        c.error(
            "database.password_file",
            at(&format!("{prefix}.password_file")),
            "a database password is not needed: the services log in to the local PostgreSQL by peer authentication",
            "remove `password_file`",
        );
    }
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
        port,
        local,
    }
}
