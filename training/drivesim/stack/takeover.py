"""The takeover gate: when to take control away from the planner, and what to command then. Pure library code
(no rclpy): the ROS `takeover_monitor` node is a thin adapter around `TakeoverGate`, and the closed loop runs the
same gate offline (`loop.drive(..., gate=TakeoverGate(...), expert=...)`).

A takeover is declared, at the tick of sim time t, when
1. LOW_TTC: the constant-velocity time-to-collision between the ego (at its current speed, straight ahead)
   and an agent in front of it (oriented boxes) falls under `ttc_threshold` while stopping in that distance
   needs more than `max_decel` (creeping up to a queue at walking speed is not a takeover);
2. PREDICTED_COLLISION: the ego following the plan's path at the plan's speed profile overlaps an agent moving
   at constant velocity within `horizon` seconds, while the ego is still moving (a planner whose profile
   brakes in time does not trigger this);
3. MISSED_DEADLINE: no planner command for the tick arrived within `deadline` seconds of wall time after the
   tick, counted only once the stack has declared itself ready (models loaded, kernels compiled): a cold start
   is not a takeover;
4. INVALID_MESSAGE: a plan, scene or command with NaN or out-of-range values;
5. STEER_DISAGREEMENT (shadow mode, off unless `steer_threshold` > 0; TakeAD uses 0.2): the expert's steering
   differs from the planner's by more than the threshold while the ego moves (at least `steer_min_speed`: a wheel
   angle at a standstill moves nothing; three in four of these takeovers on our Town04 routes came at a standstill);
6. STALLED (shadow mode, off unless `stall_time` > 0; our addition): the ego has stood (under `moving_speed`) for
   `stall_time` seconds of ticks in a row on which the expert would drive: its throttle above its brake and its
   plan's speed profile reaching `stall_speed` (the expert creeping up a queue or to a stop line a few metres
   ahead at walking pace, while the planner waits, is not a stall; `stall_speed` 0: the command alone). The
   collision triggers only ever hand over where the planner is about to hit something, so the expert's takeovers
   teach caution alone; a planner that stops behind a parked car or waits at a clear junction is failing too
   (Bench2Drive's blocked infraction), and this is the takeover that shows it where to go.
During a takeover (at least `duration` seconds of sim time, TakeAD's 2 s) the controller is the privileged
expert when the simulator offers one, otherwise a safe stop: the minimal-risk manoeuvre (MRM). Control returns
to the planner once the duration has passed and the planner's last command was valid and on time.

The minimal-risk manoeuvre (`MrmState`, recorded per tick as `TakeoverGate.mrm` and in each `Decision`):
- COMFORT: the wanted deceleration goes from the car's current one to `mrm_decel` with a jerk of at most
  `mrm_jerk` and is turned into a brake command through the vehicle model (`sim.dynamics.brake_for_decel`);
- the steering follows the planner's last valid path (the last plan the gate saw, moved into the current ego
  frame with the scenes' odometry), else the route ahead in the last scene, else the wheels stay straight, with
  the deployed controller's lateral part (`sim.control.PIDController.steer`: pure pursuit + PD);
- EMERGENCY: full brake (steering still along the path) as soon as the time-to-collision with an agent ahead
  (`ttc_ahead`) leaves less distance than the comfortable stop needs (`mrm_stopping_distance`); it holds until
  the car stands;
- STOPPED: below `moving_speed`, full brake holds the car; NONE: the planner or the expert drives.
Before any readable scene (speed and surroundings unknown) the safe stop is EMERGENCY with the wheels straight.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from ..geometry import obb_overlap
from ..policies.check import collision_times
from ..sim.control import PIDController
from ..sim.dynamics import DEFAULT_VEHICLE, brake_for_decel
from ..sim.perception import PerceivedScene
from ..sim.state import DT


class Cause(enum.IntEnum):  # drive_stack_msgs/TakeoverEvent CAUSE_* values
    LOW_TTC = 0
    PREDICTED_COLLISION = 1
    MISSED_DEADLINE = 2
    INVALID_MESSAGE = 3
    STEER_DISAGREEMENT = 4
    STALLED = 5


@dataclass(frozen=True)
class TakeoverConfig:
    ttc_threshold: float = 1.0  # [s]
    max_decel: float = 4.0  # [m/s^2] a low TTC counts only if avoiding it needs harder braking than this
    horizon: float = 1.0  # [s] for the predicted-collision check (constant-velocity agents: keep it short)
    horizon_dt: float = 0.1  # [s]
    duration: float = 2.0  # [s] minimum takeover length (sim time)
    moving_speed: float = 0.5  # [m/s] the ego counts as moving above this
    deadline: float = 0.3  # [s wall] after a tick, without a planner command: MISSED_DEADLINE (once ready)
    expert_wait: float = 0.1  # [s wall] under a takeover, how long to wait for the expert before a safe stop
    planner_ok_window: float = 0.151  # [s sim] the planner is healthy if it answered one of the last 3 ticks
    plan_wait: float = 0.1  # [s wall] a planner command whose tick's plan or scene has not arrived yet (separate
    # topics: under load the command can come first) waits this long for them, then is decided without the plan check
    steer_threshold: float = 0.0  # shadow trigger: |steer_expert - steer_planner| > this (0: off; TakeAD uses 0.2)
    steer_min_speed: float = 0.5  # [m/s] ... while the ego drives at least this fast (0: at a standstill too, as
    # before session 27)
    stall_time: float = 0.0  # [s sim] shadow trigger: the ego has stood this long while the expert would drive (0: off)
    stall_speed: float = 2.0  # [m/s] ... and while the expert's plan (`offer_expert_plan`) reaches this speed: at
    # 9 in 10 of the STALLED takeovers of session 26's rounds the expert's target was a creep (0.3-1.2 m/s) to a stop
    # point a few metres ahead (0: the expert's command alone, as before session 27)
    mrm_decel: float = 3.0  # [m/s^2] the safe stop's comfortable deceleration (minimal-risk manoeuvre)
    mrm_jerk: float = 5.0  # [m/s^3] the safe stop's deceleration changes at most this fast (full brake, when
    # the time-to-collision needs it, at once)

    def __post_init__(self):
        for name in ("ttc_threshold", "max_decel", "horizon", "horizon_dt", "duration", "deadline", "expert_wait",
                     "planner_ok_window", "plan_wait", "mrm_decel", "mrm_jerk"):
            v = getattr(self, name)
            zero_ok = name in ("ttc_threshold", "max_decel", "horizon")  # 0 switches that check off
            if not (isinstance(v, int | float) and np.isfinite(v) and (v >= 0 if zero_ok else v > 0)):
                raise ValueError(f"TakeoverConfig.{name} = {v!r}: expected a {'non-negative' if zero_ok else 'positive'}"
                                 " number")
        for name in ("steer_threshold", "steer_min_speed", "stall_time", "stall_speed"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and np.isfinite(v) and v >= 0):
                raise ValueError(f"TakeoverConfig.{name} = {v!r}: expected a non-negative number (0: off)")


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
    overlapping now are not counted (that collision happened). Returns (collides, time of first overlap [s]).
    The check is `policies.check.collision_times`, the one the learned planner runs on its candidates."""
    path = np.asarray(path, np.float64)
    if len(path) < 2:
        return False, float("inf")
    when = float(collision_times(scene, path[None], np.broadcast_to(speed_profile, (len(path),))[None],
                                 cfg.horizon, cfg.horizon_dt, cfg.moving_speed, e)[0])
    return bool(np.isfinite(when)), when


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
        """(throttle, steer, brake) of a stop that knows nothing (no speed, no path): full brake, wheels
        straight. The gate's safe stop is the minimal-risk manoeuvre (`TakeoverGate`), which knows more."""
        return 0.0, 0.0, 1.0


PLANNER, EXPERT, SAFE_STOP = "planner", "expert", "safe_stop"


class MrmState(enum.Enum):
    """The minimal-risk manoeuvre's state (the module docstring)."""

    NONE = "NONE"  # the planner or the expert drives
    COMFORT = "COMFORT"  # jerk-limited braking at mrm_decel along the path
    EMERGENCY = "EMERGENCY"  # full brake along the path: the time-to-collision needs it
    STOPPED = "STOPPED"  # below moving_speed, held with full brake


@dataclass(frozen=True)
class Mrm:
    """The minimal-risk manoeuvre at one tick: its state, the deceleration it asks for [m/s^2] (full brake's
    in EMERGENCY, 0 when NONE or STOPPED) and what its steering follows: 'plan' (the planner's last valid path),
    'route' (the route ahead in the last scene) or 'straight' (neither); '' when NONE."""

    state: MrmState = MrmState.NONE
    decel: float = 0.0
    path: str = ""


def mrm_stopping_distance(v: float, a0: float, decel: float, jerk: float) -> float:
    """Distance [m] to stop from speed v [m/s] when the deceleration goes from a0 towards `decel` [m/s^2] at
    `jerk` [m/s^3] and then stays (a0 above `decel`: counted as `decel` all the way, the longer stop)."""
    v, a0 = max(float(v), 0.0), min(max(float(a0), 0.0), decel)
    tau = (decel - a0) / jerk  # the ramp's duration
    dv = a0 * tau + 0.5 * jerk * tau * tau
    if dv >= v:  # stands before the ramp ends: a0 T + j T^2 / 2 = v
        T = (-a0 + np.sqrt(a0 * a0 + 2.0 * jerk * v)) / jerk
        return float(v * T - 0.5 * a0 * T * T - jerk * T ** 3 / 6.0)
    ramp = v * tau - 0.5 * a0 * tau * tau - jerk * tau ** 3 / 6.0
    return float(ramp + (v - dv) ** 2 / (2.0 * decel))


def rebase_path(path: np.ndarray, pose_from: np.ndarray, pose_to: np.ndarray) -> np.ndarray:
    """(P, 2) points in the ego frame of map pose `pose_from` (x, y, yaw) -> the ego frame of `pose_to`."""
    c, s = np.cos(pose_from[2]), np.sin(pose_from[2])
    wx = pose_from[0] + path[:, 0] * c - path[:, 1] * s - pose_to[0]
    wy = pose_from[1] + path[:, 0] * s + path[:, 1] * c - pose_to[1]
    c, s = np.cos(pose_to[2]), np.sin(pose_to[2])
    return np.stack([wx * c + wy * s, -wx * s + wy * c], -1)


@dataclass
class Decision:
    """What the gate says at one moment of a tick: the command to apply (None: not yet, e.g. a takeover waits
    for the expert's command) with who produced it, a takeover that was just declared (to announce), and the
    minimal-risk manoeuvre's state (NONE unless the safe stop drives)."""

    t: float
    command: tuple[float, float, float] | None  # throttle, steer, brake
    controller: str = ""  # PLANNER | EXPERT | SAFE_STOP (with a command)
    event: Takeover | None = None
    mrm: Mrm = Mrm()


def command_problems(throttle: float, steer: float, brake: float) -> list[str]:
    """Why a command may not be applied (empty if fine): non-finite or out-of-range fields."""
    bad = []
    for name, v, lo, hi in (("throttle", throttle, 0.0, 1.0), ("steer", steer, -1.0, 1.0), ("brake", brake, 0.0, 1.0)):
        if not np.isfinite(v):
            bad.append(f"{name} is {v}")
        elif v < lo - 1e-6 or v > hi + 1e-6:
            bad.append(f"{name}={v:.3f} outside [{lo}, {hi}]")
    return bad


class TakeoverGate:
    """The one takeover rule, tick by tick, for one vehicle.

    The caller reports what arrives, with the wall time where it matters: `new_tick(t, wall)` (the simulator's
    clock), `offer_scene` / `offer_plan` (the perceived scene and the plan of a tick), `offer_expert(t, ...)` (the
    privileged expert's command, when the simulator offers one) and `offer_planner(t, ...)` (the planner's
    command), and calls `poll(wall)` regularly (the deadline and the wait for the expert). Each returns a
    `Decision` when there is something to do (a command to apply, a takeover to announce), else None. There is
    at most one command per tick; later offers for a decided tick only count as signs of life. `set_ready()`:
    the stack has loaded its models and compiled its kernels; deadlines count only from then on (a cold start is
    not a takeover). A planner command that arrives before its tick's scene or plan (separate topics) is held and
    decided when both are in (`offer_scene` / `offer_plan` return that decision), or by `poll`, unchecked, after
    `plan_wait`; one that arrives before its tick (the clock is another writer's topic) is kept until `new_tick`
    of that tick, which returns its decision.

    State: the current tick and its wall time, whether it has its command, the planner's last valid on-time
    command (hand-back needs a healthy planner), the active takeover and the history, how many ticks each
    controller drove (`drove`), and the minimal-risk manoeuvre's (`mrm`: the last decided tick's; its ramp, the
    last valid plan and the last scene it steers and brakes by). Offer scenes and plans also under a takeover:
    the safe stop uses the newest."""

    def __init__(self, cfg: TakeoverConfig | None = None, expert_offered: bool = False):
        self.cfg = cfg or TakeoverConfig()
        self.logic = TakeoverLogic(self.cfg)
        self.expert_offered = expert_offered
        self.expert_plans = False  # an expert plan has been offered (`offer_expert_plan`)
        self.ticks = 0  # ticks seen (`new_tick`)
        self.ready = False
        self.tick_t: float | None = None
        self.tick_wall = 0.0
        self.decided: float | None = None
        self.last_ok_t = -np.inf
        self.scene: dict[float, PerceivedScene] = {}
        self.plan: dict[float, tuple[np.ndarray, np.ndarray]] = {}
        self.expert: dict[float, tuple[float, float, float]] = {}
        self.expert_speed: dict[float, float] = {}  # the top speed of the expert's plan of a tick [m/s]
        self.drove: dict[str, int] = {PLANNER: 0, EXPERT: 0, SAFE_STOP: 0}
        self._unannounced: Takeover | None = None
        self.mrm = Mrm()
        self.last_plan: tuple[float, np.ndarray, np.ndarray | None] | None = None  # t, path, ego pose then
        self.last_scene: tuple[float, PerceivedScene] | None = None
        self._mrm_t: float | None = None  # the tick of the last MRM command (its ramp continues from there)
        self._mrm_decel = 0.0  # the deceleration it asked for then [m/s^2]
        self._lateral = PIDController(1, dt=DT)  # the deployed controller's lateral part steers the MRM
        self._stall_since: float | None = None  # the first of the ticks in a row the ego stood and the expert drove
        self._held: tuple[float, float, float, float] | None = None  # a planner command waiting for its plan/scene
        self._early: tuple | None = None  # a planner command for a tick whose clock has not come yet

    @property
    def history(self) -> list[Takeover]:
        return self.logic.history

    @property
    def active(self) -> Takeover | None:
        return self.logic.active

    def set_ready(self) -> None:
        self.ready = True

    def planner_ok(self, t: float) -> bool:
        return self.last_ok_t >= t - self.cfg.planner_ok_window

    @property
    def mrm_state(self) -> MrmState:
        return self.mrm.state

    # ------------------------------------------------------------------ inputs
    def new_tick(self, t: float, wall: float) -> Decision | None:
        """A new tick of sim time t. If a takeover holds control through this tick whatever the planner says
        (and the expert's command, when one is offered, is here), its command is decided now."""
        t = round(float(t), 3)
        if self.tick_t is not None and t <= self.tick_t:
            return None  # a re-published tick
        self.tick_t, self.tick_wall, self.decided, self._held = t, wall, None, None
        self.ticks += 1
        for store in (self.scene, self.plan, self.expert, self.expert_speed):
            for k in [k for k in store if k < t - 0.5]:
                del store[k]
        d = None
        if self.logic.in_control(t, self.planner_ok(t)) and (not self.expert_offered or t in self.expert):
            d = self._command(t, *self._takeover_command(t))
        early = self._early
        if early is not None and early[0] <= t:
            self._early = None
            if early[0] == t:  # its command came first: offered now, as if it had come after the tick
                d = self.offer_planner(*early) or d
        return d

    def offer_scene(self, t: float, scene: PerceivedScene) -> Decision | None:
        t = round(float(t), 3)
        self.scene[t] = scene
        readable = not invalid_fields({"ego_speed": scene.ego_speed, "route": scene.route[0][scene.route_valid[0]]})
        if readable and (self.last_scene is None or t >= self.last_scene[0]):  # (a NaN scene would brake by NaN)
            self.last_scene = (t, scene)
        if self.last_plan is not None and self.last_plan[0] == t and self.last_plan[2] is None:
            self.last_plan = (t, self.last_plan[1], _pose(scene))
        return self._release(t)

    def offer_plan(self, t: float, path: np.ndarray, speed_profile: np.ndarray) -> Decision | None:
        t = round(float(t), 3)
        path = np.asarray(path, np.float64)
        self.plan[t] = (path, np.asarray(speed_profile, np.float64))
        if (path.ndim == 2 and len(path) >= 2 and path.shape[1] == 2 and np.isfinite(path).all()
                and (self.last_plan is None or t >= self.last_plan[0])):
            scene = self.scene.get(t)
            self.last_plan = (t, path, None if scene is None else _pose(scene))
        return self._release(t)

    def offer_expert(self, t: float, throttle: float, steer: float, brake: float) -> Decision | None:
        t = round(float(t), 3)
        self.expert_offered = True
        self.expert[t] = (float(throttle), float(steer), float(brake))
        if t == self.tick_t and self.logic.active is not None and self.decided != t:
            return self._command(t, *self._takeover_command(t))
        return self._release(t)  # a planner command held for it

    def offer_expert_plan(self, t: float, speed_profile: np.ndarray) -> Decision | None:
        """The expert's plan of tick t (its speed profile [m/s]): STALLED asks whether the expert would drive off
        (`stall_speed`), not only whether it would press the throttle. Non-finite values are ignored."""
        t = round(float(t), 3)
        self.expert_plans = True
        v = np.asarray(speed_profile, np.float64)
        v = v[np.isfinite(v)]
        self.expert_speed[t] = float(v.max()) if len(v) else 0.0
        return self._release(t)  # a planner command held for it

    def offer_planner(self, t: float, throttle: float, steer: float, brake: float,
                      invalid: str | None = None) -> Decision | None:
        """The planner's command for tick t (`invalid`: why its plan or scene could not be read, if so)."""
        t = round(float(t), 3)
        bad = command_problems(throttle, steer, brake)
        if self.tick_t is None or t > self.tick_t:  # its tick's clock is late (a reader matched late, a loaded
            self._early = (t, throttle, steer, brake, invalid)  # executor): kept, and offered when the tick comes
            return None
        if t != self.tick_t:  # stale (under a takeover the expert's loop runs ahead of the planner's): alive, though
            if not bad and self.tick_t is not None and t < self.tick_t:
                self.last_ok_t = max(self.last_ok_t, t)
            return None
        if bad:
            return self._takeover(t, Cause.INVALID_MESSAGE, "planner command: " + ", ".join(bad))
        if self.decided == t:  # answered already (a takeover): the planner is alive and valid
            self.last_ok_t = t
            return None
        if self.logic.active is None and invalid is None and self._awaits(t):
            self._held = (t, float(throttle), float(steer), float(brake))  # decided when they arrive (or in poll)
            return None
        return self._planner_decision(t, throttle, steer, brake, invalid)

    def inert_triggers(self, after: int = 40) -> list[str]:
        """The shadow triggers that are configured but cannot fire on what `after` ticks have offered (empty before
        that): the steering and stall triggers without any expert command (a world without a shadow expert, e.g.
        CARLA through the bridge); STALLED by the plan's speed without any expert plan. A monitor logs them once."""
        if self.ticks < after:
            return []
        out = []
        if not self.expert_offered:
            on = [f"{n} {getattr(self.cfg, n)}" for n in ("steer_threshold", "stall_time") if getattr(self.cfg, n) > 0]
            if on:
                out.append(f"{', '.join(on)} set, but no expert command in {self.ticks} ticks: the steering and stall "
                           "triggers need the shadow expert's command (the pseudo-simulator's expert topics)")
        elif self.cfg.stall_time > 0 and self.cfg.stall_speed > 0 and not self.expert_plans:
            out.append(f"stall_time {self.cfg.stall_time} with stall_speed {self.cfg.stall_speed}, but no expert plan "
                       f"in {self.ticks} ticks: STALLED never fires (publish the expert's plan, or stall_speed 0 to "
                       "read its command alone)")
        return out

    def _awaits(self, t: float) -> bool:
        """Whether the planner's decision of tick t still waits for something it reads: the tick's plan and scene;
        with the shadow triggers on and an expert offered, the expert's command, and its plan where STALLED reads
        the plan's speed and the expert's plans come at all. (In ROS they race the planner's command: deciding
        without them would skip the steering trigger that tick and restart the stall count.)"""
        if t not in self.plan or t not in self.scene:
            return True
        shadow = self.expert_offered and (self.cfg.steer_threshold > 0 or self.cfg.stall_time > 0)
        if shadow and t not in self.expert:
            return True
        return (shadow and self.expert_plans and self.cfg.stall_time > 0 and self.cfg.stall_speed > 0
                and t not in self.expert_speed)

    def _release(self, t: float, wall: float | None = None) -> Decision | None:
        """The held planner command of tick t, decided now: its plan and scene have arrived, or (wall given) it
        has waited `plan_wait` since the tick without them (then without what is missing)."""
        h = self._held
        if h is None or h[0] != t or t != self.tick_t or self.decided == t:
            return None
        if wall is None and self._awaits(t):
            return None
        if wall is not None and wall - self.tick_wall <= self.cfg.plan_wait:
            return None
        self._held = None
        return self._planner_decision(*h)

    def _planner_decision(self, t: float, throttle: float, steer: float, brake: float,
                          invalid: str | None = None) -> Decision | None:
        """The planner's valid, on-time command of tick t: the plan check and the shadow triggers, then who drives."""
        if self.logic.active is None:
            if invalid is not None:
                return self._takeover(t, Cause.INVALID_MESSAGE, invalid, float("nan"))
            plan, scene = self.plan.get(t), self.scene.get(t)
            new = self.logic.check_plan(t, scene, *plan) if plan is not None and scene is not None else None
            ex = self.expert.get(t)
            moving = self.cfg.steer_min_speed <= 0 or (scene is not None
                                                       and float(scene.ego_speed[0]) >= self.cfg.steer_min_speed)
            if new is None and ex is not None and self.cfg.steer_threshold > 0 and moving \
                    and abs(ex[1] - float(steer)) > self.cfg.steer_threshold:
                new = self.logic.declare(t, Cause.STEER_DISAGREEMENT, f"expert steers {ex[1]:+.2f}, planner "
                                         f"{float(steer):+.2f} (threshold {self.cfg.steer_threshold})", float("inf"))
            if new is None:
                new = self._stalled(t, scene, ex)
            if new is not None:
                self._unannounced = new
                return self._takeover_now(t)
        self.last_ok_t = t
        if self.logic.in_control(t, planner_ok=True):
            return self._takeover_now(t)
        return self._command(t, (float(throttle), float(steer), float(brake)), PLANNER)

    def poll(self, wall: float) -> Decision | None:
        """The watchdog: the expert is late under a takeover (a safe stop for this tick), or the planner missed
        the deadline (a takeover, once the stack is ready or the planner has answered a tick)."""
        t = self.tick_t
        if t is None or self.decided == t:
            return None
        if self._held is not None:
            return self._release(t, wall)
        waited = wall - self.tick_wall
        if self.logic.active is not None and self.expert_offered and waited > self.cfg.expert_wait:
            return self._command(t, self._safe_stop(t), SAFE_STOP)
        if waited > self.cfg.deadline and (self.ready or self.last_ok_t > -np.inf):
            return self._takeover(t, Cause.MISSED_DEADLINE, f"no planner command {self.cfg.deadline:.2f} s after the tick")
        return None

    def _stalled(self, t: float, scene: PerceivedScene | None, ex: tuple[float, float, float] | None) -> Takeover | None:
        """STALLED (the module docstring): counts the planner's ticks in a row on which the ego stands and the expert
        would drive off (its throttle, and its plan's top speed when `stall_speed` > 0; a tick whose expert plan has
        not been offered does not count); any takeover starts the count again; the takeover once they span
        `stall_time`."""
        if self.cfg.stall_time <= 0:
            return None
        standing = scene is not None and float(scene.ego_speed[0]) < self.cfg.moving_speed
        drives_off = self.cfg.stall_speed <= 0 or self.expert_speed.get(t, 0.0) >= self.cfg.stall_speed
        if not (standing and ex is not None and ex[0] > ex[2] and ex[0] > 0.0 and drives_off):
            self._stall_since = None
            return None
        if self._stall_since is None:
            self._stall_since = t
        stood = t - self._stall_since
        if stood < self.cfg.stall_time - 1e-6:
            return None
        self._stall_since = None
        plan = f", its plan to {self.expert_speed[t]:.1f} m/s" if t in self.expert_speed else ""
        return self.logic.declare(t, Cause.STALLED, f"stood {stood:.2f} s where the expert drives (throttle "
                                  f"{ex[0]:.2f}{plan}; stall_time {self.cfg.stall_time})", float("inf"))

    # ------------------------------------------------------------------ decisions
    def _takeover(self, t: float, cause: Cause, detail: str, ttc: float = float("inf")) -> Decision | None:
        new = self.logic.declare(t, cause, detail, ttc)
        if new is not None:
            self._unannounced = new
        return self._takeover_now(t)

    def _takeover_now(self, t: float) -> Decision | None:
        """The takeover's command for tick t if it can be given now (the expert's, or a safe stop when no expert
        is offered); else only the announcement of a new takeover, if there is one."""
        if self.decided == t or (self.expert_offered and t not in self.expert):
            return self._command(t, None, "")
        return self._command(t, *self._takeover_command(t))

    def _takeover_command(self, t: float) -> tuple[tuple[float, float, float], str]:
        ex = self.expert.get(t)
        return (ex, EXPERT) if ex is not None else (self._safe_stop(t), SAFE_STOP)

    def _command(self, t: float, cmd: tuple[float, float, float] | None, controller: str) -> Decision | None:
        ev, self._unannounced = self._unannounced, None
        if cmd is None:
            return Decision(t, None, "", ev, self.mrm) if ev is not None else None
        self.decided = t
        self.drove[controller] += 1
        if controller != SAFE_STOP:  # the planner or the expert drives: no manoeuvre
            self.mrm, self._mrm_t = Mrm(), None
        if controller != PLANNER:  # STALLED counts the planner's own ticks only
            self._stall_since = None
        return Decision(t, cmd, controller, ev, self.mrm)

    # ------------------------------------------------------------------ the minimal-risk manoeuvre
    def _safe_stop(self, t: float) -> tuple[float, float, float]:
        """The safe stop's command for tick t (the module docstring), from the newest scene (speed, odometry,
        agents) and the last valid plan; updates `mrm` and the ramp."""
        cfg = self.cfg
        scene = self.last_scene[1] if self.last_scene is not None else None
        v = float(scene.ego_speed[0]) if scene is not None else 0.0
        starting = self._mrm_t is None
        if scene is None:  # no scene yet: speed and surroundings unknown, full brake with the wheels straight
            self.mrm = Mrm(MrmState.EMERGENCY, DEFAULT_VEHICLE.max_brake, "straight")  # (held once scenes come)
            return self.logic.safe_stop()
        if starting:  # the ramp starts from the deceleration the car has now
            acc = scene.ego_accel if scene is not None else None
            known = acc is not None and np.isfinite(acc[0])
            self._mrm_decel = min(max(-float(acc[0]), 0.0), DEFAULT_VEHICLE.max_brake) if known else 0.0
            self._lateral.reset()
        dt = DT if starting else min(max(t - self._mrm_t, 0.0), 0.5)
        self._mrm_t = t
        path, along = self._mrm_path(scene)
        steer = 0.0
        if path is not None:
            if starting:  # the derivative starts from this tick's pure-pursuit angle: no kick from 0
                self._lateral.steer(path[None], np.array([v]))
            steer = float(self._lateral.steer(path[None], np.array([v]))[0])
            steer = steer if np.isfinite(steer) else 0.0
        if v < cfg.moving_speed:
            self.mrm, self._mrm_decel = Mrm(MrmState.STOPPED, 0.0, along), 0.0
            return 0.0, steer, 1.0
        if self.mrm.state is MrmState.EMERGENCY or self._emergency(scene, v):
            self.mrm = Mrm(MrmState.EMERGENCY, DEFAULT_VEHICLE.max_brake, along)
            self._mrm_decel = cfg.mrm_decel  # (held until the car stands)
            return 0.0, steer, 1.0
        a = self._mrm_decel + float(np.clip(cfg.mrm_decel - self._mrm_decel, -cfg.mrm_jerk * dt, cfg.mrm_jerk * dt))
        self.mrm, self._mrm_decel = Mrm(MrmState.COMFORT, a, along), a
        return 0.0, steer, brake_for_decel(a, v)

    def _emergency(self, scene: PerceivedScene | None, v: float) -> bool:
        """The comfortable stop needs more distance than the time-to-collision with an agent ahead leaves."""
        if scene is None or not scene.agents_valid[0].any():
            return False
        ttc = ttc_ahead(scene)
        return bool(np.isfinite(ttc) and mrm_stopping_distance(v, self._mrm_decel, self.cfg.mrm_decel,
                                                                self.cfg.mrm_jerk) > v * ttc)

    def _mrm_path(self, scene: PerceivedScene | None) -> tuple[np.ndarray | None, str]:
        """What the safe stop steers along, in the newest scene's ego frame: the last valid plan (moved there by
        the odometry of its tick and of the scene), else the scene's route ahead, else nothing (straight)."""
        scene_t = self.last_scene[0] if self.last_scene is not None else None
        if self.last_plan is not None:
            tp, path, pose = self.last_plan
            now = _pose(scene) if scene is not None else None
            if scene is None or tp == scene_t:
                here = path
            elif pose is not None and now is not None:
                here = rebase_path(path, pose, now)
            else:
                here = None  # no odometry to move it by: the route is fresher
            if here is not None and (here[:, 0] > 0).any():
                return here, "plan"
        if scene is not None:
            route = scene.route[0][scene.route_valid[0]]
            if len(route) >= 1 and (route[:, 0] > 0).any():
                return np.asarray(route, np.float64), "route"
        return None, "straight"

    # ------------------------------------------------------------------ offline (the closed loop)
    def tick_offline(self, t: float, scene: PerceivedScene, path: np.ndarray, profile: np.ndarray,
                     command: tuple[float, float, float], expert: tuple[float, float, float] | None = None,
                     expert_profile: np.ndarray | None = None) -> tuple[tuple[float, float, float], str]:
        """One synchronous tick of one env (the closed loop, no wall clock): the planner's command and plan, the
        expert's command and plan's speed profile when one is offered, the scene (one env). Returns (the command
        to apply, controller)."""
        t = round(float(t), 3)
        self.ready = True
        self.offer_scene(t, scene)  # before the clock: a takeover decided at the clock stops by this tick's scene
        self.offer_plan(t, path, profile)
        outs = [self.new_tick(t, 0.0)]
        if expert_profile is not None:
            self.offer_expert_plan(t, expert_profile)
        if expert is not None:
            outs.append(self.offer_expert(t, *expert))
        outs.append(self.offer_planner(t, *command))
        if self.decided != t:
            outs.append(self.poll(np.inf))
        d = next(d for d in outs if d is not None and d.command is not None)
        return d.command, d.controller

    def records(self) -> list[dict]:
        return [{"t": tk.t, "cause": tk.cause.name, "detail": tk.detail,
                 "ttc": tk.ttc if np.isfinite(tk.ttc) else None} for tk in self.history]


def _pose(scene: PerceivedScene) -> np.ndarray | None:
    """The scene's ego pose in the map frame (x, y, yaw), None if it has none or a non-finite one."""
    if scene.ego_pose is None:
        return None
    pose = np.asarray(scene.ego_pose[0], np.float64)
    return pose if np.isfinite(pose).all() else None
