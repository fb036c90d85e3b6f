"""Issue 19, session 25: the per-round held-out table of TakeAD from il_bc over training seeds, from the JSON of
results/takead/heldout.py (names <t>_r<round>, il_bc for round 0; other names as single rows).
Usage: .venv/bin/python results/takead/rounds_table.py HELDOUT.json TRAIN_SEEDS ROUNDS [EXTRA...]
  e.g. ... results/takead/s25_heldout.json t0,t1 1,2,3,4 t0_dag4 dpo1_r4"""
import json
import statistics as st
import sys

held = json.loads(open(sys.argv[1]).read())
seeds, rounds, extra = sys.argv[2].split(","), [int(r) for r in sys.argv[3].split(",")], sys.argv[4:]
KEYS = ("collisions_vehicle", "collisions_layout", "collisions_pedestrian", "vehicle_blocked")


def row(label, names):
    cells = [label]
    for suite in ("p5", "b2d"):
        rs = [held[f"{n}_{suite}"] for n in names]
        ds = [d for r in rs for d in r["DS"]]
        cells.append(f"{st.mean(ds):.1f} ± {st.stdev(ds):.1f}")
        cells.append(" / ".join(f"{st.mean(r[k] for r in rs):.1f}" for k in KEYS))
    cells.append(f"{len(names)} x 2")
    return "| " + " | ".join(cells) + " |"


print("| policy | Proc5 DS | veh / layout / ped / blocked | B2D DS | veh / layout / ped / blocked | training x eval seeds |")
print("|---|---|---|---|---|---|")
print(row("il_bc (round 0)", ["il_bc"]))
for r in rounds:
    print(row(f"round {r}", [f"{t}_r{r}" for t in seeds]))
for n in extra:
    print(row(n, [n]))
