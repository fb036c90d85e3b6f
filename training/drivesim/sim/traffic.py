"""Background agents: traffic-light cycles and IDM lane-following vehicles. Batched over (E, A); the per-agent
work is compiled (numba kernels `_lane_leaders`, `_idm_step`, `_light_states`: no Python loop runs per env or
agent, and one env steps as cheaply as its few agents cost).

Traffic lights cycle per junction: the junction's approaches are grouped into slots (opposite approaches
share one); each slot is green for GREEN_TIME then yellow for YELLOW_TIME, then the next slot's turn.

IDM vehicles follow lane centrelines (lane, s) and pick a random successor at each lane end. Their leader is
the nearest agent ahead on the same lane or, failing that, the first agent on the chosen next lane. They
stop at the end of their lane (1 m before the junction) when the next lane's light is red (or yellow and they
can stop comfortably), when the next lane has a stop sign they have not yet stopped at for STOP_WAIT, and
when the next lane enters an unsignalised junction that another agent occupies (yielding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

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
_IDM, _STATIC, _SCRIPTED = BEH.IDM, BEH.STATIC, BEH.SCRIPTED  # plain ints for the compiled kernels
_RED, _YELLOW, _GREEN = LIGHT.RED, LIGHT.YELLOW, LIGHT.GREEN


def light_states(g: LaneGraph, t: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """States (E, T) int8 LightState of all traffic lights at times t (E,), with per-light offsets (E, T)."""
    E = len(t)
    if g.num_lights == 0:
        return np.zeros((E, 0), np.int8)
    return _light_states(np.asarray(t), np.ascontiguousarray(offset), g.light_nslots, g.light_slot, GREEN_TIME,
                         YELLOW_TIME)


@njit(cache=True)
def _light_states(t, offset, nslots, slot, green, yellow):  # pragma: no cover (compiled)
    E, T = offset.shape
    out = np.empty((E, T), np.int8)
    for e in range(E):
        for k in range(T):
            phase = (t[e] + offset[e, k]) % ((green + yellow) * nslots[k])
            rel = phase - slot[k] * (green + yellow)
            out[e, k] = _GREEN if 0 <= rel < green else (_YELLOW if green <= rel < green + yellow else _RED)
    return out


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

    Agents with lane >= 0 take part (IDM agents, and the ego / obstacles once assigned a lane). The leader is the
    next agent on the same lane in (s, slot) order or, failing that, the first agent on the chosen next lane."""
    E, A = state.x.shape
    gap, lead_v, lead = np.empty((E, A), np.float32), np.empty((E, A), np.float32), np.empty((E, A), np.int64)
    _lane_leaders(state.valid, state.lane, state.s, state.length, state.speed, state.next_lane,
                  g.f32["lane_length"], gap, lead_v, lead)
    return gap, lead_v, lead


@njit(cache=True)
def _lane_leaders(valid, lane, s, length, speed, next_lane, lane_length, gap, lead_v, lead):  # pragma: no cover
    E, A = valid.shape
    for e in range(E):
        for a in range(A):
            gap[e, a], lead_v[e, a], lead[e, a] = np.inf, 0.0, -1
            if not valid[e, a] or lane[e, a] < 0:
                continue
            best = -1
            for b in range(A):  # the nearest ahead on the same lane, in (s, slot) order
                if b == a or not valid[e, b] or lane[e, b] != lane[e, a]:
                    continue
                if s[e, b] > s[e, a] or (s[e, b] == s[e, a] and b > a):
                    if best < 0 or s[e, b] < s[e, best] or (s[e, b] == s[e, best] and b < best):
                        best = b
            if best >= 0:
                gap[e, a] = s[e, best] - s[e, a] - length[e, a] / 2 - length[e, best] / 2
            elif next_lane[e, a] >= 0:  # the first agent on the chosen next lane
                for b in range(A):
                    if valid[e, b] and lane[e, b] == next_lane[e, a]:
                        if best < 0 or s[e, b] < s[e, best] or (s[e, b] == s[e, best] and b < best):
                            best = b
                if best >= 0:
                    gap[e, a] = (lane_length[lane[e, a]] - s[e, a] + s[e, best] - length[e, a] / 2
                                 - length[e, best] / 2)
            if best >= 0:
                lead_v[e, a], lead[e, a] = speed[e, best], best


AHEAD_RANGE = 40.0  # [m] how far ahead an IDM agent looks for agents off the lane graph across its path
STUCK_GAP = 10.0  # [m] a stopped vehicle this close behind a standing obstacle is stuck
AHEAD_MARGIN = 0.3  # [m] lateral, beyond the two half widths


def idm_step(state: SimState, g: LaneGraph, lights: np.ndarray, junction_index: np.ndarray, dt: float,
             p: IDMParams = DEFAULT_IDM) -> dict[str, np.ndarray]:
    """New (lane, s, next_lane, speed, accel, x, y, yaw, stop_wait, rng, valid) for IDM agents. Returns a dict of
    full (E, A) arrays; non-IDM agents keep their values.

    Per IDM agent (compiled, `_idm_step`): its leader along the lane graph (`lane_leaders`) or the nearest agent
    that is no lane follower (the ego, scenario actors, walkers, replayed agents; not standing props) in front,
    across its path within AHEAD_RANGE (the ego leaves the lane graph when it turns, swerves or changes lanes;
    scenario actors and walkers are never on it: without this, a car drove through the bicycles of
    HazardAtSideLane); a virtual stop at the end of its lane (STOP_MARGIN before it) for a red light, a
    yellow one it can stop for, a stop sign it has not stood at for STOP_WAIT, an unsignalised junction that
    another agent occupies; IDM; lane transitions with a random successor (`pick_successor`'s
    stream). A vehicle stopped right behind a standing scenario obstacle or a standing scenario actor leaves (it
    cannot pass it, and waiting would lock the junctions behind it; the Leaderboard's BackgroundBehavior clears
    such vehicles from the ego's way, LeaveSpaceInFront), and so does one that drives off a dead end (a road
    at the map's edge: it used to stop there for good, and the queue behind it locked up the road)."""
    E, A = state.x.shape
    f32 = g.f32
    out = {k: getattr(state, k).copy() for k in ("speed", "accel", "s", "lane", "next_lane", "stop_wait", "rng",
                                                  "valid", "x", "y", "yaw")}
    J = max(int(junction_index.max()) + 1 if len(junction_index) else 0, 1)
    lights = lights if lights.size else np.full((E, 1), LIGHT.GREEN, np.int8)
    _idm_step(state.valid, state.behavior, state.lane, state.s, state.next_lane, state.speed, state.length,
              state.width, state.x, state.y, state.yaw, state.desired_speed, state.stop_wait, state.rng, lights,
              f32["lane_length"], f32["lane_inv_ds"], f32["pt_x"], f32["pt_y"], f32["pt_yaw"], g.lane_start,
              g.lane_npts, g.lane_light, g.lane_stop, g.lane_succ, junction_index, J, float(dt),
              np.array([p.max_accel, p.comfort_brake, p.min_gap, p.headway, p.delta, p.max_brake, p.lookahead]),
              out["speed"], out["accel"], out["s"], out["lane"], out["next_lane"], out["stop_wait"], out["rng"],
              out["valid"], out["x"], out["y"], out["yaw"])
    return out


@njit(cache=True)
def _idm_accel(v, v0, gap, dv, prm):  # pragma: no cover (compiled)
    """idm_accel for one agent; prm = (max_accel, comfort_brake, min_gap, headway, delta, max_brake, lookahead)."""
    v0 = max(v0, 0.1)
    s_star = prm[2] + max(v * prm[3] + v * dv / (2.0 * math.sqrt(prm[0] * prm[1])), 0.0)
    free = 1.0 - (max(v, 0.0) / v0) ** prm[4]
    inter = (s_star / max(gap, 0.1)) ** 2 if np.isfinite(gap) else 0.0
    return min(max(prm[0] * (free - inter), -prm[5]), prm[0])


@njit(cache=True)
def _idm_step(valid, behavior, lane, s, next_lane, speed, length, width, x, y, yaw, desired, stop_wait, rng, lights,
              lane_length, inv_ds, pt_x, pt_y, pt_yaw, lane_start, lane_npts, lane_light, lane_stop, lane_succ,
              junction_index, J, dt, prm,
              o_speed, o_accel, o_s, o_lane, o_next, o_wait, o_rng, o_valid, o_x, o_y, o_yaw):  # pragma: no cover
    E, A = valid.shape
    gap_l, lead_vl, lead_l = np.empty((E, A), np.float32), np.empty((E, A), np.float32), np.empty((E, A), np.int64)
    _lane_leaders(valid, lane, s, length, speed, next_lane, lane_length, gap_l, lead_vl, lead_l)
    occ = np.zeros(J, np.int64)
    K = lane_succ.shape[1]
    for e in range(E):
        occ[:] = 0  # agents on the lanes of each junction
        for a in range(A):
            if valid[e, a] and lane[e, a] >= 0 and junction_index[lane[e, a]] >= 0:
                occ[junction_index[lane[e, a]]] += 1
        for a in range(A):
            if not valid[e, a] or behavior[e, a] != _IDM:
                continue
            v = float(speed[e, a])
            gap, lead_v, ld = float(gap_l[e, a]), float(lead_vl[e, a]), lead_l[e, a]
            stuck = ld >= 0 and behavior[e, ld] == _STATIC and gap < STUCK_GAP and v < 0.1
            c, sn = math.cos(yaw[e, a]), math.sin(yaw[e, a])
            standing = False
            for b in range(A):  # the ego and every other moving agent off the lane graph, in front across its path
                if b == a or not valid[e, b] or behavior[e, b] == _IDM or behavior[e, b] == _STATIC:
                    continue  # (standing obstacles in a lane are lane leaders; props beside it are no one's way)
                dx, dy = x[e, b] - x[e, a], y[e, b] - y[e, a]
                lon, lat = dx * c + dy * sn, -dx * sn + dy * c
                if not 0 < lon < AHEAD_RANGE:
                    continue
                dyaw = yaw[e, b] - yaw[e, a]
                cd, sd = abs(math.cos(dyaw)), abs(math.sin(dyaw))
                half_w = 0.5 * (width[e, b] * cd + length[e, b] * sd)
                half_l = 0.5 * (length[e, b] * cd + width[e, b] * sd)
                if abs(lat) < half_w + width[e, a] / 2 + AHEAD_MARGIN:
                    eg = lon - half_l - length[e, a] / 2
                    if eg < gap:
                        gap, lead_v = eg, speed[e, b] * math.cos(dyaw)
                        standing = behavior[e, b] == _SCRIPTED and abs(speed[e, b]) < 0.1
            # stopped right behind a standing scenario actor (a car waiting to cut in from where it stands in
            # this lane, a walker stopped in the road): it leaves, as behind a standing obstacle
            stuck = stuck or (standing and gap < STUCK_GAP and v < 0.1)
            if gap > prm[6]:
                gap = np.inf
            dv = v - lead_v
            ln, nl = max(lane[e, a], 0), next_lane[e, a]
            nlc = max(nl, 0)
            d_end = lane_length[ln] - s[e, a] - length[e, a] / 2 - STOP_MARGIN
            light = lane_light[nlc] if nl >= 0 else -1
            ls = lights[e, light] if light >= 0 else _GREEN
            can_stop = d_end > v * v / (2 * prm[1])
            stop_sign = nl >= 0 and lane_stop[nlc] >= 0 and stop_wait[e, a] < STOP_WAIT
            nj = junction_index[nlc] if nl >= 0 else -1
            busy = nj >= 0 and light < 0 and junction_index[ln] < 0 and occ[nj] > 0
            stop = (ls == _RED or (ls == _YELLOW and can_stop) or stop_sign or busy) and d_end > -0.5
            if stop and max(d_end, 0.0) < gap:
                gap, dv = max(d_end, 0.0), v
            acc = _idm_accel(v, desired[e, a], gap, dv, prm)
            v_new = max(v + acc * dt, 0.0)
            s_new = s[e, a] + 0.5 * (v + v_new) * dt
            wait = stop_wait[e, a]
            if stop_sign and d_end < 2.0 and v_new < 0.1:  # standing at the stop line
                wait = max(wait, 0.0) + dt
            # lane transitions (at most 3 a step)
            lc, nc, r, alive = lane[e, a], nl, np.uint64(rng[e, a]), True
            for _ in range(3):
                if s_new <= lane_length[lc]:
                    break
                if nc < 0:
                    alive = False  # a dead end: the vehicle leaves the simulation
                    break
                s_new -= lane_length[lc]
                lc = nc
                n = 0
                for k in range(K):
                    n += lane_succ[lc, k] >= 0
                nc = lane_succ[lc, r % np.uint64(max(n, 1))] if n > 0 else -1
                r = (r * np.uint64(1664525) + np.uint64(1013904223)) & np.uint64(0xFFFFFFFF)
                wait = -1.0
            # position on the lane (clipped to it)
            lp = max(lc, 0)
            f = min(max(s_new, 0.0), lane_length[lp]) * inv_ds[lp]
            last = lane_npts[lp] - 1
            i0 = min(int(f), last)
            w = f - i0
            p0, p1 = lane_start[lp] + i0, lane_start[lp] + min(i0 + 1, last)
            o_x[e, a] = pt_x[p0] + (pt_x[p1] - pt_x[p0]) * w
            o_y[e, a] = pt_y[p0] + (pt_y[p1] - pt_y[p0]) * w
            o_yaw[e, a] = pt_yaw[p0]
            o_speed[e, a], o_accel[e, a], o_s[e, a], o_lane[e, a], o_next[e, a] = v_new, acc, s_new, lc, nc
            o_wait[e, a], o_rng[e, a], o_valid[e, a] = wait, r, alive and not stuck
