"""Session 24, issue 19: the held-out figures of TakeAD from il_bc (training seed 0): every round of the plain
chain (DAgger + DPO), the keep-best chain's final policy, and the DAgger-only run's round 4, eval seeds 0 1. The
evaluations under E are `drive-stack eval --routes SUITE --policy perlad --model RUN/round_R/model/planner.onnx
--seed S --workers 2 --out E/<name>_<p5|b2d>_s<S>` (Proc5: results/takead/suite_p5.xml; b2d: the Bench2Drive
routes of ../shared with --maps-dir ../shared/carla_maps); names r0..r4 (plain rounds), kb (keep-best final), dag4.
Usage: .venv/bin/python results/takead/keep_best_heldout.py E PLAIN KEEPBEST DAGGER > results/takead/keep_best_heldout.json"""
import json
import statistics as st
import sys
from pathlib import Path

E, plain, kb, dag = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
KEYS = ("collisions_vehicle", "collisions_layout", "collisions_pedestrian", "vehicle_blocked", "route_timeout",
        "outside_route_lanes", "red_light", "stop_infraction")


def chain(run: Path) -> dict:
    rep = json.loads((run / "takead.json").read_text())
    rows = sorted(rep["rounds"], key=lambda r: r["round"])
    out = {"validation_ds": [round(r["eval"]["driving_score"], 2) for r in rows],
           "takeovers_per_km": [r.get("takeovers_per_km") for r in rows[1:]] + [rep.get("final", {}).get("takeovers_per_km")],
           "causes": [r.get("causes") for r in rows[1:]] + [rep.get("final", {}).get("causes")]}
    if "best_round" in rep:
        out["best_round"] = rep["best_round"]
        out["accepted"] = [r.get("accepted") for r in rows[1:]]
    return out


out = {"what": "TakeAD from il_bc (session 24), training seed 0, default recipe + --takeover-stall 2.0; validation "
               "Proc3 (eval seed 0) per round; held out: Proc5 and the Bench2Drive routes of ../shared, eval seeds 0 1",
       "plain": chain(plain), "keep_best": chain(kb), "dagger_only": chain(dag)}
for name, label in (("r0", "il_bc (round 0)"), ("kb", "keep-best final policy (its best_round)"),
                    ("r2", "plain round 2"), ("r3", "plain round 3"), ("r4", "plain round 4 (last)"),
                    ("dag4", "DAgger only, round 4")):
    for suite in ("p5", "b2d"):
        ss = [json.loads((E / f"{name}_{suite}_s{s}" / "summary.json").read_text()) for s in (0, 1)]
        ds = [x["driving_score"] for x in ss]
        out[f"{name}_{suite}"] = {"policy": label, "DS": [round(d, 2) for d in ds], "mean": round(st.mean(ds), 2),
                                  "std": round(st.stdev(ds), 2),
                                  **{k: st.mean(x["infractions"].get(k, 0) for x in ss) for k in KEYS}}
print(json.dumps(out, indent=1))
