"""Per-step events of the ego, vectorised over envs: collisions, time-to-collision, red-light and stop-sign
crossings, lane membership. Pure functions of states."""

from __future__ import annotations

import numpy as np

from ..geometry import obb_overlap, segments_intersect
from ..maps.lanegraph import LaneGraph
from .state import EGO, LIGHT, SimState

RED_LIGHT_DISTANCE = 15.0  # [m] lights further than this from the ego are not checked (as the Leaderboard)
WRONG_WAY_ANGLE = np.deg2rad(120.0)  # heading error against the lane that counts as driving against traffic


def ego_collisions(state: SimState) -> np.ndarray:
    """(E, A) bool: which agents overlap the ego's box (the ego itself is False).

    Only pairs whose bounding circles meet go through the separating-axis test."""
    ex, ey = state.x[:, EGO:EGO + 1], state.y[:, EGO:EGO + 1]
    radius = 0.5 * np.hypot(state.length, state.width)  # (E, A) half-diagonals
    reach = radius + radius[:, EGO:EGO + 1]
    cand = state.valid & ((state.x - ex) ** 2 + (state.y - ey) ** 2 <= reach * reach)
    cand[:, EGO] = False
    hit = np.zeros(cand.shape, bool)
    e, a = np.nonzero(cand)
    if len(e):
        hit[e, a] = obb_overlap(
            state.x[e, EGO], state.y[e, EGO], state.yaw[e, EGO], state.length[e, EGO], state.width[e, EGO],
            state.x[e, a], state.y[e, a], state.yaw[e, a], state.length[e, a], state.width[e, a],
        )
    return hit


def time_to_collision(state: SimState, horizon: float = 10.0) -> np.ndarray:
    """(E,) smallest constant-velocity time to collision between the ego and any agent [s]; inf if none within
    the horizon. Boxes are approximated by discs of radius half the width plus a quarter of the length."""
    ex, ey = state.x[:, EGO:EGO + 1], state.y[:, EGO:EGO + 1]
    evx = state.speed[:, EGO:EGO + 1] * np.cos(state.yaw[:, EGO:EGO + 1])
    evy = state.speed[:, EGO:EGO + 1] * np.sin(state.yaw[:, EGO:EGO + 1])
    px, py = state.x - ex, state.y - ey
    vx = state.speed * np.cos(state.yaw) - evx
    vy = state.speed * np.sin(state.yaw) - evy
    r = (state.width / 2 + state.length / 4) + (state.width[:, EGO:EGO + 1] / 2 + state.length[:, EGO:EGO + 1] / 4)
    # |p + v t| = r  ->  (v.v) t^2 + 2 (p.v) t + (p.p - r^2) = 0
    a = vx * vx + vy * vy
    b = px * vx + py * vy
    c = px * px + py * py - r * r
    disc = b * b - a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    ok = state.valid & (a > 1e-6) & (disc >= 0) & (t >= 0) & (t <= horizon) & (c > 0)
    ok[:, EGO] = False
    return np.where(ok, t, np.inf).min(axis=1)


def ego_tail_segment(state: SimState) -> tuple[np.ndarray, np.ndarray]:
    """The ego's tail segment as the Leaderboard's red-light test uses it: 0.8 to 1.0 half-lengths behind the centre."""
    c, s = np.cos(state.yaw[:, EGO]), np.sin(state.yaw[:, EGO])
    hl = state.length[:, EGO] / 2
    x, y = state.x[:, EGO], state.y[:, EGO]
    close = np.stack([x - 0.8 * hl * c, y - 0.8 * hl * s], -1)
    far = np.stack([x - hl * c, y - hl * s], -1)
    return close, far


def red_light_crossings(prev: SimState, state: SimState, g: LaneGraph, lights: np.ndarray) -> np.ndarray:
    """(E, S) bool: stop lines of red lights that the ego's tail crossed during this step, heading along the lane."""
    S = len(g.stopline_light)
    E = state.num_envs
    if S == 0:
        return np.zeros((E, 0), bool)
    _, tail0 = ego_tail_segment(prev)
    _, tail1 = ego_tail_segment(state)
    mid = 0.5 * (g.stopline_p0 + g.stopline_p1)  # (S, 2)
    near = np.hypot(state.x[:, EGO, None] - mid[None, :, 0], state.y[:, EGO, None] - mid[None, :, 1]) < RED_LIGHT_DISTANCE
    red = lights[:, g.stopline_light] == LIGHT.RED
    cand = near & red
    if not cand.any():
        return cand
    cross = segments_intersect(tail0[:, None, :], tail1[:, None, :], g.stopline_p0[None], g.stopline_p1[None])
    lane_yaw = g.pt_yaw[g.lane_start[g.stopline_lane]]
    aligned = np.cos(state.yaw[:, EGO, None] - lane_yaw[None, :]) > 0
    return cand & cross & aligned


def in_stop_boxes(state: SimState, g: LaneGraph) -> np.ndarray:
    """(E, G) bool: the ego's centre or front bumper is inside each stop sign's trigger box."""
    G = len(g.stop_id)
    if G == 0:
        return np.zeros((state.num_envs, 0), bool)
    bx, by, byaw, bl, bw = (g.stop_box[:, i][None] for i in range(5))
    c, s = np.cos(state.yaw[:, EGO]), np.sin(state.yaw[:, EGO])
    inside = np.zeros((state.num_envs, G), bool)
    for f in (0.0, 1.0):
        px = (state.x[:, EGO] + f * c * state.length[:, EGO] / 2)[:, None] - bx
        py = (state.y[:, EGO] + f * s * state.length[:, EGO] / 2)[:, None] - by
        lon = px * np.cos(byaw) + py * np.sin(byaw)
        lat = -px * np.sin(byaw) + py * np.cos(byaw)
        inside |= (np.abs(lon) <= bl / 2) & (np.abs(lat) <= bw / 2)
    return inside


def ego_lane_status(state: SimState, g: LaneGraph) -> tuple[np.ndarray, np.ndarray]:
    """(off_road (E,), wrong_way (E,)): centre outside every driving lane; or inside one (not in a junction)
    whose direction is against the ego's heading."""
    xy = np.stack([state.x[:, EGO], state.y[:, EGO]], 1).astype(np.float64)
    m = g.match(xy, state.yaw[:, EGO].astype(np.float64))
    inside, lane = m.inside, m.inside_lane
    same_dir_lane = g.pt_lane[m.point]
    # wrong way: the lane containing the ego runs against it and no same-direction lane contains it
    lane_c = np.maximum(lane, 0)
    mid = g.lane_start[lane_c] + g.lane_npts[lane_c] // 2
    against = np.cos(state.yaw[:, EGO] - g.pt_yaw[mid]) < np.cos(WRONG_WAY_ANGLE)
    fwd_inside = np.abs(m.lateral) <= g.lane_width[same_dir_lane] / 2
    wrong = inside & against & ~fwd_inside & (g.lane_junction[lane_c] < 0)
    return ~inside, wrong
