"""Scenario Dreaming: takeover scenarios rebuilt in the pseudo-simulator, perturbed, and rolled out.

A scenario is one frame of a shadow-mode collection (`collect --takeover`, `train takead`'s rounds, `takeover
ingest` of the stack's bags): a takeover's first frame or one of the seconds before it. From the training table
(learn/data.py) it carries what the policy saw (the feature tensors), the agents' logged futures (roll_agents,
and roll_unseen: the ones hidden then; 10 Hz, ego frame) and the expert's plan (path and planned speed).

Rollout (`rollout`): 2 s at 5 Hz, as TakeVLA has it: the ego follows an action (path points and speed points)
with the deployed PID controller on the kinematic bicycle (stepped at 20 Hz, read at 5 Hz), its target at each
step the speed profile `speed_lookahead` seconds after the step's time (sim/control.profile_target); the agents
replay their log. The expert's trajectory is the expert's plan (its path and planned speeds at the speed points'
times: learn/vla.speed_profile) rolled out the same way.
Reward: -(sum_k gamma^k ||p_k - p*_k||) / (sum_k gamma^k), the discounted mean L2 [m] to the expert's trajectory,
plus a collision term (at fault: an agent running into the ego from behind is not counted) by the agent's kind,
plus, when `ttc` is set, a time-to-collision term: `ttc` when the rollout ends without a collision but on course
to hit an agent within `ttc_horizon` seconds, both held at their last velocities (rl.ttc_conflict, PerlAD's TTC
term): a 2 s rollout that closes in on a crossing pedestrian has not hit it yet, but its safety margin is gone.

Perturbed variants (`perturb`): every agent's replay shifted in time by the same offset (a pedestrian steps out
earlier or later), each agent moved by an offset in the ego frame and its motion sped up or slowed down; the
features the policy sees move with them (positions of every history step, speeds), so the policy sees the world
it is rolled out in. Variant 0 of every scenario is the scenario as recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import obb_overlap
from ..models.features import POS_SCALE, STEP_DIM
from ..models.paths import extend_path
from ..sim.dynamics import DEFAULT_VEHICLE
from ..sim.state import AgentKind

FEATURE_KEYS = ("ego", "route", "route_mask", "agents", "agents_mask", "lanes", "lanes_mask")
SCENARIO_KEYS = (*FEATURE_KEYS, "path", "speed", "speed_points", "roll_agents", "roll_agents_mask", "agent_kind", "roll_unseen",
                 "roll_unseen_mask", "unseen_kind")
LOG_DT = 0.1  # [s] the table's roll_* steps
CONTROL_DT = 0.05  # [s] the deployed controller's step


@dataclass(frozen=True)
class DreamSettings:
    horizon: float = 2.0  # [s]
    rate: float = 5.0  # [Hz] rollout steps read (the controller steps at 20 Hz)
    gamma: float = 0.9  # discount of the L2 term per rollout step
    collision_vehicle: float = -10.0  # reward of an at-fault collision with a vehicle
    collision_pedestrian: float = -15.0  # ... a pedestrian or cyclist
    collision_static: float = -5.0  # ... a static object
    time_shift: float = 0.5  # [s] perturbed variants: the replay offset, uniform in +-time_shift
    position: float = 1.0  # [m] perturbed variants: each agent's offset, uniform in +-position (x and y)
    speed_scale: float = 0.2  # perturbed variants: each agent's motion scaled by 1 +- speed_scale
    speed_times: tuple[float, ...] = (0.0,)  # [s] the speed points' times (the model's VLANetConfig.speed_times)
    speed_lookahead: float = 0.0  # [s] the PID's target: the profile this far after each step's time
    ttc: float = 0.0  # reward of a rollout that ends on course to hit an agent within ttc_horizon (0: off)
    ttc_horizon: float = 1.5  # [s] constant-velocity projection from the rollout's last step

    @property
    def steps(self) -> int:
        return int(round(self.horizon * self.rate))


def perturb(sc: dict[str, np.ndarray], rng: np.random.Generator, s: DreamSettings, history: int = 4,
            identity: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A perturbed copy of a batch of scenarios (B rows); rows where `identity` is True stay as recorded."""
    out = {k: np.array(v, copy=True) for k, v in sc.items()}
    B = len(out["speed"])
    keep = np.zeros(B, bool) if identity is None else np.asarray(identity, bool)
    p = ~keep  # the rows perturbed (identity rows are left bit for bit as recorded)
    for roll, kind in (("roll_agents", "agents"), ("roll_unseen", None)):
        n = out[roll].shape[1]
        d = rng.uniform(-s.position, s.position, (B, n, 2))
        scale = 1.0 + rng.uniform(-s.speed_scale, s.speed_scale, (B, n))
        r = out[roll][p]
        start = r[:, :, :1, :2]
        r[..., :2] = start + (r[..., :2] - start) * scale[p][..., None, None] + d[p][:, :, None]
        out[roll][p] = r
        if kind is not None:  # what the policy sees moves with the agent: every history step, and its speed
            a = out["agents"][p]
            seen = out["agents_mask"][p][..., None].astype(bool)
            na = a.shape[1]
            for h in range(history):
                c = h * STEP_DIM
                a[..., c:c + 2] += np.where(seen, d[p][:, :na] / POS_SCALE, 0.0)
                a[..., c + 4] *= np.where(seen[..., 0], scale[p][:, :na], 1.0)
            out["agents"][p] = a
    out["time_shift"] = np.round(rng.uniform(-s.time_shift, s.time_shift, B) / LOG_DT).astype(int) * p
    return out


def _replay(sc: dict[str, np.ndarray], s: DreamSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The agents (seen and unseen) at the rollout's steps: (B, N + U, K, 5), mask (B, N + U, K), kind (B, N + U)."""
    ag = np.concatenate([sc["roll_agents"], sc["roll_unseen"]], 1)
    m = np.concatenate([sc["roll_agents_mask"], sc["roll_unseen_mask"]], 1).astype(bool)
    kind = np.concatenate([sc["agent_kind"], sc["unseen_kind"]], 1)
    T = ag.shape[2]
    t = np.arange(1, s.steps + 1) / s.rate  # [s]
    idx = np.round(t / LOG_DT).astype(int) - 1  # roll_*[i] is at (i + 1) * LOG_DT
    shift = sc.get("time_shift", np.zeros(len(ag), int))
    idx = np.clip(idx[None] + shift[:, None], 0, T - 1)  # (B, K)
    b = np.arange(len(ag))[:, None]
    return ag[b, :, idx].transpose(0, 2, 1, 3), m[b, :, idx].transpose(0, 2, 1), kind


def read_speed_points(s: DreamSettings) -> np.ndarray:
    """(K,) bool: the speed points whose values a rollout's controller reads (some step's target, the profile at
    the step's time + s.speed_lookahead, interpolates them with a weight > 0). With the default 4 points at 0, 0.5,
    1, 1.5 s and lookahead 0.5 s the first is never read: sampling it only adds noise to a policy gradient."""
    sub = int(round(1.0 / (s.rate * CONTROL_DT)))
    from ..sim.control import profile_target

    K = len(s.speed_times)
    w = profile_target(np.eye(K), s.speed_times, np.arange(s.steps * sub) * CONTROL_DT + s.speed_lookahead)
    return np.abs(w).max(1) > 1e-9 if K > 1 else np.ones(1, bool)


def ego_trajectory(paths: np.ndarray, target: np.ndarray, v0: np.ndarray, s: DreamSettings) -> np.ndarray:
    """(E, K, 3) ego poses at the rollout's steps: the deployed PID along `paths` (E, P, 2) at `target`: a speed
    (E,) held, or speed points (E, len(s.speed_times)) followed as a profile (each controller step's target: the
    profile at the step's time + s.speed_lookahead)."""
    from ..sim.control import profile_target
    from .rl import ego_rollout

    sub = int(round(1.0 / (s.rate * CONTROL_DT)))
    target = np.asarray(target, np.float64)
    if target.ndim == 2:
        if target.shape[1] != len(s.speed_times):
            raise ValueError(f"{target.shape[1]} speed points for {len(s.speed_times)} times (DreamSettings.speed_times)")
        target = profile_target(target, s.speed_times, np.arange(s.steps * sub) * CONTROL_DT + s.speed_lookahead)
    poses, _ = ego_rollout(extend_path(np.asarray(paths, np.float64)), target,
                           np.asarray(v0, np.float64), s.steps * sub, CONTROL_DT)
    return poses[:, sub - 1::sub]


def rollout(sc: dict[str, np.ndarray], paths: np.ndarray, target: np.ndarray, s: DreamSettings,
            expert: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Roll out E = B x G actions (paths (E, P, 2) [m], target speeds (E,) or speed points (E, K)) in their
    scenarios (each scenario's rows repeated G times in a row). Returns reward terms (E,): total, l2 (the discounted mean L2 [m]), collision,
    collided, and the expert's trajectory (B, K, 3) used."""
    from ..models.features import SPEED_SCALE

    B = len(sc["speed"])
    G = len(paths) // B
    v0 = sc["ego"][:, 0] * SPEED_SCALE
    if expert is None:
        expert = ego_trajectory(sc["path"], sc["speed_points"] if "speed_points" in sc else sc["speed"], v0, s)
    poses = ego_trajectory(paths, target, np.repeat(v0, G), s)
    ag, am, kind = (np.repeat(a, G, 0) for a in _replay(sc, s))
    w = s.gamma ** np.arange(s.steps)
    l2 = (np.linalg.norm(poses[..., :2] - np.repeat(expert[..., :2], G, 0), axis=-1) * w).sum(1) / w.sum()
    hit = obb_overlap(poses[:, None, :, 0], poses[:, None, :, 1], poses[:, None, :, 2], DEFAULT_VEHICLE.length,
                      DEFAULT_VEHICLE.width, ag[..., 0], ag[..., 1], ag[..., 2], ag[..., 3], ag[..., 4]) & am
    c, sn = np.cos(poses[:, None, :, 2]), np.sin(poses[:, None, :, 2])
    lon = (ag[..., 0] - poses[:, None, :, 0]) * c + (ag[..., 1] - poses[:, None, :, 1]) * sn
    hit &= lon > -0.5 * DEFAULT_VEHICLE.length  # at fault only
    collided = hit.any((1, 2))
    first = np.argmax(hit.any(1), 1)
    who = np.argmax(hit[np.arange(len(hit)), :, first], 1)
    k = kind[np.arange(len(kind)), who]
    pen = np.where(np.isin(k, (AgentKind.PEDESTRIAN, AgentKind.CYCLIST)), s.collision_pedestrian,
                   np.where(k == AgentKind.STATIC, s.collision_static, s.collision_vehicle))
    r_coll = np.where(collided, pen, 0.0)
    r_ttc = np.zeros(len(poses))
    if s.ttc:
        from .rl import ttc_conflict

        v_end = np.linalg.norm(poses[:, -1, :2] - poses[:, -2, :2], axis=-1) * s.rate  # [m/s] over the last step
        near = ttc_conflict(poses, v_end[:, None], ag, am, s.ttc_horizon, dt=1.0 / s.rate) & ~collided
        r_ttc = np.where(near, s.ttc, 0.0)
    return {"total": -l2 + r_coll + r_ttc, "l2": l2, "collision": r_coll, "collided": collided.astype(float),
            "ttc": r_ttc, "expert": expert}
