#!/usr/bin/env bash
# masgen-mas-keys TYPE FILE [TYPE FILE]...: makes each missing key of MAS
# in the format MAS reads, before MAS starts (modules/mas-keys.nix), the
# way Synapse makes its own signing key on first start.
#
#   encryption  32 random bytes as 64 hex characters, no newline: MAS
#               hex-decodes the whole file into 32 bytes (MAS @1b7b43b5,
#               crates/config/src/sections/secrets.rs, SecretsConfig::encryption)
#   rsa         an RSA 2048 private key, PEM (PKCS#8), the size MAS itself
#               generates (crates/keystore/src/lib.rs, PrivateKey::generate_rsa)
#   ec-p256     an EC P-256 private key, PEM (PKCS#8)
#
# A file that exists, whatever it holds, is never touched. A new key is
# written to a temporary file beside it (mode 0400), checked, and linked
# into place with `ln`, which fails rather than replace a file, so a key
# appears whole or not at all. Missing directories are made 0700: MAS gets
# its keys as systemd credentials, which PID 1 reads as root. Written to run
# under writeShellApplication and on its own (tests/mas_keys.rs).
set -euo pipefail

umask 077

die() {
  echo "masgen-mas-keys: $*" >&2
  exit 1
}

tmp=""
cleanup() {
  if [ -n "$tmp" ]; then
    rm -f -- "$tmp"
  fi
}
trap cleanup EXIT

make_key() {
  local type=$1 out=$2
  case "$type" in
    encryption)
      openssl rand -hex 32 | tr -d '\n' >"$out"
      [ "$(wc -c <"$out")" -eq 64 ] || die "openssl rand made no 64 hex characters"
      ;;
    rsa)
      openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$out"
      openssl pkey -in "$out" -noout
      ;;
    ec-p256)
      openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out"
      openssl pkey -in "$out" -noout
      ;;
    *)
      die "unknown key type '$type' (encryption, rsa or ec-p256)"
      ;;
  esac
}

[ $(($# % 2)) -eq 0 ] || die "usage: masgen-mas-keys TYPE FILE [TYPE FILE]..."
while [ "$#" -gt 0 ]; do
  type=$1
  file=$2
  shift 2
  case "$file" in
    /nix/store/*) die "$file is in the Nix store, which is world-readable" ;;
    /*) ;;
    *) die "$file is not an absolute path" ;;
  esac
  if [ -e "$file" ] || [ -L "$file" ]; then
    echo "masgen-mas-keys: $file exists, kept"
    continue
  fi
  dir=$(dirname -- "$file")
  mkdir -p -- "$dir"
  tmp=$(mktemp -- "$dir/.masgen-key.XXXXXXXX")
  make_key "$type" "$tmp"
  chmod 0400 -- "$tmp"
  sync -- "$tmp"
  # `ln` refuses an existing target: a key made meanwhile is kept.
  if ln -- "$tmp" "$file"; then
    sync -- "$dir"
    echo "masgen-mas-keys: made $file ($type)"
  else
    echo "masgen-mas-keys: $file appeared meanwhile, kept"
  fi
  rm -f -- "$tmp"
  tmp=""
done
