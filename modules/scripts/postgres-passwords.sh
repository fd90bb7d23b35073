#!/usr/bin/env bash
# masgen-postgres-passwords ROLE CREDENTIAL [ROLE CREDENTIAL]...: sets the
# password of each PostgreSQL ROLE to the content of the file CREDENTIAL in
# "$CREDENTIALS_DIRECTORY" (modules/postgres-access.nix), as the `postgres`
# superuser over the Unix socket.
#
# The password is on no command line and in no environment: psql reads the
# file itself with a backquoted `\set` (the shell command is `cat` and a
# path), and sends it as a quoted literal (:'pw'). psql removes exactly one
# trailing newline from a backquote's output, as the other masgen writers
# do (checked by tests/split_hosts_postgres.rs). The session turns off
# every setting that would copy the statement, and with it the password,
# into the server log: log_statement, log_min_duration_statement, and
# log_min_error_statement (a failed ALTER ROLE, e.g. of a role that does
# not exist yet, is logged with its statement by default). The server
# hashes it (password_encryption, scram-sha-256 by default).
#
# PGHOST/PGPORT, if set, pick the server (the tests use them).
set -euo pipefail

if [ "$#" -eq 0 ] || [ $(($# % 2)) -ne 0 ]; then
  echo "usage: masgen-postgres-passwords ROLE CREDENTIAL [ROLE CREDENTIAL]..." >&2
  exit 2
fi
: "${CREDENTIALS_DIRECTORY:?masgen-postgres-passwords: no CREDENTIALS_DIRECTORY}"

while [ "$#" -gt 0 ]; do
  role=$1
  file="$CREDENTIALS_DIRECTORY/$2"
  shift 2
  if [ ! -s "$file" ]; then
    echo "masgen-postgres-passwords: the password file of role $role is empty or missing" >&2
    exit 1
  fi
  psql -X -q -v ON_ERROR_STOP=1 -d postgres -v role="$role" -v file="$file" <<'SQL'
SET log_statement = 'none';
SET log_min_duration_statement = -1;
SET log_min_error_statement = 'panic';
\set pw `cat :'file'`
ALTER ROLE :"role" PASSWORD :'pw';
\unset pw
SQL
  echo "masgen-postgres-passwords: set the password of role $role"
done
