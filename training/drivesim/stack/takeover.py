"""The takeover monitor's logic: when to take control away from the planner, and what to command then.

A takeover is declared, at the tick of sim time t, when
1. LOW_TTC: the constant-velocity time-to-collision between the ego (at its current speed, straight ahead)
   and an agent in front of it (oriented boxes) falls under `ttc_threshold` while stopping in that distance
   needs more than `max_decel` (creeping up to a queue at walking speed is not a takeover);
2. PREDICTED_COLLISION: the ego following the plan's path at the plan's speed profile overlaps an agent moving
   at constant velocity within `horizon` seconds, while the ego is still moving (a planner whose profile
   brakes in time does not trigger this);
3. MISSED_DEADLINE: no planner command for the tick arrived within the deadline (the node's timer decides);
4. INVALID_MESSAGE: a plan, scene or command with NaN or out-of-range values.
During a takeover (at least `duration` seconds of sim time, TakeAD's 2 s) the controller is the privileged
expert when the simulator offers one, otherwise a safe stop (full brake, wheels straight). Control returns
to the planner once the duration has passed and the planner's last command was valid and on time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from ..geometry import obb_overlap
from ..sim.dynamics import DEFAULT_VEHICLE
from ..sim.perception import PerceivedScene


class Cause(enum.IntEnum):  # drive_stack_msgs/TakeoverEvent CAUSE_* values
    LOW_TTC = 0
    PREDICTED_COLLISION = 1
    MISSED_DEADLINE = 2
    INVALID_MESSAGE = 3


@dataclass(frozen=True)
class TakeoverConfig:
    ttc_threshold: float = 1.0  # [s]
    max_decel: float = 4.0  # [m/s^2] a low TTC counts only if avoiding it needs harder braking than this
    horizon: float = 1.0  # [s] for the predicted-collision check (constant-velocity agents: keep it short)
    horizon_dt: float = 0.1  # [s]
    duration: float = 2.0  # [s] minimum takeover length (sim time)
    moving_speed: float = 0.5  # [m/s] the ego counts as moving above this


@dataclass
class Takeover:
    t: float
    cause: Cause
    detail: str
    ttc: float


def ttc_ahead(scene: PerceivedScene, e: int = 0, max_t: float = 5.0, dt: float = 0.05) -> float:
    """Time-to-collision [s] of the ego driving straight on at its current speed with agents in front
    (x > 0) moving at constant velocity: the first sampled time (every dt up to max_t) at which the oriented
    boxes overlap. inf if none; agents already overlapping are not counted (that collision happened)."""
    a, valid = scene.agents[e], scene.agents_valid[e] & (scene.agents[e][:, 0] > 0)
    if not valid.any():
        return float("inf")
    a = a[valid]
    ts = np.arange(dt, max_t + 1e-9, dt)[:, None]  # (T, 1)
    ax = a[None, :, 0] + a[None, :, 3] * np.cos(a[None, :, 2]) * ts
    ay = a[None, :, 1] + a[None, :, 3] * np.sin(a[None, :, 2]) * ts
    ex = scene.ego_speed[e] * ts
    hit = obb_overlap(ex, 0.0, 0.0, DEFAULT_VEHICLE.length, DEFAULT_VEHICLE.width,
                      ax, ay, a[None, :, 2], a[None, :, 4], a[None, :, 5])
    now = obb_overlap(0.0, 0.0, 0.0, DEFAULT_VEHICLE.length, DEFAULT_VEHICLE.width, a[:, 0], a[:, 1], a[:, 2],
                      a[:, 4], a[:, 5])
    hit &= ~now[None]
    rows = np.flatnonzero(hit.any(axis=1))
    return float(ts[rows[0], 0]) if len(rows) else float("inf")


def predicted_collision(scene: PerceivedScene, path: np.ndarray, speed_profile: np.ndarray, cfg: TakeoverConfig,
                        e: int = 0) -> tuple[bool, float]:
    """Does the ego, moving along `path` (P, 2; ego frame) at the plan's speed profile (P,) [m/s at each path
    point], overlap an agent (constant velocity) within the horizon while still moving? Agents already
    overlapping now are not counted (that collision happened). Returns (collides, time of first overlap [s])."""
    a, valid = scene.agents[e], scene.agents_valid[e]
    if not valid.any() or len(path) < 2:
        return False, float("inf")
    pts = np.concatenate([[[0.0, 0.0]], path])
    prof = np.concatenate([[scene.ego_speed[e]], np.broadcast_to(speed_profile, (len(path),))])
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    # integrate ds = v(s) dt along the path
    steps = int(round(cfg.horizon / cfg.horizon_dt))
    s = np.zeros(steps)
    v = np.zeros(steps)
    sk = 0.0
    for k in range(steps):
        vk = float(np.interp(sk, cum, prof))
        sk = min(sk + vk * cfg.horizon_dt, cum[-1])
        s[k], v[k] = sk, vk
    ts = cfg.horizon_dt * np.arange(1, steps + 1)
    ex = np.interp(s, cum, pts[:, 0])
    ey = np.interp(s, cum, pts[:, 1])
    k = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(seg) - 1)
    d = np.diff(pts, axis=0)[k]
    eyaw = np.arctan2(d[:, 1], d[:, 0])
    ax = a[None, :, 0] + a[None, :, 3] * np.cos(a[None, :, 2]) * ts[:, None]
    ay = a[None, :, 1] + a[None, :, 3] * np.sin(a[None, :, 2]) * ts[:, None]
    hit = obb_overlap(ex[:, None], ey[:, None], eyaw[:, None], DEFAULT_VEHICLE.length, DEFAULT_VEHICLE.width,
                      ax, ay, a[None, :, 2], a[None, :, 4], a[None, :, 5]) & valid[None]
    now = obb_overlap(0.0, 0.0, 0.0, DEFAULT_VEHICLE.length, DEFAULT_VEHICLE.width, a[:, 0], a[:, 1], a[:, 2],
                      a[:, 4], a[:, 5]) & valid
    hit &= ~now[None] & (v[:, None] > cfg.moving_speed)
    rows = np.flatnonzero(hit.any(axis=1))
    return (True, float(ts[rows[0]])) if len(rows) else (False, float("inf"))


def invalid_fields(values: dict[str, np.ndarray | float]) -> list[str]:
    """Names of fields holding NaN/inf values."""
    return [k for k, v in values.items() if not np.all(np.isfinite(np.asarray(v, dtype=np.float64)))]


class TakeoverLogic:
    def __init__(self, cfg: TakeoverConfig = TakeoverConfig()):
        self.cfg = cfg
        self.active: Takeover | None = None
        self.history: list[Takeover] = []

    def check_plan(self, t: float, scene: PerceivedScene, path: np.ndarray, speed_profile: np.ndarray) -> Takeover | None:
        """Conditions 1, 2 and 4 for the plan answering the tick at t. Returns a new takeover or None."""
        bad = invalid_fields({"path": path, "speed_profile": speed_profile, "ego_speed": scene.ego_speed,
                              "agents": scene.agents[0][scene.agents_valid[0]]})
        if bad:
            return self.declare(t, Cause.INVALID_MESSAGE, "non-finite values in " + ", ".join(bad), float("nan"))
        ttc = ttc_ahead(scene)
        v = float(scene.ego_speed[0])
        need = v / (2.0 * ttc) if np.isfinite(ttc) and ttc > 0 else 0.0  # stop within the distance v * ttc
        if ttc < self.cfg.ttc_threshold and v > self.cfg.moving_speed and need > self.cfg.max_decel:
            return self.declare(t, Cause.LOW_TTC, f"time to collision {ttc:.2f} s < {self.cfg.ttc_threshold} s at "
                                f"{v:.1f} m/s (needs {need:.1f} m/s^2 to stop)", ttc)
        hit, when = predicted_collision(scene, path, speed_profile, self.cfg)
        if hit:
            return self.declare(t, Cause.PREDICTED_COLLISION, f"the plan collides in {when:.1f} s", ttc)
        return None

    def declare(self, t: float, cause: Cause, detail: str, ttc: float = float("inf")) -> Takeover | None:
        """Start a takeover (None if one is already running: it is not restarted)."""
        if self.active is not None:
            return None
        self.active = Takeover(t, cause, detail, ttc)
        self.history.append(self.active)
        return self.active

    def in_control(self, t: float, planner_ok: bool) -> bool:
        """Whether the monitor keeps control at tick t; releases once the duration passed and the planner is ok."""
        if self.active is None:
            return False
        if t - self.active.t >= self.cfg.duration - 1e-9 and planner_ok:
            self.active = None
            return False
        return True

    @staticmethod
    def safe_stop() -> tuple[float, float, float]:
        """(throttle, steer, brake) of the safe stop."""
        return 0.0, 0.0, 1.0
