"""Simulator core: geometry, dynamics, controller, IDM traffic invariants, batching."""

import copy
import dataclasses

import numpy as np
import pytest
from drivesim.geometry import carla_to_ros_pose, obb_overlap, ros_to_carla_pose
from drivesim.routes.generate import random_routes
from drivesim.routes.planner import plan_route
from drivesim.scenarios.scene import route_scene, spawn_background
from drivesim.sim.dynamics import bicycle_step
from drivesim.sim.events import ego_collisions
from drivesim.sim.state import EGO
from drivesim.sim.world import Controls, Simulator


def _brute_overlap(a, b, n=60):
    """Sample box a densely; any sample inside b means overlap."""
    (ax, ay, ayaw, al, aw), (bx, by, byaw, bl, bw) = a, b
    u, v = np.meshgrid(np.linspace(-0.5, 0.5, n), np.linspace(-0.5, 0.5, n))
    px = ax + u * al * np.cos(ayaw) - v * aw * np.sin(ayaw)
    py = ay + u * al * np.sin(ayaw) + v * aw * np.cos(ayaw)
    dx, dy = px - bx, py - by
    lon = dx * np.cos(byaw) + dy * np.sin(byaw)
    lat = -dx * np.sin(byaw) + dy * np.cos(byaw)
    return bool(np.any((np.abs(lon) <= bl / 2) & (np.abs(lat) <= bw / 2)))


def test_obb_overlap_matches_brute_force():
    rng = np.random.default_rng(0)
    agree = 0
    for _ in range(300):
        a = (0.0, 0.0, rng.uniform(-3, 3), rng.uniform(1, 5), rng.uniform(0.5, 2))
        b = (rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(-3, 3), rng.uniform(1, 5), rng.uniform(0.5, 2))
        fast = bool(obb_overlap(*a, *b))
        slow = _brute_overlap(a, b) or _brute_overlap(b, a)
        agree += fast == slow
    assert agree >= 297  # sampling can miss a sliver of overlap


@pytest.mark.parametrize("shape", [(), (2, 1)])
def test_bicycle_throttle_brake_steer(shape):
    z = np.zeros(shape)
    x, y, yaw, v, st = z, z, z, z, z
    for _ in range(40):  # 2 s full throttle
        x, y, yaw, v, st, a = bicycle_step(x, y, yaw, v, st, 1.0, 0.0, 0.0, 0.05)
    assert np.all(v > 5) and np.all(np.abs(y) < 1e-9) and np.all(x > 4)
    for _ in range(20):  # steer right: in CARLA's frame yaw grows and y grows
        x, y, yaw, v, st, a = bicycle_step(x, y, yaw, v, st, 0.3, 0.5, 0.0, 0.05)
    assert np.all(yaw > 0.1) and np.all(y > 0)
    for _ in range(100):  # full brake stops and never reverses
        x, y, yaw, v, st, a = bicycle_step(x, y, yaw, v, st, 0.0, 0.0, 1.0, 0.05)
    assert np.all(v == 0.0)


def test_frame_conversion_round_trip():
    x, y, yaw = 3.0, -2.0, 0.7
    assert carla_to_ros_pose(x, y, yaw)[1] == 2.0 and carla_to_ros_pose(x, y, yaw)[2] == -0.7
    assert np.allclose(ros_to_carla_pose(*carla_to_ros_pose(x, y, yaw)), (x, y, yaw))


def _leaves(state, prefix=""):
    """Every array of a SimState, nested scripts / flows / perturbations included, by dotted name; None fields
    as None (so a field set on one side only shows up too)."""
    out = {}
    for f in dataclasses.fields(state):
        v = getattr(state, f.name)
        if dataclasses.is_dataclass(v):
            out.update(_leaves(v, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = v
    return out


def _differing(a, b):
    """Names of the fields of two states that are not bit-identical (dtype, shape and bytes; NaN-safe)."""
    la, lb = _leaves(a), _leaves(b)
    assert la.keys() == lb.keys()
    bad = []
    for k, u in la.items():
        w = lb[k]
        if u is None or w is None:
            if (u is None) != (w is None):
                bad.append(k)
        elif u.dtype != w.dtype or u.shape != w.shape or u.tobytes() != w.tobytes():
            bad.append(k)
    return bad


def test_step_is_pure_and_batched(proc_town):
    """Three envs that between them use every part of Simulator.step: IDM traffic and walkers (background), a
    scripted actor (HardBreakRoute), an actor flow (EnterActorFlow), control-loss events (ControlLoss) and
    log-replay agents (one per env, with a hand-made log that ends). Over 200 steps of the ego following its
    route: after every step the input state is bit-identical to a deep copy made before it (every field, nested
    ones included); every 5th step, stepping each env alone gives bit-identically what it gets in the batch."""
    from drivesim.scenarios.suite import generate_suite
    from drivesim.sim.control import PIDController
    from drivesim.sim.perception import ScenePerceiver
    from drivesim.sim.state import BEH

    g = proc_town
    suite = generate_suite(g, ["HardBreakRoute", "EnterActorFlow", "ControlLoss"], 1, seed=0).routes
    routes = [plan_route(g, r) for r in suite]
    st = route_scene(g, routes, max_agents=32, seed=1, scenarios=[r.scenarios[0] for r in suite])
    assert st.script is not None and st.flows is not None and st.perturb is not None
    # log replay: one IDM agent per env becomes a REPLAY agent on a straight 5 m/s log of 7.5 s (then gone)
    E, A, K = st.num_envs, st.max_agents, 400
    st.log_xyyv = np.zeros((E, A, K, 4), np.float32)
    st.log_valid = np.zeros((E, A, K), bool)
    t = np.arange(K) * 0.05
    for e in range(E):
        a = int(np.flatnonzero(st.valid[e] & (st.behavior[e] == BEH.IDM))[-1])
        st.behavior[e, a] = BEH.REPLAY
        c, s = np.cos(st.yaw[e, a]), np.sin(st.yaw[e, a])
        st.log_xyyv[e, a] = np.stack([st.x[e, a] + 5 * t * c, st.y[e, a] + 5 * t * s,
                                      np.full(K, st.yaw[e, a]), np.full(K, 5.0)], -1)
        st.log_valid[e, a, :150] = True
    sim, per, ctl = Simulator(g), ScenePerceiver(g, routes), PIDController(E)
    for k in range(200):
        sc = per(st, sim.lights(st))
        th, sr, br = ctl(sc.route, np.full(E, 8.0), sc.ego_speed)
        controls = Controls(th, sr, br)
        before = copy.deepcopy(st)
        new = sim.step(st, controls)
        assert _differing(st, before) == [], k  # the input is untouched, every field
        new.validate()
        assert np.allclose(new.t, st.t + 0.05)
        if k % 5 == 0:  # each env alone = the same env inside the batch, every field
            for e in range(E):
                alone = sim.step(st.env(e), Controls(th[e:e + 1], sr[e:e + 1], br[e:e + 1]))
                assert _differing(alone, new.env(e)) == [], (k, e)
        if k == 0:
            assert np.all(new.speed[:, EGO] > 0)  # the egos pull away
        st = new
    # every mechanism ran while it was checked (measured: the actor triggered at 4.6 s, control-loss events fired
    # at 7.1 s and later, flow vehicles entered from 3.0 s (2 in by the end), 4 walkers out, the replayed agents
    # gone at 7.5 s with their logs)
    assert np.isfinite(st.script.t_act[0]).any() and np.isfinite(st.perturb.t_fire[2]).any()
    assert (st.valid[1] & (st.flows.slot_flow[1] >= 0)).sum() >= 1
    assert ((st.behavior == BEH.WALKER) & st.valid).any() and not (st.valid & (st.behavior == BEH.REPLAY)).any()


def test_idm_traffic_never_collides_with_itself(proc_town):
    """Invariant: dense IDM traffic (ego parked far away) drives 60 s without vehicles overlapping on a lane."""
    routes = [plan_route(proc_town, r) for r in random_routes(proc_town, 2, seed=9)]
    st = route_scene(proc_town, routes, max_agents=40, seed=2, background=False)
    rng = np.random.default_rng(0)
    for e in range(2):
        spawn_background(st, e, proc_town, routes[e].xy, rng, spacing=15.0, radius=500.0)
    st.x[:, EGO] += 1e5  # park the ego out of the way
    sim = Simulator(proc_town, track_ego_lane=False)
    moved = np.zeros_like(st.valid)
    start = st.copy()
    entered = np.zeros(st.valid.shape)  # time each vehicle entered its current lane
    for k in range(1200):
        prev_lane = st.lane.copy()
        st = sim.step(st, Controls.zeros(2))
        entered = np.where(st.lane != prev_lane, k * 0.05, entered)
        moved |= st.speed > 1.0
        # car following on a lane never overlaps (merges at junction exits are the known exception: a vehicle
        # that joined the lane in the last 2 s is not checked)
        for e in range(2):
            m = st.valid[e] & (st.lane[e] >= 0)
            m[EGO] = False
            idx = np.flatnonzero(m)
            order = idx[np.lexsort((st.s[e, idx], st.lane[e, idx]))]
            same = st.lane[e, order[1:]] == st.lane[e, order[:-1]]
            settled = np.minimum(k * 0.05 - entered[e, order[1:]], k * 0.05 - entered[e, order[:-1]]) > 2.0
            gaps = st.s[e, order[1:]] - st.s[e, order[:-1]] - st.length[e, order[1:]] / 2 - st.length[e, order[:-1]] / 2
            assert np.all(gaps[same & settled] > -0.3), gaps[same & settled].min()
    assert moved[start.valid].mean() > 0.8  # traffic actually flows


def test_ego_collision_detection_hand_scene(proc_town):
    routes = [plan_route(proc_town, random_routes(proc_town, 1, seed=1)[0])]
    st = route_scene(proc_town, routes, max_agents=4, background=False)
    st.valid[0, 1:3] = True
    c, s = np.cos(st.yaw[0, 0]), np.sin(st.yaw[0, 0])
    st.x[0, 1], st.y[0, 1] = st.x[0, 0] + 4.0 * c, st.y[0, 0] + 4.0 * s  # overlap: 4 < 4.89/2 + 4.6/2
    st.x[0, 2], st.y[0, 2] = st.x[0, 0] + 40.0 * c, st.y[0, 0] + 40.0 * s
    st.yaw[0, 1:3] = st.yaw[0, 0]
    st.length[0, 1:3], st.width[0, 1:3] = 4.6, 1.9
    hit = ego_collisions(st)
    assert hit[0].tolist() == [False, True, False, False]


def _leaders_by_loop(state, g):
    """Reference for lane_leaders: per env, per agent, scan every other agent."""
    E, A = state.x.shape
    gap = np.full((E, A), np.inf)
    lead = np.zeros((E, A))
    slot = np.full((E, A), -1)
    for e in range(E):
        on = [a for a in range(A) if state.valid[e, a] and state.lane[e, a] >= 0]
        for a in on:
            ahead = [b for b in on if b != a and state.lane[e, b] == state.lane[e, a]
                     and (state.s[e, b], b) > (state.s[e, a], a)]
            if ahead:
                b = min(ahead, key=lambda b: (state.s[e, b], b))
                gap[e, a] = state.s[e, b] - state.s[e, a] - state.length[e, a] / 2 - state.length[e, b] / 2
                lead[e, a] = state.speed[e, b]
                slot[e, a] = b
            elif state.next_lane[e, a] >= 0:
                nxt = [b for b in on if state.lane[e, b] == state.next_lane[e, a]]
                if nxt:
                    b = min(nxt, key=lambda b: (state.s[e, b], b))
                    gap[e, a] = (g.lane_length[state.lane[e, a]] - state.s[e, a] + state.s[e, b]
                                 - state.length[e, a] / 2 - state.length[e, b] / 2)
                    lead[e, a] = state.speed[e, b]
                    slot[e, a] = b
    return gap, lead, slot


def test_lane_leaders_match_a_loop(proc_town):
    """The vectorised leader search (row-wise sort + one searchsorted) equals a brute-force scan."""
    from drivesim.sim.traffic import lane_leaders

    g = proc_town
    specs = random_routes(g, 3, seed=4)
    dense = [plan_route(g, s) for s in specs]
    state = route_scene(g, dense, max_agents=24, seed=1, background=False)
    rng = np.random.default_rng(0)
    for e in range(3):
        spawn_background(state, e, g, dense[e].xy, rng, spacing=6.0, radius=150.0)
    # crowd a few lanes so that same-lane leaders and next-lane leaders both occur, and drop some agents
    state.lane[:, 1:6] = state.lane[:, 6:7]
    state.valid[:, 20:] = False
    fast_gap, fast_v, fast_slot = lane_leaders(state, g)
    ref_gap, ref_v, ref_slot = _leaders_by_loop(state, g)
    np.testing.assert_array_equal(fast_slot, ref_slot)
    assert np.isfinite(ref_gap).sum() > 20
    np.testing.assert_array_equal(np.isfinite(fast_gap), np.isfinite(ref_gap))
    f = np.isfinite(ref_gap)
    np.testing.assert_allclose(fast_gap[f], ref_gap[f], atol=1e-3)
    np.testing.assert_allclose(fast_v, ref_v, atol=1e-6)


def test_pedestrians_cross_crosswalks_and_cyclists_ride_lanes(proc_town):
    """Background pedestrians walk across a crosswalk once (ending a metre past its far edge, standing);
    background cyclists are lane followers capped at CYCLIST_SPEED."""
    from drivesim.scenarios.scene import CYCLIST_SPEED, crosswalk_axes, spawn_pedestrians
    from drivesim.sim.state import AgentKind, Behavior

    g = proc_town
    ends, lengths = crosswalk_axes(g)
    assert len(lengths) > 0 and np.all((lengths > 6.0) & (lengths < 20.0))  # kerb to kerb across a road
    mid = ends.mean(axis=1)
    routes = [plan_route(g, r) for r in random_routes(g, 12, seed=3)]
    st = route_scene(g, routes, max_agents=40, seed=0, background=False)
    rng = np.random.default_rng(1)
    n_ped = 0
    for e, r in enumerate(routes):
        n = spawn_pedestrians(st, e, g, np.concatenate([r.xy, mid]), rng, radius=1e4, max_count=6)
        spawn_background(st, e, g, r.xy, rng, first_slot=1 + n, spacing=10.0)
        n_ped += n
    st.x[:, EGO] = st.y[:, EGO] = -5000.0  # the ego out of the way
    st.lane[:, EGO] = -1
    ped = st.valid & (st.kind == AgentKind.PEDESTRIAN)
    cyc = st.valid & (st.kind == AgentKind.CYCLIST)
    assert n_ped > 5 and ped.sum() == n_ped and cyc.sum() > 5
    assert np.all(st.behavior[ped] == Behavior.WALKER) and np.all(st.behavior[cyc] == Behavior.IDM)
    walk = st.s[ped].copy()
    start = np.stack([st.x[ped], st.y[ped]], 1)
    sim = Simulator(g)
    zero = Controls.zeros(len(routes))
    max_cyc_speed = 0.0
    for _ in range(int(40 / 0.05)):
        st = sim.step(st, zero)
        max_cyc_speed = max(max_cyc_speed, float(st.speed[cyc & st.valid].max(initial=0.0)))
    end = np.stack([st.x[ped], st.y[ped]], 1)
    np.testing.assert_allclose(np.linalg.norm(end - start, axis=1), walk, atol=1e-2)  # walked exactly the walk
    assert np.all(st.speed[ped] == 0.0) and np.all(st.s[ped] <= 1e-6)  # and stand
    # each ends just beyond a crosswalk's far edge
    d_end = np.min(np.linalg.norm(end[:, None, None, :] - ends[None], axis=-1), axis=(1, 2))
    np.testing.assert_allclose(d_end, 1.0, atol=5e-3)  # float32 positions
    assert 0.5 < max_cyc_speed <= CYCLIST_SPEED + 1e-3


def _follower_scene(g):
    """The ego at 8 m/s on a straight-ish lane, an IDM car 14 m behind it on the same lane, nothing else."""
    from drivesim.sim.state import AgentKind, Behavior
    from drivesim.sim.traffic import pick_successor

    for spec in random_routes(g, 40, seed=3):
        r = plan_route(g, spec)
        i_f, i_e = (int(np.searchsorted(r.cum_s, s)) for s in (20.0, 34.0))
        lane = r.lane[i_f]
        if i_e < len(r) - 60 and lane >= 0 and r.lane[i_e] == lane and g.lane_junction[lane] < 0 \
                and abs(np.angle(np.exp(1j * (r.yaw[i_e + 50] - r.yaw[i_f])))) < 0.1:
            break
    st = route_scene(g, [r], max_agents=4, seed=0, background=False)
    st.x[0, EGO], st.y[0, EGO], st.yaw[0, EGO], st.speed[0, EGO] = *r.xy[i_e], r.yaw[i_e], 8.0
    pi, _, _ = g.project(r.xy[[i_f, i_e]], r.yaw[[i_f, i_e]])
    st.lane[0, EGO], st.s[0, EGO] = lane, g.pt_s[pi[1]]
    k = 1
    st.x[0, k], st.y[0, k], st.yaw[0, k] = *r.xy[i_f], r.yaw[i_f]
    st.kind[0, k], st.behavior[0, k], st.valid[0, k] = AgentKind.VEHICLE, Behavior.IDM, True
    st.length[0, k], st.width[0, k], st.speed[0, k], st.desired_speed[0, k] = 4.6, 2.0, 8.0, 10.0
    st.lane[0, k], st.s[0, k], st.stop_wait[0, k] = lane, g.pt_s[pi[0]], -1.0
    st.next_lane[0, k:k + 1], st.rng[0, k:k + 1] = pick_successor(g, st.lane[0, k:k + 1], st.rng[0, k:k + 1])
    path = r.xy[i_e:i_e + 80]
    return st, path


def test_branches_same_world_different_plans(proc_town):
    """Counterfactual branches (sim/branch.py): the same state under ego target speeds 0 and 12 m/s. The ego
    stops or speeds on; the IDM follower behind it stops behind a braking ego and drives on behind a fast one;
    equal plans give equal worlds; the input state is untouched."""
    from drivesim.sim.branch import branch_rollouts

    st, path = _follower_scene(proc_town)
    before = st.copy()
    sim = Simulator(proc_town)
    out = branch_rollouts(sim, st, path, np.array([0.0, 12.0, 12.0]))
    assert out["ego"].shape == (3, 6, 3) and out["agents"].shape == (3, 6, 3, 2) and out["valid"].shape == (3, 6, 3)
    assert np.array_equal(st.x, before.x) and np.array_equal(st.speed, before.speed)
    e0 = np.array([st.x[0, EGO], st.y[0, EGO]])
    ego_moved = np.linalg.norm(out["ego"][:, -1, :2] - e0, axis=1)
    assert ego_moved[0] < 12.0 and ego_moved[1] > 27.0, ego_moved
    f0 = np.array([st.x[0, 1], st.y[0, 1]])
    fol_moved = np.linalg.norm(out["agents"][:, -1, 0] - f0, axis=1)
    assert out["valid"][:, :, 0].all()
    assert fol_moved[1] - fol_moved[0] > 6.0, fol_moved  # it reacted to the ego's plan
    gap_brake = np.linalg.norm(out["ego"][0, -1, :2] - out["agents"][0, -1, 0])
    assert gap_brake > 4.6, gap_brake  # and stopped behind the ego, not in it
    assert np.allclose(out["agents"][1], out["agents"][2]) and np.allclose(out["ego"][1], out["ego"][2])
    two = branch_rollouts(sim, st.tile(2), path, np.array([0.0, 12.0]))  # a batched state: env 0 branches
    assert np.allclose(two["ego"], out["ego"][:2]) and np.allclose(two["agents"], out["agents"][:2])
    tiled = st.tile(3)
    assert tiled.num_envs == 3 and np.array_equal(tiled.x[2], st.x[0]) and tiled.light_offset.shape[0] == 3
