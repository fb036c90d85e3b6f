"""A bird's-eye-view raster of the perceived scene (the VLA's "camera" here): ego-centred, x forward = up.

Channels are intensities of one mono8 image: lane centrelines 80, route 160, agents (filled boxes) 255.
"""

from __future__ import annotations

import numpy as np

from ..maps.lanegraph import LaneGraph
from ..sim.perception import PerceivedScene

BEV_SIZE = 128  # [px]
BEV_RES = 0.5  # [m/px]
LANE, ROUTE, AGENT = 80, 160, 255


def bev_raster(g: LaneGraph, ego_xy: np.ndarray, ego_yaw: float, scene: PerceivedScene, e: int = 0,
               size: int = BEV_SIZE, res: float = BEV_RES) -> np.ndarray:
    """(size, size) uint8. Row 0 is furthest ahead; the ego sits at the centre."""
    img = np.zeros((size, size), np.uint8)
    half = size * res / 2

    def to_px(pts_ego: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = (half - pts_ego[:, 0]) / res  # forward = up
        c = (half + pts_ego[:, 1]) / res  # right = right (CARLA-handed ego frame)
        ok = (r >= 0) & (r < size) & (c >= 0) & (c < size)
        return r.astype(np.int64), c.astype(np.int64), ok

    # lanes near the ego
    idx = g.tree.query_ball_point(ego_xy, r=half * 1.5)
    if idx:
        p = g.pt_xy[np.asarray(idx)] - ego_xy
        cy, sy = np.cos(ego_yaw), np.sin(ego_yaw)
        ego = np.stack([p[:, 0] * cy + p[:, 1] * sy, -p[:, 0] * sy + p[:, 1] * cy], 1)
        r, c, ok = to_px(ego)
        img[r[ok], c[ok]] = LANE
    route = scene.route[e][scene.route_valid[e]]
    r, c, ok = to_px(route)
    img[r[ok], c[ok]] = ROUTE
    # agents as filled boxes, sampled on a 0.25 m grid
    a = scene.agents[e][scene.agents_valid[e]]
    if len(a):
        u = np.arange(-0.5, 0.5001, 0.25 / max(float(a[:, 4].max()), 0.5))
        v = np.arange(-0.5, 0.5001, 0.25 / max(float(a[:, 5].max()), 0.5))
        uu, vv = np.meshgrid(u, v)
        uu, vv = uu.ravel()[None], vv.ravel()[None]
        c_, s_ = np.cos(a[:, 2:3]), np.sin(a[:, 2:3])
        px = a[:, 0:1] + uu * a[:, 4:5] * c_ - vv * a[:, 5:6] * s_
        py = a[:, 1:2] + uu * a[:, 4:5] * s_ + vv * a[:, 5:6] * c_
        r, c, ok = to_px(np.stack([px.ravel(), py.ravel()], 1))
        img[r[ok], c[ok]] = AGENT
    return img
