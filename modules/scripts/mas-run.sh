#!/usr/bin/env bash
# masgen-mas-run: run a program (normally mas-cli) against the MAS
# configuration of this host, the way matrix-authentication-service.service
# sees it.
#
# Usage:
#   masgen-mas-run <mas-config-yaml> -- <program> [args...]
#
# 1. Renders <mas-config-yaml> to $RUNTIME_DIRECTORY/config.yaml (mode 0600),
#    substituting only $CREDENTIALS_DIRECTORY / ${CREDENTIALS_DIRECTORY}
#    (envsubst '$CREDENTIALS_DIRECTORY'), as the MAS service does: the settings
#    refer to secrets as "${CREDENTIALS_DIRECTORY}/<name>".
# 2. Execs <program> [args...] with every argument that is exactly `@CONFIG@`
#    replaced by `--config <rendered>`, followed by one
#    `--config $CREDENTIALS_DIRECTORY/<name>` per name listed (space-separated)
#    in $MASGEN_MAS_EXTRA_CONFIGS (the MAS extraConfigFiles, loaded as
#    credentials by the masgen task). If no argument is `@CONFIG@`, the config
#    arguments are inserted right after <program>; that is valid for mas-cli,
#    whose --config is a global option, e.g.
#      masgen-mas-run mas.yaml -- mas-cli syn2mas @CONFIG@ --synapse-config h.yaml check
#      masgen-mas-run mas.yaml -- mas-cli doctor
#
# Environment:
#   RUNTIME_DIRECTORY        required (systemd RuntimeDirectory=); first entry used
#   CREDENTIALS_DIRECTORY    set by systemd when the unit has LoadCredential=
#   MASGEN_MAS_EXTRA_CONFIGS optional, credential names of extra MAS config files
set -euo pipefail

usage() {
  echo "usage: masgen-mas-run <mas-config-yaml> -- <program> [args...]" >&2
  exit 2
}

[ "$#" -ge 3 ] || usage
source_config=$1
[ "$2" = "--" ] || usage
shift 2
program=$1
shift

if [ ! -r "$source_config" ]; then
  echo "masgen-mas-run: cannot read MAS config $source_config" >&2
  exit 1
fi

runtime_dir=${RUNTIME_DIRECTORY:-}
runtime_dir=${runtime_dir%%:*}
if [ -z "$runtime_dir" ] || [ ! -d "$runtime_dir" ]; then
  echo "masgen-mas-run: RUNTIME_DIRECTORY is not set to a directory (the unit needs RuntimeDirectory=)" >&2
  exit 1
fi

# shellcheck disable=SC2016 # the literal variable name is the point
if grep -qE '\$(CREDENTIALS_DIRECTORY|\{CREDENTIALS_DIRECTORY\})' "$source_config" \
  && [ -z "${CREDENTIALS_DIRECTORY:-}" ]; then
  echo "masgen-mas-run: $source_config refers to \$CREDENTIALS_DIRECTORY but the unit has no credentials" >&2
  exit 1
fi

umask 077
rendered="$runtime_dir/config.yaml"
tmp="$rendered.tmp.$$"
# shellcheck disable=SC2016 # envsubst takes the literal variable name
CREDENTIALS_DIRECTORY=${CREDENTIALS_DIRECTORY:-} envsubst '$CREDENTIALS_DIRECTORY' <"$source_config" >"$tmp"
mv -f -- "$tmp" "$rendered"

config_args=(--config "$rendered")
for name in ${MASGEN_MAS_EXTRA_CONFIGS:-}; do
  if [ -z "${CREDENTIALS_DIRECTORY:-}" ]; then
    echo "masgen-mas-run: MASGEN_MAS_EXTRA_CONFIGS is set but the unit has no credentials" >&2
    exit 1
  fi
  config_args+=(--config "$CREDENTIALS_DIRECTORY/$name")
done

args=()
replaced=0
for arg in "$@"; do
  if [ "$arg" = "@CONFIG@" ]; then
    args+=("${config_args[@]}")
    replaced=1
  else
    args+=("$arg")
  fi
done
if [ "$replaced" -eq 0 ]; then
  args=("${config_args[@]}" "${args[@]}")
fi

exec "$program" "${args[@]}"
