"""Bench2Drive scenario types in vector space: each builder's actors appear where its parameters say, trigger
when the ego comes close, do what the type says, and end. Hand-placed on procedural-town routes (no CARLA)."""

import numpy as np
import pytest
from drivesim.routes.generate import random_routes
from drivesim.routes.planner import plan_route
from drivesim.routes.xml import ScenarioSpec
from drivesim.scenarios import SCENARIO_BUILDERS, SIMULATED_TYPES
from drivesim.scenarios.scene import route_scene
from drivesim.sim.control import PIDController
from drivesim.sim.perception import ScenePerceiver
from drivesim.sim.state import EGO, AgentKind, Behavior
from drivesim.sim.world import Controls, Simulator

TRIGGER_INDEX = 30  # route point where each scenario's trigger sits


def _route(g, seed=5, junction_after=True):
    """A long route whose trigger point is followed by a junction at least 40 m later."""
    for s in range(seed, seed + 50):
        d = plan_route(g, random_routes(g, 1, seed=s, min_length=300.0)[0])
        inj = g.lane_junction[d.lane] >= 0
        first = np.flatnonzero(inj[TRIGGER_INDEX:])
        if not junction_after or (len(first) and first[0] > 40):
            return d
    raise AssertionError("no suitable route")


def _spec(d, type_, **params):
    x, y = d.xy[TRIGGER_INDEX]
    return ScenarioSpec("s", type_, np.array([x, y, 0.0, np.rad2deg(d.yaw[TRIGGER_INDEX])]), params)


def _run(g, d, spec, speed=6.0, steps=400, stop_at=None):
    """Drive the ego along d at `speed` with the deployed controller (ignoring everything: the scenario's actors
    are the subject). Returns the states (one per step) and the number of scenario actors."""
    st = route_scene(g, [d], max_agents=16, seed=0, background=False, scenarios=[spec])
    n = int(st.valid[0].sum() - 1 + (st.script.appear[0].sum() if st.script is not None else 0))
    sim, per, ctl = Simulator(g), ScenePerceiver(g, [d]), PIDController(1)
    states = [st]
    for _ in range(steps):
        sc = per(st, sim.lights(st))
        target = speed if stop_at is None or d.cum_s[per.idx[0]] < stop_at else 0.0
        th, sr, br = ctl(sc.route, np.array([target]), sc.ego_speed)
        st = sim.step(st, Controls(th, sr, br))
        states.append(st)
    return states, n


def _lat(d, x, y):
    """Signed lateral offset of (x, y) from the route (positive = right of the route's heading)."""
    i = int(np.argmin(np.hypot(d.xy[:, 0] - x, d.xy[:, 1] - y)))
    return float(-(x - d.xy[i, 0]) * np.sin(d.yaw[i]) + (y - d.xy[i, 1]) * np.cos(d.yaw[i])), i


def _slot(states, kind=None, behavior=None):
    st = states[0]
    for a in range(1, st.max_agents):
        ok = (st.valid[0, a] or (st.script is not None and st.script.appear[0, a]))
        if ok and (kind is None or st.kind[0, a] == kind) and (behavior is None or st.behavior[0, a] == behavior):
            return a
    raise AssertionError("no such actor")


def test_every_bench2drive_type_is_known_and_the_simulated_ones_are_listed():
    from drivesim.routes.xml import DOS_TYPES, KNOWN_TYPES, SCENARIO_TYPES

    assert len(SCENARIO_TYPES) == 44 and not (DOS_TYPES & SCENARIO_TYPES)
    assert set(SCENARIO_BUILDERS) <= set(KNOWN_TYPES) and DOS_TYPES <= set(SCENARIO_BUILDERS)
    assert SIMULATED_TYPES <= set(KNOWN_TYPES)


def _seen(st, a, without=None):
    """Whether agent a is visible from the ego (range + occlusion), as a non-privileged policy would see it
    (`without`: as if that agent were not there)."""
    from drivesim.sim.perception import visibility

    others = st.valid.copy()
    others[:, EGO] = False
    if without is not None:
        others[:, without] = False
    vis = visibility(st.x, st.y, st.yaw, st.length, st.width, st.kind, others, st.x[:, EGO], st.y[:, EGO])
    return bool(vis[0, a])


def test_dos_pedestrian_between_parked_cars_is_hidden_until_it_steps_out(proc_town):
    d = _route(proc_town, junction_after=False)
    spec = _spec(d, "DOSPedestrianBetweenParked", distance=40.0, direction="right")
    states, n = _run(proc_town, d, spec, speed=5.0, steps=500, stop_at=d.cum_s[TRIGGER_INDEX] + 30.0)
    assert n == 4
    ped = _slot(states, AgentKind.PEDESTRIAN)
    moving = [k for k, s in enumerate(states) if s.speed[0, ped] > 0.1]
    k0 = moving[0]
    s = states[k0 - 1]
    assert np.hypot(s.x[0, EGO] - s.x[0, ped], s.y[0, EGO] - s.y[0, ped]) < 21.0  # triggered by the ego at 20 m
    lat0, _ = _lat(d, s.x[0, ped], s.y[0, ped])
    assert 2.0 < lat0 < 4.5  # in the gap of the parked row, on the right
    assert not _seen(s, ped)  # hidden by the parked car in front of it
    lats = [(k, _lat(d, st.x[0, ped], st.y[0, ped])[0]) for k, st in enumerate(states)]
    in_lane = next(k for k, lat in lats if lat < 1.0)
    assert _seen(states[in_lane], ped)  # seen once it is in the lane
    assert lats[-1][1] < -2.0 and not states[-1].valid[0, ped]  # crossed, then left (the end of its walk)


def test_dos_lead_brakes_for_a_pedestrian_hidden_behind_a_truck(proc_town):
    d = _route(proc_town, junction_after=False)
    spec = _spec(d, "DOSLeadBrakesForHiddenPedestrian", direction="right")
    states, n = _run(proc_town, d, spec, speed=4.0, steps=400, stop_at=d.cum_s[TRIGGER_INDEX] + 15.0)
    lead = _slot(states, AgentKind.VEHICLE, Behavior.SCRIPTED)
    ped = _slot(states, AgentKind.PEDESTRIAN)
    v = np.array([st.speed[0, lead] if st.valid[0, lead] else 0.0 for st in states])
    go = int(np.argmax(v > 0.5))  # it appears, moving
    stop = go + int(np.argmax(v[go:] < 0.01))
    assert 2.0 / 0.05 < stop - go < 4.5 / 0.05  # brakes ~2.5 s after setting off, hard
    sl = states[stop]
    lat_p, ip = _lat(d, sl.x[0, ped], sl.y[0, ped])
    _, il = _lat(d, sl.x[0, lead], sl.y[0, lead])
    assert abs(lat_p) < 3.0 and 0 < ip - il < 12  # the pedestrian is in the road just in front of the lead
    hidden = [not _seen(st, ped) for st in states[go:go + int(2.25 / 0.05)]]
    assert all(hidden)  # until just before the lead brakes (2.5 s), the ego does not see what it brakes for
    assert v[-1] > 1.0  # then the lead drives on


def test_dos_red_light_runner_hidden_behind_trucks(proc_town):
    d = _route(proc_town)
    spec = _spec(d, "DOSHiddenRedLightRunner", direction="right")
    states, n = _run(proc_town, d, spec, speed=5.0, steps=400)
    v = _slot(states, AgentKind.VEHICLE, Behavior.SCRIPTED)
    approach = [st for st in states if st.valid[0, v] and st.speed[0, v] > 1.0 and 8.0 < _lat(d, st.x[0, v], st.y[0, v])[0] < 35.0]
    assert approach
    seen = [_seen(st, v) for st in approach]
    assert sum(not x for x in seen) >= 0.3 * len(seen)  # hidden for a good part of its approach
    lats = [_lat(d, st.x[0, v], st.y[0, v])[0] for st in states if st.valid[0, v]]
    assert lats[0] > 20.0 and min(lats) < -20.0  # still runs across the junction


def test_dos_occluded_left_turn_car_hidden_by_the_waiting_truck(proc_town):
    """The ego turns left; a truck waits at the end of the opposite inner lane; the car in the outer lane sets off
    when the ego is 12 m from the junction and drives straight across the ego's turn. The truck hides it for a
    good part of its approach (without the truck it would be seen then)."""
    from drivesim.scenarios.suite import generate_suite

    r = generate_suite(proc_town, ["DOSOccludedLeftTurn"], 1, seed=0).routes[0]
    d = plan_route(proc_town, r)
    states, n = _run(proc_town, d, r.scenarios[0], speed=5.0, steps=500)
    truck = _slot(states, AgentKind.VEHICLE, Behavior.STATIC)
    car = _slot(states, AgentKind.VEHICLE, Behavior.SCRIPTED)
    assert states[0].length[0, truck] == pytest.approx(8.0) and not states[0].valid[0, car]
    j0 = int(np.flatnonzero(proc_town.lane_junction[d.lane] >= 0)[0])
    first = next(k for k, st in enumerate(states) if st.valid[0, car])
    ego0 = states[first - 1]
    assert np.hypot(*(d.xy[j0] - [ego0.x[0, EGO], ego0.y[0, EGO]])) == pytest.approx(12.0, abs=0.5)  # the trigger
    def near(st):  # noqa: E306
        return np.hypot(st.x[0, car] - st.x[0, EGO], st.y[0, car] - st.y[0, EGO]) < 45.0
    approach = [st for st in states[first:] if st.valid[0, car] and near(st)
                and proc_town.on_lane(np.array([[st.x[0, car], st.y[0, car]]]))[1][0] not in set(
                    np.flatnonzero(proc_town.lane_junction >= 0).tolist())][:40]
    hidden = [not _seen(st, car) for st in approach]
    assert len(approach) >= 10 and sum(hidden) >= 0.3 * len(approach)
    assert not any(not _seen(st, car, without=truck) for st in approach if near(st))  # the truck is the reason
    # it drives straight across the ego's turn: through the route's junction stretch
    xy = np.array([[st.x[0, car], st.y[0, car]] for st in states if st.valid[0, car]])
    jx = d.xy[j0:j0 + 30]
    assert np.min(np.hypot(xy[:, None, 0] - jx[None, :, 0], xy[:, None, 1] - jx[None, :, 1])) < 1.0


@pytest.mark.parametrize("type_", ["ParkedObstacle", "ParkedObstacleTwoWays"])
def test_parked_obstacle_blocks_the_lane_at_distance(proc_town, type_):
    d = _route(proc_town, junction_after=False)
    states, n = _run(proc_town, d, _spec(d, type_, distance=35.0, direction="right"), steps=250)
    a = _slot(states, AgentKind.VEHICLE, Behavior.STATIC)
    st = states[0]
    lat, i = _lat(d, st.x[0, a], st.y[0, a])
    assert abs(d.cum_s[i] - d.cum_s[TRIGGER_INDEX] - 35.0) < 1.5 and 0.3 < lat < 0.7  # in lane, offset right
    assert st.lane[0, a] >= 0  # IDM traffic queues behind it
    hit = [s for s in states if abs(s.x[0, EGO] - st.x[0, a]) + abs(s.y[0, EGO] - st.y[0, a]) < 3.5]
    assert hit  # an ego that ignores it drives into it: it blocks the lane


def test_construction_closes_the_lane_with_cones(proc_town):
    d = _route(proc_town, junction_after=False)
    states, n = _run(proc_town, d, _spec(d, "ConstructionObstacle", distance=30.0), steps=10)
    st = states[0]
    cones = [a for a in range(1, 16) if st.valid[0, a] and st.kind[0, a] == AgentKind.STATIC and st.length[0, a] < 0.5]
    assert len(cones) == 6
    lats = [_lat(d, st.x[0, a], st.y[0, a])[0] for a in cones]
    assert max(lats) > 1.0 and min(lats) < -1.0  # the taper spans the lane


def test_hazard_at_side_lane_bicycles_ride_slowly_along_the_right_edge(proc_town):
    d = _route(proc_town, junction_after=False)
    states, n = _run(proc_town, d, _spec(d, "HazardAtSideLane", distance=40.0, bicycle_speed=10.8,
                                         bicycle_drive_distance=50.0), speed=0.0, steps=100)
    a = _slot(states, AgentKind.CYCLIST)
    p0 = np.array([states[0].x[0, a], states[0].y[0, a]])
    p1 = np.array([states[100].x[0, a], states[100].y[0, a]])
    assert np.linalg.norm(p1 - p0) == pytest.approx(3.0 * 5.0, rel=0.1)  # 10.8 km/h for 5 s
    assert 0.5 < _lat(d, *p1)[0] < 1.6  # near the right edge of the lane
    # and it ends: after its drive distance it leaves the scene
    states, _ = _run(proc_town, d, _spec(d, "HazardAtSideLane", distance=40.0, bicycle_speed=36.0,
                                          bicycle_drive_distance=30.0), speed=0.0, steps=120)
    assert states[40].valid[0, a] and not states[-1].valid[0, a]


def test_vehicle_opens_door_when_the_ego_is_close(proc_town):
    d = _route(proc_town, junction_after=False)
    states, n = _run(proc_town, d, _spec(d, "VehicleOpensDoorTwoWays", distance=30.0), speed=6.0, steps=250)
    door = _slot(states, AgentKind.STATIC, Behavior.SCRIPTED)
    seen = [k for k, s in enumerate(states) if s.valid[0, door]]
    assert seen and seen[0] > 20  # invisible at first
    s = states[seen[0]]
    dist = np.hypot(s.x[0, EGO] - s.x[0, door], s.y[0, EGO] - s.y[0, door])
    assert 14.0 < dist < 15.5  # opened as the ego came within 15 m
    assert _lat(d, s.x[0, door], s.y[0, door])[0] < d.cum_s[-1]  # it is in the scene from then on
    assert all(st.valid[0, door] for st in states[seen[0]:])


def test_hard_break_lead_appears_brakes_hard_stands_and_drives_on(proc_town):
    d = _route(proc_town, junction_after=False)
    states, n = _run(proc_town, d, _spec(d, "HardBreakRoute"), speed=5.0, steps=400, stop_at=None)
    lead = _slot(states, AgentKind.VEHICLE, Behavior.SCRIPTED)
    appear = next(k for k, s in enumerate(states) if s.valid[0, lead])
    s0 = states[appear]
    gap = np.hypot(s0.x[0, lead] - s0.x[0, EGO], s0.y[0, lead] - s0.y[0, EGO])
    assert 18.0 < gap < 28.0 and s0.speed[0, lead] > 3.0
    v = np.array([s.speed[0, lead] for s in states[appear:]])
    t_brake = 3.0 / 0.05
    stop = int(np.argmax(v < 0.01))
    assert t_brake < stop < t_brake + 2.0 / 0.05  # a hard brake (7 m/s^2) from <= 9.7 m/s: < 1.5 s
    assert np.all(v[stop:stop + 50] < 0.01)  # stands (the 4 s brake phase: ~1 s braking, ~3 s standing)
    assert v[-1] > 1.0  # then drives on


@pytest.mark.parametrize("type_", ["DynamicObjectCrossing", "ParkingCrossingPedestrian"])
def test_pedestrian_steps_out_from_behind_the_blocker(proc_town, type_):
    d = _route(proc_town, junction_after=False)
    spec = _spec(d, type_, distance=40.0, direction="right", crossing_angle=0.0)
    states, n = _run(proc_town, d, spec, speed=5.0, steps=420, stop_at=d.cum_s[TRIGGER_INDEX] + 25.0)
    ped = _slot(states, AgentKind.PEDESTRIAN)
    blocker = _slot(states, None, Behavior.STATIC)
    lat0, _ = _lat(d, states[0].x[0, ped], states[0].y[0, ped])
    latb, _ = _lat(d, states[0].x[0, blocker], states[0].y[0, blocker])
    assert lat0 > latb > 2.0  # behind the blocker, on the right
    moving = [k for k, s in enumerate(states) if s.speed[0, ped] > 0.1]
    s = states[moving[0]]
    dist = np.hypot(s.x[0, EGO] - d.xy[TRIGGER_INDEX + 40, 0], s.y[0, EGO] - d.xy[TRIGGER_INDEX + 40, 1])
    assert dist < 23.0  # steps out when the ego is close
    lat_end, _ = _lat(d, states[-1].x[0, ped], states[-1].y[0, ped])
    assert lat_end < -2.0 and not states[-1].valid[0, ped]  # crossed to the far side, then left


def test_static_cut_in_enters_the_ego_lane(proc_town):
    d = _route(proc_town, junction_after=False)
    states, n = _run(proc_town, d, _spec(d, "StaticCutIn", distance=40.0, direction="right"), speed=5.0,
                     steps=500, stop_at=d.cum_s[TRIGGER_INDEX] + 35.0)
    cutter = _slot(states, AgentKind.VEHICLE, Behavior.SCRIPTED)
    lat0, _ = _lat(d, states[0].x[0, cutter], states[0].y[0, cutter])
    assert lat0 > 2.5  # starts in the lane beside
    lats = np.array([_lat(d, s.x[0, cutter], s.y[0, cutter])[0] for s in states])
    start = next(k for k, s in enumerate(states) if s.speed[0, cutter] > 0.1)
    inside = int(np.argmax(np.abs(lats) < 0.5))
    assert inside > start and (inside - start) * 0.05 < 6.0  # in the ego lane within 6 s of starting


def test_pedestrian_crossing_after_the_junction(proc_town):
    d = _route(proc_town)
    states, n = _run(proc_town, d, _spec(d, "PedestrianCrossing"), speed=5.0, steps=400)
    peds = [a for a in range(1, 16) if states[0].kind[0, a] == AgentKind.PEDESTRIAN and states[0].valid[0, a]]
    assert len(peds) == 3
    for a in peds:
        l0 = _lat(d, states[0].x[0, a], states[0].y[0, a])[0]
        l1 = _lat(d, states[-1].x[0, a], states[-1].y[0, a])[0]
        assert l0 < -2.0 and l1 > 2.0  # crossed the route from left to right


def test_blocked_intersection_clears_after_the_ego_waited(proc_town):
    d = _route(proc_town)
    states, n = _run(proc_town, d, _spec(d, "BlockedIntersection"), speed=5.0, steps=700)
    b = _slot(states, AgentKind.VEHICLE, Behavior.SCRIPTED)
    gone = next(k for k, s in enumerate(states) if not s.valid[0, b])
    t_act = float(states[gone].script.t_act[0, b])
    assert np.isfinite(t_act) and states[gone].t[0] - t_act == pytest.approx(8.0, abs=0.11)  # within 2 ticks


def test_opposite_vehicle_runs_the_red_light_across_the_route(proc_town):
    d = _route(proc_town)
    states, n = _run(proc_town, d, _spec(d, "OppositeVehicleRunningRedLight", direction="right"), speed=5.0,
                     steps=400)
    v = _slot(states, AgentKind.VEHICLE, Behavior.SCRIPTED)
    lats = [_lat(d, s.x[0, v], s.y[0, v])[0] for s in states if s.valid[0, v]]
    assert lats[0] > 20.0 and min(lats) < -20.0  # from the right, across, to the left
    assert not states[-1].valid[0, v]  # it leaves at the end of its path


def test_actor_flow_streams_vehicles_from_source_to_sink(proc_town):
    """A flow (EnterActorFlow-style start/end points): vehicles enter at the source `source_dist_interval` apart,
    keep to the lane path, and leave at the sink; the stream keeps going."""
    g = proc_town
    d = _route(g, junction_after=False)
    # a stretch of one lane outside junctions (no light or stop sign interrupts the stream)
    lane0 = d.lane[np.flatnonzero((g.lane_junction[d.lane] < 0) & (g.lane_length[d.lane] > 70))[0]]
    idx = np.flatnonzero(d.lane == lane0)
    a, b = d.xy[idx[0] + 3], d.xy[idx[0] + 63]
    spec = _spec(d, "EnterActorFlow", start_actor_flow=(float(a[0]), float(a[1]), 0.0),
                 end_actor_flow=(float(b[0]), float(b[1]), 0.0), flow_speed=8.0, source_dist_interval=(15.0, 25.0))
    st = route_scene(g, [d], max_agents=24, seed=0, background=False, scenarios=[spec])
    fl = st.flows
    assert fl is not None and (fl.slot_flow[0] == 0).sum() == 8
    path = set(np.flatnonzero(fl.on_path[0, 0]).tolist())
    st.x[0, EGO] = st.y[0, EGO] = 5000.0  # the ego far away
    st.lane[0, EGO] = -1
    sim = Simulator(g)
    seen_lanes, spawned, left, prev_valid = set(), 0, 0, st.valid[0].copy()
    spawn_gaps = []
    for _ in range(int(60 / 0.05)):
        st = sim.step(st, Controls.zeros(1))
        mine = (st.flows.slot_flow[0] == 0)
        now = st.valid[0] & mine
        new = now & ~prev_valid
        if new.any():
            others = now & ~new
            if others.any():
                spawn_gaps.append(np.min(np.hypot(st.x[0, others] - st.x[0, new][0], st.y[0, others] - st.y[0, new][0])))
        spawned += int(new.sum())
        gone = prev_valid & mine & ~st.valid[0]
        for k in np.flatnonzero(gone):
            assert np.hypot(st.x[0, k] - b[0], st.y[0, k] - b[1]) < 4.0 + 1.0  # left at the sink
        left += int(gone.sum())
        seen_lanes |= set(st.lane[0, now].tolist())
        prev_valid = st.valid[0].copy()
    assert seen_lanes <= path  # on the lane path only
    assert spawned >= 10 and left >= spawned - 8  # a continuous stream (IDM followers stretch the gaps) that drains
    assert min(spawn_gaps) >= 15.0 - 0.5  # entered no closer than source_dist_interval's lower bound


@pytest.mark.parametrize("type_", ["NonSignalizedJunctionLeftTurn", "SignalizedJunctionRightTurn",
                                   "NonSignalizedJunctionLeftTurnEnterFlow"])
def test_junction_flows_cross_the_egos_junction(proc_town, type_):
    """Junction turns with flows: the flow's lane path goes straight through the junction the ego turns at,
    from the opposite approach (left turn) or into the ego's exit lane (right turn, enter flow)."""
    g = proc_town
    for spec_r in random_routes(g, 120, seed=3, min_length=300.0):
        d = plan_route(g, spec_r)
        inj = np.flatnonzero(g.lane_junction[d.lane][TRIGGER_INDEX:] >= 0)
        if not len(inj) or inj[0] < 20:
            continue
        st = route_scene(g, [d], max_agents=24, seed=0, background=False,
                         scenarios=[_spec(d, type_, flow_speed=8.0, source_dist_interval=(15.0, 25.0))])
        if st.flows is not None:
            break
    else:
        pytest.fail(f"no route with a {type_} flow")
    path = np.flatnonzero(st.flows.on_path[0, 0])
    jn = [int(g.lane_junction[p]) for p in path if g.lane_junction[p] >= 0]
    ego_j = g.lane_junction[d.lane][TRIGGER_INDEX:]
    assert jn and jn[0] == ego_j[ego_j >= 0][0]  # the ego's next junction
    if type_.endswith("LeftTurn"):
        inj = np.flatnonzero(g.lane_junction[d.lane] == jn[0])
        h_in = d.yaw[inj[0] - 1]
        src_yaw = g.pt_yaw[g.lane_start[st.flows.src_lane[0, 0]]]
        assert np.cos(src_yaw - h_in) < -0.9  # comes from the opposite approach
    else:
        exit_lane = d.lane[np.flatnonzero(g.lane_junction[d.lane] == jn[0])[-1] + 1]
        assert exit_lane in path  # flows into the lane the ego turns into


@pytest.mark.parametrize("type_,kind", [("VehicleTurningRoute", AgentKind.CYCLIST),
                                        ("VehicleTurningRoutePedestrian", AgentKind.PEDESTRIAN)])
def test_turning_route_crosser_crosses_the_exit_lane(proc_town, type_, kind):
    d = _route(proc_town)
    states, n = _run(proc_town, d, _spec(d, type_), speed=5.0, steps=500)
    a = _slot(states, kind, Behavior.SCRIPTED)
    lats = [_lat(d, s.x[0, a], s.y[0, a])[0] for s in states if s.valid[0, a]]
    assert lats[0] > 3.0 and min(lats) < -3.0  # right to left across the route after the junction
    assert not states[-1].valid[0, a]  # and gone at the end of its crossing


def test_parking_cut_in_pulls_out_into_the_ego_lane(proc_town):
    d = _route(proc_town, junction_after=False)
    states, n = _run(proc_town, d, _spec(d, "ParkingCutIn", direction="right"), speed=4.0, steps=400,
                     stop_at=d.cum_s[TRIGGER_INDEX] + 8.0)
    a = _slot(states, AgentKind.VEHICLE, Behavior.SCRIPTED)
    lats = np.array([_lat(d, s.x[0, a], s.y[0, a])[0] for s in states if s.valid[0, a]])
    assert lats[0] > 2.5 and np.abs(lats).min() < 0.3  # from the kerb into the lane


def test_parking_exit_starts_parked_between_two_cars_and_the_expert_pulls_out(proc_town, tmp_path):
    """ParkingExit (Bench2Drive's parameters: 9 m front and behind): the ego starts in the parking lane beside the
    route's first point, off the driving lanes, 9 m (centre to centre) behind one parked car and ahead of another,
    with a car beside it in the lane. Scored closed loop, the expert waits for that car, pulls out and finishes
    without a collision; leaving the parking space is not an outside-lanes infraction (the test is off until
    15 m beyond the front car)."""
    from drivesim.evaluation.runner import run_route
    from drivesim.scenarios import lanes_test_window
    from drivesim.scenarios.suite import generate_suite

    g = proc_town
    r = generate_suite(g, ["ParkingExit"], 1, seed=0).routes[0]
    sc = r.scenarios[0]
    sc.params.update(front_vehicle_distance=9.0, behind_vehicle_distance=9.0)
    d = plan_route(g, r)
    st = route_scene(g, [d], max_agents=16, seed=0, background=False, scenarios=[sc])
    ex, ey = st.x[0, EGO], st.y[0, EGO]
    assert not g.on_lane(np.array([[ex, ey]]))[0][0]  # parked: off the driving lanes
    lat, _ = _lat(d, ex, ey)
    w = float(g.lane_width[d.lane[0]])
    assert lat > w / 2 + 1.0  # on the right of the route's lane
    parked = [a for a in range(1, 16) if st.valid[0, a] and st.behavior[0, a] == Behavior.STATIC]
    gaps = sorted(float(np.hypot(st.x[0, a] - ex, st.y[0, a] - ey)) for a in parked)
    assert gaps == pytest.approx([9.0, 9.0], abs=1.1)  # parking points are about 1 m apart
    side = _slot([st], AgentKind.VEHICLE, Behavior.SCRIPTED)
    assert abs(_lat(d, st.x[0, side], st.y[0, side])[0]) < 0.1  # the car beside, in the lane
    lo, hi = lanes_test_window(d, sc)
    assert lo < 0 and hi == pytest.approx(24.0)
    rec = run_route(g, r, "expert", seed=0).record  # r carries sc
    assert rec["status"] == "Perfect", {k: v for k, v in rec["infractions"].items() if v}
    assert not rec["infractions"]["outside_route_lanes"]


def test_invading_turn_oncoming_cars_cut_into_the_ego_lane(proc_town):
    d = _route(proc_town, junction_after=False)
    states, n = _run(proc_town, d, _spec(d, "InvadingTurn", distance=60.0, offset=0.3), speed=5.0, steps=300)
    cars = [a for a in range(1, 16) if states[0].behavior[0, a] == Behavior.SCRIPTED]
    assert len(cars) == 3
    for a in cars:
        moving = [s for s in states if s.valid[0, a] and s.speed[0, a] > 1.0]
        assert moving
        lat, _ = _lat(d, moving[0].x[0, a], moving[0].y[0, a])
        w = float(proc_town.lane_width[d.lane[TRIGGER_INDEX]])
        assert lat == pytest.approx(-w * 0.7, abs=0.3)  # in the opposite lane, 30 % of a lane width towards us
        assert np.cos(moving[0].yaw[0, a] - d.yaw[TRIGGER_INDEX]) < -0.8  # oncoming


def test_highway_cut_in_merges_from_the_on_ramp(proc_town):
    """On Proc0's highway: the ego drives westbound; a car from the on-ramp merges in front of it at 15 m/s."""
    from drivesim.routes.xml import RouteSpec

    g = proc_town

    def lane_of(road, lane_id):  # the longest section of that lane
        return max((i for i in range(g.num_lanes) if g.lane_road[i] == road and g.lane_id[i] == lane_id),
                   key=lambda i: g.lane_length[i])

    ramp, west = lane_of(504, 1), lane_of(500, 1)
    h2 = lane_of(502, 3)
    ego = plan_route(g, RouteSpec("hw", g.name, np.array([[*g.lane_points(h2)[1], 0], [*g.lane_points(west)[-2], 0]])))
    a, b = g.lane_points(ramp)[1], g.lane_points(lane_of(501, 3))[40]
    spec = ScenarioSpec("s", "HighwayCutIn", np.array([*ego.xy[5], 0.0, 0.0]),
                        {"other_actor_location": (float(a[0]), float(a[1]), 0.0), "end_location": (float(b[0]), float(b[1]), 0.0)})
    states, n = _run(g, ego, spec, speed=12.0, steps=300)
    car = _slot(states, AgentKind.VEHICLE, Behavior.SCRIPTED)
    v = [s.speed[0, car] for s in states]
    assert max(v) == pytest.approx(15.0, abs=0.1)
    end = states[-1]
    assert not end.valid[0, car] or np.hypot(end.x[0, car] - b[0], end.y[0, car] - b[1]) < 5.0
    lats = [abs(_lat(ego, s.x[0, car], s.y[0, car])[0]) for s in states if s.valid[0, car] and s.speed[0, car] > 1]
    assert min(lats) < 4.0  # it comes onto the highway beside / in front of the ego


def test_control_loss_jolts_the_ego_three_times(proc_town):
    """ControlLoss: three 1 s events after the trigger; during each, the applied steer differs from the command
    (the ego leaves the route's centre line), outside them it does not."""
    d = _route(proc_town, junction_after=False)
    states, n = _run(proc_town, d, _spec(d, "ControlLoss"), speed=6.0, steps=300)
    p = states[-1].perturb
    assert p is not None and np.all(np.isfinite(p.t_fire[0]))  # all three fired
    assert np.all(np.diff(p.t_fire[0]) > 1.0)
    dev = np.array([abs(_lat(d, s.x[0, EGO], s.y[0, EGO])[0]) for s in states])
    t = np.array([s.t[0] for s in states])
    during = (t >= p.t_fire[0, 0]) & (t < p.t_fire[0, 0] + 1.5)
    before = t < p.t_fire[0, 0] - 0.5
    assert dev[during].max() > 0.3 and dev[before][20:].max() < 0.2


@pytest.mark.parametrize("ego_speed,expect_infraction", [(4.0, True), (22.0, False)])
def test_emergency_vehicle_from_behind_and_the_yield_criterion(proc_town, ego_speed, expect_infraction):
    """YieldToEmergencyVehicle: the emergency vehicle appears `distance` behind the ego at the trigger and closes
    in; an ego that stays slow in its lane holds it up (it keeps its distance, never rams) and after 5 s the
    route gets one yield_emergency_vehicle_infractions entry; an ego that drives away does not."""
    from drivesim.metrics.monitor import RouteMonitor

    g = proc_town
    d = _route(g, junction_after=False)
    st = route_scene(g, [d], max_agents=8, seed=0, background=False,
                     scenarios=[_spec(d, "YieldToEmergencyVehicle", distance=30.0)])
    sim, per, ctl, mon = Simulator(g), ScenePerceiver(g, [d]), PIDController(1), RouteMonitor(g, [d])
    ev = _slot([st], AgentKind.EMERGENCY, Behavior.SCRIPTED)
    appeared_gap, min_gap = None, np.inf
    for _ in range(600):
        sc = per(st, sim.lights(st))
        th, sr, br = ctl(sc.route, np.array([ego_speed]), sc.ego_speed)
        new = sim.step(st, Controls(th, sr, br))
        done = mon.update(st, new, sim.lights(new))
        st = new
        if st.valid[0, ev]:
            gap = float(np.hypot(st.x[0, ev] - st.x[0, EGO], st.y[0, ev] - st.y[0, EGO]))
            appeared_gap = gap if appeared_gap is None else appeared_gap
            min_gap = min(min_gap, gap)
        if done[0]:
            break
    assert appeared_gap is not None and 25.0 < appeared_gap < 35.0
    assert min_gap > (4.9 + 5.2) / 2 + 2.0  # it never rams the ego
    assert not mon.infractions[0]["collisions_vehicle"]
    assert len(mon.infractions[0]["yield_emergency_vehicle_infractions"]) == (1 if expect_infraction else 0)


def test_route_suite_places_every_simulated_type(proc_town, tmp_path):
    """`routes suite`: N routes per type, written and read back; every route plans and its scenario builds actors
    (the types that cannot be placed on Proc0 are reported, not dropped silently)."""
    from drivesim.routes import parse_routes, write_routes
    from drivesim.routes.xml import DOS_TYPES, SCENARIO_TYPES
    from drivesim.scenarios import build_actors
    from drivesim.scenarios.suite import generate_suite

    dos = generate_suite(proc_town, sorted(DOS_TYPES), 1, seed=3)
    assert not dos.missing and len(dos.routes) == len(DOS_TYPES)
    rep = generate_suite(proc_town, sorted(SCENARIO_TYPES), 1, seed=3)
    assert not rep.missing, rep.missing
    path = tmp_path / "suite.xml"
    write_routes(rep.routes, path)
    back = parse_routes(path)
    assert not back.errors and len(back.routes) == 44
    for r in back.routes:
        s = r.scenarios[0]
        d = plan_route(proc_town, r)
        if s.type in SCENARIO_BUILDERS:
            assert build_actors(proc_town, d, s, np.random.default_rng(0)), s.type


def test_a_fast_emergency_vehicle_appears_no_faster_than_it_can_follow(proc_town):
    """On the highway (1.5x the limit: > 30 m/s) the emergency vehicle appears 30 m behind an ego standing at the
    trigger. It comes in no faster than it could still stop behind the ego at, and it never rams it."""
    from drivesim.routes.xml import RouteSpec

    g = proc_town
    lane = max((i for i in range(g.num_lanes) if g.lane_road[i] == 500 and g.lane_id[i] == 1),
               key=lambda i: g.lane_length[i])
    pts = g.lane_points(lane)
    d = plan_route(g, RouteSpec("hw", g.name, np.array([[*pts[1], 0.0], [*pts[-2], 0.0]])))
    assert 1.5 * g.lane_speed_limit[d.lane[TRIGGER_INDEX]] > 30.0
    st = route_scene(g, [d], max_agents=8, seed=0, background=False,
                     scenarios=[_spec(d, "YieldToEmergencyVehicle", distance=30.0)])
    st.x[0, EGO], st.y[0, EGO] = d.xy[TRIGGER_INDEX]
    ev = _slot([st], AgentKind.EMERGENCY, Behavior.SCRIPTED)
    sim, stand = Simulator(g), Controls(np.zeros(1), np.zeros(1), np.ones(1))
    gaps, first_speed = [], None
    for _ in range(200):
        st = sim.step(st, stand)
        if st.valid[0, ev]:
            first_speed = float(st.speed[0, ev]) if first_speed is None else first_speed
            gaps.append(float(np.hypot(st.x[0, ev] - st.x[0, EGO], st.y[0, ev] - st.y[0, EGO])))
    assert gaps and first_speed < 20.0  # sqrt(2 * 3 m/s^2 * (~25 m - 4 m)) ~ 11 m/s, not 30+
    assert min(gaps) > (4.9 + 5.2) / 2  # stands behind the ego, no overlap


@pytest.mark.parametrize("route_id", ["24781", "25300", "26944"])
def test_no_agent_drives_through_another(route_id):
    """HardBreakRoute (24781): the scripted lead car used to drive through a car queuing at a light; HazardAtSideLane
    (25300): a background car drove through the scripted bicycles; OppositeVehicleRunningRedLight (26944): the
    runner drove through a crossing car. Scripted vehicles now keep a gap behind agents in their way and lane
    followers stop for agents off the lane graph: over the whole route no scripted vehicle overlaps another agent."""
    from conftest import B2D, MAPS, need_shared
    from drivesim.evaluation.runner import run_route
    from drivesim.geometry import obb_overlap
    from drivesim.maps import TownLoader
    from drivesim.routes.xml import parse_routes

    need_shared()
    spec = next(r for r in parse_routes(B2D).routes if r.route_id == route_id)
    hits, scripted_moved = [], [False]

    def observe(step):
        st = step.state
        v = st.valid[0].copy()
        v[EGO] = False
        sc = np.flatnonzero(v & (st.behavior[0] == Behavior.SCRIPTED) & (st.kind[0] != AgentKind.PEDESTRIAN)
                            & (st.speed[0] > 0.5))
        scripted_moved[0] |= len(sc) > 0
        others = np.flatnonzero(v & (st.kind[0] != AgentKind.STATIC))
        for a in sc:
            o = others[others != a]
            h = obb_overlap(st.x[0, a], st.y[0, a], st.yaw[0, a], st.length[0, a], st.width[0, a], st.x[0, o],
                            st.y[0, o], st.yaw[0, o], st.length[0, o], st.width[0, o])
            hits.extend((round(float(st.t[0]), 2), int(a), int(b)) for b in o[h])

    run_route(TownLoader(MAPS).load(spec.town), spec, "expert", seed=0, observer=observe)
    assert scripted_moved[0] and hits == []


@pytest.fixture(scope="module")
def proc0_suite(proc_town):
    from drivesim.routes.xml import KNOWN_TYPES
    from drivesim.scenarios.suite import generate_suite

    return {r.route_id: r for r in generate_suite(proc_town, sorted(KNOWN_TYPES), 2, seed=0).routes}


@pytest.mark.parametrize("route_id", ["StaticCutIn_0", "HardBreakRoute_0", "VehicleTurningRoute_1"])
def test_traffic_does_not_lock_up_around_scenario_actors(proc_town, proc0_suite, route_id):
    """Three gridlocks of the Proc0 all+dos suite (`routes suite --town Proc0 --types all+dos --n 2 --seed 0`) that
    blocked the expert once agents yielded to every agent ahead: oncoming cars stood behind a StaticCutIn car
    waiting in their lane, in the junction, so the cars ahead of the ego could not enter it (now a car stopped
    right behind a standing scenario actor leaves); background cars queued for good at the dead end of a road
    at the town's edge, the HardBreakRoute lead behind them and the ego behind it (now they drive off it); a
    VehicleTurningRoute cyclist waited for a car at a stop line, the car for the junction, the ego in the
    junction for the cyclist (now scripted vehicles do not wait for agents standing across their way). The
    expert drives each to the end."""
    from drivesim.evaluation.runner import run_route

    ep = run_route(proc_town, proc0_suite[route_id], "expert", seed=0)
    assert ep.record["status"] in ("Perfect", "Completed"), ep.record["infractions"]["vehicle_blocked"]
    assert not ep.record["infractions"]["vehicle_blocked"]
