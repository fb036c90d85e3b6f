"""TakeVLA's vision input: a multi-channel bird's-eye-view raster of the perceived scene, drawn from the same feature
tensors the planner sees (models/features.py), so the raster is identical in training, in the closed loop and in
the ROS nodes (which rebuild the features from the scene message).

Ego-centred, x forward = up, y right = right (CARLA-handed ego frame); SIZE x SIZE pixels of RES metres, the ego at
row EGO_ROW (40.5 m ahead, 7.5 m behind), column SIZE / 2. Channels (1 where present, 0 elsewhere):
  0 lanes: lane centrelines; 1 route: the route ahead; 2 vehicles (emergency vehicles too), 3 pedestrians and
  cyclists, 4 static obstacles: filled boxes at their current pose; 5 stop lanes: the centrelines of lanes whose
  light is red or yellow; 6 history: the agents' centres at their earlier history steps (how they move).
"""

from __future__ import annotations

import numpy as np

from ..models.features import POS_SCALE, STEP_DIM

SIZE = 64  # [px]
RES = 0.75  # [m / px]
EGO_ROW = 54
CHANNELS = ("lanes", "route", "vehicles", "vulnerable", "obstacles", "stop_lanes", "history")
KIND_CHANNEL = np.array([2, 3, 3, 4, 2])  # AgentKind -> channel
_BOX_U, _BOX_V = np.meshgrid(np.linspace(-0.5, 0.5, 9), np.linspace(-0.5, 0.5, 5))


def _densify(pts: np.ndarray, k: int) -> np.ndarray:
    """(..., M, 2) polylines -> (..., (M - 1) * k + 1, 2), k points per segment."""
    a, b = pts[..., :-1, None, :], pts[..., 1:, None, :]
    t = (np.arange(k) / k)[:, None]
    mid = (a + (b - a) * t).reshape(*pts.shape[:-2], -1, 2)
    return np.concatenate([mid, pts[..., -1:, :]], -2)


def _draw(img: np.ndarray, b: np.ndarray, ch: np.ndarray | int, x: np.ndarray, y: np.ndarray, ok: np.ndarray) -> None:
    """Set img[b, ch, row(x), col(y)] = 1 where ok and inside (all arrays broadcast together)."""
    r = np.floor(EGO_ROW - x / RES).astype(np.int64)
    c = np.floor(SIZE / 2 + y / RES).astype(np.int64)
    b, ch, r, c, ok = np.broadcast_arrays(b, ch, r, c, ok)
    ok = ok & (r >= 0) & (r < SIZE) & (c >= 0) & (c < SIZE)
    img[b[ok], ch[ok], r[ok], c[ok]] = 1.0


def raster(f: dict[str, np.ndarray], history: int = 4) -> np.ndarray:
    """(B, len(CHANNELS), SIZE, SIZE) float32 from a batch of feature tensors (route, route_mask, agents,
    agents_mask, lanes, lanes_mask: the `Features.inputs()` names)."""
    lanes, lm = np.asarray(f["lanes"], np.float32), np.asarray(f["lanes_mask"]) > 0.5
    B = lanes.shape[0]
    img = np.zeros((B, len(CHANNELS), SIZE, SIZE), np.float32)
    bi = np.arange(B)
    # lanes (and the stopped ones)
    pts = _densify(lanes[..., :2] * POS_SCALE, 10)  # (B, L, K, 2)
    _draw(img, bi[:, None, None], 0, pts[..., 0], pts[..., 1], lm[..., None])
    stop = lm & ((lanes[..., 7] > 0) | (lanes[..., 8] > 0)).any(-1)
    _draw(img, bi[:, None, None], 5, pts[..., 0], pts[..., 1], stop[..., None])
    # route
    route, rm = np.asarray(f["route"], np.float32), np.asarray(f["route_mask"]) > 0.5
    pts = _densify(route[..., :2] * POS_SCALE, 3)  # (B, K, 2)
    ok = np.repeat(rm[:, :-1], 3, 1)
    ok = np.concatenate([ok, rm[:, -1:]], 1)
    _draw(img, bi[:, None], 1, pts[..., 0], pts[..., 1], ok)
    # agents: boxes now, centres before
    ag, am = np.asarray(f["agents"], np.float32), np.asarray(f["agents_mask"]) > 0.5
    col = (history - 1) * STEP_DIM
    x, y = ag[..., col] * POS_SCALE, ag[..., col + 1] * POS_SCALE
    cs, sn = ag[..., col + 2], ag[..., col + 3]
    st = history * STEP_DIM
    length, width = ag[..., st] * 5.0, ag[..., st + 1] * 2.0
    kind = np.argmax(ag[..., st + 2: st + 2 + len(KIND_CHANNEL)], -1)
    u, v = _BOX_U.ravel(), _BOX_V.ravel()
    px = x[..., None] + u * length[..., None] * cs[..., None] - v * width[..., None] * sn[..., None]
    py = y[..., None] + u * length[..., None] * sn[..., None] + v * width[..., None] * cs[..., None]
    _draw(img, bi[:, None, None], KIND_CHANNEL[kind][..., None], px, py, am[..., None])
    for h in range(history - 1):
        c = h * STEP_DIM
        seen = am & (ag[..., c + 5] > 0.5)
        _draw(img, bi[:, None], 6, ag[..., c] * POS_SCALE, ag[..., c + 1] * POS_SCALE, seen)
    return img
