#!/usr/bin/env bash
# Whole-process runs of masgen on generated fleets: wall time and peak
# resident memory (`/usr/bin/time`, its `%M`) of `check`, `build` (into an empty
# directory), a rebuild with nothing changed, `plan` and `diff --against`,
# and `cp -r` of the output tree side by side, for fleets of 1, 10, 100 and
# 1,000 homeservers (half fresh, half migrating: examples/fleet/'s specs
# with their own server names and hosts). Prints a Markdown table of the
# median of RUNS runs (default 3) per cell. Figures: docs/performance.md.
#
#   scripts/bench-fleet.sh            # 1 10 100 1000
#   RUNS=5 scripts/bench-fleet.sh 1 1000
#
# Uses target/release/masgen (built if missing; MASGEN_BIN overrides).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
MASGEN="${MASGEN_BIN:-$REPO/target/release/masgen}"
RUNS="${RUNS:-3}"
if [ ! -x "$MASGEN" ]; then
  (cd "$REPO" && cargo build --release --quiet)
fi
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian package time)" >&2; exit 2; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# gen N DIR: N specs and a fleet file listing them.
gen() {
  local n="$1" dir="$2" i
  mkdir -p "$dir"
  {
    echo "[fleet]"
    echo "specs = ["
    for ((i = 0; i < n; i++)); do
      if ((i % 2 == 0)); then
        sed -e "s/example\.org/hs$i.example/g" -e "s/matrix-org/hs$i/g" \
          "$REPO/examples/fleet/example-org.toml" >"$dir/hs$i.toml"
      else
        sed -e "s/example\.com/hs$i.example/g" -e "s/matrix-com/hs$i/g" \
          "$REPO/examples/fleet/example-com.toml" >"$dir/hs$i.toml"
      fi
      echo "  \"hs$i.toml\","
    done
    echo "]"
  } >"$dir/fleet.toml"
}

# once CMD...: "<wall ms> <peak KiB>" of one run (run in the fleet's directory).
# The wall time is taken around the command (ms; `time`'s own is 10 ms steps).
once() {
  local log="$WORK/time.log" start end
  start="$(date +%s%N)"
  /usr/bin/time -f '%M' -o "$log" "$@" >/dev/null 2>&1 || true
  end="$(date +%s%N)"
  echo "$(((end - start) / 1000000)) $(tail -n1 "$log")"
}

# cell PREP CMD...: median wall time and peak memory of RUNS runs, PREP
# (a shell snippet) run before each.
cell() {
  local prep="$1" r
  shift
  for ((r = 0; r < RUNS; r++)); do
    eval "$prep"
    once "$@"
  done | sort -n | awk -v runs="$RUNS" '
    { ms[NR] = $1; if ($2 > kib) kib = $2 }
    END { printf "%d ms, %.1f MB", ms[int((runs + 1) / 2)], kib / 1024 }
  '
}

echo "| homeservers | files | check | build | rebuild, nothing changed | plan | diff --against | cp -r of the output |"
echo "|---|---|---|---|---|---|---|---|"
for n in "${@:-1 10 100 1000}"; do
  for size in $n; do
    dir="$WORK/fleet-$size"
    gen "$size" "$dir"
    cd "$dir"
    check="$(cell : "$MASGEN" check fleet.toml)"
    build="$(cell 'rm -rf out' "$MASGEN" build fleet.toml -o out)"
    rebuild="$(cell : "$MASGEN" build fleet.toml -o out)"
    # One homeserver plans from a state it is told; a fleet from each mode's start.
    if [ "$size" -eq 1 ]; then from=(--from fresh); else from=(); fi
    plan="$(cell : "$MASGEN" plan fleet.toml "${from[@]}")"
    diff="$(cell : "$MASGEN" diff fleet.toml --against out)"
    copy="$(cell 'rm -rf copy' cp -r out copy)"
    files="$(find out -type f | wc -l)"
    echo "| $size | $files | $check | $build | $rebuild | $plan | $diff | $copy |"
    cd "$REPO"
    rm -rf "$dir"
  done
done
