"""The simulator's compiled (numba) per-step kernels agree with whole-array numpy references on random data.

The references are the vectorised formulations the kernels replaced: the kernels are faster at one env (the
single-route real-time factor) and no slower batched; these tests keep them honest."""

import numpy as np
from drivesim.policies.rule import CORRIDOR_MARGIN, leader_gap
from drivesim.sim.dynamics import DEFAULT_VEHICLE


def leader_gap_reference(r, route_valid, a, agents_valid):
    d = np.hypot(a[:, :, None, 0] - r[:, None, :, 0], a[:, :, None, 1] - r[:, None, :, 1])  # (E, N, P)
    d = np.where(route_valid[:, None, :], d, np.inf)
    k = np.argmin(d, axis=2)
    lat = np.take_along_axis(d, k[..., None], axis=2)[..., 0]
    seg = np.hypot(*np.moveaxis(np.diff(r, axis=1), -1, 0))
    along_route = np.concatenate([np.zeros((len(r), 1)), np.cumsum(seg, axis=1)], axis=1)
    start = np.hypot(r[:, 0, 0], r[:, 0, 1]) * np.sign(r[:, 0, 0])
    along = np.take_along_axis(along_route, k, axis=1) + start[:, None]
    in_corridor = agents_valid & (lat < a[..., 5] / 2 + DEFAULT_VEHICLE.width / 2 + CORRIDOR_MARGIN) & (a[..., 0] > 0.5)
    gap = np.where(in_corridor, along - DEFAULT_VEHICLE.length / 2 - a[..., 4] / 2, np.inf)
    j = np.argmin(gap, axis=1)
    g = gap[np.arange(len(j)), j]
    v = a[np.arange(len(j)), j, 3] * np.cos(a[np.arange(len(j)), j, 2])
    return g, np.where(np.isfinite(g), v, 0.0)


def test_leader_gap_agrees_with_the_reference():
    rng = np.random.default_rng(1)
    found = 0
    for _ in range(200):
        E, N, P = int(rng.integers(1, 4)), int(rng.integers(1, 30)), int(rng.integers(2, 60))
        # a gently curving route ahead of the ego, agents scattered around it
        s = np.cumsum(rng.uniform(0.8, 1.2, (E, P)), axis=1) - rng.uniform(0, 2, (E, 1))
        curve = rng.uniform(-0.02, 0.02, (E, 1))
        route = np.stack([s, curve * s ** 2], -1)
        route_valid = np.arange(P)[None] < rng.integers(1, P + 1, (E, 1))
        agents = np.zeros((E, N, 7), np.float32)
        agents[..., 0] = rng.uniform(-10, P, (E, N))
        agents[..., 1] = rng.normal(0, 3, (E, N))
        agents[..., 2:4] = rng.uniform([-3.2, 0], [3.2, 12], (E, N, 2))
        agents[..., 4:6] = rng.uniform([0.5, 0.5], [9, 3], (E, N, 2))
        valid = rng.random((E, N)) < 0.8
        ref = leader_gap_reference(route, route_valid, agents, valid)
        got = leader_gap(route, route_valid, agents, valid)
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(got[1], ref[1], rtol=1e-6, atol=1e-6)
        found += int(np.isfinite(ref[0]).sum())
    assert found > 100  # leaders were found, not only empty corridors


class PIDReference:
    """The deployed controller in whole-array numpy (pure pursuit + PID, sim/control.py's docstring)."""

    def __init__(self, E, cfg, vehicle, dt=0.05):
        self.c, self.v, self.dt = cfg, vehicle, dt
        self.int_e, self.prev_e, self.prev_steer = np.zeros(E), np.zeros(E), np.zeros(E)

    def __call__(self, path, target, speed):
        c = self.c
        la = np.clip(c.lookahead_gain * np.abs(speed) + c.lookahead_min, c.lookahead_min, c.lookahead_max)
        ahead = (np.linalg.norm(path, axis=-1) >= la[:, None]) & (path[..., 0] > 0)
        idx = np.where(ahead.any(axis=1), np.argmax(ahead, axis=1), path.shape[1] - 1)
        aim = path[np.arange(len(idx)), idx]
        ld = np.maximum(np.linalg.norm(aim, axis=-1), 1e-3)
        alpha = np.arctan2(aim[:, 1], np.maximum(aim[:, 0], 1e-3))
        steer_pp = np.arctan(2.0 * self.v.wheelbase * np.sin(alpha) / ld) / self.v.max_steer
        steer = np.clip(c.lat_kp * steer_pp + c.lat_kd * (steer_pp - self.prev_steer) / self.dt, -1.0, 1.0)
        self.prev_steer = steer_pp
        e = target - speed
        self.int_e = np.clip(self.int_e + e * self.dt, -c.integral_limit, c.integral_limit)
        de = (e - self.prev_e) / self.dt
        self.prev_e = e
        throttle = np.clip(c.lon_kp * e + c.lon_ki * self.int_e + c.lon_kd * de, 0.0, c.max_throttle)
        brake = np.clip(c.brake_gain * (-e - c.brake_margin), 0.0, 1.0)
        hold = target < c.stop_speed
        brake = np.where(hold, 1.0, brake)
        throttle = np.where((brake > 0) | hold, 0.0, throttle)
        self.int_e = np.where(hold | (brake > 0), 0.0, self.int_e)
        return throttle, steer, brake


def test_controller_agrees_with_the_reference_over_a_sequence():
    from drivesim.sim.control import ControllerConfig, PIDController

    rng = np.random.default_rng(2)
    E, P = 16, 40
    pid, ref = PIDController(E), PIDReference(E, ControllerConfig(), DEFAULT_VEHICLE)
    braking = steering = 0
    for _ in range(60):  # stateful: integrators and derivative terms carry over
        s = np.cumsum(rng.uniform(0.5, 1.5, (E, P)), axis=1) - rng.uniform(0, 3, (E, 1))
        path = np.stack([s, rng.uniform(-0.05, 0.05, (E, 1)) * s ** 2], -1)
        target = np.where(rng.random(E) < 0.15, 0.0, rng.uniform(0, 14, E))
        speed = rng.uniform(0, 14, E)
        got, want = pid(path, target, speed), ref(path, target, speed)
        for g_, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g_, w, rtol=1e-12, atol=1e-12)
        braking += int((want[2] > 0).sum())
        steering += int((np.abs(want[1]) > 0.1).sum())
    assert braking > 50 and steering > 50


def _random_state(rng, E=3, A=24, spread=30.0):
    from types import SimpleNamespace

    f = lambda a: a.astype(np.float32)  # noqa: E731
    return SimpleNamespace(
        x=f(rng.uniform(-spread, spread, (E, A))), y=f(rng.uniform(-spread, spread, (E, A))),
        yaw=f(rng.uniform(-3.2, 3.2, (E, A))), speed=f(rng.uniform(0, 12, (E, A))),
        length=f(rng.uniform(0.5, 8, (E, A))), width=f(rng.uniform(0.5, 2.8, (E, A))), valid=rng.random((E, A)) < 0.8,
        num_envs=E)


def ttc_reference(st, horizon=10.0):
    ex, ey = st.x[:, :1], st.y[:, :1]
    evx, evy = st.speed[:, :1] * np.cos(st.yaw[:, :1]), st.speed[:, :1] * np.sin(st.yaw[:, :1])
    px, py = st.x - ex, st.y - ey
    vx, vy = st.speed * np.cos(st.yaw) - evx, st.speed * np.sin(st.yaw) - evy
    r = (st.width / 2 + st.length / 4) + (st.width[:, :1] / 2 + st.length[:, :1] / 4)
    a, b, c = vx * vx + vy * vy, px * vx + py * vy, px * px + py * py - r * r
    disc = b * b - a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    ok = st.valid & (a > 1e-6) & (disc >= 0) & (t >= 0) & (t <= horizon) & (c > 0)
    ok[:, 0] = False
    return np.where(ok, t, np.inf).min(axis=1)


def test_time_to_collision_and_collision_candidates_agree_with_the_references():
    from drivesim.sim.events import _near_ego, time_to_collision

    rng = np.random.default_rng(3)
    finite = near = 0
    for _ in range(100):
        st = _random_state(rng)
        ref = ttc_reference(st)
        got = time_to_collision(st)
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(ref))
        np.testing.assert_allclose(got[np.isfinite(ref)], ref[np.isfinite(ref)], rtol=1e-4)
        radius = 0.5 * np.hypot(st.length, st.width)
        reach = radius + radius[:, :1]
        want = st.valid & ((st.x - st.x[:, :1]) ** 2 + (st.y - st.y[:, :1]) ** 2 <= reach * reach)
        want[:, 0] = False
        np.testing.assert_array_equal(_near_ego(st.x, st.y, st.length, st.width, st.valid), want)
        finite += int(np.isfinite(ref).sum())
        near += int(want.sum())
    assert finite > 100 and near > 20


def test_stop_box_membership_agrees_with_the_reference():
    from drivesim.sim.events import _in_boxes

    rng = np.random.default_rng(4)
    inside_count = 0
    for _ in range(100):
        st = _random_state(rng, E=4, A=1, spread=12.0)
        box = np.column_stack([rng.uniform(-10, 10, (6, 2)), rng.uniform(-3.2, 3.2, 6), rng.uniform(2, 15, 6),
                               rng.uniform(2, 8, 6)])
        want = np.zeros((4, 6), bool)
        for f in (0.0, 1.0):
            px = (st.x[:, 0] + f * np.cos(st.yaw[:, 0]) * st.length[:, 0] / 2).astype(float)[:, None] - box[:, 0]
            py = (st.y[:, 0] + f * np.sin(st.yaw[:, 0]) * st.length[:, 0] / 2).astype(float)[:, None] - box[:, 1]
            lon = px * np.cos(box[:, 2]) + py * np.sin(box[:, 2])
            lat = -px * np.sin(box[:, 2]) + py * np.cos(box[:, 2])
            want |= (np.abs(lon) <= box[:, 3] / 2) & (np.abs(lat) <= box[:, 4] / 2)
        np.testing.assert_array_equal(_in_boxes(st.x, st.y, st.yaw, st.length, box), want)
        inside_count += int(want.sum())
    assert inside_count > 30


def match_reference(g, xy, yaw, k=8, yaw_weight=4.0, margin=0.0):
    N = len(xy)
    d, idx = g.tree.query(xy, k=k)
    rows = np.arange(N)
    cost = d if yaw is None else d + yaw_weight * (1.0 - np.cos(yaw[:, None] - g.pt_yaw[idx]))
    best = np.argmin(cost, axis=1)
    rel = xy[:, None, :] - g.pt_xy[idx]
    c, s = np.cos(g.pt_yaw[idx]), np.sin(g.pt_yaw[idx])
    lon = rel[..., 0] * c + rel[..., 1] * s
    lat = rel[..., 0] * s - rel[..., 1] * c
    lane = g.pt_lane[idx]
    ok = (np.abs(lat) <= g.lane_width[lane] / 2 + margin) & (np.abs(lon) <= g.lane_ds[lane] / 2 + 0.05)
    inside = ok.any(axis=1)
    return (idx[rows, best], lat[rows, best], d[rows, best], inside,
            np.where(inside, lane[rows, np.argmax(ok, axis=1)], -1))


def test_lane_matching_agrees_with_the_reference(proc_town):
    g = proc_town
    rng = np.random.default_rng(5)
    # points near lanes (inside and just outside them) with headings along, across and against them
    p = rng.integers(0, len(g.pt_xy), 3000)
    xy = g.pt_xy[p] + rng.normal(0, 2.5, (3000, 2))
    yaw = g.pt_yaw[p] + rng.choice([0.0, 0.3, np.pi / 2, np.pi], 3000)
    for y_, margin in ((yaw, 0.0), (None, 0.3)):
        got = g._match(xy, y_, 8, 4.0, margin)
        ref = match_reference(g, xy, y_, margin=margin)
        for a, b in zip((got.point, got.lateral, got.distance, got.inside, got.inside_lane), ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        assert 0.2 < ref[3].mean() < 0.95  # both inside and outside points


def test_light_states_agree_with_the_reference(proc_town):
    from drivesim.sim.traffic import GREEN_TIME, YELLOW_TIME, light_states

    g = proc_town
    rng = np.random.default_rng(6)
    t = rng.uniform(0, 200, 8).astype(np.float32)
    offset = rng.uniform(0, 40, (8, g.num_lights)).astype(np.float32)
    cycle = (GREEN_TIME + YELLOW_TIME) * g.light_nslots
    rel = np.mod(t[:, None] + offset, cycle[None]) - g.light_slot * (GREEN_TIME + YELLOW_TIME)
    want = np.where((rel >= 0) & (rel < GREEN_TIME), 2, np.where((rel >= GREEN_TIME) & (rel < GREEN_TIME + YELLOW_TIME), 1, 0))
    got = light_states(g, t, offset)
    np.testing.assert_array_equal(got, want)
    assert set(np.unique(got)) == {0, 1, 2}


def bicycle_reference(x, y, yaw, speed, steer_angle, throttle, steer_cmd, brake, dt, p, reverse=None, hand_brake=None):
    throttle, brake, steer_cmd = np.clip(throttle, 0, 1), np.clip(brake, 0, 1), np.clip(steer_cmd, -1, 1)
    if hand_brake is not None:
        brake = np.where(hand_brake, 1.0, brake)
    direction = np.where(reverse, -1.0, 1.0) if reverse is not None else 1.0
    steer_angle = steer_angle + np.clip(steer_cmd * p.max_steer - steer_angle, -p.steer_rate * dt, p.steer_rate * dt)
    v = speed
    prop = direction * throttle * p.max_accel * np.clip(1.0 - np.abs(v) / p.v_max, 0.0, 1.0)
    decel = brake * p.max_brake + p.drag * v * v + p.rolling * (np.abs(v) > 0.01)
    v_new = v + prop * dt
    v_new = np.sign(v_new) * np.maximum(np.abs(v_new) - decel * dt, 0.0)
    if reverse is not None:
        v_new = np.where(reverse, np.maximum(v_new, -p.reverse_max_speed), np.maximum(v_new, np.minimum(v, 0)))
    else:
        v_new = np.maximum(v_new, 0.0)
    beta = np.arctan(0.5 * np.tan(steer_angle))
    vm = 0.5 * (v + v_new)
    yaw_n = (yaw + vm / (0.5 * p.wheelbase) * np.sin(beta) * dt + np.pi) % (2 * np.pi) - np.pi
    return (x + vm * np.cos(yaw + beta) * dt, y + vm * np.sin(yaw + beta) * dt, yaw_n, v_new, steer_angle,
            (v_new - v) / dt)


def test_bicycle_agrees_with_the_reference_forward_reverse_and_hand_brake():
    from drivesim.sim.dynamics import bicycle_step

    rng = np.random.default_rng(7)
    n = 500
    state = [rng.uniform(-50, 50, n), rng.uniform(-50, 50, n), rng.uniform(-3.2, 3.2, n), rng.uniform(-3, 20, n),
             rng.uniform(-1.2, 1.2, n)]
    ctl = [rng.uniform(-0.2, 1.2, n), rng.uniform(-1.3, 1.3, n), np.where(rng.random(n) < 0.3, rng.uniform(0, 1, n), 0)]
    for kw in ({}, {"reverse": rng.random(n) < 0.3, "hand_brake": rng.random(n) < 0.1}):
        state_ = [a.copy() for a in state]
        if not kw:
            state_[3] = np.abs(state_[3])  # forward only without a reverse flag
        got = bicycle_step(*state_, *ctl, 0.05, DEFAULT_VEHICLE, **kw)
        want = bicycle_reference(*state_, *ctl, 0.05, DEFAULT_VEHICLE, **kw)
        for g_, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g_, w, rtol=1e-12, atol=1e-12)


def test_script_path_positions_agree_with_the_reference():
    """path_position (compiled per point) equals the whole-array form, with trailing time dims and past the end."""
    from drivesim.sim.script import Script, path_position

    rng = np.random.default_rng(8)
    sc = Script.empty(2, 5)
    for e in range(2):
        for a in range(5):
            n = int(rng.integers(1, 25))  # > K points are resampled, 1 point is a standing actor
            sc.set_path(e, a, np.cumsum(rng.normal(0, 3, (n, 2)), axis=0))
    s = rng.uniform(-2, 80, (2, 5, 7)).astype(np.float32)
    cum, path = sc.cum[..., None, :], sc.path[..., None, :, :]
    K = cum.shape[-1]
    k = np.clip((cum[..., 1:] <= s[..., None]).sum(-1), 0, K - 2)
    c0, c1 = np.take_along_axis(cum, k[..., None], -1)[..., 0], np.take_along_axis(cum, (k + 1)[..., None], -1)[..., 0]
    p0 = np.take_along_axis(path, k[..., None, None], -2)[..., 0, :]
    p1 = np.take_along_axis(path, (k + 1)[..., None, None], -2)[..., 0, :]
    w = np.where(c1 > c0, (s - c0) / np.maximum(c1 - c0, 1e-9), 0.0)[..., None]
    pos, seg = p0 + (p1 - p0) * w, p1 - p0
    want = (pos[..., 0], pos[..., 1], np.arctan2(seg[..., 1], seg[..., 0]), np.hypot(seg[..., 0], seg[..., 1]))
    for g_, w_ in zip(path_position(sc, s), want, strict=True):
        np.testing.assert_allclose(g_, w_, rtol=1e-5, atol=1e-4)
    x1, y1, _, _ = path_position(sc, s[1, 2], (1, 2))  # one agent's path at 7 times
    np.testing.assert_allclose(x1, want[0][1, 2], rtol=1e-5, atol=1e-4)
