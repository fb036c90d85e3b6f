from drivesim.evaluation.runner import run_route
from drivesim.maps import TownLoader
from drivesim.policies import make_policy
from drivesim.routes.xml import parse_routes
from drivesim.stack.takeover import TakeoverGate

B2D = "/work/shared/bench2drive/bench2drive220.xml"
spec = next(r for r in parse_routes(B2D).routes if r.route_id == "24211")
g = TownLoader("/work/shared/carla_maps").load(spec.town)
for pol in ("il", "perlad"):
    plain = run_route(g, spec, pol, seed=0)
    gated = run_route(g, spec, pol, seed=0, gate=TakeoverGate(expert_offered=True), expert=make_policy("expert", 1))
    tk = gated.record["meta"]["takeovers"]
    print(pol, "plain DS", plain.record["scores"]["score_composed"], plain.record.get("infractions", {}) and {k: len(v) for k, v in plain.record["infractions"].items() if v},
          "gated DS", gated.record["scores"]["score_composed"], tk["count"], tk["causes"], [e["t"] for e in tk["events"]], tk["seconds"], tk["metres"])
