"""Per-step events of the ego, batched over envs: collisions, time-to-collision, red-light and stop-sign
crossings, lane membership. Pure functions of states; the per-agent / per-line loops are compiled (numba)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..geometry import obb_overlap, segments_intersect
from ..maps.lanegraph import LaneGraph
from .state import EGO, LIGHT, SimState

RED_LIGHT_DISTANCE = 15.0  # [m] lights further than this from the ego are not checked (as the Leaderboard)
WRONG_WAY_ANGLE = np.deg2rad(120.0)
_RED = LIGHT.RED  # heading error against the lane that counts as driving against traffic


def ego_collisions(state: SimState) -> np.ndarray:
    """(E, A) bool: which agents overlap the ego's box (the ego itself is False).

    Only pairs whose bounding circles meet (`_near_ego`, compiled) go through the separating-axis test."""
    cand = _near_ego(state.x, state.y, state.length, state.width, state.valid)
    hit = np.zeros(cand.shape, bool)
    e, a = np.nonzero(cand)
    if len(e):
        hit[e, a] = obb_overlap(
            state.x[e, EGO], state.y[e, EGO], state.yaw[e, EGO], state.length[e, EGO], state.width[e, EGO],
            state.x[e, a], state.y[e, a], state.yaw[e, a], state.length[e, a], state.width[e, a],
        )
    return hit


@njit(cache=True)
def _near_ego(x, y, length, width, valid):  # pragma: no cover (compiled)
    """(E, A) bool: valid agents whose bounding circle meets the ego's (slot 0 excluded)."""
    E, A = x.shape
    out = np.zeros((E, A), np.bool_)
    for e in range(E):
        re = 0.5 * math.hypot(length[e, 0], width[e, 0])
        for a in range(1, A):
            if valid[e, a]:
                reach = re + 0.5 * math.hypot(length[e, a], width[e, a])
                dx, dy = float(x[e, a]) - float(x[e, 0]), float(y[e, a]) - float(y[e, 0])
                out[e, a] = dx * dx + dy * dy <= reach * reach
    return out


def time_to_collision(state: SimState, horizon: float = 10.0) -> np.ndarray:
    """(E,) smallest constant-velocity time to collision between the ego and any agent [s]; inf if none within
    the horizon. Boxes are approximated by discs of radius half the width plus a quarter of the length; agents
    already overlapping those discs do not count."""
    return _ttc(state.x, state.y, state.yaw, state.speed, state.length, state.width, state.valid, float(horizon))


@njit(cache=True)
def _ttc(x, y, yaw, speed, length, width, valid, horizon):  # pragma: no cover (compiled)
    E, A = x.shape
    out = np.full(E, np.inf)
    for e in range(E):
        evx, evy = speed[e, 0] * math.cos(yaw[e, 0]), speed[e, 0] * math.sin(yaw[e, 0])
        r_e = width[e, 0] / 2 + length[e, 0] / 4
        for a in range(1, A):
            if not valid[e, a]:
                continue
            px, py = float(x[e, a]) - float(x[e, 0]), float(y[e, a]) - float(y[e, 0])
            vx, vy = speed[e, a] * math.cos(yaw[e, a]) - evx, speed[e, a] * math.sin(yaw[e, a]) - evy
            r = width[e, a] / 2 + length[e, a] / 4 + r_e
            # |p + v t| = r  ->  (v.v) t^2 + 2 (p.v) t + (p.p - r^2) = 0
            qa, qb, qc = vx * vx + vy * vy, px * vx + py * vy, px * px + py * py - r * r
            disc = qb * qb - qa * qc
            if qa > 1e-6 and disc >= 0 and qc > 0:
                t = (-qb - math.sqrt(disc)) / qa
                if 0 <= t <= horizon:
                    out[e] = min(out[e], t)
    return out


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
    mid = 0.5 * (g.stopline_p0 + g.stopline_p1)  # (S, 2)
    cand = _near_red_lines(state.x, state.y, mid, np.ascontiguousarray(lights[:, g.stopline_light]))
    if not cand.any():
        return cand
    _, tail0 = ego_tail_segment(prev)
    _, tail1 = ego_tail_segment(state)
    cross = segments_intersect(tail0[:, None, :], tail1[:, None, :], g.stopline_p0[None], g.stopline_p1[None])
    lane_yaw = g.pt_yaw[g.lane_start[g.stopline_lane]]
    aligned = np.cos(state.yaw[:, EGO, None] - lane_yaw[None, :]) > 0
    return cand & cross & aligned


@njit(cache=True)
def _near_red_lines(x, y, mid, line_state):  # pragma: no cover (compiled)
    """(E, S) bool: red stop lines within RED_LIGHT_DISTANCE of the ego."""
    E, S = line_state.shape
    out = np.zeros((E, S), np.bool_)
    for e in range(E):
        for k in range(S):
            if line_state[e, k] == _RED:
                out[e, k] = math.hypot(x[e, 0] - mid[k, 0], y[e, 0] - mid[k, 1]) < RED_LIGHT_DISTANCE
    return out


def in_stop_boxes(state: SimState, g: LaneGraph) -> np.ndarray:
    """(E, G) bool: the ego's centre or front bumper is inside each stop sign's trigger box."""
    if len(g.stop_id) == 0:
        return np.zeros((state.num_envs, 0), bool)
    return _in_boxes(state.x, state.y, state.yaw, state.length, g.stop_box)


@njit(cache=True)
def _in_boxes(x, y, yaw, length, box):  # pragma: no cover (compiled)
    E, G = x.shape[0], box.shape[0]
    out = np.zeros((E, G), np.bool_)
    for e in range(E):
        c, s = math.cos(yaw[e, 0]), math.sin(yaw[e, 0])
        for f in (0.0, 1.0):  # the centre, the front bumper
            qx, qy = x[e, 0] + f * c * length[e, 0] / 2, y[e, 0] + f * s * length[e, 0] / 2
            for k in range(G):
                px, py = qx - box[k, 0], qy - box[k, 1]
                cb, sb = math.cos(box[k, 2]), math.sin(box[k, 2])
                if abs(px * cb + py * sb) <= box[k, 3] / 2 and abs(-px * sb + py * cb) <= box[k, 4] / 2:
                    out[e, k] = True
    return out


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
