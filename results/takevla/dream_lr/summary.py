"""Session 29's Scenario Dreaming step-size runs (run.sh): per run, its config, the held-out scenarios' reward
(greedy action; the sampled policy where logged) and collision rate at update 0 and 150, the last update's KL to
the start, and the closed-loop Proc3 validation DS / vehicle collisions / average TTC per eval seed.
Usage: .venv/bin/python results/takevla/dream_lr/summary.py E > results/takevla/dream_lr/summary.json"""

import json
import sys
from pathlib import Path

E = Path(sys.argv[1])
out = {"what": "Scenario Dreaming from one SFT pre model (expert Proc1 + TakeAD shadow collections), 150 updates; "
               "held-out scenario rewards and closed-loop Proc3 validation (eval seeds)", "runs": {}}
for d in sorted(p for p in E.iterdir() if (p / "dreaming.json").exists() or p.name == "sft_pre"):
    row = {}
    if (d / "dreaming.json").exists():
        rep = json.loads((d / "dreaming.json").read_text())
        cfg = rep["config"]
        row["config"] = {k: cfg.get(k) for k in ("lr", "kl", "seed", "adv_std_floor", "updates")}
        ho = [h for h in rep["history"] if "heldout" in h]
        tr = [h["train"] for h in rep["history"] if "train" in h]
        row["heldout_first"], row["heldout_last"] = ho[0]["heldout"], ho[-1]["heldout"]
        row["kl_last"] = {k: round(tr[-1][k], 4) for k in ("kl_speed", "kl_anchor", "kl_path")}
    row["validation_p3"] = {}
    for v in sorted(E.glob(f"val/{d.name}_s*/summary.json")):
        s = json.loads(v.read_text())
        row["validation_p3"][v.parent.name.rsplit("_s", 1)[1]] = {
            "DS": round(s["driving_score"], 2), "collisions_vehicle": s["infractions"]["collisions_vehicle"],
            "average_ttc": s.get("average_ttc")}
    out["runs"][d.name] = row
json.dump(out, sys.stdout, indent=1)
print()
