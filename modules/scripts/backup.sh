#!/usr/bin/env bash
# masgen-backup: dump one PostgreSQL database (custom format) plus copies of
# config files into a backup directory, before a masgen migration step.
#
# Usage:
#   masgen-backup <database> <backup-dir> [config-file | --synapse-config config-file]...
#
# Runs as root. pg_dump runs as the `postgres` OS user (peer authentication as
# the database superuser) through `runuser`; its output is written by this
# script, so the files are root-owned:
#   <backup-dir>/<database>-<YYYYmmddTHHMMSSZ>.dump           mode 0600 (pg_dump -Fc)
#   <backup-dir>/<database>-<YYYYmmddTHHMMSSZ>-config/NN-name mode 0600, directory 0700
# The dump is written to a `.partial` file, synced, checked to be non-empty and
# renamed into place, so a finished `.dump` is always complete. The dump path
# is printed on stdout as the last line.
#
# `--synapse-config FILE` is accepted as a synonym of `FILE`, so a masgen task
# can pass `@synapse-config-args@` straight through.
#
# Environment:
#   PG_DUMP     pg_dump to run (default: pg_dump from PATH)
#   PG_DUMP_AS  OS user pg_dump runs as (default: postgres)
set -euo pipefail

usage() {
  echo "usage: masgen-backup <database> <backup-dir> [config-file | --synapse-config config-file]..." >&2
  exit 2
}

[ "$#" -ge 2 ] || usage
database=$1
backup_dir=$2
shift 2
[ -n "$database" ] || usage
[ -n "$backup_dir" ] || usage

config_files=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --synapse-config)
      [ "$#" -ge 2 ] || usage
      config_files+=("$2")
      shift 2
      ;;
    *)
      config_files+=("$1")
      shift
      ;;
  esac
done

for f in "${config_files[@]}"; do
  if [ ! -f "$f" ] || [ ! -r "$f" ]; then
    echo "masgen-backup: config file not readable: $f" >&2
    exit 1
  fi
done

pg_dump_bin=${PG_DUMP:-pg_dump}
pg_dump_as=${PG_DUMP_AS:-postgres}

umask 077
if [ ! -d "$backup_dir" ]; then
  mkdir -p -- "$backup_dir"
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
base="$backup_dir/$database-$stamp"
dump="$base.dump"
partial="$dump.partial"
config_dir="$base-config"

if [ -e "$dump" ] || [ -e "$partial" ] || [ -e "$config_dir" ]; then
  echo "masgen-backup: $base.* already exists; not overwriting" >&2
  exit 1
fi

cleanup() {
  rm -f -- "$partial"
}
trap cleanup EXIT

# runuser keeps the working directory, which the postgres user may not be
# allowed to enter.
cd /

echo "masgen-backup: dumping database '$database' to $dump" >&2
runuser -u "$pg_dump_as" -- "$pg_dump_bin" --format=custom --dbname="$database" >"$partial"

if [ ! -s "$partial" ]; then
  echo "masgen-backup: pg_dump produced an empty file for '$database'" >&2
  exit 1
fi
chmod 0600 -- "$partial"
sync -- "$partial"
mv -- "$partial" "$dump"
trap - EXIT

if [ "${#config_files[@]}" -gt 0 ]; then
  mkdir -m 0700 -- "$config_dir"
  i=0
  for f in "${config_files[@]}"; do
    i=$((i + 1))
    target="$config_dir/$(printf '%02d' "$i")-$(basename -- "$f")"
    cp -- "$f" "$target"
    chmod 0600 -- "$target"
  done
  sync -- "$config_dir"/*
  echo "masgen-backup: copied ${#config_files[@]} config file(s) to $config_dir" >&2
fi

echo "$dump"
