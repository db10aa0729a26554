#!/usr/bin/env bash
# A CPU flame graph of prescale proxying HTTP/1.1 at a fixed moderate rate (h2load --h1, 16
# connections × 250 req/s = 4,000 req/s, the CPU-per-request cell of benches/wrk.sh) to one local
# backend: `perf record -g` on the proxy's process for SECONDS, folded and drawn by inferno.
# With REV, the proxy built from that git revision (in a temporary worktree, cached under
# target/flame-rev) is profiled instead of the working tree's — for before/after pictures.
#
# Usage: benches/flame.sh [OUT_SVG] [REV] [SECONDS]   (defaults: target/flame/prescale.svg,
#        the working tree, 10 s; PRESCALE_BIN=path profiles a binary built beforehand).
#        Prints the top of the profile by shared object.
# Needs: perf (Debian: linux-perf), h2load (nghttp2-client), inferno (cargo install inferno).
# Every process it starts is stopped by PID when it exits. Loopback only.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/target/flame/prescale.svg}
REV=${2:-}
SECS=${3:-10}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$REV" ]; then git -C "$ROOT" worktree remove --force "$WORK/src" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
for tool in perf h2load inferno-collapse-perf inferno-flamegraph; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (linux-perf, nghttp2-client, cargo install inferno)" >&2; exit 1; }
done
mkdir -p "$(dirname "$OUT")"

cd "$ROOT"
. benches/proxy-config.sh
cargo build --profile perf --quiet --bin prescale --example bench_backend
BIN=${PRESCALE_BIN:-$ROOT/target/perf/prescale}
if [ -n "$REV" ]; then
  git worktree add --detach --quiet "$WORK/src" "$REV"
  CARGO_TARGET_DIR=$ROOT/target/flame-rev cargo build --profile perf --quiet --bin prescale \
    --manifest-path "$WORK/src/Cargo.toml"
  BIN=$ROOT/target/flame-rev/perf/prescale
fi
BE=127.0.0.1:18020; PS=127.0.0.1:18021; ADM=127.0.0.1:18022
target/perf/examples/bench_backend $BE & PIDS+=($!)
proxy_config "$WORK/prescale.toml" "$PS" "$ADM" "$BE"
PRESCALE_LOG=warn "$BIN" run --config "$WORK/prescale.toml" >/dev/null & PS_PID=$!; PIDS+=($PS_PID)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/${PS##*:}) 2>/dev/null && break; sleep 0.1; done

# Warm up, then profile while the fixed rate runs.
h2load --h1 -c 16 --rps 250 -n 16000 "http://$PS/" >/dev/null 2>&1
cpu() { awk '{print $14 + $15}' "/proc/$PS_PID/stat"; }
C0=$(cpu)
N=$((4000 * (SECS + 2)))
h2load --h1 -c 16 --rps 250 -n "$N" "http://$PS/" >"$WORK/h2load.txt" 2>&1 & H_PID=$!; PIDS+=($H_PID)
sleep 1
perf record -F 999 -g -p "$PS_PID" -o "$WORK/perf.data" -- sleep "$SECS" 2>/dev/null
wait "$H_PID" || true
C1=$(cpu)
perf script -i "$WORK/perf.data" 2>/dev/null | inferno-collapse-perf > "$WORK/folded.txt"
title="prescale ${REV:-working tree}: HTTP/1.1 proxy at 4,000 req/s, ${SECS} s"
inferno-flamegraph --title "$title" < "$WORK/folded.txt" > "$OUT"
grep -E "finished in|requests:" "$WORK/h2load.txt" | sed 's/^/h2load: /'
# CPU per request over the whole fixed-rate run (perf's sampling included).
echo "CPU per request: $(( (C1 - C0) * 1000000 / $(getconf CLK_TCK) / N )) µs (user + system, $N requests)"
echo "flame graph: $OUT"
perf report -i "$WORK/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -8 || true
echo "top functions (self):"
perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' \
  | sed 's/[[:space:]]*-[[:space:]]*-[[:space:]]*$//' | head -15 || true
