"""Bench2Drive scoring on hand-built cases whose scores are known by hand."""

import numpy as np
import pytest
from conftest import drive
from drivesim.metrics.bench2drive import (
    comfort_score,
    empty_infractions,
    is_success,
    route_status,
    score_route,
    summarize,
)
from drivesim.routes.generate import random_route
from drivesim.routes.planner import plan_route
from drivesim.sim.state import AgentKind, Behavior, LightState


def test_penalty_coefficients_multiply():
    inf = empty_infractions()
    inf["collisions_pedestrian"] = ["p"]
    inf["collisions_vehicle"] = ["v", "v2"]
    inf["collisions_layout"] = ["s"]
    inf["red_light"] = ["r"]
    inf["stop_infraction"] = ["x"]
    inf["min_speed_infractions"] = ["m"] * 5  # unused by Bench2Drive
    s = score_route(80.0, inf, outside_pct=10.0)
    expected = 0.5 * 0.6 * 0.6 * 0.65 * 0.7 * 0.8 * 0.9
    assert s["score_penalty"] == pytest.approx(expected)
    assert s["score_composed"] == pytest.approx(80.0 * expected)


def test_failures_end_without_multiplier_and_set_status():
    for key, status in (("route_dev", "Failed - Agent deviated from the route"),
                        ("vehicle_blocked", "Failed - Agent got blocked"),
                        ("route_timeout", "Failed - Agent timed out")):
        inf = empty_infractions()
        inf[key] = ["x"]
        s = score_route(42.0, inf)
        assert s["score_penalty"] == 1.0 and s["score_composed"] == 42.0
        assert route_status(False, inf, 1.0) == status


def test_success_rate_ignores_min_speed_only():
    ok = {"status": "Perfect", "infractions": empty_infractions()}
    slow = {"status": "Completed", "infractions": {**empty_infractions(), "min_speed_infractions": ["m"]}}
    bad = {"status": "Completed", "infractions": {**empty_infractions(), "red_light": ["r"]}}
    failed = {"status": "Failed", "infractions": empty_infractions()}
    assert [is_success(r) for r in (ok, slow, bad, failed)] == [True, True, False, False]
    recs = [dict(r, route_id=str(i), index=i, scores={"score_route": 100.0, "score_penalty": 1.0,
                 "score_composed": 100.0}, meta={"route_length": 100.0, "scenario_type": "Accident",
                 "efficiency": 100.0, "comfort": 1.0}) for i, r in enumerate((ok, slow, bad, failed))]
    s = summarize(recs, total_routes=8)
    assert s["success_rate"] == pytest.approx(50.0)
    assert s["multi_ability"]["Overtaking"]["success_rate"] == pytest.approx(50.0)
    assert s["driving_score"] == pytest.approx(100.0)
    assert s["driving_score_all_routes"] == pytest.approx(50.0)  # missing routes count 0


def test_comfort_counts_failing_chunks():
    dt = 0.1
    t = np.arange(200) * dt  # 10 chunks of 20 frames
    x = 8.0 * t  # constant 8 m/s: every chunk passes
    y = np.zeros_like(t)
    yaw = np.zeros_like(t)
    assert comfort_score(x, y, yaw, dt) == (1.0, 10, 10)
    # a hard brake pulse (-6 m/s^2) inside chunk 4 only: lon_accel out of bounds there
    v = np.full_like(t, 8.0)
    v[85:95] -= 6.0 * dt * np.arange(1, 11)
    v[95:] = v[94]
    x2 = np.concatenate([[0.0], np.cumsum(v[:-1] * dt)])
    score, ok, chunks = comfort_score(x2, y, yaw, dt)
    assert chunks == 10 and ok == 9 and score == pytest.approx(0.9)


def _straight_route(g, rng_seed=3):
    rng = np.random.default_rng(rng_seed)
    return plan_route(g, random_route(g, rng, "t", min_length=150.0))


@pytest.mark.parametrize("kind,behavior,key", [
    (AgentKind.STATIC, Behavior.STATIC, "collisions_layout"),
    (AgentKind.VEHICLE, Behavior.STATIC, "collisions_vehicle"),
    (AgentKind.PEDESTRIAN, Behavior.STATIC, "collisions_pedestrian"),
])
def test_one_collision_of_each_kind(proc_town, kind, behavior, key):
    d = _straight_route(proc_town)
    x, y = d.xy[40]
    mon = drive(proc_town, d, speed=6.0, objects=[(kind, behavior, x, y, d.yaw[40], 1.0, 1.0, 0.0)], steps=300,
                lights=LightState.GREEN)
    counts = {k: len(v) for k, v in mon.infractions[0].items() if v}
    assert counts == {key: 1}, counts
    rec = mon.record(0, "r")
    coef = {"collisions_layout": 0.65, "collisions_vehicle": 0.6, "collisions_pedestrian": 0.5}[key]
    assert rec["scores"]["score_penalty"] == pytest.approx(coef * (1 - mon.outside_pct(0) / 100))


def test_same_actor_twice_within_5s_counts_once(proc_town):
    d = _straight_route(proc_town)
    x, y = d.xy[40]
    # a box the ego pushes through: the ego keeps touching it for several steps
    mon = drive(proc_town, d, speed=6.0,
                objects=[(AgentKind.STATIC, Behavior.STATIC, x, y, d.yaw[40], 6.0, 1.0, 0.0)], steps=300)
    assert len(mon.infractions[0]["collisions_layout"]) == 1


def _route_through(g, governed: str, seed_range=range(200)):
    """A route that enters a junction lane governed by a light (or stop sign)."""
    arr = g.lane_light if governed == "light" else g.lane_stop
    for seed in seed_range:
        rng = np.random.default_rng(seed)
        try:
            d = plan_route(g, random_route(g, rng, "t", min_length=120.0))
        except ValueError:
            continue
        entry = np.flatnonzero(np.diff(d.lane) != 0) + 1
        hits = [i for i in entry if arr[d.lane[i]] >= 0 and i > 30]
        if hits:
            return d
    pytest.skip(f"no route through a {governed} in this town")


def test_red_light_crossed_once(proc_town):
    d = _route_through(proc_town, "light")
    mon = drive(proc_town, d, speed=7.0, lights=LightState.RED)
    assert len(mon.infractions[0]["red_light"]) >= 1
    # the same light crossed by one drive counts once
    lights = [m.split()[5] for m in mon.infractions[0]["red_light"]]
    assert len(lights) == len(set(lights))
    green = drive(proc_town, d, speed=7.0, lights=LightState.GREEN)
    assert green.infractions[0]["red_light"] == []


def test_stop_sign_rolled_through_and_respected(proc_town):
    from drivesim.policies import make_policy

    d = _route_through(proc_town, "stop")
    rolled = drive(proc_town, d, speed=7.0)
    assert len(rolled.infractions[0]["stop_infraction"]) >= 1
    rec = rolled.record(0, "r")
    assert rec["scores"]["score_penalty"] <= 0.8 + 1e-9
    stopped = drive(proc_town, d, policy=make_policy("rule", 1))
    assert stopped.infractions[0]["stop_infraction"] == []


def test_route_deviation_blocked_and_completion(proc_town):
    d = _straight_route(proc_town)
    # drive with the controller but a path that veers off: a route for another place entirely
    from drivesim.metrics.monitor import RouteMonitor
    from drivesim.scenarios.scene import route_scene
    from drivesim.sim.world import Controls, Simulator

    sim = Simulator(proc_town)
    st = route_scene(proc_town, [d], max_agents=2, background=False)
    mon = RouteMonitor(proc_town, [d])
    for _ in range(2000):
        new = sim.step(st, Controls(np.array([0.5]), np.array([-0.04]), np.array([0.0])))  # veers off
        done = mon.update(st, new, sim.lights(new))
        st = new
        if done[0]:
            break
    assert mon.infractions[0]["route_dev"] and mon.record(0, "r")["status"] == "Failed - Agent deviated from the route"
    # standing still: blocked after 60 s, RC stays below 1 %
    st = route_scene(proc_town, [d], max_agents=2, background=False)
    mon = RouteMonitor(proc_town, [d])
    for _ in range(int(61 / 0.05) + 2):
        new = sim.step(st, Controls(np.zeros(1), np.zeros(1), np.ones(1)))
        done = mon.update(st, new, sim.lights(new))
        st = new
        if done[0]:
            break
    rec = mon.record(0, "r")
    assert rec["status"] == "Failed - Agent got blocked" and rec["scores"]["score_route"] < 1.0
    # driving it: RC snaps to exactly 100 (> 99 % and within 10 m of the end)
    full = drive(proc_town, d, speed=8.0)
    rec = full.record(0, "r")
    assert rec["scores"]["score_route"] == 100.0 and rec["status"] in ("Perfect", "Completed")


@pytest.mark.parametrize("gap, expected", [(50.0, 4.545), (70.0, None)])
def test_average_ttc_counts_ticks_on_a_collision_course(proc_town, gap, expected):
    """The ego at 10 m/s towards a standing car `gap` metres ahead on a straight road: a constant-velocity TTC of
    (gap - 4.55) / 10 s (discs of radius width/2 + length/4 = 2.275 m each). At 50 m that is 4.545 s, inside the 5 s
    horizon: one tick, avg_ttc 4.545; at 70 m (6.545 s) no tick counts and avg_ttc is None."""
    import dataclasses

    from drivesim.metrics.monitor import AVG_TTC_HORIZON, RouteMonitor
    from drivesim.scenarios.scene import route_scene

    d = _straight_route(proc_town)
    k = int(np.searchsorted(d.cum_s, gap))
    st = route_scene(proc_town, [d], max_agents=4, seed=0, background=False)
    st.speed[0, 0], st.length[0, 0], st.width[0, 0] = 10.0, 4.9, 2.1
    st.kind[0, 1], st.behavior[0, 1], st.valid[0, 1] = AgentKind.VEHICLE, Behavior.STATIC, True
    st.x[0, 1], st.y[0, 1], st.yaw[0, 1] = d.xy[k, 0], d.xy[k, 1], d.yaw[k]
    st.length[0, 1], st.width[0, 1], st.speed[0, 1] = 4.9, 2.1, 0.0
    gap_true = float(d.cum_s[k])
    mon = RouteMonitor(proc_town, [d])
    mon.update(dataclasses.replace(st), st, np.zeros((1, proc_town.num_lights), np.int8))
    rec = mon.record(0, "r")
    ttc = (gap_true - 4.55) / 10.0
    if expected is None:
        assert ttc > AVG_TTC_HORIZON and rec["meta"]["avg_ttc"] is None and rec["meta"]["ttc_ticks"] == 0
    else:
        assert rec["meta"]["ttc_ticks"] == 1 and rec["meta"]["avg_ttc"] == pytest.approx(ttc, abs=1e-3)
        assert ttc == pytest.approx(expected, abs=0.11)
    # a run's average weighs every such tick the same
    recs = [{**rec, "meta": {**rec["meta"], "avg_ttc": a, "ttc_ticks": n}} for a, n in ((2.0, 1), (4.0, 3), (None, 0))]
    s = summarize(recs)
    assert s["average_ttc"] == pytest.approx(3.5) and s["ttc_ticks"] == 4
    assert summarize(recs[2:])["average_ttc"] is None
