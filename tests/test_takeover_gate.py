"""The takeover gate without DDS: every transition of `TakeoverGate` (deadline, invalid input, TTC, predicted
collision, steering disagreement, the expert's wait, hand-back, cold start), and the gate run offline in the
closed loop."""

import numpy as np
import pytest
from drivesim.stack.takeover import EXPERT, PLANNER, SAFE_STOP, Cause, TakeoverConfig, TakeoverGate
from test_stack_lib import CAR, scene_with

PATH = np.stack([np.arange(1, 30, dtype=float), np.zeros(29)], 1)
CLEAR = scene_with([], ego_speed=8.0)
GO = (0.5, 0.0, 0.0)


def tick(g, t, wall=None, scene=CLEAR, speed=8.0, cmd=GO, expert=None):
    """One tick as the node feeds it: clock, expert (if any), scene + plan, planner command. Returns decisions."""
    wall = t if wall is None else wall
    out = [g.new_tick(t, wall)]
    if expert is not None:
        out.append(g.offer_expert(t, *expert))
    g.offer_scene(t, scene)
    g.offer_plan(t, PATH, np.full(29, speed))
    if cmd is not None:
        out.append(g.offer_planner(t, *cmd))
    return [d for d in out if d is not None]


def test_a_clear_plan_passes_through_unchanged():
    g = TakeoverGate()
    g.set_ready()
    (d,) = tick(g, 0.05)
    assert d.command == GO and d.controller == PLANNER and d.event is None
    assert g.drove == {PLANNER: 1, EXPERT: 0, SAFE_STOP: 0} and g.history == []


def test_deadline_counts_only_once_ready():
    """Cold start: before the stack is ready a silent planner is not a takeover; after, it is, 0.3 s after the tick."""
    g = TakeoverGate(TakeoverConfig(deadline=0.3))
    assert tick(g, 0.0, wall=100.0, cmd=None) == []
    assert g.poll(100.0 + 5.0) is None  # not ready: nothing, however long
    g.set_ready()
    tick(g, 0.05, wall=200.0, cmd=None)
    assert g.poll(200.29) is None  # within the deadline
    d = g.poll(200.31)
    assert d.event.cause is Cause.MISSED_DEADLINE and d.command == (0.0, 0.0, 1.0) and d.controller == SAFE_STOP
    assert g.poll(200.5) is None  # one command per tick
    # a planner command for the decided tick arrives late: alive, but nothing more is sent
    assert g.offer_planner(0.05, *GO) is None and g.last_ok_t == 0.05


def test_invalid_command_and_unreadable_plan_are_takeovers():
    g = TakeoverGate()
    g.set_ready()
    (d,) = tick(g, 1.0, cmd=(np.nan, 0.0, 0.0))
    assert d.event.cause is Cause.INVALID_MESSAGE and "throttle is nan" in d.event.detail and d.controller == SAFE_STOP
    g2 = TakeoverGate()
    g2.new_tick(1.0, 0.0)
    d = g2.offer_planner(1.0, *GO, invalid="/drive_stack/plan: path[3] is nan")
    assert d.event.cause is Cause.INVALID_MESSAGE and "path[3]" in d.event.detail
    g3 = TakeoverGate()
    g3.new_tick(1.0, 0.0)
    g3.offer_scene(1.0, CLEAR)
    g3.offer_plan(1.0, PATH, np.full(29, np.nan))
    d = g3.offer_planner(1.0, *GO)
    assert d.event.cause is Cause.INVALID_MESSAGE and "speed_profile" in d.event.detail


def test_low_ttc_and_predicted_collision():
    x = 8.0 + 4.6 / 2 + 4.9 / 2  # a stopped car 8 m ahead at 10 m/s: TTC 0.8 s, stopping needs 6.25 m/s^2
    g = TakeoverGate()
    (d,) = tick(g, 2.0, scene=scene_with([(x, 0.0, 0.0, 0.0, *CAR)], ego_speed=10.0), speed=10.0)
    assert d.event.cause is Cause.LOW_TTC and d.controller == SAFE_STOP
    # farther (15 m): TTC 1.5 s is fine, but a plan that keeps 8 m/s into it within the 2 s horizon is not
    g = TakeoverGate(TakeoverConfig(horizon=2.0))
    (d,) = tick(g, 2.0, scene=scene_with([(15.0, 0.0, 0.0, 0.0, *CAR)], ego_speed=8.0), speed=8.0)
    assert d.event.cause is Cause.PREDICTED_COLLISION
    g = TakeoverGate(TakeoverConfig(horizon=2.0))  # the same scene with a stopping plan passes
    (d,) = tick(g, 2.0, scene=scene_with([(15.0, 0.0, 0.0, 0.0, *CAR)], ego_speed=8.0), speed=0.0)
    assert d.event is None and d.controller == PLANNER


def test_expert_drives_the_takeover_and_a_late_expert_means_a_safe_stop():
    g = TakeoverGate(TakeoverConfig(duration=1.0, expert_wait=0.1), expert_offered=True)
    ex = (0.1, 0.2, 0.0)
    d = tick(g, 1.0, wall=10.0, cmd=(np.nan, 0.0, 0.0), expert=ex)
    assert d[-1].event.cause is Cause.INVALID_MESSAGE and d[-1].command == ex and d[-1].controller == EXPERT
    # next tick: the takeover holds control, the expert's command arrives after the clock: it is applied then
    assert g.new_tick(1.05, 11.0) is None
    d = g.offer_expert(1.05, *ex)
    assert d.command == ex and d.controller == EXPERT
    # the expert is late: after expert_wait the tick gets a safe stop
    g.new_tick(1.1, 12.0)
    assert g.poll(12.05) is None
    d = g.poll(12.11)
    assert d.controller == SAFE_STOP and d.command == (0.0, 0.0, 1.0) and d.event is None
    assert g.offer_expert(1.1, *ex) is None  # too late for this tick


def test_hand_back_needs_the_duration_and_a_healthy_planner():
    g = TakeoverGate(TakeoverConfig(duration=0.2, planner_ok_window=0.151))
    g.set_ready()
    tick(g, 1.0, cmd=(np.nan, 0.0, 0.0))  # takeover at t=1.0, safe stop
    for t in (1.05, 1.1, 1.15):  # within the duration: the gate drives whatever the planner says
        d = tick(g, t)
        assert [x.controller for x in d] == [SAFE_STOP], t
    d = tick(g, 1.2)  # the duration has passed and the planner answered the last ticks: it drives again
    assert [x.controller for x in d] == [PLANNER]
    # a takeover whose planner went silent: no hand-back until it answers again
    g = TakeoverGate(TakeoverConfig(duration=0.1, deadline=0.3))
    g.set_ready()
    tick(g, 0.0, wall=0.0, cmd=None)
    assert g.poll(0.4).event.cause is Cause.MISSED_DEADLINE
    for k, t in enumerate((0.05, 0.1, 0.15, 0.2)):
        d = g.new_tick(t, 1.0 + k)
        assert d.controller == SAFE_STOP, t  # decided at the clock: the planner has not answered for 3 ticks
    d = tick(g, 0.25, wall=5.0)  # it answers (decided already at the clock): a sign of life ...
    assert [x.controller for x in d] == [SAFE_STOP] and g.last_ok_t == 0.25
    d = tick(g, 0.3, wall=6.0)  # ... so at the next tick, the duration long passed, control returns
    assert [x.controller for x in d] == [PLANNER]
    assert [h.cause for h in g.history] == [Cause.MISSED_DEADLINE]


def test_steering_disagreement_is_a_shadow_trigger_when_set():
    ex = (0.5, 0.4, 0.0)
    off = TakeoverGate(expert_offered=True)
    assert tick(off, 1.0, cmd=(0.5, 0.0, 0.0), expert=ex)[-1].controller == PLANNER
    on = TakeoverGate(TakeoverConfig(steer_threshold=0.2), expert_offered=True)
    d = tick(on, 1.0, cmd=(0.5, 0.0, 0.0), expert=ex)[-1]
    assert d.event.cause is Cause.STEER_DISAGREEMENT and d.controller == EXPERT and d.command == ex
    close = TakeoverGate(TakeoverConfig(steer_threshold=0.2), expert_offered=True)
    assert tick(close, 1.0, cmd=(0.5, 0.3, 0.0), expert=ex)[-1].controller == PLANNER
    with pytest.raises(ValueError, match="steer_threshold"):
        TakeoverConfig(steer_threshold=-1.0)
    with pytest.raises(ValueError, match="deadline"):
        TakeoverConfig(deadline=float("nan"))


def test_stale_commands_keep_the_planner_alive():
    g = TakeoverGate()
    g.new_tick(1.0, 0.0)
    assert g.offer_planner(0.95, *GO) is None and g.last_ok_t == 0.95
    assert g.offer_planner(0.9, np.nan, 0, 0) is None and g.last_ok_t == 0.95  # invalid stale: not a sign of life
    assert g.offer_planner(1.05, *GO) is None  # from the future: ignored


def test_the_gate_runs_offline_in_the_closed_loop():
    """The same gate in the direct loop (no ROS): perlad on Bench2Drive 24211 (DynamicObjectCrossing) hits the
    pedestrian (DS 50); with the expert in shadow mode the gate sees the plan run into it, the expert drives for
    the 2 s duration and the route is Perfect. The record says who drove how long."""
    from conftest import B2D, MAPS, need_shared
    from drivesim.evaluation.runner import run_route
    from drivesim.maps import TownLoader
    from drivesim.policies import make_policy
    from drivesim.routes.xml import parse_routes

    need_shared()
    spec = next(r for r in parse_routes(B2D).routes if r.route_id == "24211")
    g = TownLoader(MAPS).load(spec.town)
    plain = run_route(g, spec, "perlad", seed=0)
    gated = run_route(g, spec, "perlad", seed=0, gate=TakeoverGate(expert_offered=True), expert=make_policy("expert", 1))
    assert plain.record["scores"]["score_composed"] == pytest.approx(50.0)
    assert gated.record["scores"]["score_composed"] == pytest.approx(100.0)
    tk = gated.record["meta"]["takeovers"]
    assert tk["count"] == len(gated.takeovers) == 1 and tk["causes"] == {"PREDICTED_COLLISION": 1}
    assert tk["seconds"]["expert"] == pytest.approx(2.0) and tk["seconds"]["safe_stop"] == 0.0
    assert tk["seconds"]["planner"] + tk["seconds"]["expert"] == pytest.approx(gated.steps * 0.05)
    assert 3.0 < tk["metres"]["expert"] < 20.0  # 2 s braking for the walker (7.9 m measured)
    assert tk["metres"]["planner"] + tk["metres"]["expert"] == pytest.approx(
        gated.record["meta"]["route_length"], rel=0.1)  # completed: about the route's length, split between them
    from drivesim.metrics.bench2drive import summarize

    s = summarize([gated.record, plain.record | {"meta": {**plain.record["meta"], "takeovers": {
        "count": 0, "causes": {}, "events": [], "seconds": dict.fromkeys(("planner", "expert", "safe_stop"), 0.0),
        "metres": {"planner": 200.0, "expert": 0.0, "safe_stop": 0.0}}}}])["takeovers"]
    assert s["takeovers"] == 1 and s["routes_with_takeovers"] == 1 and s["routes_without_takeover"] == 1
    assert s["driving_score_routes_without_takeover"] == pytest.approx(50.0)  # the policy alone: the expert's 100 is not counted
    assert 0.5 < s["policy_share_of_distance"] < 1.0


def test_a_gate_that_never_triggers_changes_nothing(proc_town):
    from drivesim.evaluation.runner import run_route
    from drivesim.routes.generate import random_routes

    spec = random_routes(proc_town, 1, seed=0, min_length=120.0)[0]
    plain = run_route(proc_town, spec, "rule", seed=0, background=False)  # empty roads: nothing to take over
    idle = run_route(proc_town, spec, "rule", seed=0, background=False, gate=TakeoverGate())
    assert idle.record["meta"]["takeovers"]["count"] == 0
    assert idle.record["scores"] == plain.record["scores"] and idle.steps == plain.steps
