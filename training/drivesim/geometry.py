"""Planar geometry on arrays: angles, polylines, oriented boxes, frame conversions.

Frame convention inside the library: the CARLA world frame (left-handed, x forward/east, y to the right
of x, z up; yaw in radians, positive = clockwise seen from above). Route XML and OpenDRIVE-through-CARLA
positions are already in this frame. A vehicle heading ``yaw`` points along ``(cos yaw, sin yaw)``;
its left side is ``(sin yaw, -cos yaw)``. ROS is right-handed: convert with :func:`carla_to_ros_pose`
once, at the ROS boundary.
"""

from __future__ import annotations

import numpy as np


def wrap_angle(a):
    """Wrap angles to [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2.0 * np.pi) - np.pi


def carla_to_ros_pose(x, y, yaw):
    """CARLA (left-handed) -> ROS (right-handed): y and yaw change sign."""
    return x, -np.asarray(y), -np.asarray(yaw)


def ros_to_carla_pose(x, y, yaw):
    """ROS (right-handed) -> CARLA (left-handed); the inverse of :func:`carla_to_ros_pose`."""
    return x, -np.asarray(y), -np.asarray(yaw)


def polyline_lengths(xy: np.ndarray) -> np.ndarray:
    """Cumulative arc length of a (N, 2) polyline, starting at 0. [m]"""
    if len(xy) == 0:
        return np.zeros(0)
    seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(seg)])


def resample_polyline(xy: np.ndarray, max_spacing: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Resample a (N, 2) polyline uniformly in arc length with spacing <= max_spacing.

    Returns (points (M, 2), source arc length of each new point (M,)). Duplicate points are dropped first.
    """
    xy = np.asarray(xy, dtype=np.float64)
    if len(xy) < 2:
        return xy.copy(), np.zeros(len(xy))
    keep = np.concatenate([[True], np.linalg.norm(np.diff(xy, axis=0), axis=1) > 1e-6])
    xy = xy[keep]
    s = polyline_lengths(xy)
    total = s[-1]
    if total < 1e-6:
        return xy[:1].copy(), np.zeros(1)
    n = max(int(np.ceil(total / max_spacing)), 1) + 1
    s_new = np.linspace(0.0, total, n)
    out = np.stack([np.interp(s_new, s, xy[:, 0]), np.interp(s_new, s, xy[:, 1])], axis=1)
    return out, s_new


def polyline_headings(xy: np.ndarray) -> np.ndarray:
    """Heading of each point of a (N, 2) polyline (forward difference, last repeats). [rad]"""
    if len(xy) < 2:
        return np.zeros(len(xy))
    d = np.diff(xy, axis=0)
    h = np.arctan2(d[:, 1], d[:, 0])
    return np.concatenate([h, h[-1:]])


def box_corners(x, y, yaw, length, width):
    """Corners of oriented boxes. Inputs broadcast to shape S; returns S + (4, 2). [m]"""
    x, y, yaw, length, width = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (x, y, yaw, length, width)))
    c, s = np.cos(yaw), np.sin(yaw)
    hl, hw = length / 2.0, width / 2.0
    sx = np.array([1.0, 1.0, -1.0, -1.0])
    sy = np.array([1.0, -1.0, -1.0, 1.0])
    dx = sx * hl[..., None]
    dy = sy * hw[..., None]
    cx = x[..., None] + dx * c[..., None] - dy * s[..., None]
    cy = y[..., None] + dx * s[..., None] + dy * c[..., None]
    return np.stack([cx, cy], axis=-1)


def obb_overlap(ax, ay, ayaw, al, aw, bx, by, byaw, bl, bw):
    """Separating-axis test between oriented boxes (centre, yaw, length, width); broadcasts over inputs.

    Boxes that only touch count as overlapping. Returns a boolean array of the broadcast shape.
    """
    ax, ay, ayaw, al, aw, bx, by, byaw, bl, bw = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float32) for v in (ax, ay, ayaw, al, aw, bx, by, byaw, bl, bw))
    )
    dx, dy = bx - ax, by - ay
    ca, sa = np.cos(ayaw), np.sin(ayaw)
    cb, sb = np.cos(byaw), np.sin(byaw)
    hal, haw, hbl, hbw = al / 2, aw / 2, bl / 2, bw / 2
    # |cos| of the angle between every pair of axes
    cab = np.abs(ca * cb + sa * sb)  # a.x . b.x
    sab = np.abs(ca * sb - sa * cb)  # a.x . b.y  (= |a.y . b.x|)
    sep = np.abs(dx * ca + dy * sa) > hal + hbl * cab + hbw * sab  # axis a.x
    sep |= np.abs(-dx * sa + dy * ca) > haw + hbl * sab + hbw * cab  # axis a.y
    sep |= np.abs(dx * cb + dy * sb) > hbl + hal * cab + haw * sab  # axis b.x
    sep |= np.abs(-dx * sb + dy * cb) > hbw + hal * sab + haw * cab  # axis b.y
    return ~sep


def segments_intersect(p0, p1, q0, q1):
    """Whether segments p0-p1 and q0-q1 intersect; points are (..., 2) arrays that broadcast."""
    p0, p1, q0, q1 = (np.asarray(v, dtype=np.float64) for v in (p0, p1, q0, q1))

    def cross(o, a, b):
        return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (b[..., 0] - o[..., 0])

    d1 = cross(q0, q1, p0)
    d2 = cross(q0, q1, p1)
    d3 = cross(p0, p1, q0)
    d4 = cross(p0, p1, q1)
    return ((d1 * d2) <= 0) & ((d3 * d4) <= 0) & ~((d1 == 0) & (d2 == 0) & (d3 == 0) & (d4 == 0))


def points_in_polygon(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule: which of (N, 2) points lie inside the (M, 2) polygon."""
    x, y = pts[:, 0][:, None], pts[:, 1][:, None]
    x0, y0 = poly[:, 0][None], poly[:, 1][None]
    x1, y1 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    cond = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return (np.sum(cond & (x < xint), axis=1) % 2) == 1
