"""Scripted scenario actors, batched over (E, A) (compiled per agent): the mechanism behind the Bench2Drive scenario types.

A SCRIPTED agent follows a polyline path (up to K points) with a speed that depends on its phase:

    waiting  (before its trigger)                        -> wait_speed
    active,  t_act <= t < t_act + brake_at              -> go_speed
    active,  t_act + brake_at <= t < ... + hold         -> 0  (braking at `accel`, then standing)
    active,  afterwards                                  -> go_speed again

It is triggered when the ego's centre comes within `trigger[2]` metres of the point `trigger[:2]`. An agent
with `appear` is invisible (valid False), and frozen in place with its start speed, until its trigger fires
(a door opening, a lead car entering the scene); `vanish_after` seconds after its trigger it leaves the scene (a blocker that clears); at the path's end
it stops, or leaves when `end_vanish`. Speeds change at most by `accel` per second. Every scripted vehicle keeps
a gap behind other agents in its way; a `follow` agent also behind the ego when the ego is ahead on its heading
line (an emergency vehicle held up, not ramming). Progress along the path
is the agent's `s`; scripted obstacles that stand in a lane keep their (lane, s) assignment so that IDM traffic
queues behind them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from .state import BEH, EGO, AgentKind, SimState

MAX_PATH = 16  # K: path points per scripted agent


@dataclass
class Script:
    path: np.ndarray  # (E, A, K, 2) [m]
    cum: np.ndarray  # (E, A, K) arc length at each point [m]; points past the end repeat the last one
    trigger: np.ndarray  # (E, A, 3) x, y, radius [m]; radius < 0: active from the start
    wait_speed: np.ndarray  # (E, A) [m/s]
    go_speed: np.ndarray  # (E, A) [m/s]
    accel: np.ndarray  # (E, A) [m/s^2] speed change limit (braking and accelerating)
    brake_at: np.ndarray  # (E, A) [s] after the trigger; inf = never
    hold: np.ndarray  # (E, A) [s] standstill of the brake phase
    vanish_after: np.ndarray  # (E, A) [s] after the trigger; inf = never
    appear: np.ndarray  # (E, A) bool: invisible until triggered
    end_vanish: np.ndarray  # (E, A) bool: leave at the path's end (else stop there)
    t_act: np.ndarray  # (E, A) [s] trigger time; inf = not yet
    follow: np.ndarray  # (E, A) bool: keep a safe gap behind the ego when it is ahead in the path (no rear-ending)

    @classmethod
    def empty(cls, E: int, A: int, K: int = MAX_PATH) -> Script:
        f = lambda v=0.0: np.full((E, A), v, np.float32)  # noqa: E731
        return cls(path=np.zeros((E, A, K, 2), np.float32), cum=np.zeros((E, A, K), np.float32),
                   trigger=np.full((E, A, 3), -1.0, np.float32), wait_speed=f(), go_speed=f(), accel=f(3.0),
                   brake_at=f(np.inf), hold=f(0.0), vanish_after=f(np.inf), appear=np.zeros((E, A), bool),
                   end_vanish=np.zeros((E, A), bool), t_act=f(np.inf), follow=np.zeros((E, A), bool))

    def copy(self) -> Script:
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).copy() for f in dataclasses.fields(self)})

    def set_path(self, e: int, a: int, pts: np.ndarray) -> float:
        """Resample a polyline (N >= 1, 2) into the K slots of agent (e, a); returns its length [m]."""
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        K = self.path.shape[2]
        if len(pts) > K:  # keep the shape: resample by arc length
            seg = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
            u = np.linspace(0.0, seg[-1], K)
            pts = np.stack([np.interp(u, seg, pts[:, 0]), np.interp(u, seg, pts[:, 1])], 1)
        cum = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
        n = len(pts)
        self.path[e, a, :n], self.path[e, a, n:] = pts, pts[-1]
        self.cum[e, a, :n], self.cum[e, a, n:] = cum, cum[-1]
        return float(cum[-1])


FOLLOW_MARGIN = 0.5  # [m] lateral, beyond the two half widths: a follower keeps behind an ego this close to its line
_SCRIPTED, _STATIC = BEH.SCRIPTED, BEH.STATIC
_PEDESTRIAN = int(AgentKind.PEDESTRIAN)


def phase_speed(sc: Script, t_act: np.ndarray, since: np.ndarray) -> np.ndarray:
    """The speed each scripted agent's current phase asks for (E, A): waiting, going or braking/holding."""
    shape = np.broadcast_shapes(np.shape(t_act), np.shape(since), sc.brake_at.shape)
    f = lambda a: np.ascontiguousarray(np.broadcast_to(a, shape), np.float64).reshape(-1)  # noqa: E731
    args = [f(a) for a in (t_act, since, sc.brake_at, sc.hold, sc.wait_speed, sc.go_speed)]
    return _phase_speeds(*args).reshape(shape)


@njit(cache=True)
def _phase_speeds(t_act, since, brake_at, hold, wait_speed, go_speed):  # pragma: no cover (compiled)
    out = np.empty(len(t_act))
    for i in range(len(t_act)):
        out[i] = _phase_speed(t_act[i], since[i], brake_at[i], hold[i], wait_speed[i], go_speed[i])
    return out


@njit(cache=True)
def _phase_speed(t_act, since, brake_at, hold, wait_speed, go_speed):  # pragma: no cover (compiled)
    """One agent's phase speed: waiting (not triggered), braking / holding, or going."""
    if not np.isfinite(t_act):
        return wait_speed
    if brake_at <= since < brake_at + hold:
        return 0.0
    return go_speed


def path_position(sc: Script, s: np.ndarray, index=...) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, segment heading, segment length) at arc lengths s on the script paths. s broadcasts against sc.cum[index][..., 0];
    `index` selects agents (e.g. (e, agent_indices)); extra trailing dims of s (times) are allowed."""
    cum, path = sc.cum[index], sc.path[index]  # (..., K), (..., K, 2)
    s = np.asarray(s)
    extra = s.ndim - (cum.ndim - 1)
    K = cum.shape[-1]
    cum = cum.reshape(cum.shape[:-1] + (1,) * extra + (K,))
    path = path.reshape(path.shape[:-2] + (1,) * extra + (K, 2))
    shape = np.broadcast_shapes(cum.shape[:-1], s.shape)
    flat = lambda a, tail: np.ascontiguousarray(np.broadcast_to(a, shape + tail)).reshape((-1,) + tail)  # noqa: E731
    out = _path_positions(flat(path, (K, 2)), flat(cum, (K,)), flat(s, ()))
    return tuple(o.reshape(shape) for o in out)


@njit(cache=True)
def _pos_on_path(path, cum, s):  # pragma: no cover (compiled)
    """Position, heading and length of the segment of one path (K, 2) with arc lengths cum (K,) at s."""
    K = len(cum)
    k = 0
    for j in range(1, K):
        k += cum[j] <= s
    k = min(max(k, 0), K - 2)
    c0, c1 = cum[k], cum[k + 1]
    w = (s - c0) / max(c1 - c0, 1e-9) if c1 > c0 else 0.0
    sx, sy = path[k + 1, 0] - path[k, 0], path[k + 1, 1] - path[k, 1]
    return path[k, 0] + sx * w, path[k, 1] + sy * w, math.atan2(sy, sx), math.hypot(sx, sy)


@njit(cache=True)
def _path_positions(path, cum, s):  # pragma: no cover (compiled)
    n = len(s)
    x, y, heading, seg = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        x[i], y[i], heading[i], seg[i] = _pos_on_path(path[i], cum[i], s[i])
    return x, y, heading, seg


def script_step(state: SimState, dt: float) -> dict[str, np.ndarray]:
    """New (x, y, yaw, speed, accel, s, valid) of SCRIPTED agents and the updated trigger times (`_script_step`,
    compiled). A scripted vehicle (not a walker) with an agent ahead (within 60 m, its box overlapping the
    heading line's corridor; standing props and parked cars excepted: scripts are laid out around them) caps
    its speed so that braking at half the accel limit stops 4 m behind it, v <= v_ahead + sqrt(2 b (gap - 4)):
    as CARLA's agents brake for vehicles in their way, a HardBreakRoute leader no longer drives through a car
    queuing at a light. Not for an agent other than the ego standing across or against its heading (60+ degrees off): a
    crossing cyclist waited for a car at a stop line, the car for the junction, and the ego in the junction for
    the cyclist, for good. The ego counts only for followers (`follow`): the others are meant to pressure it; a
    follower appearing behind the ego comes in no faster than it could still follow at."""
    sc = state.script
    out = {k: getattr(state, k).copy() for k in ("x", "y", "yaw", "speed", "accel", "s", "valid")}
    out["t_act"] = sc.t_act.copy()
    _script_step(state.behavior, state.kind, state.valid, state.x, state.y, state.yaw, state.speed, state.s,
                 state.length, state.width, state.t, sc.path, sc.cum, sc.trigger, sc.wait_speed, sc.go_speed,
                 sc.accel, sc.brake_at, sc.hold, sc.vanish_after, sc.appear, sc.end_vanish, sc.follow, float(dt),
                 out["x"], out["y"], out["yaw"], out["speed"], out["accel"], out["s"], out["valid"], out["t_act"])
    return out


@njit(cache=True)
def _script_step(behavior, kind, valid, x, y, yaw, speed, s, length, width, t, path, cum, trigger, wait_speed, go_speed,
                 acc, brake_at, hold, vanish_after, appear, end_vanish, follow, dt,
                 o_x, o_y, o_yaw, o_speed, o_accel, o_s, o_valid, o_tact):  # pragma: no cover (compiled)
    E, A = x.shape
    K = cum.shape[2]
    for e in range(E):
        ex, ey = x[e, EGO], y[e, EGO]
        for a in range(A):
            if behavior[e, a] != _SCRIPTED:
                continue
            ta = o_tact[e, a]
            fire = not np.isfinite(ta) and (trigger[e, a, 2] < 0 or
                                            math.hypot(trigger[e, a, 0] - ex, trigger[e, a, 1] - ey) <= trigger[e, a, 2])
            if fire:
                ta = t[e]
            active = np.isfinite(ta)
            since = t[e] - ta if active else -np.inf
            target = _phase_speed(ta, since, brake_at[e, a], hold[e, a], wait_speed[e, a], go_speed[e, a])
            c, sn = math.cos(yaw[e, a]), math.sin(yaw[e, a])
            v_cap, ahead = np.inf, False
            if kind[e, a] != _PEDESTRIAN:
                for b in range(A):  # the ego (followers only) and other moving or lane-following agents ahead
                    if b == a or not valid[e, b] or behavior[e, b] == _STATIC or (b == EGO and not follow[e, a]):
                        continue
                    if b != EGO and abs(speed[e, b]) < 0.1 and math.cos(yaw[e, b] - yaw[e, a]) < 0.5:
                        continue  # standing across or against its way: waiting for it can lock a junction (a
                        # follower never rams the ego, however it stands)
                    dx, dy = x[e, b] - x[e, a], y[e, b] - y[e, a]
                    lon, lat = dx * c + dy * sn, -dx * sn + dy * c
                    if 0 < lon < 60.0 and abs(lat) < (width[e, a] + width[e, b]) / 2 + FOLLOW_MARGIN:
                        along = speed[e, b] * math.cos(yaw[e, b] - yaw[e, a])
                        gap = lon - (length[e, a] + length[e, b]) / 2
                        v_cap = min(v_cap, max(along, 0.0) + math.sqrt(acc[e, a] * max(gap - 4.0, 0.0)))
                        ahead = ahead or b == EGO
            v = float(speed[e, a])
            target = min(target, v_cap)
            if ahead and fire:
                v = min(v, v_cap)
            frozen = appear[e, a] and not active  # not appeared yet: keeps its place and speed
            step = acc[e, a] * dt
            v_new = v if frozen else v + min(max(target - v, -step), step)
            L = cum[e, a, K - 1]
            s_new = s[e, a] if frozen else min(s[e, a] + 0.5 * (v + v_new) * dt, L)
            at_end = s_new >= L - 1e-6
            if at_end and not end_vanish[e, a]:
                v_new = min(v_new, 0.0)
            px, py, heading, seg = _pos_on_path(path[e, a], cum[e, a], s_new)
            gone = (at_end and end_vanish[e, a]) or (active and since >= vanish_after[e, a])
            visible = (active if appear[e, a] else True) and not gone
            o_x[e, a], o_y[e, a] = px, py
            o_yaw[e, a] = heading if seg > 1e-6 else yaw[e, a]
            o_speed[e, a], o_accel[e, a], o_s[e, a] = v_new, (v_new - v) / dt, s_new
            o_valid[e, a] = visible and (valid[e, a] or fire)
            o_tact[e, a] = ta
