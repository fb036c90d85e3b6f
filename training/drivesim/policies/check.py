"""Plans checked against the perceived scene: when, if ever, does the ego driving a plan run into an agent?

One mechanism for two users: the takeover gate's PREDICTED_COLLISION trigger (`stack/takeover.py`, one plan) and
the learned planner's candidate check (`policies/learned.py`, every (path anchor, target speed) candidate of one
tick at once).

The ego follows each candidate's path (ego frame, from its centre) at the candidate's speed profile (the speed
[m/s] at each path point; the ego's current speed at its own position; constant acceleration in between), sampled
every `dt`; the agents move at constant velocity (their perceived speed along their heading). The first time step
at which the ego's box overlaps an agent's box, while the ego still moves faster than `moving_speed`, is the
candidate's collision time (a standing ego is run into, it does not collide). Agents already overlapping the ego now are not
counted: that collision has happened. Constant velocity is a poor forecast beyond a second or two: keep the
horizon short.
"""

from __future__ import annotations

import numpy as np

from ..geometry import obb_overlap
from ..sim.dynamics import DEFAULT_VEHICLE
from ..sim.perception import PerceivedScene


def _interp_rows(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """np.interp row by row: x (..., C), xp (C, N) increasing, fp (C, N) -> (..., C) (clamped at the ends)."""
    C, N = xp.shape
    i = np.clip((xp < x[..., None]).sum(-1), 1, N - 1)
    r = np.arange(C)
    x0, x1, f0, f1 = xp[r, i - 1], xp[r, i], fp[r, i - 1], fp[r, i]
    w = np.clip((x - x0) / np.maximum(x1 - x0, 1e-9), 0.0, 1.0)
    return f0 + w * (f1 - f0)


def collision_times(scene: PerceivedScene, paths: np.ndarray, profiles: np.ndarray, horizon: float,
                    dt: float = 0.1, moving_speed: float = 0.5, e: int = 0, margin: float = 0.0) -> np.ndarray:
    """(C,) the first time [s] (a multiple of dt, up to `horizon`) at which the ego driving candidate c overlaps
    an agent of env e's scene, inf where it does not (module doc). paths (C, P, 2) in the ego frame, profiles
    (C, P) [m/s] the speed at each path point; margin [m] widens the ego's box on each side (the controller
    does not follow a path exactly: it cuts corners)."""
    paths = np.asarray(paths, np.float64)
    C, P = paths.shape[:2]
    out = np.full(C, np.inf)
    a, valid = scene.agents[e], scene.agents_valid[e]
    steps = int(round(horizon / dt))
    if not valid.any() or P < 1 or C == 0 or steps < 1:
        return out
    a = a[valid]
    now = obb_overlap(0.0, 0.0, 0.0, DEFAULT_VEHICLE.length, DEFAULT_VEHICLE.width + 2 * margin, a[:, 0], a[:, 1],
                      a[:, 2], a[:, 4], a[:, 5])  # already overlapping (within the margin): nothing to avoid
    a = a[~now]
    if not len(a):
        return out
    pts = np.concatenate([np.zeros((C, 1, 2)), paths], 1)  # (C, P+1, 2): the ego's centre first
    prof = np.concatenate([np.full((C, 1), float(scene.ego_speed[e])), np.broadcast_to(profiles, (C, P))], 1)
    seg = np.linalg.norm(np.diff(pts, axis=1), axis=-1)  # (C, P)
    cum = np.concatenate([np.zeros((C, 1)), np.cumsum(seg, 1)], 1)
    heading = np.arctan2(np.diff(pts[..., 1], axis=1), np.diff(pts[..., 0], axis=1))  # (C, P) per segment
    # between two path points the speed changes at constant acceleration (what ramp_profiles assumes), so each
    # segment takes 2 seg / (v_i + v_i+1) and the distance at time tau into it is v_i tau + acc tau^2 / 2; exact from
    # standstill, where stepping ds = v(s) dt would never leave s = 0
    v_a, v_b = prof[:, :-1], prof[:, 1:]
    moves = seg > 1e-9
    tseg = np.where(moves, 2 * seg / np.maximum(v_a + v_b, 1e-9), 0.0)
    tseg = np.where(moves & (v_a + v_b <= 1e-9), np.inf, tseg)  # a segment to be driven at 0 m/s: the ego stands
    tcum = np.concatenate([np.zeros((C, 1)), np.cumsum(tseg, 1)], 1)  # (C, P+1) [s] at each point
    acc = np.where(moves, (v_b ** 2 - v_a ** 2) / (2 * np.maximum(seg, 1e-9)), 0.0)
    # every time step at once: arrays (T, C), time down the first axis
    r, ts = np.arange(C), dt * np.arange(1, steps + 1)
    t = ts[:, None]
    i = np.clip((tcum[None, :, 1:] <= t[..., None]).sum(-1), 0, P - 1)  # the segment driven at time t
    tau = t - tcum[r, i]
    s = np.minimum(cum[r, i] + v_a[r, i] * tau + 0.5 * acc[r, i] * tau * tau, cum[r, i + 1])
    v = np.maximum(v_a[r, i] + acc[r, i] * tau, 0.0)
    end = t >= tcum[None, :, -1]  # past the path's last point: it stays there (at its last speed)
    s, ev = np.where(end, cum[None, :, -1], s), np.where(end, prof[None, :, -1], v)
    ex, ey = _interp_rows(s, cum, pts[..., 0]), _interp_rows(s, cum, pts[..., 1])
    eyaw = heading[r, np.clip((cum[None, :, 1:] <= s[..., None]).sum(-1), 0, P - 1)]
    ax = a[None, :, 0] + a[None, :, 3] * np.cos(a[None, :, 2]) * ts[:, None]  # (T, N)
    ay = a[None, :, 1] + a[None, :, 3] * np.sin(a[None, :, 2]) * ts[:, None]
    hit = obb_overlap(ex[..., None], ey[..., None], eyaw[..., None], DEFAULT_VEHICLE.length,
                      DEFAULT_VEHICLE.width + 2 * margin,
                      ax[:, None], ay[:, None], a[None, None, :, 2], a[None, None, :, 4], a[None, None, :, 5])
    hit = hit.any(-1) & (ev > moving_speed)  # (T, C)
    first = np.argmax(hit, 0)
    return np.where(hit.any(0), ts[first], np.inf)
