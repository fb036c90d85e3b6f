"""Issue 19: held-out evaluation of TakeAD policies (any planner.onnx) on Proc5 (results/takead/suite_p5.xml: no
training or validation route came from it) and the 38 Bench2Drive routes of ../shared, under evaluation seeds 0 1;
each evaluation is `drive-stack eval --routes SUITE --policy perlad --model ONNX --seed S --workers 2 --out
E/<name>_<p5|b2d>_s<S>` and is skipped when its summary.json exists (so earlier runs can be linked in), then the
figures go to stdout as JSON: per policy and suite the DS of each seed, mean, std and the mean infraction counts.
Usage: [SUITES=p5,b2d] .venv/bin/python results/takead/heldout.py E SHARED NAME=ONNX... > OUT.json
(SUITES=p4,t06: the validation suites instead, for choosing between variants)  (session 25: results/takead/s25_heldout.json)"""
import json
import os
import statistics as st
import subprocess
import sys
from pathlib import Path

KEYS = ("collisions_vehicle", "collisions_layout", "collisions_pedestrian", "vehicle_blocked", "route_timeout",
        "outside_route_lanes", "red_light", "stop_infraction")
E, shared = Path(sys.argv[1]), Path(sys.argv[2])
models = dict(a.split("=", 1) for a in sys.argv[3:])
E.mkdir(parents=True, exist_ok=True)
known = {"p5": ["--routes", "results/takead/suite_p5.xml"],
         "b2d": ["--routes", str(shared / "bench2drive" / "bench2drive220.xml"), "--maps-dir", str(shared / "carla_maps")],
         # validation (choosing between TakeAD variants; never the held-out sets above): Proc4 and routes of our own
         # on Town06 (`routes suite --town Town06 --types all+dos --n 1 --seed 99`), a town the rounds do not drive
         "p4": ["--routes", "results/takead/suite_p4.xml"],
         "t06": ["--routes", "results/takead/suite_val_t06.xml", "--maps-dir", str(shared / "carla_maps")]}
suites = {k: known[k] for k in os.environ.get("SUITES", "p5,b2d").split(",")}
out = {"what": f"suites {sorted(suites)} (p5, b2d: held out; p4, t06: validation), eval seeds 0 1 (results/takead/heldout.py)"}
for name, onnx in models.items():
    for suite, args in suites.items():
        ss = []
        for s in (0, 1):
            d = E / f"{name}_{suite}_s{s}"
            if not (d / "summary.json").exists():
                with open(f"{d}.log", "w") as log:
                    subprocess.run([".venv/bin/drive-stack", "eval", *args, "--policy", "perlad", "--model", onnx,
                                    "--seed", str(s), "--workers", "2", "--out", str(d)], stdout=log, stderr=log,
                                   check=True)
            ss.append(json.loads((d / "summary.json").read_text()))
        ds = [x["driving_score"] for x in ss]
        out[f"{name}_{suite}"] = {"model": onnx, "DS": [round(v, 2) for v in ds], "mean": round(st.mean(ds), 2),
                                  "std": round(st.stdev(ds), 2),
                                  **{k: st.mean(x["infractions"].get(k, 0) for x in ss) for k in KEYS}}
        print(f"{name} {suite}: {out[f'{name}_{suite}']['mean']} +- {out[f'{name}_{suite}']['std']}", file=sys.stderr)
print(json.dumps(out, indent=1))
