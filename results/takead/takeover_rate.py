"""Issue 19, session 27/28: takeovers per km of several policies on one footing. A round's own figure is measured
by the round's collection (its seed, its triggers), so rounds run with different triggers or seeds cannot be
compared by it; here every policy drives the same training suites (Proc2 and our Town04 routes, the suites the
rounds drive) under the same collection seed with the expert in shadow mode and today's trigger defaults
(steering 0.2 while the ego moves >= 0.5 m/s, predicted collision, low TTC, STALLED after 2 s where the expert's
plan drives off >= 2 m/s; 2 s takeovers): `drive-stack collect --routes SUITE --policy expert --driver perlad
--driver-model ONNX --takeover --takeover-stall 2.0 --branches 0 --no-anno --seed $SEED --workers 2 --out
E/<name>_<p2|t04>`, skipped where E/<name>_<suite>/index.json exists. The seed (default 5000) is none a round
collects with (round r: seed + 1000 r, r <= 4).
Usage: [SEED=5000] [DS=.venv/bin/drive-stack] .venv/bin/python results/takead/takeover_rate.py E SHARED NAME=ONNX...
       > OUT.json   (session 28: results/takead/takeover_rate_s5000.json)"""
import json
import os
import subprocess
import sys
from pathlib import Path

from drivesim.learn.takead import shadow_figures

E, shared = Path(sys.argv[1]), Path(sys.argv[2])
models = dict(a.split("=", 1) for a in sys.argv[3:])
if not models:
    sys.exit("usage: takeover_rate.py E SHARED NAME=ONNX...")
seed = os.environ.get("SEED", "5000")
ds = os.environ.get("DS", ".venv/bin/drive-stack")
E.mkdir(parents=True, exist_ok=True)
suites = {"p2": ["--routes", "results/takead/suite_p2.xml"],
          "t04": ["--routes", "results/takead/suite_t04.xml", "--maps-dir", str(shared / "carla_maps")]}
out = {"what": f"shadow collections on suites {sorted(suites)} (the rounds' training suites), seed {seed}, "
               "trigger defaults of `drive-stack collect --takeover --takeover-stall 2.0` "
               "(results/takead/takeover_rate.py)"}
for name, onnx in models.items():
    eps = []
    for suite, args in suites.items():
        d = E / f"{name}_{suite}"
        if not (d / "index.json").exists():
            with open(f"{d}.log", "w") as log:
                subprocess.run([ds, "collect", *args, "--policy", "expert", "--driver", "perlad", "--driver-model", onnx,
                                "--takeover", "--takeover-stall", "2.0", "--branches", "0", "--no-anno", "--seed", seed,
                                "--workers", "2", "--out", str(d)], stdout=log, stderr=log, check=True)
        eps += json.loads((d / "index.json").read_text())["episodes"]
    out[name] = {"model": onnx, **shadow_figures(eps)}
    print(f"{name}: {out[name]['takeovers']} takeovers / {out[name]['km']:.2f} km = {out[name]['takeovers_per_km']} per km",
          file=sys.stderr)
print(json.dumps(out, indent=1))
