#!/usr/bin/env bash
# masgen-database-file OUT SETTINGS FILTER: writes a config file with a
# database password in it at boot (modules/synapse-database.nix,
# modules/mas-database.nix), so the password never enters the Nix store.
#
#   OUT       the file to write (mode 0400, replaced atomically)
#   SETTINGS  JSON of the service's database section from the store
#   FILTER    a jq program (lib.nix: synapseDatabaseFilter,
#             masDatabaseFilter) of $settings (slurped) and $pw (the
#             password file as it is; the filter strips one newline)
#
# The password comes from "$CREDENTIALS_DIRECTORY/password" (LoadCredential,
# so the source may be root-only). Written to run under
# writeShellApplication and on its own (tests/split_hosts.rs).
set -euo pipefail

umask 077

if [ "$#" -ne 3 ]; then
  echo "usage: masgen-database-file OUT SETTINGS FILTER" >&2
  exit 2
fi
out=$1
settings=$2
filter=$3

password="${CREDENTIALS_DIRECTORY:?masgen-database-file: no CREDENTIALS_DIRECTORY}/password"
if [ ! -s "$password" ]; then
  echo "masgen-database-file: the password file is empty or missing" >&2
  exit 1
fi

tmp="$out.tmp"
rm -f "$tmp"
jq -n --slurpfile settings "$settings" --rawfile pw "$password" "$filter" >"$tmp"
if [ ! -s "$tmp" ]; then
  rm -f "$tmp"
  echo "masgen-database-file: the filter wrote nothing" >&2
  exit 1
fi
chmod 0400 "$tmp"
mv -f "$tmp" "$out"
