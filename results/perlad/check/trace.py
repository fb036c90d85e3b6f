"""Issue 18, session 23: trace one route of the layered planner (il + check 3.0 + unstall 5.0): every 0.5 s and at
each change of the decoding's note, the time, the ego's speed, the decoding (anchor, speed, what the check or the
unstall did) and the perceived agents within 15 m (ego frame x, y, yaw, speed). How the dithering of session 22's
unstall and the remaining collisions were found.
Usage: python results/perlad/check/trace.py SUITE ROUTE_ID [CHECK UNSTALL]"""
import sys

import numpy as np
from drivesim.evaluation.runner import run_route
from drivesim.maps import TownLoader
from drivesim.policies import make_policy
from drivesim.policies.learned import CandidateCheck
from drivesim.routes.xml import parse_routes

suite, rid = sys.argv[1], sys.argv[2]
check, unstall = (float(x) for x in (sys.argv[3:5] if len(sys.argv) > 4 else (3.0, 5.0)))
spec = next(s for s in parse_routes(suite).routes if s.route_id == rid)
g = TownLoader().load(spec.town)
pol = make_policy("il", 1, g=g, check=CandidateCheck(check, unstall=unstall))
rows = []
plan = pol.plan


def traced(scene):
    out = plan(scene)
    a = scene.agents[0][scene.agents_valid[0]]
    near = a[np.hypot(a[:, 0], a[:, 1]) < 15]
    agents = " ".join(f"[{x:.1f},{y:.1f},{np.degrees(h):.0f}d,{v:.1f}]" for x, y, h, v in near[:, :4])
    rows.append((float(scene.t[0]), float(scene.ego_speed[0]), pol.status[0], agents))
    return out


pol.plan = traced
rec = run_route(g, spec, pol, seed=0).record
print(f"DS {rec['scores']['score_composed']:.2f}; events {rec['meta']['events']}")
last = None
for t, v, status, agents in rows:
    note = status.split(" (")[1][:10] if " (" in status else ""
    if note != last or int(round(t * 20)) % 10 == 0:
        print(f"{t:7.2f} {v:5.2f} {status}  {agents}")
    last = note
