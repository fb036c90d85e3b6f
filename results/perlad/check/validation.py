"""Issue 18: validation.json from the validation runs of run.sh (E/p{3,4}_il_chk<H>[_u<U>]). Rows of the check alone whose runs
are not in E keep their earlier figures; the session-21 rows of the check (before the standstill fix of policies/check.py in
session 22) stay under "session_21", the session-22 unstall rows (before session 23 judged the unstall on the plan
after the check) under "session_22".
Usage: python results/perlad/check/validation.py E   (rewrites results/perlad/check/validation.json)"""
import json
import sys
from pathlib import Path

E = Path(sys.argv[1])
OUT = Path(__file__).parent / "validation.json"
old = json.loads(OUT.read_text()) if OUT.exists() else {}
rows = {"0 (off)": "chk0", "1.0": "chk1.0", "2.0": "chk2.0", "3.0": "chk3.0", "3.0, unstall 2.0": "chk3.0_u2.0",
        "3.0, unstall 5.0": "chk3.0_u5.0", "3.0, unstall 5.0, margin 0.3": "chk3.0_u5.0_m0.3"}
runs = {}
for name, v in rows.items():
    row = {}
    for p in (3, 4):
        f = E / f"p{p}_il_{v}" / "summary.json"
        if not f.exists():
            break
        s = json.loads(f.read_text())
        i = s["infractions"]
        row[f"Proc{p}"] = {"DS": round(s["driving_score"], 2), "SR": round(s["success_rate"], 1),
                           **{k: i.get(k, 0) for k in ("collisions_vehicle", "collisions_layout", "collisions_pedestrian",
                                                       "vehicle_blocked", "route_timeout", "red_light",
                                                       "stop_infraction")},
                           "avg_ttc": round(s["average_ttc"], 3), "model": s["model"]["sha256"][:16]}
    if len(row) == 2:
        row["mean DS"] = round((row["Proc3"]["DS"] + row["Proc4"]["DS"]) / 2, 2)
        runs[name] = row
    elif name in old.get("runs", {}) and "unstall" not in name:  # not re-run: the code it measured is unchanged
        runs[name] = old["runs"][name]
session_21 = old.get("session_21") or {k: v for k, v in old.get("runs", {}).items() if k != "0 (off)"}
session_22 = old.get("session_22") or {k: v for k, v in old.get("runs", {}).items()
                                       if "unstall" in k and v != runs.get(k)}
OUT.write_text(json.dumps({
    "what": "issue 18: the candidate check's horizon, then its unstall time, on validation (the committed il, eval "
            "seed 0); made by results/perlad/check/run.sh and validation.py",
    "command": "drive-stack eval --routes results/takead/suite_p{3,4}.xml --policy il --check H [--unstall U] "
               "[--check-margin M] --seed 0 --workers 2",
    "runs": runs,
    "session_21": session_21,
    "session_22": session_22,
    "session_22_note": "the unstall before session 23: judged on the network's own plan, it never saw a vetoed plan "
                       "whose replacement stands (the ego stood, or went back and forth between standing and the "
                       "unstall tick by tick)",
    "session_21_note": "the check before session 22's fix of policies/check.py: a candidate starting from standstill "
                       "(ego speed 0) never moved in the forecast, so starts were never checked",
}, indent=1) + "\n")
