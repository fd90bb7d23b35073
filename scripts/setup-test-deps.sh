#!/usr/bin/env bash
# Install everything the masgen test suite needs. Idempotent and quick when
# everything is already present. Safe to run as root (CI) or with sudo.
set -euo pipefail

SYNAPSE_VERSION="1.163.2"
VENV="${MASGEN_SYNAPSE_VENV:-$HOME/.cache/masgen/synapse-venv}"

log() { printf '[setup-test-deps] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

# Debian keeps the postgres server binaries out of PATH.
pg_bin_dir() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
  if [ -n "$d" ] && [ -x "$d/pg_ctl" ]; then
    printf '%s\n' "$d"
  fi
}

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

# ---------------------------------------------------------------- apt packages
missing=()
# man (man-db), zsh and fish: tests/shell_integration.rs renders the man pages
# and loads the completion scripts in each shell; git: tests/diff.rs and
# tests/ci_workflow.rs (a repository with an `origin`); `script` (util-linux):
# tests/apply.rs answers apply's prompt through a pseudo-terminal; node + npm:
# taplo's CLI (tests/editor_schema.rs) comes from npm; make and gcc: the
# jemalloc that masgen's binary uses is built from source.
for tool in nix-instantiate nginx systemd-analyze pg_config envsubst jq shellcheck openssl gcc make man zsh fish git script node npm; do
  have "$tool" || missing+=("$tool")
done
[ -n "$(pg_bin_dir)" ] || missing+=("pg_ctl")
# /usr/bin/time (not the shell keyword): scripts/bench-fleet.sh's peak memory.
[ -x /usr/bin/time ] || missing+=("time")
# tests/tasks_postgres.rs and tests/conformance_split.rs run a stand-in
# mas-cli with Debian's python3 as an unprivileged user, who cannot reach the
# Synapse venv: it needs PyYAML. conformance_split's TCP relay uses the same
# /usr/bin/python3.
/usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 || missing+=("python3-yaml")
# The rehearsal's test script is checked with pyflakes and mypy (tests/rehearsal_eval.rs).
/usr/bin/python3 -c 'import pyflakes' >/dev/null 2>&1 || missing+=("python3-pyflakes")
have mypy || missing+=("mypy")
# psycopg2 is built from source, so the python used for the venv needs venv + headers.
PYTHON="${MASGEN_PYTHON:-python3}"
if ! have "$PYTHON"; then
  missing+=("python3")
elif ! "$PYTHON" -c 'import ensurepip, sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' >/dev/null 2>&1; then
  missing+=("python3-venv/python3-dev")
fi

if [ "${#missing[@]}" -gt 0 ]; then
  log "missing: ${missing[*]}; installing with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  # stdout is reserved for the python path, so send apt's chatter to stderr.
  $SUDO apt-get update >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    nix-bin postgresql nginx systemd libpq-dev gettext-base jq shellcheck openssl \
    python3 python3-venv python3-dev python3-yaml python3-pyflakes mypy gcc make libc6-dev \
    man-db groff-base zsh fish git util-linux nodejs npm time >&2
else
  log "system packages already installed"
fi

PG_BIN="$(pg_bin_dir)"
[ -n "$PG_BIN" ] || { log "pg_ctl still not found under /usr/lib/postgresql/*/bin"; exit 1; }
log "postgres binaries: $PG_BIN"

# ------------------------------------------------------------------------ nix
# Debian's nix 2.8 opens a store even for --parse/--eval. The default
# (local store under /nix/var/nix) needs root or a daemon, so the tests pass
# `--store dummy://`, which needs no state dir at all and is parallel-safe.
# Check that both modes the tests rely on work.
nix_smoke() {
  nix-instantiate --store dummy:// --parse -E '1' >/dev/null &&
    [ "$(nix-instantiate --store dummy:// --eval --strict --json -E '{a=1;}')" = '{"a":1}' ]
}
if ! nix_smoke; then
  log "nix-instantiate with --store dummy:// failed; creating /nix/var/nix and retrying"
  $SUDO mkdir -p /nix/var/nix
  nix_smoke || { log "nix-instantiate does not work"; exit 1; }
fi
log "nix-instantiate ok ($(nix-instantiate --version))"

# ---------------------------------------------------------------- nginx 1.25+
# nixpkgs' nginx.conf uses `http2 on;` (nginx >= 1.25.1); Debian 12 ships
# 1.22. When the nginx on PATH is older, take Debian 13 (trixie)'s nginx
# package with apt itself, from a private source list and state dir (the
# host's apt sources and dpkg database stay untouched), and unpack it under
# $NGINX_DIR; the tests find $NGINX_DIR/usr/sbin/nginx (or $MASGEN_NGINX).
# Its shared libraries (libc >= 2.34, libssl3, libpcre2, zlib, libcrypt) are
# all in Debian 12. nginx-common brings conf/mime.types.
NGINX_DIR="${MASGEN_NGINX_DIR:-$HOME/.cache/masgen/nginx}"
nginx_at_least_1_25_1() {
  local v
  v="$("$1" -v 2>&1 | sed -n 's|^nginx version: nginx/\([0-9.]*\).*|\1|p')" || return 1
  [ -n "$v" ] && [ "$(printf '%s\n1.25.1\n' "$v" | sort -V | head -n1)" = "1.25.1" ]
}
system_nginx="$(command -v nginx || echo /usr/sbin/nginx)"
if [ -x "$system_nginx" ] && nginx_at_least_1_25_1 "$system_nginx"; then
  log "nginx on PATH is >= 1.25.1: $system_nginx"
elif [ -x "$NGINX_DIR/usr/sbin/nginx" ] && nginx_at_least_1_25_1 "$NGINX_DIR/usr/sbin/nginx"; then
  log "nginx >= 1.25.1 already unpacked: $NGINX_DIR/usr/sbin/nginx"
else
  log "nginx on PATH is older than 1.25.1; fetching Debian trixie's nginx into $NGINX_DIR"
  apt_dir="$HOME/.cache/masgen/apt-trixie"
  rm -rf "$apt_dir" "$NGINX_DIR"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs" "$NGINX_DIR"
  cat >"$apt_dir/trixie.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt_opts=(
    -o "Dir::Etc::SourceList=$apt_dir/trixie.sources"
    -o "Dir::Etc::SourceParts=$apt_dir/none"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache=$apt_dir/cache"
    -o "Dir::State::Status=/dev/null"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=root"
  )
  apt-get "${apt_opts[@]}" update >&2
  (cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" download nginx nginx-common >&2)
  for deb in "$apt_dir"/debs/*.deb; do
    dpkg-deb -x "$deb" "$NGINX_DIR"
  done
  nginx_at_least_1_25_1 "$NGINX_DIR/usr/sbin/nginx" ||
    { log "the unpacked nginx does not run: $("$NGINX_DIR/usr/sbin/nginx" -v 2>&1)"; exit 1; }
  log "nginx ok: $("$NGINX_DIR/usr/sbin/nginx" -v 2>&1)"
fi

# ---------------------------------------------------------------------- taplo
# The TOML toolkit behind Even Better TOML: tests/editor_schema.rs checks the
# examples and bad specs against docs/masgen-spec.schema.json with its CLI.
# A private npm prefix; the tests find $TAPLO_DIR/node_modules/.bin/taplo
# (or $MASGEN_TAPLO).
TAPLO_VERSION="0.7.0"
TAPLO_DIR="${MASGEN_TAPLO_DIR:-$HOME/.cache/masgen/taplo}"
if [ "$(node -p "require('$TAPLO_DIR/node_modules/@taplo/cli/package.json').version" 2>/dev/null)" = "$TAPLO_VERSION" ]; then
  log "taplo already installed: $TAPLO_DIR/node_modules/.bin/taplo"
else
  log "installing @taplo/cli $TAPLO_VERSION into $TAPLO_DIR"
  mkdir -p "$TAPLO_DIR"
  npm install --prefix "$TAPLO_DIR" --no-audit --no-fund --silent "@taplo/cli@$TAPLO_VERSION" >&2
  "$TAPLO_DIR/node_modules/.bin/taplo" --version >&2 || { log "taplo does not run"; exit 1; }
fi

# ------------------------------------------------------------- synapse venvs
# ensure_venv DIR VERSION IMPORTS PIP-ARGS...: a venv at DIR whose python can
# import IMPORTS and has matrix-synapse VERSION; (re)made with pip otherwise.
ensure_venv() {
  local dir=$1 version=$2 imports=$3
  shift 3
  if [ -x "$dir/bin/python" ] &&
    [ "$("$dir/bin/python" -c "import importlib.metadata as m, $imports; print(m.version('matrix-synapse'))" 2>/dev/null)" = "$version" ]; then
    log "venv $dir already has matrix-synapse $version"
    return
  fi
  log "creating venv $dir (matrix-synapse $version)"
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  "$PYTHON" -m venv "$dir" >&2
  # pg_config must be on PATH for the psycopg2 source build.
  PATH="$PATH:$PG_BIN" "$dir/bin/pip" install --quiet --disable-pip-version-check "$@" >&2
  "$dir/bin/python" -c "import $imports" || { log "venv $dir is broken after install"; exit 1; }
}

# matrix-synapse-ldap3: the loader imports it for `ldap_config` / the LDAP
# module (tests/conformance_synapse.rs, password providers).
ensure_venv "$VENV" "$SYNAPSE_VERSION" "synapse, psycopg2, authlib, ldap_auth_provider" \
  "matrix-synapse[oidc,postgres]==$SYNAPSE_VERSION" "matrix-synapse-ldap3==0.4.0"

# A Synapse older than 1.136 for the `experimental_features.msc3861` form
# masgen emits for such versions (tests/conformance_synapse_old.rs): loader
# only, so no postgres extra. authlib is what nixpkgs' `oidc` extra brings;
# Synapse of that age needs a prometheus-client from before 0.22.
OLD_VENV="${MASGEN_SYNAPSE_OLD_VENV:-$HOME/.cache/masgen/synapse-1.135-venv}"
ensure_venv "$OLD_VENV" 1.135.2 "synapse, authlib, ldap_auth_provider" \
  "matrix-synapse==1.135.2" "prometheus-client<0.22" authlib "matrix-synapse-ldap3==0.4.0"

echo "$VENV/bin/python"
