#!/usr/bin/env bash
# The evaluation report: `prescale simulate` on every `*.csv` trace in a folder, all policies,
# default settings (one set for every trace: nothing is tuned per trace). Writes
# OUT/evaluation.md (one row per trace and policy, plus the targets of the simulator issue:
# the share of the reactive→oracle SLO gap that predictive+reactive closes, and its vCPU-hours
# over oracle's) and OUT/<trace>.svg.
#
# Usage: benches/evaluate.sh [DATA_DIR] [OUT_DIR]     (defaults: ../shared/data, target/evaluation)
# The traces are read where they are; nothing is copied into the repository.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${1:-$ROOT/../shared/data}
OUT=${2:-$ROOT/target/evaluation}
mkdir -p "$OUT"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
BIN=$ROOT/target/release/prescale

shopt -s nullglob
traces=("$DATA"/*.csv)
[ ${#traces[@]} -gt 0 ] || { echo "no *.csv traces in $DATA" >&2; exit 1; }
for f in "${traces[@]}"; do
  name=$(basename "$f" .csv)
  start=$(date +%s%N)
  "$BIN" simulate --trace "$f" --json --svg "$OUT/$name.svg" > "$OUT/$name.json"
  echo "$name: replayed in $(( ($(date +%s%N) - start) / 1000000 )) ms" >&2
done

python3 - "$OUT" "${traces[@]}" <<'PY'
import json, os, sys
out = sys.argv[1]
rows, summary = [], []
settings = None
for f in sys.argv[2:]:
    name = os.path.basename(f)[:-4]
    r = json.load(open(os.path.join(out, name + ".json")))
    settings = r["settings"]
    P = {p["policy"]: p for p in r["policies"]}
    for p in r["policies"]:
        rows.append(f"| {name} | {p['policy']} | {p['slo_violation_minutes']} | {p['unserved_fraction']:.4f} | "
                    f"{p['vcpu_hours']:.0f} | {p['vm_hours']:.0f} | {p['actions']} | {p['under_accuracy']:.2f} | "
                    f"{p['over_accuracy']:.0f} | {p['under_timeshare']:.2f} | {p['over_timeshare']:.1f} |")
    re_, o, pr = P["reactive"], P["oracle"], P["predictive+reactive"]
    gap = re_["slo_violation_minutes"] - o["slo_violation_minutes"]
    closed = (re_["slo_violation_minutes"] - pr["slo_violation_minutes"]) / gap if gap > 0 else 1.0
    cost = pr["vcpu_hours"] / o["vcpu_hours"]
    fc = r.get("forecast") or {}
    summary.append(f"| {name} | {re_['slo_violation_minutes']} | {o['slo_violation_minutes']} | "
                   f"{pr['slo_violation_minutes']} | {closed:.0%} {'✓' if closed >= 0.9 else '✗'} | "
                   f"{cost:.2f}× {'✓' if cost <= 1.25 else '✗'} | {o['vcpu_hours'] / re_['vcpu_hours']:.2f}× | "
                   f"{fc.get('model', '-')} | {fc.get('mase_60') or float('nan'):.3f} | {fc.get('coverage80_60') or float('nan'):.2f} |")
with open(os.path.join(out, "evaluation.md"), "w") as w:
    w.write("| trace | reactive SLO min | oracle SLO min | predictive+reactive SLO min | gap closed (≥ 90 %) | "
            "vCPU-h vs oracle (≤ 1.25×) | oracle vs reactive vCPU-h | model at the end | replay MASE 60 | replay cov80 |\n")
    w.write("|---|---|---|---|---|---|---|---|---|---|\n")
    w.write("\n".join(summary) + "\n\n")
    w.write("| trace | policy | SLO-violation min | unserved | vCPU-h | VM-h | actions | θU % | θO % | τU % | τO % |\n")
    w.write("|---|---|---|---|---|---|---|---|---|---|---|\n")
    w.write("\n".join(rows) + "\n\n")
    w.write("Settings (defaults, the same for every trace): `" + json.dumps(settings) + "`\n")
print(open(os.path.join(out, "evaluation.md")).read())
PY
