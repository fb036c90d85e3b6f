"""The privileged expert: forecasts, passing a blocked lane, yielding to a crossing pedestrian, lights."""

import numpy as np
import pytest
from drivesim.evaluation.runner import run_route
from drivesim.geometry import obb_overlap
from drivesim.policies.expert import forecast
from drivesim.routes.planner import plan_route
from drivesim.scenarios.scene import route_scene
from drivesim.scenarios.suite import generate_suite
from drivesim.sim.perception import PRIVILEGED_RANGE, ScenePerceiver
from drivesim.sim.state import EGO, Behavior


def _suite_route(g, type_):
    rep = generate_suite(g, [type_], 1, seed=0)
    assert rep.routes, f"no {type_} route on {g.name}"
    return rep.routes[0]


def _lateral(route, xy):
    i = np.argmin(np.hypot(route.xy[:, 0] - xy[0], route.xy[:, 1] - xy[1]))
    d = np.asarray(xy) - route.xy[i]
    return float(d[0] * np.sin(route.yaw[i]) - d[1] * np.cos(route.yaw[i]))


def test_expert_passes_a_closed_lane_where_the_rule_policy_is_blocked(proc_town):
    """ConstructionObstacle: cones close the ego lane. The rule policy stops behind them until blocked; the expert
    swings out (> 2 m off the route centreline) past them, returns to its lane, and completes without contact."""
    g = proc_town
    spec = _suite_route(g, "ConstructionObstacle")
    ep = run_route(g, spec, policy="expert", keep_states=True)
    inf = ep.record["infractions"]
    assert ep.record["scores"]["score_route"] == 100.0
    assert not inf["collisions_layout"] and not inf["collisions_vehicle"] and not inf["vehicle_blocked"]
    lat = np.array([_lateral(ep.route, (s.x[0, EGO], s.y[0, EGO])) for s in ep.states])
    assert np.abs(lat).max() > 2.0
    assert abs(lat[-1]) < 0.6
    rule = run_route(g, spec, policy="rule")
    assert rule.record["infractions"]["vehicle_blocked"] and rule.record["scores"]["score_route"] < 60.0


@pytest.mark.parametrize("type_", ["Accident", "AccidentTwoWays"])
def test_expert_passes_the_askew_crashed_cars(proc_town, type_):
    """Accident: a police car and two crashed cars, turned up to 0.5 rad against the lane. The passing offset
    must clear their extent across the path (not their width): the expert passes and finishes without contact."""
    spec = _suite_route(proc_town, type_)
    rec = run_route(proc_town, spec, policy="expert").record
    assert rec["scores"]["score_route"] == 100.0, {k: v for k, v in rec["infractions"].items() if v}
    assert not rec["infractions"]["collisions_vehicle"] and not rec["infractions"]["vehicle_blocked"]


def test_expert_yields_to_the_pedestrian_stepping_out(proc_town):
    """DynamicObjectCrossing: a pedestrian steps out from behind a parked container; the expert's forecast of
    the walk stops it in time (no pedestrian collision, route completed)."""
    g = proc_town
    spec = _suite_route(g, "DynamicObjectCrossing")
    ep = run_route(g, spec, policy="expert")
    assert not ep.record["infractions"]["collisions_pedestrian"]
    assert ep.record["scores"]["score_composed"] == 100.0


def test_forecast_branches_over_every_successor_a_car_may_take(proc_town):
    """A lane follower whose next lane ends in a junction with several exits gets one forecast row per exit, each
    ending on a different lane; walkers walk exactly the distance they have left."""
    from drivesim.sim.state import AgentKind

    g = proc_town
    # a lane whose successor has >= 2 successors
    lane = next(l for l in range(g.num_lanes) if g.successors(l) and len(g.successors(g.successors(l)[0])) >= 2
                and g.lane_length[l] > 20 and g.lane_length[g.successors(l)[0]] < 90)
    nxt = g.successors(lane)[0]
    spec = _suite_route(g, "T_Junction")
    d = plan_route(g, spec)
    st = route_scene(g, [d], max_agents=4, seed=0, background=False)
    x, y, yaw = g.lane_position(np.array([lane]), np.array([g.lane_length[lane] - 10.0]))
    st.valid[0, 1], st.behavior[0, 1], st.kind[0, 1] = True, Behavior.IDM, AgentKind.VEHICLE
    st.lane[0, 1], st.s[0, 1], st.next_lane[0, 1] = lane, g.lane_length[lane] - 10.0, nxt
    st.x[0, 1], st.y[0, 1], st.yaw[0, 1], st.speed[0, 1] = x[0], y[0], yaw[0], 12.0
    st.valid[0, 2], st.behavior[0, 2], st.kind[0, 2] = True, Behavior.WALKER, AgentKind.PEDESTRIAN
    st.x[0, 2], st.y[0, 2], st.yaw[0, 2], st.desired_speed[0, 2], st.s[0, 2] = x[0] + 3, y[0], 0.0, 1.5, 2.0
    st.x[0, EGO], st.y[0, EGO] = x[0] - 5, y[0] - 5
    per = ScenePerceiver(g, [d], perception_range=PRIVILEGED_RANGE)
    per(st, np.zeros((1, g.num_lights), np.int8))
    times = np.arange(0.0, 10.01, 0.2)
    F = forecast(per.truth(st, np.zeros((1, g.num_lights), np.int8)), 0, times)
    rows = np.flatnonzero(F.index == 1)
    assert len(rows) == len(g.successors(nxt))
    ends = [g.match(np.array([[F.x[r, -1], F.y[r, -1]]])).point[0] for r in rows]
    assert len({int(g.pt_lane[p]) for p in ends}) == len(rows)
    w = np.flatnonzero(F.index == 2)[0]
    assert np.hypot(F.x[w, -1] - F.x[w, 0], F.y[w, -1] - F.y[w, 0]) == pytest.approx(2.0, abs=1e-6)


def test_standing_at_the_line_the_ego_does_not_start_on_yellow():
    from drivesim.policies.rule import stop_line_gaps
    from drivesim.sim.perception import PerceivedScene
    from drivesim.sim.state import LightState

    def scene(v, light_dist):
        z = np.zeros(1)
        return PerceivedScene(ego_speed=np.array([v]), route=np.zeros((1, 2, 2)), route_valid=np.ones((1, 2), bool),
                              command=np.zeros((1, 2), np.int8), speed_limit=z + 10, agents=np.zeros((1, 0, 7)),
                              agents_valid=np.zeros((1, 0), bool), light_dist=np.array([light_dist]),
                              light_state=np.array([LightState.YELLOW]), stop_dist=np.array([np.inf]),
                              stop_id=np.array([-1]))

    served = np.full(1, -1)
    assert stop_line_gaps(scene(0.0, 3.0), served, 3.0)[0][0]  # standing 0.45 m short of the line: stay
    assert not stop_line_gaps(scene(8.0, 5.0), served, 3.0)[0][0]  # at speed, too close to stop comfortably: go
    assert stop_line_gaps(scene(8.0, 30.0), served, 3.0)[0][0]  # far enough: stop


def test_expert_pulls_out_of_a_parking_space_but_not_out_of_a_driving_lane(proc_town):
    """Standing beside the route in the parking lane (ParkingExit), the expert plans a pull-out ramp; standing the
    same distance beside it in a driving lane (waiting to merge, as in MergerIntoSlowTrafficV2) it does not."""
    from drivesim.policies import make_policy
    from drivesim.sim.world import Simulator

    g = proc_town
    spec = _suite_route(g, "ParkingExit")
    d = plan_route(g, spec)
    status = {}
    for where in ("parking", "driving lane"):
        st = route_scene(g, [d], max_agents=16, seed=0, background=False, scenarios=[spec.scenarios[0]])
        st.valid[0, st.behavior[0] == Behavior.SCRIPTED] = False  # without the car beside: only the parked ones
        if where == "driving lane":  # the neighbour lane on the route's left, as far from the route
            w = float(g.lane_width[d.lane[0]])
            st.x[0, EGO] = d.xy[0, 0] + w * np.sin(d.yaw[0])
            st.y[0, EGO] = d.xy[0, 1] - w * np.cos(d.yaw[0])
            assert g.on_lane(np.array([[st.x[0, EGO], st.y[0, EGO]]]))[0][0]
        assert abs(_lateral(d, (st.x[0, EGO], st.y[0, EGO]))) > 2.5
        pol = make_policy("expert", 1, g=g)
        per = ScenePerceiver(g, [d], perception_range=PRIVILEGED_RANGE, occlusion=False)
        sim = Simulator(g)
        lights = sim.lights(st)
        pol.act(per(st, lights), per.truth(st, lights))
        status[where] = pol.status[0]
    assert status["parking"].startswith("pull out"), status
    assert "pull out" not in status["driving lane"], status


def _dos_left_turn(g):
    """The DOSOccludedLeftTurn scene (seed 0 suite route), its dense route, and where the junction starts."""
    spec = _suite_route(g, "DOSOccludedLeftTurn")
    d = plan_route(g, spec)
    st = route_scene(g, [d], max_agents=16, seed=0, background=False, scenarios=[spec.scenarios[0]])
    return st, d, int(np.flatnonzero(g.lane_junction[d.lane] >= 0)[0])


def test_sight_lines_at_a_junction_hidden_by_the_truck_and_cut_by_a_visible_car(proc_town):
    """Two metres before the stop line of the DOS left turn, the ego gives way to every crossing lane; the truck
    waiting in the opposite inner lane hides the outer lane's approach, which is the hidden car's lane. Without
    the truck every approach is in view. A truck the ego sees standing on that approach cuts its sight line:
    what is behind it (out of view) must follow it."""
    from drivesim.policies.sight import _seen, gives_way, occluded_conflicts, sight_probes
    from drivesim.sim.world import Simulator

    g = proc_town
    st, d, j0 = _dos_left_turn(g)
    st.x[0, EGO], st.y[0, EGO], st.yaw[0, EGO] = d.xy[j0 - 2, 0], d.xy[j0 - 2, 1], d.yaw[j0 - 2]
    lane = int(d.lane[j0])
    conflicts = gives_way(g, lane, Simulator(g).lights(st)[0])
    assert len(conflicts) == 4 and g.lane_stop[lane] >= 0  # a stop junction: the ego gives way to all crossings
    hidden = occluded_conflicts(g, st, 0, conflicts)
    car = int(np.flatnonzero(st.behavior[0] == Behavior.SCRIPTED)[0])
    car_lane = int(g.pt_lane[g.project(np.array([[st.x[0, car], st.y[0, car]]]), np.array([st.yaw[0, car]]))[0][0]])
    assert [conflicts[i].lane for i in hidden] == [c.lane for c in conflicts if car_lane in g.predecessors(c.lane)]
    truck = int(np.flatnonzero(st.valid[0] & (st.behavior[0] == Behavior.STATIC))[0])
    st.valid[0, truck] = False
    assert occluded_conflicts(g, st, 0, conflicts) == []
    # a truck standing on the outer approach, 20 m up from the conflict point, in view: it hides the lane behind it
    cf = conflicts[hidden[0]]
    probes, owner = sight_probes(g, [cf])
    st.valid[0, car], st.behavior[0, car], st.speed[0, car] = True, Behavior.STATIC, 0.0
    st.x[0, car], st.y[0, car], st.yaw[0, car] = probes[5]
    st.length[0, car], st.width[0, car] = 8.0, 2.5
    slots, seen, probe_seen = _seen(st, 0, probes, 50.0)
    assert seen[slots == car].all() and not probe_seen[6:].all()  # seen, and hides some of what is behind it
    assert occluded_conflicts(g, st, 0, [cf]) == []


def test_expert_creeps_into_the_junction_while_the_truck_hides_the_oncoming_lane(proc_town):
    """The DOS left turn, driven by the expert: after its stop it creeps (<= creep_speed) towards the junction while
    the outer lane is hidden, until the hidden car comes into view and it yields to it; without the truck it
    never creeps there. No collision either way."""
    from drivesim.policies import make_policy
    from drivesim.policies.expert import EGO_HALF_L
    from drivesim.sim.world import Simulator

    g = proc_town
    runs = {}
    for truck in (True, False):
        st, d, j0 = _dos_left_turn(g)
        if not truck:
            st.valid[0, st.behavior[0] == Behavior.STATIC] = False
        pol = make_policy("expert", 1, g=g)
        per = ScenePerceiver(g, [d], perception_range=PRIVILEGED_RANGE, occlusion=False)
        sim = Simulator(g)
        log = []
        for _ in range(340):
            lights = sim.lights(st)
            controls, _ = pol.act(per(st, lights), per.truth(st, lights))
            log.append((d.cum_s[per.idx[0]] - d.cum_s[j0], float(st.speed[0, EGO]), pol.status[0]))
            st = sim.step(st, controls)
            o = np.flatnonzero(st.valid[0, 1:]) + 1
            assert not obb_overlap(st.x[0, EGO], st.y[0, EGO], st.yaw[0, EGO], st.length[0, EGO], st.width[0, EGO],
                                   st.x[0, o], st.y[0, o], st.yaw[0, o], st.length[0, o], st.width[0, o]).any()
        runs[truck] = log
    approach = lambda log: [(u, v, s) for u, v, s in log if -8.0 < u < 0.0]  # noqa: E731
    creep = [(u, v) for u, v, s in approach(runs[True]) if "creep" in s]
    at_line = [v for u, v in creep if u > -EGO_HALF_L - 1.0]  # the front at the junction entry or beyond
    assert len(creep) >= 20 and len(at_line) >= 10 and max(at_line) <= pol.cfg.creep_speed + 0.3
    assert any("yield" in s for _, _, s in runs[True][len(creep):])  # then the car comes into view
    assert not any("creep" in s for _, _, s in approach(runs[False]))
