"""The visibility model: range and occlusion by vehicle footprints (hand-built scenes with known answers)."""

import numpy as np
from drivesim.sim.perception import OCCLUDER_MARGIN, OCCLUDER_MIN_WIDTH, PERCEPTION_RANGE, visibility
from drivesim.sim.state import AgentKind

CAR = (4.6, 1.9, AgentKind.VEHICLE)
PED = (0.5, 0.5, AgentKind.PEDESTRIAN)
TRUCK = (8.0, 3.0, AgentKind.VEHICLE)


def seen(*agents, occlusion=True):
    """Sensor at the origin; agents: (x, y, (length, width, kind)), yaw 0. Returns the visibility of each."""
    x = np.array([[a[0] for a in agents]], float)
    y = np.array([[a[1] for a in agents]], float)
    length = np.array([[a[2][0] for a in agents]], float)
    width = np.array([[a[2][1] for a in agents]], float)
    kind = np.array([[a[2][2] for a in agents]], np.int8)
    valid = np.ones_like(x, bool)
    return visibility(x, y, np.zeros_like(x), length, width, kind, valid, np.zeros(1), np.zeros(1),
                      occlusion=occlusion)[0].tolist()


def test_pedestrian_behind_a_parked_car_is_hidden():
    assert seen((10, 0, CAR), (15, 0, PED)) == [True, False]
    assert seen((10, 0, CAR), (15, 0, PED), occlusion=False) == [True, True]


def test_what_is_beside_or_in_front_of_a_car_is_seen():
    assert seen((10, 0, CAR), (15, 5, PED), (5, 0, PED)) == [True, True, True]


def test_a_pedestrian_does_not_occlude_a_car():
    assert seen((3, 0, PED), (10, 0, CAR)) == [True, True]


def test_range():
    r = PERCEPTION_RANGE
    assert seen((r - 1, 0, CAR), (r + 1, 0, CAR)) == [True, False]


def test_partly_visible_truck_is_seen_and_two_cars_together_hide_it():
    # each car alone leaves part of the truck in view; side by side they cover its whole angular span
    assert seen((10, 0.9, CAR), (20, 0, TRUCK)) == [True, True]
    assert seen((10, -0.9, CAR), (20, 0, TRUCK)) == [True, True]
    assert seen((10, 0.9, CAR), (10, -0.9, CAR), (20, 0, TRUCK)) == [True, True, False]


def test_occluder_must_be_nearer():
    # a car behind the pedestrian does not hide it, and a car overlapping the ray but farther does not either
    assert seen((15, 0, CAR), (8, 0, PED)) == [True, True]


def visibility_reference(x, y, yaw, length, width, kind, valid, sx, sy, perception_range=PERCEPTION_RANGE):
    """The visibility model written with whole-array numpy ops (every agent x ray x occluder at once): the
    compiled kernel must agree with it."""
    sx, sy = np.asarray(sx, float)[:, None], np.asarray(sy, float)[:, None]
    dist = np.hypot(x - sx, y - sy)
    vis = valid & (dist <= perception_range)
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
    hl = 0.5 * length[..., None] * np.array([1, 1, -1, -1])
    hw = 0.5 * width[..., None] * np.array([1, -1, -1, 1])
    corners = np.stack([x[..., None] + hl * c - hw * s, y[..., None] + hl * s + hw * c], -1)  # (E, A, 4, 2)
    pts = np.concatenate([corners, np.stack([x, y], -1)[:, :, None]], 2)  # (E, A, 5, 2)
    rx, ry = pts[..., 0] - sx[..., None], pts[..., 1] - sy[..., None]
    ray_ang, ray_d = np.arctan2(ry, rx), np.hypot(rx, ry)
    wrap = lambda a: (a + np.pi) % (2 * np.pi) - np.pi  # noqa: E731
    bearing = np.arctan2(y - sy, x - sx)
    cang = wrap(np.arctan2(corners[..., 1] - sy[..., None], corners[..., 0] - sx[..., None]) - bearing[..., None])
    lo, hi = cang.min(-1), cang.max(-1)
    occ = vis & np.isin(kind, (AgentKind.VEHICLE, AgentKind.STATIC, AgentKind.EMERGENCY)) & (
        width >= OCCLUDER_MIN_WIDTH) & (dist > 1e-3) & ((hi - lo) < np.pi * 0.9)
    rel = wrap(ray_ang[..., None] - bearing[:, None, None, :])  # (E, A, 5, A)
    inside = (rel > lo[:, None, None, :]) & (rel < hi[:, None, None, :])
    nearer = dist[:, None, None, :] + OCCLUDER_MARGIN < ray_d[..., None]
    notself = ~np.eye(x.shape[1], dtype=bool)[None, :, None, :]
    blocked = (inside & nearer & occ[:, None, None, :] & notself).any(-1).all(-1)
    return vis & ~blocked


def test_the_compiled_model_agrees_with_the_numpy_reference_on_random_scenes():
    rng = np.random.default_rng(0)
    checked = hidden = 0
    for _ in range(200):
        E, A = int(rng.integers(1, 4)), int(rng.integers(1, 40))
        x, y = rng.uniform(-60, 60, (2, E, A)).astype(np.float32)
        yaw = rng.uniform(-3.2, 3.2, (E, A)).astype(np.float32)
        length, width = rng.uniform(0.4, 9.0, (E, A)).astype(np.float32), rng.uniform(0.4, 3.0, (E, A)).astype(np.float32)
        kind = rng.integers(0, 5, (E, A)).astype(np.int8)
        valid = rng.random((E, A)) < 0.8
        sx, sy = rng.uniform(-10, 10, (2, E))
        ref = visibility_reference(x.astype(float), y.astype(float), yaw.astype(float), length.astype(float),
                                   width.astype(float), kind, valid, sx, sy)
        np.testing.assert_array_equal(visibility(x, y, yaw, length, width, kind, valid, sx, sy), ref)
        checked += int((valid & (np.hypot(x - sx[:, None], y - sy[:, None]) <= PERCEPTION_RANGE)).sum())
        hidden += int((valid & (np.hypot(x - sx[:, None], y - sy[:, None]) <= PERCEPTION_RANGE) & ~ref).sum())
    assert checked > 1000 and hidden > 100  # the scenes exercise occlusion, not only range
