#!/usr/bin/env bash
# Whole-proxy load benchmark: wrk against the same local backend directly, through prescale
# (call recording on, the default), through prescale with recording off, through nginx and
# through HAProxy — interleaved in rounds in one run — and a table of req/s, p50 and p99
# (median of the rounds, with min–max) and each one's ratio to nginx.
#
# Usage: benches/wrk.sh [ROUNDS] [SECONDS]      (defaults: 3 rounds of 5 s per cell)
# Needs: wrk, nginx, haproxy (installed with apt-get when missing and running as root).
# Every process it starts is stopped by PID when it exits. Loopback only.
set -euo pipefail

ROUNDS=${1:-3}
SECS=${2:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

need=()
for tool in wrk nginx haproxy; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=${need[*]}; pkgs=${pkgs/nginx/nginx-light}
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
  else
    echo "missing: ${need[*]} (apt-get install $pkgs)" >&2; exit 1
  fi
fi
export PATH=$PATH:/usr/sbin

cd "$ROOT"
cargo build --profile perf --quiet --bin prescale --example bench_backend
BE=127.0.0.1:18000; PS=127.0.0.1:18001; NG=127.0.0.1:18002; HA=127.0.0.1:18003; ADM=127.0.0.1:18009
PN=127.0.0.1:18004; ADN=127.0.0.1:18008

target/perf/examples/bench_backend $BE & PIDS+=($!)

cat > "$WORK/prescale.toml" <<EOF
[listen]
addr = "$PS"
[admin]
addr = "$ADM"
[[endpoint]]
name = "bench"
path_prefix = "/"
pool = "be"
[[pool]]
name = "be"
members = ["$BE"]
EOF
PRESCALE_LOG=warn target/perf/prescale run --config "$WORK/prescale.toml" >/dev/null & PS_PID=$!; PIDS+=($PS_PID)
sed -e "s/$PS/$PN/; s/$ADM/$ADN/" "$WORK/prescale.toml" > "$WORK/norec.toml"
printf '[historian]\nenabled = false\n' >> "$WORK/norec.toml"
PRESCALE_LOG=warn target/perf/prescale run --config "$WORK/norec.toml" >/dev/null & PIDS+=($!)

mkdir -p "$WORK/nginx"
cat > "$WORK/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream be { server $BE; keepalive 256; }
  server {
    listen $NG;
    location / {
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;
    }
  }
}
EOF
nginx -c "$WORK/nginx.conf" -p "$WORK/nginx" & PIDS+=($!)

cat > "$WORK/haproxy.cfg" <<EOF
global
  nbthread 2
  maxconn 8000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend f
  bind $HA
  default_backend b
backend b
  server s1 $BE maxconn 4096
EOF
haproxy -f "$WORK/haproxy.cfg" -db & PIDS+=($!)

for a in $BE $PS $PN $NG $HA; do
  for _ in $(seq 100); do curl -sf "http://$a/" >/dev/null && break; sleep 0.1; done
done

# scenario = connections:path
SCENARIOS="16:/ 64:/ 256:/ 64:/16k"
echo "round,target,conns,path,rps,p50_ms,p99_ms" > "$WORK/raw.csv"
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v); print v} else if (v ~ /s$/) {sub(/s/,"",v); print v*1000} else print v}'; }
for r in $(seq "$ROUNDS"); do
  for sc in $SCENARIOS; do
    c=${sc%%:*}; p=${sc#*:}
    for t in direct:$BE prescale:$PS prescale_norec:$PN nginx:$NG haproxy:$HA; do
      name=${t%%:*}; addr=${t#*:}
      out=$(wrk -t2 -c"$c" -d"${SECS}s" --latency "http://$addr$p")
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
      p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
      p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
      errs=$(awk '/Non-2xx|Socket errors/' <<<"$out")
      [ -n "$errs" ] && echo "  $name c=$c $p: $errs" >&2
      echo "$r,$name,$c,$p,$rps,$p50,$p99" >> "$WORK/raw.csv"
      echo "round $r  $name  c=$c $p  ${rps} req/s  p50 ${p50}ms  p99 ${p99}ms" >&2
    done
  done
done
RSS_KB=$(awk '/VmHWM/ {print $2}' /proc/$PS_PID/status)
cp "$WORK/raw.csv" "$ROOT/target/wrk-raw.csv"

python3 - "$WORK/raw.csv" "$RSS_KB" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cells = {}
for r in rows:
    cells.setdefault((int(r["conns"]), r["path"], r["target"]), []).append(r)
def med(xs): return statistics.median(xs)
print("| conns | body | target | req/s median (min–max) | ×nginx | p50 ms | p99 ms median (min–max) |")
print("|---:|---|---|---:|---:|---:|---:|")
for (c, p) in sorted({(k[0], k[1]) for k in cells}, key=lambda k: (k[1], k[0])):
    ng = med([float(r["rps"]) for r in cells[(c, p, "nginx")]])
    for t in ["direct", "prescale", "prescale_norec", "nginx", "haproxy"]:
        rs = cells[(c, p, t)]
        rps = [float(r["rps"]) for r in rs]; p50 = [float(r["p50_ms"]) for r in rs]; p99 = [float(r["p99_ms"]) for r in rs]
        body = "16 KiB" if p == "/16k" else "~100 B"
        print(f"| {c} | {body} | {t} | {med(rps):,.0f} ({min(rps):,.0f}–{max(rps):,.0f}) | {med(rps)/ng:.2f} | {med(p50):.2f} | {med(p99):.2f} ({min(p99):.2f}–{max(p99):.2f}) |")
print(f"\nprescale peak RSS under this load: {int(sys.argv[2])/1024:.1f} MiB")
rec = [float(r["rps"]) for r in rows if r["target"] == "prescale"]
norec = [float(r["rps"]) for r in rows if r["target"] == "prescale_norec"]
ratios = [a / b for a, b in zip(rec, norec)]
print(f"recording on / off, req/s per cell: median {statistics.median(ratios):.3f} (range {min(ratios):.3f}–{max(ratios):.3f})")
PY
