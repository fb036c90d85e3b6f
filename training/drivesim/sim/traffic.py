"""Background agents: traffic-light cycles and IDM lane-following vehicles. Vectorised over (E, A).

Traffic lights cycle per junction: the junction's approaches are grouped into slots (opposite approaches
share one); each slot is green for GREEN_TIME then yellow for YELLOW_TIME, then the next slot's turn.

IDM vehicles follow lane centrelines (lane, s) and pick a random successor at each lane end. Their leader is
the nearest agent ahead on the same lane or, failing that, the first agent on the chosen next lane. They
stop at the end of their lane (1 m before the junction) when the next lane's light is red (or yellow and they
can stop comfortably), when the next lane has a stop sign they have not yet stopped at for STOP_WAIT, and
when the next lane enters an unsignalised junction that another agent occupies (yielding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..maps.lanegraph import LaneGraph
from .state import BEH, LIGHT, SimState

GREEN_TIME = 10.0  # [s]
YELLOW_TIME = 3.0  # [s]
STOP_WAIT = 1.0  # [s] standstill required at a stop sign
STOP_MARGIN = 1.0  # [m] stop this far before the lane end


@dataclass(frozen=True)
class IDMParams:
    max_accel: float = 2.0  # a [m/s^2]
    comfort_brake: float = 3.0  # b [m/s^2]
    min_gap: float = 2.0  # s0 [m]
    headway: float = 1.2  # T [s]
    delta: float = 4.0
    max_brake: float = 8.0  # [m/s^2] emergency limit
    lookahead: float = 80.0  # [m] leaders further than this are ignored


DEFAULT_IDM = IDMParams()


def light_states(g: LaneGraph, t: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """States (E, T) int8 LightState of all traffic lights at times t (E,), with per-light offsets (E, T)."""
    cycle = (GREEN_TIME + YELLOW_TIME) * g.light_nslots  # (T,)
    phase = np.mod(t[:, None] + offset, cycle[None, :])
    start = g.light_slot * (GREEN_TIME + YELLOW_TIME)
    rel = phase - start[None, :]
    st = np.full(phase.shape, LIGHT.RED, np.int8)
    st[(rel >= 0) & (rel < GREEN_TIME)] = LIGHT.GREEN
    st[(rel >= GREEN_TIME) & (rel < GREEN_TIME + YELLOW_TIME)] = LIGHT.YELLOW
    return st


def idm_accel(v, v0, gap, dv, p: IDMParams = DEFAULT_IDM):
    """IDM acceleration; gap [m] to the leader (inf = none), dv = v - v_leader. Vectorised."""
    v0 = np.maximum(v0, 0.1)
    s_star = p.min_gap + np.maximum(v * p.headway + v * dv / (2.0 * np.sqrt(p.max_accel * p.comfort_brake)), 0.0)
    free = 1.0 - (np.maximum(v, 0.0) / v0) ** p.delta
    inter = np.where(np.isfinite(gap), (s_star / np.maximum(gap, 0.1)) ** 2, 0.0)
    return np.clip(p.max_accel * (free - inter), -p.max_brake, p.max_accel)


def pick_successor(g: LaneGraph, lane: np.ndarray, rng: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A random successor of each lane (-1 at dead ends), and the advanced random state."""
    succ = g.lane_succ[np.maximum(lane, 0)]  # (..., K)
    n = (succ >= 0).sum(-1)
    k = (rng % np.maximum(n, 1).astype(np.uint32)).astype(np.int64)
    nxt = np.take_along_axis(succ, k[..., None], axis=-1)[..., 0]
    nxt = np.where((n > 0) & (lane >= 0), nxt, -1)
    rng = (rng * np.uint32(1664525) + np.uint32(1013904223)).astype(np.uint32)
    return nxt.astype(np.int32), rng


def lane_leaders(state: SimState, g: LaneGraph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gap [m] (bumper to bumper), speed and slot of each agent's leader along the lane graph; inf/0/-1 if none.

    Agents with lane >= 0 take part (IDM agents, and the ego / obstacles once assigned a lane). Each env's
    agents are sorted by (lane, s) in one row-wise argsort (A log A per env, no loop over envs); the leader is
    the next agent in that order on the same lane or, failing that, the first agent on the chosen next lane.
    """
    E, A = state.x.shape
    L = g.num_lanes
    on = state.valid & (state.lane >= 0)
    lane_k = np.where(on, state.lane, L)  # (E, A) lane L = "no lane", sorts last
    s = state.s
    order = np.argsort(lane_k * (float(g.lane_length.max()) + 10.0) + np.where(on, s, 0.0), axis=1)  # (E, A)
    lane_sorted = np.take_along_axis(lane_k, order, axis=1)
    half = state.length / 2
    rows = np.arange(E)[:, None]
    flat_order = (order + rows * A).ravel()  # sorted position -> flat agent index
    lane_sorted_flat = lane_sorted.ravel()
    s_f, half_f, v_f = s.ravel(), half.ravel(), state.speed.ravel()
    gap = np.full(E * A, np.inf, np.float32)
    lead_v = np.zeros(E * A, np.float32)
    lead = np.full(E * A, -1, np.int64)
    # consecutive agents in sorted order on the same lane: follower i, leader j (row ends excluded)
    same = (lane_sorted_flat[:-1] == lane_sorted_flat[1:]) & (lane_sorted_flat[:-1] < L)
    same[A - 1 :: A] = False
    i, j = flat_order[:-1][same], flat_order[1:][same]
    gap[i] = s_f[j] - s_f[i] - half_f[i] - half_f[j]
    lead_v[i] = v_f[j]
    lead[i] = j % A
    # no leader on the lane: the first agent on the chosen next lane. Rows are sorted, so the flat key
    # env * (L + 1) + lane is non-decreasing; where it changes a lane's first agent starts: a table
    # (E * (L + 1)) of those sorted positions answers every lookup at once
    need = np.flatnonzero(on.ravel() & ~np.isfinite(gap) & (state.next_lane.ravel() >= 0))
    if len(need):
        flat_key = (rows * (L + 1) + lane_sorted).ravel()
        starts = np.flatnonzero(np.r_[True, flat_key[1:] != flat_key[:-1]])
        first = np.full(E * (L + 1), -1, np.int64)
        first[flat_key[starts]] = starts
        pos = first[(need // A) * (L + 1) + state.next_lane.ravel()[need]]
        hit = pos >= 0
        i2, j2 = need[hit], flat_order[pos[hit]]
        gap[i2] = g.f32["lane_length"][state.lane.ravel()[i2]] - s_f[i2] + s_f[j2] - half_f[i2] - half_f[j2]
        lead_v[i2] = v_f[j2]
        lead[i2] = j2 % A
    return gap.reshape(E, A), lead_v.reshape(E, A), lead.reshape(E, A)


EGO_AHEAD_RANGE = 40.0  # [m]
STUCK_GAP = 10.0  # [m] a stopped vehicle this close behind a standing obstacle is stuck
EGO_AHEAD_MARGIN = 0.3  # [m] lateral, beyond the two half widths


def ego_ahead(state: SimState) -> tuple[np.ndarray, np.ndarray]:
    """Bumper gap [m] to the ego when it is in front of an agent, across its path (within EGO_AHEAD_RANGE),
    and the ego's speed along the agent's heading; inf/0 otherwise. (E, A)."""
    c, s = np.cos(state.yaw), np.sin(state.yaw)
    dx, dy = state.x[:, :1] - state.x, state.y[:, :1] - state.y
    lon, lat = dx * c + dy * s, -dx * s + dy * c
    dyaw = state.yaw[:, :1] - state.yaw
    # the ego's half extent across the agent's heading
    half_w = 0.5 * (state.width[:, :1] * np.abs(np.cos(dyaw)) + state.length[:, :1] * np.abs(np.sin(dyaw)))
    half_l = 0.5 * (state.length[:, :1] * np.abs(np.cos(dyaw)) + state.width[:, :1] * np.abs(np.sin(dyaw)))
    hit = (lon > 0) & (lon < EGO_AHEAD_RANGE) & (np.abs(lat) < half_w + state.width / 2 + EGO_AHEAD_MARGIN)
    hit[:, 0] = False
    gap = np.where(hit, lon - half_l - state.length / 2, np.inf).astype(np.float32)
    return gap, np.where(hit, state.speed[:, :1] * np.cos(dyaw), 0.0).astype(np.float32)


def junction_occupancy(state: SimState, g: LaneGraph, junction_index: np.ndarray) -> np.ndarray:
    """Number of valid agents on lanes of each junction: (E, J). junction_index maps lane -> 0..J-1 or -1."""
    E, A = state.x.shape
    J = int(junction_index.max()) + 1 if len(junction_index) else 0
    J = max(J, 1)
    ji = np.where(state.valid & (state.lane >= 0), junction_index[np.maximum(state.lane, 0)], -1)
    flat = np.where(ji >= 0, np.arange(E)[:, None] * J + ji, E * J)  # E * J = bin of agents outside junctions
    return np.bincount(flat.ravel(), minlength=E * J + 1)[: E * J].reshape(E, J).astype(np.int32)


def idm_step(state: SimState, g: LaneGraph, lights: np.ndarray, junction_index: np.ndarray, dt: float,
             p: IDMParams = DEFAULT_IDM) -> dict[str, np.ndarray]:
    """New (lane, s, next_lane, speed, accel, x, y, yaw, stop_wait, rng, valid) for IDM agents. Returns a dict of
    full (E, A) arrays; non-IDM agents keep their values."""
    idm = state.valid & (state.behavior == BEH.IDM)
    v = state.speed
    gap, lead_v, lead = lane_leaders(state, g)
    # a vehicle stopped right behind a standing scenario obstacle leaves (it cannot pass it; the Leaderboard's
    # BackgroundBehavior clears such vehicles from the ego's way, LeaveSpaceInFront)
    lead_static = (lead >= 0) & (np.take_along_axis(state.behavior, np.maximum(lead, 0), axis=1) == BEH.STATIC)
    stuck = idm & lead_static & (gap < STUCK_GAP) & (v < 0.1)
    # the ego by geometry too: it leaves the lane graph when it turns, swerves or changes lanes
    eg_gap, eg_v = ego_ahead(state)
    closer = eg_gap < gap
    gap, lead_v = np.where(closer, eg_gap, gap), np.where(closer, eg_v, lead_v)
    gap = np.where(gap > p.lookahead, np.inf, gap)
    dv = v - lead_v
    # virtual stop line at the end of the lane
    lane = np.maximum(state.lane, 0)
    nl = state.next_lane
    nlc = np.maximum(nl, 0)
    d_end = g.f32["lane_length"][lane] - state.s - state.length / 2 - STOP_MARGIN
    light = np.where(nl >= 0, g.lane_light[nlc], -1)
    lstate = np.where(light >= 0, np.take_along_axis(lights, np.maximum(light, 0), axis=1) if lights.size else 0,
                      LIGHT.GREEN)
    can_stop = d_end > v * v / (2 * p.comfort_brake)
    stop_light = (lstate == LIGHT.RED) | ((lstate == LIGHT.YELLOW) & can_stop)
    stop_sign = (nl >= 0) & (g.lane_stop[nlc] >= 0) & (state.stop_wait < STOP_WAIT)
    occ = junction_occupancy(state, g, junction_index)
    nj = np.where(nl >= 0, junction_index[nlc], -1)
    in_j_now = junction_index[lane] >= 0
    busy = (nj >= 0) & (light < 0) & ~in_j_now & (np.take_along_axis(occ, np.maximum(nj, 0), axis=1) > 0)
    stop = (stop_light | stop_sign | busy | (nl < 0)) & (d_end > -0.5)
    d_stop = np.where(stop, np.maximum(d_end, 0.0), np.inf)
    use_stop = d_stop < gap
    gap = np.where(use_stop, d_stop, gap)
    dv = np.where(use_stop, v, dv)
    a = idm_accel(v, state.desired_speed, gap, dv, p)
    v_new = np.maximum(v + a * dt, 0.0)
    s_new = state.s + 0.5 * (v + v_new) * dt
    # stop-sign bookkeeping: count standstill time near the line
    at_line = stop_sign & (d_end < 2.0) & (v_new < 0.1)
    stop_wait = np.where(at_line, np.maximum(state.stop_wait, 0.0) + dt, state.stop_wait)
    # lane transitions: only the few agents that passed the end of their lane this step
    lane_c, nl_c, rng = state.lane.copy(), nl.copy(), state.rng.copy()
    valid = state.valid.copy()
    length = g.f32["lane_length"]
    e_i, a_i = np.nonzero(idm & (s_new > length[lane]))
    for _ in range(3):
        if not len(e_i):
            break
        nxt = nl_c[e_i, a_i]
        dead = nxt < 0
        valid[e_i[dead], a_i[dead]] = False  # a vehicle reaching a dead end leaves the simulation
        e_i, a_i, nxt = e_i[~dead], a_i[~dead], nxt[~dead]
        s_new[e_i, a_i] -= length[lane_c[e_i, a_i]]
        lane_c[e_i, a_i] = nxt
        nl_c[e_i, a_i], rng[e_i, a_i] = pick_successor(g, nxt, rng[e_i, a_i])
        stop_wait[e_i, a_i] = -1.0
        still = s_new[e_i, a_i] > length[nxt]
        e_i, a_i = e_i[still], a_i[still]
    x, y, yaw = g.lane_position(np.maximum(lane_c, 0), s_new)
    out = {
        "speed": np.where(idm, v_new, state.speed),
        "accel": np.where(idm, a, state.accel),
        "s": np.where(idm, s_new, state.s),
        "lane": np.where(idm, lane_c, state.lane),
        "next_lane": np.where(idm, nl_c, state.next_lane),
        "stop_wait": np.where(idm, stop_wait, state.stop_wait),
        "rng": np.where(idm, rng, state.rng),
        "valid": np.where(idm, valid & ~stuck, state.valid),
        "x": np.where(idm, x, state.x),
        "y": np.where(idm, y, state.y),
        "yaw": np.where(idm, yaw, state.yaw),
    }
    return {k: v.astype(getattr(state, k).dtype, copy=False) for k, v in out.items()}
