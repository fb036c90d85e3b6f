"""Scripted scenario actors, vectorised over (E, A): the mechanism behind the Bench2Drive scenario types.

A SCRIPTED agent follows a polyline path (up to K points) with a speed that depends on its phase:

    waiting  (before its trigger)                        -> wait_speed
    active,  t_act <= t < t_act + brake_at              -> go_speed
    active,  t_act + brake_at <= t < ... + hold         -> 0  (braking at `accel`, then standing)
    active,  afterwards                                  -> go_speed again

It is triggered when the ego's centre comes within `trigger[2]` metres of the point `trigger[:2]`. An agent
with `appear` is invisible (valid False), and frozen in place with its start speed, until its trigger fires
(a door opening, a lead car entering the scene); `vanish_after` seconds after its trigger it leaves the scene (a blocker that clears); at the path's end
it stops, or leaves when `end_vanish`. Speeds change at most by `accel` per second. A `follow` agent keeps a
gap behind the ego when the ego is ahead on its heading line (an emergency vehicle held up, not ramming). Progress along the path
is the agent's `s`; scripted obstacles that stand in a lane keep their (lane, s) assignment so that IDM traffic
queues behind them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .state import BEH, EGO, SimState

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


def phase_speed(sc: Script, t_act: np.ndarray, since: np.ndarray) -> np.ndarray:
    """The speed each scripted agent's current phase asks for (E, A): waiting, going or braking/holding."""
    active = np.isfinite(t_act)
    braking = active & (since >= sc.brake_at) & (since < sc.brake_at + sc.hold)
    return np.where(~active, sc.wait_speed, np.where(braking, 0.0, sc.go_speed))


def path_position(sc: Script, s: np.ndarray, index=...) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, segment heading, segment length) at arc lengths s on the script paths. s broadcasts against sc.cum[index][..., 0];
    `index` selects agents (e.g. (e, agent_indices)); extra trailing dims of s (times) are allowed."""
    cum, path = sc.cum[index], sc.path[index]  # (..., K), (..., K, 2)
    extra = s.ndim - (cum.ndim - 1)
    for _ in range(extra):
        cum, path = cum[..., None, :], path[..., None, :, :]
    K = cum.shape[-1]
    k = np.clip((cum[..., 1:] <= s[..., None]).sum(-1), 0, K - 2)
    c0 = np.take_along_axis(cum, k[..., None], -1)[..., 0]
    c1 = np.take_along_axis(cum, (k + 1)[..., None], -1)[..., 0]
    p0 = np.take_along_axis(path, k[..., None, None], -2)[..., 0, :]
    p1 = np.take_along_axis(path, (k + 1)[..., None, None], -2)[..., 0, :]
    w = np.where(c1 > c0, (s - c0) / np.maximum(c1 - c0, 1e-9), 0.0)[..., None]
    pos = p0 + (p1 - p0) * w
    seg = p1 - p0
    return pos[..., 0], pos[..., 1], np.arctan2(seg[..., 1], seg[..., 0]), np.hypot(seg[..., 0], seg[..., 1])


def script_step(state: SimState, dt: float) -> dict[str, np.ndarray]:
    """New (x, y, yaw, speed, accel, s, valid) of SCRIPTED agents and the updated trigger times."""
    sc = state.script
    m = state.behavior == BEH.SCRIPTED  # waiting invisible agents included
    t = state.t[:, None]  # (E, 1)
    ex, ey = state.x[:, EGO:EGO + 1], state.y[:, EGO:EGO + 1]
    d = np.hypot(sc.trigger[..., 0] - ex, sc.trigger[..., 1] - ey)
    fire = m & ~np.isfinite(sc.t_act) & ((sc.trigger[..., 2] < 0) | (d <= sc.trigger[..., 2]))
    t_act = np.where(fire, t, sc.t_act)
    since = t - t_act  # inf-safe: -inf while waiting
    active = np.isfinite(t_act)
    target = phase_speed(sc, t_act, since)
    # followers: with the ego ahead (within 60 m, its box overlapping the heading line's corridor) the speed is
    # capped so that braking at half the accel limit stops 4 m behind it: v <= v_ego + sqrt(2 b (gap - 4))
    c, s_ = np.cos(state.yaw), np.sin(state.yaw)
    dxe, dye = ex - state.x, ey - state.y
    lon, lat = dxe * c + dye * s_, -dxe * s_ + dye * c
    gap = lon - (state.length + state.length[:, EGO:EGO + 1]) / 2
    corridor = (state.width + state.width[:, EGO:EGO + 1]) / 2 + FOLLOW_MARGIN
    ahead = sc.follow & (lon > 0) & (lon < 60.0) & (np.abs(lat) < corridor)
    v_cap = np.maximum(state.speed[:, EGO:EGO + 1], 0.0) + np.sqrt(sc.accel * np.maximum(gap - 4.0, 0.0))
    target = np.where(ahead, np.minimum(target, v_cap), target)
    v = state.speed
    # a follower appearing behind the ego comes in no faster than it could still follow at
    v = np.where(fire & sc.follow & ahead, np.minimum(v, v_cap), v)
    frozen = sc.appear & ~active  # an actor that has not appeared yet keeps its place and speed
    v_new = np.where(frozen, v, v + np.clip(target - v, -sc.accel * dt, sc.accel * dt))
    length = sc.cum[..., -1]
    s_new = np.where(frozen, state.s, np.minimum(state.s + 0.5 * (v + v_new) * dt, length))
    at_end = s_new >= length - 1e-6
    v_new = np.where(at_end & ~sc.end_vanish, np.minimum(v_new, 0.0), v_new)
    px, py, heading, seg_len = path_position(sc, s_new)
    yaw = np.where(seg_len > 1e-6, heading, state.yaw)
    gone = (at_end & sc.end_vanish) | (active & (since >= sc.vanish_after))
    visible = np.where(sc.appear, active, True) & ~gone
    valid = np.where(m, visible & (state.valid | fire), state.valid)
    return {
        "x": np.where(m, px, state.x), "y": np.where(m, py, state.y),
        "yaw": np.where(m, yaw, state.yaw), "speed": np.where(m, v_new, state.speed),
        "accel": np.where(m, (v_new - v) / dt, state.accel), "s": np.where(m, s_new, state.s),
        "valid": valid, "t_act": t_act,
    }
