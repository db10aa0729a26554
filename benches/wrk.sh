#!/usr/bin/env bash
# Whole-proxy benchmarks against nginx and HAProxy, all in one run, on one local backend:
#
#  1. Throughput (wrk -t2, keep-alive): direct, prescale (call recording on, the default),
#     prescale with recording off, nginx, HAProxy — interleaved in rounds; req/s, p50, p99
#     (median of the rounds, with min–max), ratios to nginx and HAProxy, and the CPU each proxy
#     spent per request during those runs.
#  2. CPU per request at a fixed moderate rate (h2load --h1, 16 connections, 4,000 req/s), so
#     that no process is starved: user + system CPU of the proxy's processes from /proc ÷
#     requests served.
#  3. HTTP/2 (h2load, 4 connections × 16 streams = 64 streams): h2c and over TLS, prescale and
#     nginx.
#  4. TLS 1.3 over HTTP/1.1 (wrk to https, 64 connections): prescale and nginx.
#  5. Memory per idle keep-alive connection: 10,000 connections that each made one request,
#     RSS growth ÷ 10,000 (prescale and nginx).
#
# Usage: benches/wrk.sh [ROUNDS] [SECONDS]      (defaults: 3 rounds of 5 s per cell)
# Needs: wrk, h2load, nginx, haproxy, openssl, python3 (apt-get installed when missing and
# running as root). Every process it starts is stopped by PID when it exits. Loopback only.
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
for tool in wrk h2load nginx haproxy openssl python3; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=${need[*]}; pkgs=${pkgs/nginx/nginx-light}; pkgs=${pkgs/h2load/nghttp2-client}
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
  else
    echo "missing: ${need[*]} (apt-get install $pkgs)" >&2; exit 1
  fi
fi
export PATH=$PATH:/usr/sbin
# 10,000 idle connections need as many descriptors on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cd "$ROOT"
. benches/proxy-config.sh
cargo build --profile perf --quiet --bin prescale --example bench_backend
BE=127.0.0.1:18000; PS=127.0.0.1:18001; NG=127.0.0.1:18002; HA=127.0.0.1:18003; PN=127.0.0.1:18004
PT=127.0.0.1:18005; NH2=127.0.0.1:18006; NT=127.0.0.1:18007
ADM=127.0.0.1:18009; ADN=127.0.0.1:18008; ADT=127.0.0.1:18010

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

target/perf/examples/bench_backend $BE & PIDS+=($!)

proxy_config "$WORK/prescale.toml" "$PS" "$ADM" "$BE"
PRESCALE_LOG=warn target/perf/prescale run --config "$WORK/prescale.toml" >/dev/null & PS_PID=$!; PIDS+=($PS_PID)
sed -e "s/$PS/$PN/; s/$ADM/$ADN/" "$WORK/prescale.toml" > "$WORK/norec.toml"
printf '[historian]\nenabled = false\n' >> "$WORK/norec.toml"
PRESCALE_LOG=warn target/perf/prescale run --config "$WORK/norec.toml" >/dev/null & PN_PID=$!; PIDS+=($PN_PID)
sed -e "s/$PS\"/$PT\"\ntls = { cert = \"cert.pem\", key = \"key.pem\" }/; s/$ADM/$ADT/" "$WORK/prescale.toml" > "$WORK/tls.toml"
PRESCALE_LOG=warn target/perf/prescale run --config "$WORK/tls.toml" >/dev/null & PT_PID=$!; PIDS+=($PT_PID)

mkdir -p "$WORK/nginx"
cat > "$WORK/nginx.conf" <<EOT
worker_processes 2;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log stderr warn;
worker_rlimit_nofile 20000;
events { worker_connections 12000; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream be { server $BE; keepalive 256; }
  server {
    listen $NG;
    listen $NH2 http2;
    listen $NT ssl http2;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.3;
    location / {
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;
    }
  }
}
EOT
nginx -c "$WORK/nginx.conf" -p "$WORK/nginx" 2>/dev/null & NG_PID=$!; PIDS+=($NG_PID)

cat > "$WORK/haproxy.cfg" <<EOT
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
EOT
haproxy -f "$WORK/haproxy.cfg" -db & HA_PID=$!; PIDS+=($HA_PID)

for a in $BE $PS $PN $NG $HA; do
  for _ in $(seq 100); do curl -sf "http://$a/" >/dev/null && break; sleep 0.1; done
done
for a in $PT $NT; do
  for _ in $(seq 100); do curl -skf "https://$a/" >/dev/null && break; sleep 0.1; done
done

# CPU ticks (user + system) of a process and its children (nginx's workers).
ticks() {
  local t=0 q
  for q in "$1" $(pgrep -P "$1" || true); do t=$((t + $(awk '{print $14 + $15}' "/proc/$q/stat"))); done
  echo "$t"
}
HZ=$(getconf CLK_TCK)
# µs of CPU per request: cpu_per T0 T1 REQUESTS (ticks before and after).
cpu_per() { python3 -c "print(($2 - $1) / $HZ * 1e6 / max($3, 1))"; }
pid_of() {
  case $1 in prescale) echo $PS_PID;; prescale_norec) echo $PN_PID;; nginx) echo $NG_PID;; haproxy) echo $HA_PID;;
    prescale_tls) echo $PT_PID;; *) echo "";; esac
}

# 1. Throughput. scenario = connections:path
SCENARIOS="64:/ 256:/ 64:/16k"
echo "round,target,conns,path,rps,p50_ms,p99_ms,cpu_us" > "$WORK/raw.csv"
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v); print v} else if (v ~ /s$/) {sub(/s/,"",v); print v*1000} else print v}'; }
for r in $(seq "$ROUNDS"); do
  for sc in $SCENARIOS; do
    c=${sc%%:*}; p=${sc#*:}
    for t in direct:$BE prescale:$PS prescale_norec:$PN nginx:$NG haproxy:$HA; do
      name=${t%%:*}; addr=${t#*:}; pid=$(pid_of "$name")
      t0=0; [ -n "$pid" ] && t0=$(ticks "$pid")
      out=$(wrk -t2 -c"$c" -d"${SECS}s" --latency "http://$addr$p")
      t1=0; [ -n "$pid" ] && t1=$(ticks "$pid")
      n=$(awk '/requests in/ {print $1}' <<<"$out")
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
      p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
      p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
      cpu=$(cpu_per "$t0" "$t1" "$n")
      errs=$(awk '/Non-2xx|Socket errors/' <<<"$out")
      [ -n "$errs" ] && echo "  $name c=$c $p: $errs" >&2
      echo "$r,$name,$c,$p,$rps,$p50,$p99,$cpu" >> "$WORK/raw.csv"
      printf 'round %s  %-15s c=%-3s %-4s %9s req/s  p50 %6sms  p99 %6sms  %5.1f µs CPU/req\n' "$r" "$name" "$c" "$p" "$rps" "$p50" "$p99" "$cpu" >&2
    done
  done
done

# 2. CPU per request at a fixed rate (16 connections × 250 req/s for 2×SECS s).
RATE_N=$((16 * 250 * SECS * 2))
echo "round,target,requests,cpu_us" > "$WORK/cpu.csv"
for r in $(seq "$ROUNDS"); do
  for t in prescale:$PS prescale_norec:$PN nginx:$NG haproxy:$HA; do
    name=${t%%:*}; addr=${t#*:}; pid=$(pid_of "$name")
    t0=$(ticks "$pid")
    out=$(h2load --h1 -c 16 --rps 250 -n "$RATE_N" "http://$addr/" 2>&1)
    t1=$(ticks "$pid")
    ok=$(awk '/^requests:/ {print $8}' <<<"$out")
    cpu=$(cpu_per "$t0" "$t1" "$ok")
    echo "$r,$name,$ok,$cpu" >> "$WORK/cpu.csv"
    printf 'round %s  %-15s fixed rate: %s requests, %5.1f µs CPU/req\n' "$r" "$name" "$ok" "$cpu" >&2
  done
done

# 3 and 4. HTTP/2 (h2c, TLS) and TLS 1.3 over HTTP/1.1.
echo "round,cell,target,rps,cpu_us" > "$WORK/proto.csv"
for r in $(seq "$ROUNDS"); do
  for t in "h2c:prescale:http://$PS/" "h2c:nginx:http://$NH2/" "h2-tls:prescale_tls:https://$PT/" "h2-tls:nginx:https://$NT/"; do
    IFS=: read -r cell name url <<<"$t"; url=${t#*:*:}; pid=$(pid_of "$name")
    t0=$(ticks "$pid")
    out=$(h2load -c 4 -m 16 -t 1 -D "$SECS" "$url" 2>&1)
    t1=$(ticks "$pid")
    rps=$(awk '/^finished in/ {print $4}' <<<"$out")
    ok=$(awk '/^requests:/ {print $8}' <<<"$out")
    cpu=$(cpu_per "$t0" "$t1" "$ok")
    echo "$r,$cell,$name,$rps,$cpu" >> "$WORK/proto.csv"
    printf 'round %s  %-7s %-13s %9s req/s  %5.1f µs CPU/req\n' "$r" "$cell" "$name" "$rps" "$cpu" >&2
  done
  for t in "prescale_tls:https://$PT/" "nginx:https://$NT/"; do
    name=${t%%:*}; url=${t#*:}; pid=$(pid_of "$name")
    t0=$(ticks "$pid")
    out=$(wrk -t2 -c64 -d"${SECS}s" "$url")
    t1=$(ticks "$pid")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out"); n=$(awk '/requests in/ {print $1}' <<<"$out")
    cpu=$(cpu_per "$t0" "$t1" "$n")
    echo "$r,tls-h1,$name,$rps,$cpu" >> "$WORK/proto.csv"
    printf 'round %s  tls-h1  %-13s %9s req/s  %5.1f µs CPU/req\n' "$r" "$name" "$rps" "$cpu" >&2
  done
done

# 5. Memory per idle keep-alive connection.
idle() { # port pids…
  python3 - "$@" <<'PY'
import resource, socket, sys, time
h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (h, h))
port, pids, n = int(sys.argv[1]), sys.argv[2:], 10_000
def rss():
    return sum(int(l.split()[1]) for p in pids for l in open(f"/proc/{p}/status") if l.startswith("VmRSS"))
before = rss()
socks, req = [], b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    socks.append(s)
    if len(socks) % 500 == 0:
        for t in socks[-500:]:
            t.recv(65536)
time.sleep(1.5)
after = rss()
print(f"{(after - before) / n:.2f}")
for s in socks:
    s.close()
PY
}
PS_IDLE=$(idle "${PS##*:}" "$PS_PID")
NG_IDLE=$(idle "${NG##*:}" $(pgrep -P "$NG_PID"))
RSS_KB=$(awk '/VmHWM/ {print $2}' /proc/$PS_PID/status)
cp "$WORK/raw.csv" "$ROOT/target/wrk-raw.csv"; cp "$WORK/cpu.csv" "$ROOT/target/wrk-cpu.csv"; cp "$WORK/proto.csv" "$ROOT/target/wrk-proto.csv"

python3 - "$WORK" "$RSS_KB" "$PS_IDLE" "$NG_IDLE" <<'PY'
import csv, statistics, sys
work = sys.argv[1]
def med(xs): return statistics.median(xs)
def rng(xs, f="{:,.0f}"): return f"{f.format(med(xs))} ({f.format(min(xs))}–{f.format(max(xs))})"
rows = list(csv.DictReader(open(f"{work}/raw.csv")))
cells = {}
for r in rows:
    cells.setdefault((int(r["conns"]), r["path"], r["target"]), []).append(r)
print("### 1. Throughput (wrk -t2, keep-alive)\n")
print("| conns | body | target | req/s median (min–max) | ×nginx | ×HAProxy | p50 ms | p99 ms median (min–max) | CPU µs/req |")
print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
for (c, p) in sorted({(k[0], k[1]) for k in cells}, key=lambda k: (k[1], k[0])):
    ng = med([float(r["rps"]) for r in cells[(c, p, "nginx")]])
    ha = med([float(r["rps"]) for r in cells[(c, p, "haproxy")]])
    for t in ["direct", "prescale", "prescale_norec", "nginx", "haproxy"]:
        rs = cells[(c, p, t)]
        rps = [float(r["rps"]) for r in rs]; p50 = [float(r["p50_ms"]) for r in rs]; p99 = [float(r["p99_ms"]) for r in rs]
        cpu = [float(r["cpu_us"]) for r in rs]
        body = "16 KiB" if p == "/16k" else "~100 B"
        cpu_s = "–" if t == "direct" else f"{med(cpu):.1f}"
        print(f"| {c} | {body} | {t} | {rng(rps)} | {med(rps)/ng:.2f} | {med(rps)/ha:.2f} | {med(p50):.2f} | {rng(p99, '{:.2f}')} | {cpu_s} |")
rec = [float(r["rps"]) for r in rows if r["target"] == "prescale"]
norec = [float(r["rps"]) for r in rows if r["target"] == "prescale_norec"]
ratios = [a / b for a, b in zip(rec, norec)]
print(f"\nrecording on ÷ off, req/s per cell and round: median {med(ratios):.3f} (range {min(ratios):.3f}–{max(ratios):.3f})")

print("\n### 2. CPU per request at a fixed rate (h2load --h1, 16 connections × 250 req/s)\n")
print("| target | CPU µs/req median (min–max) | ×nginx |")
print("|---|---:|---:|")
cpu = {}
for r in csv.DictReader(open(f"{work}/cpu.csv")):
    cpu.setdefault(r["target"], []).append(float(r["cpu_us"]))
for t in ["prescale", "prescale_norec", "nginx", "haproxy"]:
    print(f"| {t} | {rng(cpu[t], '{:.1f}')} | {med(cpu[t]) / med(cpu['nginx']):.2f} |")

print("\n### 3–4. HTTP/2 (h2load, 4 connections × 16 streams) and TLS 1.3 over HTTP/1.1 (wrk, 64 connections)\n")
print("| cell | target | req/s median (min–max) | ×nginx | CPU µs/req |")
print("|---|---|---:|---:|---:|")
proto = {}
for r in csv.DictReader(open(f"{work}/proto.csv")):
    proto.setdefault((r["cell"], r["target"]), []).append(r)
for cell in ["h2c", "h2-tls", "tls-h1"]:
    ng = med([float(r["rps"]) for r in proto[(cell, "nginx")]])
    for (c, t), rs in proto.items():
        if c != cell: continue
        rps = [float(r["rps"]) for r in rs]
        print(f"| {cell} | {t} | {rng(rps)} | {med(rps)/ng:.2f} | {med([float(r['cpu_us']) for r in rs]):.1f} |")

print(f"\n### 5. Memory per idle keep-alive connection (10,000 connections, one request each)\n")
print(f"prescale {float(sys.argv[3]):.1f} KiB, nginx {float(sys.argv[4]):.1f} KiB per connection (RSS growth ÷ 10,000)")
print(f"\nprescale peak RSS over the run: {int(sys.argv[2])/1024:.1f} MiB")
PY
