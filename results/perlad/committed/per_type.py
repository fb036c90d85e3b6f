"""Issue 18, session 18: mean DS by Bench2Drive scenario type (the 38 routes of ../shared) of the rule planner and
the committed planners before and after this session (run folders of after.sh / after2.sh, and
results/perlad/carla_towns/per_type_b2d.md's 'perlad committed' column for the previous perlad, eval seed 0).
Usage: python results/perlad/committed/per_type.py [E] > results/perlad/committed/per_type_b2d.md"""
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

E = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/e21")
HERE = Path(__file__).parent


def by_type(runs):
    ds = defaultdict(list)
    for run in runs:
        f = E / run / "results.json"
        if f.exists():
            for r in json.loads(f.read_text())["_checkpoint"]["records"]:
                ds[(r["meta"]["scenario_type"], r["meta"]["town"])].append(r["scores"]["score_composed"])
    return {k: sum(v) / len(v) for k, v in ds.items()}


old = {}  # the previous committed perlad, eval seed 0
for line in (HERE.parent / "carla_towns" / "per_type_b2d.md").read_text().splitlines():
    c = [x.strip() for x in line.split("|")[1:-1]]
    if len(c) >= 6 and re.match(r"^\d", c[2]):
        old[(c[0], c[1])] = float(c[5])
cols = {"rule": by_type(["b2d_rule_s0"]), "il": by_type([f"b2d_il_s{s}" for s in range(3)]),
        "perlad": by_type([f"b2d_perlad_t{t}_s{s}" for t in range(2) for s in range(3)])}
keys = sorted(cols["il"], key=lambda k: cols["il"][k] - old.get(k, 0.0))
print("**The 38 Bench2Drive routes of ../shared by scenario type and town: mean DS (rule: eval seed 0; il: eval "
      "seeds 0-2; perlad: RL seeds 0, 1 x eval seeds 0-2; previous perlad: eval seed 0)**\n")
print("| type | town | previous perlad | rule | il | perlad | il - previous perlad | perlad - il |")
print("|---|---|---|---|---|---|---|---|")
for k in keys:
    row = [old.get(k), cols["rule"].get(k), cols["il"].get(k), cols["perlad"].get(k)]
    f = [f"{x:.1f}" if x is not None else "" for x in row]
    d = f"{row[2] - row[0]:+.1f}" if row[0] is not None and row[2] is not None else ""
    rl = f"{row[3] - row[2]:+.1f}" if row[2] is not None and row[3] is not None else ""
    print(f"| {k[0]} | {k[1]} | " + " | ".join(f) + f" | {d} | {rl} |")
