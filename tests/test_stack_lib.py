"""Library side of the ROS stack (no ROS graph): the Leaderboard tick rule, takeover logic, reasoning, faults,
bags (ring buffer, takeover windows, segments readable after a kill)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from drivesim.sim.perception import ROUTE_POINTS, PerceivedScene
from drivesim.sim.state import AgentKind, LightState
from drivesim.stack.bags import NS, Recorded, SegmentedRecorder, TakeoverBagger, make_typestore, read_bag
from drivesim.stack.core import ControlCommand, PseudoSimCore
from drivesim.stack.faults import Fault, FaultKind, parse_stack_fault
from drivesim.stack.reasoner import rule_reasoning
from drivesim.stack.takeover import Cause, TakeoverConfig, TakeoverLogic, predicted_collision, ttc_ahead


def scene_with(agents, ego_speed=10.0, light=(-1, np.inf)):
    """A one-env scene with a straight route ahead and the given agents [(x, y, yaw, speed, length, width, kind)]."""
    N = 8
    a = np.zeros((1, N, 7), np.float32)
    v = np.zeros((1, N), bool)
    for j, ag in enumerate(agents):
        a[0, j], v[0, j] = ag, True
    route = np.zeros((1, ROUTE_POINTS, 2))
    route[0, :, 0] = np.arange(ROUTE_POINTS, dtype=float)
    return PerceivedScene(ego_speed=np.array([ego_speed]), route=route, route_valid=np.ones((1, ROUTE_POINTS), bool),
                          command=np.full((1, ROUTE_POINTS), 4, np.int8), speed_limit=np.array([13.9]), agents=a,
                          agents_valid=v, light_dist=np.array([light[1]]), light_state=np.array([light[0]]),
                          stop_dist=np.array([np.inf]), stop_id=np.array([-1]))


CAR = (4.6, 1.9, AgentKind.VEHICLE)


def test_ttc_of_a_stopped_car_ahead_is_gap_over_speed():
    # ego 10 m/s, a stopped car whose rear is 20 m ahead of our front bumper (centres 20 + 2.3 + 2.45 apart)
    gap = 20.0
    x = gap + 4.6 / 2 + 4.9 / 2
    t = ttc_ahead(scene_with([(x, 0.0, 0.0, 0.0, *CAR)], ego_speed=10.0))
    assert t == pytest.approx(gap / 10.0, abs=0.051)


def test_ttc_ignores_oncoming_traffic_in_the_next_lane_and_agents_behind():
    oncoming = (30.0, -3.5, math.pi, 10.0, *CAR)  # next lane, driving towards us: passes, never overlaps
    behind = (-10.0, 0.0, 0.0, 15.0, *CAR)  # faster car behind: not in front
    assert ttc_ahead(scene_with([oncoming, behind], ego_speed=10.0)) == math.inf


def test_predicted_collision_follows_the_plan_and_respects_braking():
    cfg = TakeoverConfig(horizon=2.0)
    parked = scene_with([(15.0, 0.0, 0.0, 0.0, *CAR)], ego_speed=8.0)
    path = np.stack([np.arange(1, 40, dtype=float), np.zeros(39)], 1)
    hit, when = predicted_collision(parked, path, np.full(39, 8.0), cfg)
    assert hit and 0.9 < when < 1.5  # front reaches the parked car's rear (15 - 2.3 - 2.45 = 10.25 m) in ~1.3 s
    assert not predicted_collision(parked, path, np.zeros(39), cfg)[0]  # a plan that stops does not trigger
    # a profile that slows to a stop 8 m ahead (before the car at 10.25 m) does not trigger either
    slowing = np.clip(8.0 * (1 - np.arange(1, 40) / 8.0), 0.0, None)
    assert not predicted_collision(parked, path, slowing, cfg)[0]
    swerve = np.stack([np.arange(1, 40, dtype=float), np.full(39, 4.0)], 1)  # the path goes around it
    swerve[:3, 1] = [1.0, 2.0, 3.0]
    assert not predicted_collision(parked, swerve, np.full(39, 8.0), cfg)[0]


def test_takeover_logic_lifecycle():
    logic = TakeoverLogic(TakeoverConfig(duration=2.0))
    ok = scene_with([], ego_speed=8.0)
    path = np.stack([np.arange(1, 30, dtype=float), np.zeros(29)], 1)
    assert logic.check_plan(1.0, ok, path, np.full(29, 8.0)) is None and not logic.in_control(1.0, True)
    bad = logic.check_plan(1.05, ok, path, np.full(29, np.nan))
    assert bad is not None and bad.cause is Cause.INVALID_MESSAGE and "speed_profile" in bad.detail
    assert logic.declare(1.1, Cause.MISSED_DEADLINE, "x") is None  # one at a time
    assert logic.in_control(2.0, planner_ok=True)  # before the duration
    assert logic.in_control(3.5, planner_ok=False)  # duration passed but the planner is not ok
    assert not logic.in_control(3.5, planner_ok=True)  # released
    assert [h.cause for h in logic.history] == [Cause.INVALID_MESSAGE]
    assert TakeoverLogic.safe_stop() == (0.0, 0.0, 1.0)


def test_reasoning_names_what_matters():
    adv = rule_reasoning(scene_with([(12.0, 0.3, 0.0, 2.0, *CAR)], light=(LightState.RED, 30.0)))
    assert "vehicle 12 m ahead" in adv.text and "traffic light red in 30 m" in adv.text
    assert adv.advisory == "stop" and adv.speed_cap == 0.0
    clear = rule_reasoning(scene_with([]))
    assert clear.advisory == "proceed" and clear.speed_cap < 0 and "clear" in clear.text


def test_fault_parsing():
    assert Fault.parse("stall@12.0") == Fault(FaultKind.STALL, 12.0)
    assert Fault.parse("") is None
    assert parse_stack_fault("planner:nan@3") == ("planner", "nan@3")
    with pytest.raises(ValueError, match="KIND@T"):
        Fault.parse("melt@3")
    with pytest.raises(ValueError, match="NODE:KIND@T"):
        parse_stack_fault("stall@3")
    assert parse_stack_fault("planner:raise@0") == ("planner", "raise@0")
    with pytest.raises(ValueError, match="recorder cannot take raise@T; it takes \\['exit'\\]"):
        parse_stack_fault("recorder:raise@1")
    # every node takes exit@T (one mechanism); what a node cannot do is refused, never silently ignored
    for node in ("pseudo_sim", "perception_input", "planner", "vla_reasoning", "takeover_monitor", "recorder"):
        assert parse_stack_fault(f"{node}:exit@5.0") == (node, "exit@5.0")
    assert parse_stack_fault("takeover_monitor:stall@5") == ("takeover_monitor", "stall@5")  # every publisher
    for bad in ("recorder:nan@5", "pseudo_sim:stall@5", "pseudo_sim:nan@1", "vla_reasoning:raise@1"):
        with pytest.raises(ValueError, match="cannot take"):
            parse_stack_fault(bad)
    with pytest.raises(ValueError, match="unknown node 'planer'"):
        parse_stack_fault("planer:exit@1")


def test_core_applies_only_this_ticks_stamp_once(proc_town):
    from drivesim.routes.generate import random_routes

    spec = random_routes(proc_town, 1, seed=3)[0]
    core = PseudoSimCore(proc_town, spec, seed=0, max_agents=8)
    assert core.offer_command(ControlCommand(0.05, 1.0, 0.0, 0.0)) == "stale"  # the next tick's stamp
    assert core.offer_command(ControlCommand(0.0, float("nan"), 0.0, 0.0)).startswith("invalid: throttle is nan")
    assert core.offer_command(ControlCommand(0.0, 0.5, 1.5, 0.0)).startswith("invalid: steer=1.500")
    assert core.offer_command(ControlCommand(0.0, 1.0, 0.0, 0.0)) == "accepted"
    assert core.offer_command(ControlCommand(0.0, 0.0, 0.0, 1.0)) == "repeat"
    core.tick()
    assert core.missed_ticks == 0 and core.t == pytest.approx(0.05)
    v1 = float(core.state.speed[0, 0])
    assert core.offer_command(ControlCommand(0.0, 1.0, 0.0, 0.0)) == "stale"  # an old stamp is never applied
    core.tick()  # nothing arrived for t = 0.05: a missed tick, the Leaderboard's all-zero control (it coasts)
    assert core.missed_ticks == 1 and 0.0 < float(core.state.speed[0, 0]) < v1
    c = core.controls
    assert (float(c.throttle[0]), float(c.steer[0]), float(c.brake[0])) == (0.0, 0.0, 0.0)
    assert len(core.rejected) == 2
    exp = core.expert_command()
    assert exp is not None and exp.stamp == pytest.approx(core.t) and not exp.problems()


def _rec(t, topic="/a", data=b"x"):
    return Recorded(int(t * NS), topic, "std_msgs/msg/String", data)


def _string_cdr(text: str, ts) -> bytes:
    return bytes(ts.serialize_cdr(ts.types["std_msgs/msg/String"](data=text), "std_msgs/msg/String"))


def test_takeover_bag_has_the_asked_window(tmp_path):
    ts = make_typestore()
    bagger = TakeoverBagger(tmp_path, ts, pre=2.0, post=1.0)
    written = []
    for k in range(0, 200):  # 10 s at 20 Hz on two topics
        t = k * 0.05
        if k == 100:
            bagger.takeover(int(t * NS), {"cause": "MISSED_DEADLINE"})
        for topic in ("/a", "/b"):
            written += bagger.add(Recorded(int(round(t * NS)), topic, "std_msgs/msg/String", _string_cdr(f"{t:.2f}", ts)))
    assert len(written) == 1
    info = read_bag(written[0])
    assert set(info["topics"]) == {"/a", "/b"}
    assert info["start"] == pytest.approx(3.0) and info["end"] == pytest.approx(6.0)
    assert info["topics"]["/a"]["count"] == 61  # [3.0, 6.0] at 20 Hz
    meta = json.loads((written[0] / "takeover.json").read_text())
    assert meta["cause"] == "MISSED_DEADLINE" and meta["window"] == [3.0, 6.0] and meta["complete"]


def test_late_stamped_messages_and_latched_ones_reach_the_takeover_bag(tmp_path):
    """The recorder stamps a message with its header stamp (bags.Stamper), so a message of the window's last tick
    that arrives after the clock moved on is still in the window (the bag is written `grace` after the window);
    the latched topics' messages sent long before the window (the map at 0.5 s) are carried at its start, and
    one that changed inside it (the route at 4.0 s) as it came: the bag replays alone."""
    from drivesim.stack.bags import Stamper

    ts = make_typestore()
    stamp = Stamper(ts)
    PS = "geometry_msgs/msg/PointStamped"
    Time, Header, Point = (ts.types[f"{t}"] for t in ("builtin_interfaces/msg/Time", "std_msgs/msg/Header",
                                                     "geometry_msgs/msg/Point"))

    def odom(t: float) -> bytes:  # a stamped message of tick t
        sec = int(t)
        msg = ts.types[PS](header=Header(stamp=Time(sec=sec, nanosec=int(round((t - sec) * NS))), frame_id="map"),
                           point=Point(x=t, y=0.0, z=0.0))
        return bytes(ts.serialize_cdr(msg, PS))

    assert stamp(PS, odom(6.0), int(6.1 * NS)) == 6 * NS  # the header's stamp
    assert stamp("std_msgs/msg/String", _string_cdr("x", ts), int(6.1 * NS)) == int(6.1 * NS)  # no header
    assert stamp(PS, odom(0.0), int(6.1 * NS)) == int(6.1 * NS)  # an empty stamp
    assert stamp(PS, odom(60.0), int(6.1 * NS)) == int(6.1 * NS)  # a broken clock

    bagger = TakeoverBagger(tmp_path, ts, pre=2.0, post=1.0, latched=("/map", "/route"), grace=0.5)
    bagger.latch(Recorded(int(0.5 * NS), "/map", "std_msgs/msg/String", _string_cdr("map", ts)))
    bagger.latch(Recorded(int(0.5 * NS), "/route", "std_msgs/msg/String", _string_cdr("route 1", ts)))
    written = []
    for k in range(200):
        now = int(round(k * 0.05 * NS))  # the recorder's clock
        if k == 100:
            bagger.takeover(now, {"cause": "STEER_DIVERGENCE"})
        if k == 80:
            bagger.latch(Recorded(now, "/route", "std_msgs/msg/String", _string_cdr("route 2", ts)))
        if k >= 1:  # each tick's odometry is received one tick late, after the clock moved on
            prev = (k - 1) * 0.05
            written += [*bagger.flush(now)]
            bagger.ring.add(Recorded(stamp(PS, odom(prev), now), "/odom",
                                     PS, odom(prev)))
    assert len(written) == 1
    got = _messages(written[0], ts)
    msgs = [(t, topic) for t, topic, _ in got]
    odo = [(t, ts.deserialize_cdr(raw, PS).point.x) for t, topic, raw in got if topic == "/odom"]
    # every tick of [3.0, 6.0] at its own time (by receipt, 6.0 came at 6.05 and 2.95 at 3.0)
    assert len(odo) == 61 and all(t == pytest.approx(x) for t, x in odo) and odo[-1][1] == pytest.approx(6.0)
    assert [(t, topic) for t, topic in msgs if topic != "/odom"] == [(3.0, "/map"), (3.0, "/route"), (4.0, "/route")]


def _messages(bag, ts):
    from rosbags.highlevel import AnyReader

    with AnyReader([Path(bag)], default_typestore=ts) as r:
        return [(round(t / NS, 3), c.topic, raw) for c, t, raw in r.messages()]


def test_segments_survive_a_killed_recorder(tmp_path):
    """Closed segments are complete bags: what a killed recorder had flushed stays readable."""
    ts = make_typestore()
    seg = SegmentedRecorder(tmp_path, ts, segment=1.0)
    for k in range(70):  # 3.5 s; the process 'dies' without closing the last segment
        seg.add(Recorded(int(round(k * 0.05 * NS)), "/a", "std_msgs/msg/String", _string_cdr(str(k), ts)))
    assert len(seg.written) == 3
    counts = [read_bag(p)["topics"]["/a"]["count"] for p in seg.written]
    assert counts == [20, 20, 20]


def test_rule_speed_profile_brakes_before_a_stopped_obstacle():
    """The speed profile the planner publishes: IDM rolled forward. Behind a stopped car it falls to ~0 before
    the car; on a free road it rises towards the speed limit and never passes it."""
    from drivesim.policies.rule import idm_speed_profile
    from drivesim.sim.traffic import IDMParams

    p = IDMParams(max_accel=2.0, comfort_brake=3.0, min_gap=3.0, headway=1.0)
    path = np.stack([np.arange(1, 61, dtype=float), np.zeros(60)], 1)[None]
    v, v0 = np.array([10.0]), np.array([12.0])
    prof = idm_speed_profile(path, v, v0, np.array([25.0]), np.array([10.0]), p)[0]  # stopped: dv = v
    stop_at = np.argmax(prof < 0.5) + 1  # [m] arc length where it is (nearly) stopped
    assert prof[0] <= 10.0 and 0 < stop_at < 25.0
    assert np.all(np.diff(prof[:stop_at]) <= 1e-9)
    free = idm_speed_profile(path, v, v0, np.array([np.inf]), np.array([0.0]), p)[0]
    assert np.all(np.diff(free) >= -1e-9) and free[-1] > 10.5 and free.max() <= 12.0


def test_warmup_leaves_the_policy_as_new():
    """The planner node warms its policy up on a synthetic scene before it reports ready; what the policy does
    afterwards is what a fresh one does (controller integrators and stop-sign memory reset)."""
    import numpy as np
    from drivesim.policies import make_policy, warmup
    from drivesim.sim.perception import ROUTE_POINTS, PerceivedScene

    P = ROUTE_POINTS
    route = np.stack([np.arange(P, dtype=float), 0.02 * np.arange(P) ** 1.5], -1)[None]
    scene = PerceivedScene(
        ego_speed=np.array([3.0]), route=route, route_valid=np.ones((1, P), bool), command=np.full((1, P), 4, np.int8),
        speed_limit=np.array([12.0]), agents=np.zeros((1, 0, 7)), agents_valid=np.zeros((1, 0), bool),
        light_dist=np.array([np.inf]), light_state=np.array([-1]), stop_dist=np.array([8.0]), stop_id=np.array([3]))
    fresh, warm = make_policy("rule", 1), make_policy("rule", 1)
    warmup(warm)
    for _ in range(5):
        a, b = fresh.act(scene)[0], warm.act(scene)[0]
        assert (a.throttle, a.steer, a.brake) == (b.throttle, b.steer, b.brake)
