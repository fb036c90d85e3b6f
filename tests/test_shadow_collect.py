"""Shadow-mode collection (TakeAD's takeovers, offline, no ROS): the learned planner drives, the expert watches
through the same takeover gate as the stack's takeover monitor, takes over when the plan is about to fail, and
every frame records who drove and what the driver wanted; the labels stay the expert's."""

import numpy as np
import pytest
from conftest import B2D, MAPS, need_shared
from drivesim.dataset.collect import CONTROLLER_CODES, CollectConfig, collect, read_episode


def test_the_expert_takes_over_from_perlad_before_the_pedestrian_and_the_frames_say_so(tmp_path):
    need_shared()
    idx = collect(CollectConfig(routes=str(B2D), maps_dir=str(MAPS), out=str(tmp_path), route_ids=["24211"], b2d=False,
                                driver="perlad", takeover=True, branches=0), log=lambda *_: None)
    e = idx["episodes"][0]
    # measured (models/perlad of the session-18 pipeline): perlad alone hits the walker (DS 50); one LOW_TTC
    # takeover at 6.85 s (time to collision 0.95 s at 10.9 m/s), the expert drives 2.0 s (20 frames at 10 Hz), the
    # route is Perfect
    assert e["driving_score"] == pytest.approx(100.0)
    tk = e["takeovers"]
    assert tk["count"] == 1 and tk["causes"] == {"LOW_TTC": 1}
    assert tk["events"][0]["t"] == pytest.approx(6.85, abs=0.051) and tk["seconds"]["expert"] == pytest.approx(2.0)
    arr = read_episode(tmp_path / "episodes" / e["episode"])
    c = arr["controller"]
    expert = np.flatnonzero(c == CONTROLLER_CODES["expert"])
    assert len(expert) == 20 and np.all(np.diff(expert) == 1)  # one contiguous 2 s stretch
    assert arr["t"][expert[0]] == pytest.approx(6.9, abs=0.051)
    assert np.all(c[: expert[0]] == CONTROLLER_CODES["planner"]) and np.all(c[expert[-1] + 1:] == 0)
    # at the disengagement the driver brakes too, too late (alone it hits the walker: measured brake 1.0 there and
    # 0 a second before); the expert's label is a full stop
    k = expert[0]
    assert arr["policy_ctl"][k - 10, 2] < 0.1 and arr["ego"][k, 7] == pytest.approx(1.0)
    # the driver's own controls are recorded every frame (the DPO 'rejected' side), the expert's as the labels
    assert arr["policy_ctl"].shape == (len(c), 3)
    with pytest.raises(ValueError, match="needs a --driver"):
        collect(CollectConfig(routes=str(B2D), out=str(tmp_path / "x"), takeover=True), log=lambda *_: None)


def test_batched_shadow_mode_equals_one_route_at_a_time():
    """Many routes at once: one gate per env in one batched loop gives each env the takeovers it gets alone."""
    need_shared()
    from drivesim.evaluation.runner import run_route
    from drivesim.loop import ClosedLoop, drive
    from drivesim.maps import TownLoader
    from drivesim.policies import make_policy
    from drivesim.routes.planner import plan_route
    from drivesim.routes.xml import parse_routes
    from drivesim.stack.takeover import TakeoverGate

    specs = [r for r in parse_routes(B2D).routes if r.town == "Town01"][:2]
    specs = sorted(specs, key=lambda r: r.route_id != "24211")  # 24211 (a takeover) and another Town01 route
    g = TownLoader(MAPS).load("Town01")
    alone = []
    for s in specs:
        ep = run_route(g, s, make_policy("perlad", 1, g=g), seed=0, gate=TakeoverGate(expert_offered=True),
                       expert=make_policy("expert", 1))
        alone.append(ep.takeovers)
    loop = ClosedLoop(g, [plan_route(g, s) for s in specs], [s.scenarios[0] if s.scenarios else None for s in specs],
                      seed=0)
    out = drive(loop, make_policy("perlad", 2, g=g), gate=[TakeoverGate(expert_offered=True) for _ in specs],
                expert=make_policy("expert", 2))
    assert [len(t) for t in out["takeovers"]] == [len(t) for t in alone] and len(alone[0]) >= 1
    assert [ev["cause"] for ev in out["takeovers"][0]] == [ev["cause"] for ev in alone[0]]
    # env 0's scene is drawn first from the same seed, so its takeovers happen at the same ticks
    assert [ev["t"] for ev in out["takeovers"][0]] == [ev["t"] for ev in alone[0]]
