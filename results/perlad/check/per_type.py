"""Issue 18, session 22: mean DS by Bench2Drive scenario type (the 38 routes of ../shared) with and without the
candidate check: rule, il and perlad from results/perlad/committed/per_type_b2d.md (the committed table: il eval seeds
0-2, perlad RL seeds 0, 1 x eval seeds 0-2), il and perlad (RL seed 0, the committed perlad) with the check and with
the check and unstall U from the run folders of run.sh (eval seeds 0-2).
Usage: python results/perlad/check/per_type.py E U > results/perlad/check/per_type_b2d.md"""
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

E, U = Path(sys.argv[1]), sys.argv[2]
HERE = Path(__file__).parent


def by_type(runs):
    ds = defaultdict(list)
    for run in runs:
        for r in json.loads((E / run / "results.json").read_text())["_checkpoint"]["records"]:
            ds[(r["meta"]["scenario_type"], r["meta"]["town"])].append(r["scores"]["score_composed"])
    return {k: sum(v) / len(v) for k, v in ds.items()}


committed = {}  # (type, town) -> (rule, il, perlad)
for line in (HERE.parent / "committed" / "per_type_b2d.md").read_text().splitlines():
    c = [x.strip() for x in line.split("|")[1:-1]]
    if len(c) >= 6 and re.match(r"^\d", c[3]):
        committed[(c[0], c[1])] = tuple(float(x) for x in c[3:6])
il = by_type([f"b2d_il_chk3.0_s{s}" for s in range(3)])
pl = by_type([f"b2d_perlad_chk3.0_s{s}" for s in range(3)])
ilu = by_type([f"b2d_il_chk3.0_u{U}_s{s}" for s in range(3)])
plu = by_type([f"b2d_perlad_chk3.0_u{U}_s{s}" for s in range(3)])
keys = sorted(il, key=lambda k: (ilu[k] - committed[k][1], k))
print("**The 38 Bench2Drive routes of ../shared by scenario type and town: mean DS without and with `--check 3.0`, "
      f"and with `--check 3.0 --unstall {U}` (rule: eval seed 0; il: eval seeds 0-2; perlad: RL seeds 0, 1 x eval "
      "seeds 0-2; with the check: the committed il and perlad (RL seed 0) x eval seeds 0-2)**\n")
print("| type | town | rule | il | il + check | il + check + unstall | perlad | perlad + check | perlad + check + unstall "
      "| il: check + unstall - none |")
print("|---|---|---|---|---|---|---|---|---|---|")
for k in keys:
    rule, i, p = committed[k]
    print(f"| {k[0]} | {k[1]} | {rule:.1f} | {i:.1f} | {il[k]:.1f} | {ilu[k]:.1f} | {p:.1f} | {pl[k]:.1f} | "
          f"{plu[k]:.1f} | {ilu[k] - i:+.1f} |")
