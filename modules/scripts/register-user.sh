#!/usr/bin/env bash
# masgen-register-user: make sure a MAS user exists (idempotent wrapper around
# `mas-cli manage register-user`).
#
# Usage:
#   masgen-register-user <mas-cli> [--config FILE]... <localpart>
#                        [--admin] [--password-file FILE] [--ignore-password-complexity]
#
# Normally run through masgen-mas-run, which renders the MAS config and turns
# `@CONFIG@` into the `--config` arguments:
#   masgen-mas-run <mas.yaml> -- masgen-register-user <mas-cli> @CONFIG@ bot --password-file bot-pw
#
# Runs `mas-cli [--config FILE]... manage register-user --yes [--admin]
# [--password P] [--ignore-password-complexity] -- <localpart>`.
#
# Idempotency: mas-cli has no "exists" query and no flag to skip existing
# users; `register-user` fails with "User already exists" when the localpart is
# already registered in MAS. That failure is treated as success. For an
# existing user `--admin` is still enforced with `mas-cli manage promote-admin`
# (idempotent); the password of an existing user is left alone.
#
# --password-file FILE: FILE is an absolute path, or a bare name looked up in
# $CREDENTIALS_DIRECTORY (a LoadCredential= of the task). One trailing newline
# is stripped. mas-cli only takes the password as an argument (`--password`),
# so it is briefly visible in the process list of this host.
set -euo pipefail

usage() {
  echo "usage: masgen-register-user <mas-cli> [--config FILE]... <localpart> [--admin] [--password-file FILE] [--ignore-password-complexity]" >&2
  exit 2
}

[ "$#" -ge 2 ] || usage
mas_cli=$1
shift

global_args=()
while [ "$#" -gt 0 ] && [ "$1" = "--config" ]; do
  [ "$#" -ge 2 ] || usage
  global_args+=(--config "$2")
  shift 2
done

localpart=""
admin=0
password_file=""
register_extra=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --admin)
      admin=1
      shift
      ;;
    --password-file)
      [ "$#" -ge 2 ] || usage
      password_file=$2
      shift 2
      ;;
    --ignore-password-complexity)
      register_extra+=(--ignore-password-complexity)
      shift
      ;;
    -*)
      echo "masgen-register-user: unknown option $1" >&2
      usage
      ;;
    *)
      [ -z "$localpart" ] || usage
      localpart=$1
      shift
      ;;
  esac
done
[ -n "$localpart" ] || usage

if [ "$admin" -eq 1 ]; then
  register_extra+=(--admin)
fi

if [ -n "$password_file" ]; then
  case "$password_file" in
    /*) ;;
    */*)
      echo "masgen-register-user: --password-file must be an absolute path or a credential name" >&2
      exit 2
      ;;
    *)
      if [ -z "${CREDENTIALS_DIRECTORY:-}" ]; then
        echo "masgen-register-user: --password-file $password_file is a credential name but the unit has no credentials" >&2
        exit 1
      fi
      password_file="$CREDENTIALS_DIRECTORY/$password_file"
      ;;
  esac
  if [ ! -r "$password_file" ]; then
    echo "masgen-register-user: cannot read password file $password_file" >&2
    exit 1
  fi
  password=$(cat -- "$password_file")
  if [ -z "$password" ]; then
    echo "masgen-register-user: password file $password_file is empty" >&2
    exit 1
  fi
  register_extra+=(--password "$password")
fi

set +e
output=$("$mas_cli" "${global_args[@]}" manage register-user --yes "${register_extra[@]}" -- "$localpart" 2>&1)
status=$?
set -e
printf '%s\n' "$output"

if [ "$status" -eq 0 ]; then
  echo "masgen-register-user: registered $localpart" >&2
  exit 0
fi

if printf '%s\n' "$output" | grep -q "User already exists"; then
  echo "masgen-register-user: $localpart already exists in MAS" >&2
  if [ "$admin" -eq 1 ]; then
    "$mas_cli" "${global_args[@]}" manage promote-admin -- "$localpart"
  fi
  exit 0
fi

echo "masgen-register-user: mas-cli manage register-user failed for $localpart (exit $status)" >&2
exit "$status"
