#!/usr/bin/env bash
# The evaluation report: `prescale simulate` on every `*.csv` trace in a folder, all policies,
# default settings (one set for every trace: nothing is tuned per trace). Writes
# OUT/evaluation.md (one row per trace and policy, plus the targets of the simulator issue:
# the share of the reactive→oracle SLO gap that predictive+reactive closes, and its vCPU-hours
# over oracle's, the forecast bands' coverage per horizon group) and, per trace, OUT/<trace>.svg
# (the replay) and OUT/<trace>.cost.svg (cost against violations, one point per policy).
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
                    f"{p['held_fraction']:.4f} | {p['failed_fraction']:.4f} | {p['mean_held_s']:.1f} | "
                    f"{p['vcpu_hours']:.0f} | {p['vm_hours']:.0f} | {p.get('spare_vm_hours', 0):.0f} | {p['actions']} | {p['under_accuracy']:.2f} | "
                    f"{p['over_accuracy']:.0f} | {p['under_timeshare']:.2f} | {p['over_timeshare']:.1f} |")
    re_, o, pr = P["reactive"], P["oracle"], P["predictive+reactive"]
    gap = re_["slo_violation_minutes"] - o["slo_violation_minutes"]
    closed = (re_["slo_violation_minutes"] - pr["slo_violation_minutes"]) / gap if gap > 0 else 1.0
    cost = pr["vcpu_hours"] / o["vcpu_hours"]
    fc = r.get("forecast") or {}
    groups = fc.get("coverage_by_horizon") or []
    band = lambda k: (f"{min(g[k] for g in groups):.3f}–{max(g[k] for g in groups):.3f}" if groups else "-")
    ok80 = groups and all(0.78 <= g["coverage80"] <= 0.82 for g in groups)
    ok95 = groups and all(0.94 <= g["coverage95"] <= 0.96 for g in groups)
    summary.append(f"| {name} | {re_['slo_violation_minutes']} | {o['slo_violation_minutes']} | "
                   f"{pr['slo_violation_minutes']} | {closed:.0%} {'✓' if closed >= 0.9 else '✗'} | "
                   f"{cost:.2f}× {'✓' if cost <= 1.20 else '✗'} | {o['vcpu_hours'] / re_['vcpu_hours']:.2f}× | "
                   f"{fc.get('model', '-')} | {fc.get('mase_60') or float('nan'):.3f} | "
                   f"{band('coverage80')} {'✓' if ok80 else '✗'} | {band('coverage95')} {'✓' if ok95 else '✗'} |")
    # Cost against violations, one point per policy (lower left is better).
    pts = [(p["policy"], p["vcpu_hours"], p["slo_violation_minutes"]) for p in r["policies"]]
    W, H, M = 560, 360, 60
    xmax = max(x for _, x, _ in pts) * 1.1 or 1
    ymax = max(y for _, _, y in pts) * 1.1 or 1
    X = lambda x: M + (W - 2 * M) * x / xmax
    Y = lambda y: H - M - (H - 2 * M) * y / ymax
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<text x="{W/2}" y="20" text-anchor="middle" font-weight="bold">{name}: cost against SLO violations</text>',
           f'<line x1="{M}" y1="{H-M}" x2="{W-M}" y2="{H-M}" stroke="#333"/><line x1="{M}" y1="{M}" x2="{M}" y2="{H-M}" stroke="#333"/>',
           f'<text x="{W/2}" y="{H-20}" text-anchor="middle">vCPU-hours (0 – {xmax:.0f})</text>',
           f'<text x="18" y="{H/2}" text-anchor="middle" transform="rotate(-90 18 {H/2})">SLO-violation minutes (0 – {ymax:.0f})</text>']
    colors = {"oracle": "#2a2", "reactive": "#c33", "static": "#888", "predictive": "#58c", "predictive+reactive": "#13a"}
    for pol, x, y in pts:
        c = colors.get(pol, "#000")
        svg.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="6" fill="{c}"><title>{pol}: {x:.0f} vCPU-h, {y} min</title></circle>')
        svg.append(f'<text x="{X(x)+9:.1f}" y="{Y(y)+4:.1f}" fill="{c}">{pol} ({x:.0f}, {y})</text>')
    svg.append("</svg>")
    open(os.path.join(out, name + ".cost.svg"), "w").write("\n".join(svg) + "\n")
with open(os.path.join(out, "evaluation.md"), "w") as w:
    w.write("| trace | reactive SLO min | oracle SLO min | predictive+reactive SLO min | gap closed (≥ 90 %) | "
            "vCPU-h vs oracle (≤ 1.20×) | oracle vs reactive vCPU-h | model at the end | replay MASE 60 | "
            "80 % band coverage by horizon group (0.78–0.82) | 95 % band coverage (0.94–0.96) |\n")
    w.write("|---|---|---|---|---|---|---|---|---|---|---|\n")
    w.write("\n".join(summary) + "\n\n")
    w.write("| trace | policy | SLO-violation min | unserved | held | failed after the hold | mean hold s | vCPU-h | VM-h | of which warm spares | actions | θU % | θO % | τU % | τO % |\n")
    w.write("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    w.write("\n".join(rows) + "\n\n")
    w.write("Settings (defaults, the same for every trace): `" + json.dumps(settings) + "`\n\n")
    w.write("Charts: <trace>.svg (the replay), <trace>.cost.svg (each policy's vCPU-hours against its SLO-violation minutes).\n")
print(open(os.path.join(out, "evaluation.md")).read())
PY
