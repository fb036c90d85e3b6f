"""RL of the planner's longitudinal head (and, with `path_top_k`, its choice of path) in the vector-space pseudo-simulator (PerlAD), without rendering.

Each update draws `states` logged start states. For each the lateral head (frozen, from imitation) picks a
path, or, early in the curriculum, the logged expert path is used. The longitudinal head samples `group`
target speeds for that path. Every sample is rolled out for `horizon` steps at 10 Hz: the ego follows the path
with the deployed PID controller on the kinematic bicycle; the other agents follow the world model's top-1
prediction *conditioned on this rollout's ego plan* (`agents=world_model`), or their logged future
(`agents=log_replay`, the ablation). Early in the curriculum logged agents replace predicted ones with
probability p, which falls linearly to 0 over `curriculum` updates. Agents of the log that the policy could not
see at the start (hidden behind a parked van, out of range, not there yet) but that come near the ego within the
horizon can be replayed from the log in every rollout (`unseen_agents`; data.py's roll_unseen): no prediction
can know them, and a pedestrian stepping out from behind a container is what the speed choice has to leave room
for. Off by default: on the Proc3 validation suite it changed nothing measurable (72.2 vs 72.6), since the
states where it matters are some 400 of 84,000 (0.5 %).

Reward per rollout (shared/DESIGN.md): at-fault collision (vehicle -30, pedestrian -50, static -10; the rollout
ends; an agent running into the ego from behind does not count),
leaving the route corridor (-10 x the fraction of steps with the ego's centre more than OFF_ROUTE metres from
the route), progress (w_progress x distance / (speed limit x horizon)), imitation (-w_imitation x mean distance
to the logged ego future, per 2 m), and, our additions for Bench2Drive, running a red light (-30, crossing the
stop line of a red or yellow light that was ahead) and time to collision (`ttc`, -10: the rollout ends on course
to hit an agent ahead within `ttc_horizon` = 1.5 s at constant velocities, nuPlan's TTC projection;
`ttc_conflict`). A 2 s rollout that closes in on a slower cyclist at 0.8 m/s from 5 m back ends without a
collision and with more progress than one that holds back; the collision comes after the horizon, and the TTC
term is what sees it.

Injected pedestrians (`hazards` F, off): a fraction F of every batch's start states gets a synthetic pedestrian the
policy can see, ahead by the route, crossing it or walking beside it (`inject_pedestrians`), for the state the
log lacks: a pedestrian who comes out 10 m ahead of an ego doing 11 m/s (braking to 0 as soon as one is in the
corridor saves three of the four Bench2Drive DynamicObjectCrossing routes: measured with an oracle rule). Off:
on Proc3 it scored lower (F = 0.25: 66.5, 0.5: 59.8, 0.5 over 400 updates: 64.0, against 68.1 without) and
the speed head hardly learned it (the greedy speed still hit 55 % of the avoidable injected walkers, from 59 %),
nor did it save those routes.

Re-planning (`replan` seconds, off by default): the deployed planner picks a new path every tick, so a path that
runs at a parked car 15 m ahead is not the path the car will follow once it is closer; held fixed over a 2 s
rollout it reads as a collision at every speed but 0, and RL learns to stop there (the blocks measured on the
DAgger planner, README). With it, each rollout follows the given path for `replan` seconds, then the frozen
lateral head plans again from the scene re-expressed at the ego's new pose (`reframe`: route, lanes and agents in
the new frame, the agents' history from the rollout) and the world model predicts the agents again given that
plan.

Paths too (`path_top_k` K, off by default): each sample also draws its path among the lateral head's K most
likely anchors (probabilities renormalised over them; the anchors' offsets as imitation predicts them) and the
anchor head learns with the longitudinal head, log pi(a, v | s) = log pi(a | s) + log pi(v | s, path_a), the KL to
the imitation planner summed over both. Where the top-1 path runs into a parked car, a second anchor that swerves
can win the group's advantage, so RL can learn to go around instead of stopping (re-planning alone did not).
Sampled that way, the anchor head's own confidence keeps the other paths rare (1-4 % of the samples off the
top-1 on the DAgger planner). `path_search` searches them instead: each state's group is split evenly over its K
anchors, Q(s, a) is the mean return of anchor a's samples, the speeds' advantages are centred on their own
anchor's Q, and the anchor head is fitted (cross-entropy) to q(a) ~ pi(a | s) exp(Q(s, a) / eta) over the K,
the improved policy of MPO's E-step: where the paths tie, q is pi and nothing moves; where the top-1 collides and
another anchor clears, q moves to the one that clears.

Start states: uniformly from the training states, or with `critical` > 0 that fraction of every batch from the
states where a logged agent comes within CRITICAL_GAP of the logged ego over the horizon (`critical_states`;
6 % of the DAgger states). A quarter scored lower on the Proc3 validation suite (69.2 vs 72.6), so it is off.

Update: group-centred advantages A = (R - mean_group) / std_batch (per-group std, as GRPO has it, blows a few
centimetres of extra progress up to the weight of a collision, and the head drifts to ever higher speeds:
measured, see the issue notes), then REINFORCE (`algo=grpo`) or a
clipped PPO ratio over `ppo_epochs` passes (`algo=ppo`), both with an entropy bonus and, as GRPO has, a KL
penalty `kl_ref` x KL(pi || pi_IL) to the imitation planner (without it the head drifts to ever higher speeds:
measured, see the issue notes). Logged: reward terms,
entropy, approx-KL, collision rate, rollout steps per second.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..geometry import obb_overlap
from ..models.checkpoint import load_model
from ..models.features import DIST_CAP, POS_SCALE, SPEED_SCALE, STEP_DIM
from ..models.nets import INPUT_NAMES, Planner, WorldModel
from ..models.paths import extend_path
from ..scenarios.scene import PEDESTRIAN_SIZE
from ..sim.control import PIDController
from ..sim.dynamics import DEFAULT_VEHICLE, bicycle_step
from ..sim.state import AgentKind
from .configs import RLConfig
from .data import ROLL_DT, WM_DT, DataConfig, build_samples
from .train import batch, split

OFF_ROUTE = 2.5  # [m] from the route polyline
CRITICAL_GAP = 3.0  # [m] centre to centre: a start state is critical when a logged agent comes this close


def critical_states(data: dict, idx: np.ndarray, gap: float = CRITICAL_GAP, steps: int | None = None) -> np.ndarray:
    """Which of the samples idx are critical: some agent of the log, seen or unseen, comes within `gap` of the
    logged ego over the first `steps` steps (the RL horizon; the log collided or nearly did: where the speed
    choice matters most)."""
    out = np.zeros(len(idx), bool)
    for a in range(0, len(idx), 4096):
        i = idx[a:a + 4096]
        ego = data["roll_ego"][i][:, None, :steps]  # (n, 1, K, 2)
        for k, m in (("roll_agents", "roll_agents_mask"), ("roll_unseen", "roll_unseen_mask")):
            d = np.linalg.norm(data[k][i][:, :, :steps, :2] - ego, axis=-1)
            out[a:a + len(i)] |= (np.where(data[m][i][:, :, :steps] > 0, d, np.inf) < gap).any((1, 2))
    return out


HAZARD_RANGE = (5.0, 30.0)  # [m] along the route ahead, where an injected pedestrian is placed
HAZARD_CROSSING = 0.7  # the fraction of injected pedestrians that walk across the route (the rest keep to its side)


def inject_pedestrians(b: dict, rng: np.random.Generator, frac: float, fcfg) -> np.ndarray:
    """Scenario augmentation of RL start states (our addition to PerlAD): a fraction `frac` of the batch b gets a
    synthetic pedestrian the policy can see, placed by the route HAZARD_RANGE metres ahead. HAZARD_CROSSING of
    them step out from 1.5-4.5 m beside the route and walk across it at 0.8-2 m/s; the rest walk along it 3.5-6 m
    to the side (they are no reason to brake). Its track is seen for the last 1 to H history steps (it has just
    come out from behind something, or has been in view a while); in the rollout it keeps its velocity, under
    both agent models. Why: a pedestrian who appears 10 m ahead of an ego doing 11 m/s is a state the expert
    never drove into (it is privileged, it was slow already), and the log has a few dozen such states in 84,000,
    too few for RL to learn to brake for (see the issue notes). Edits b in place (agents, agents_mask, agent_kind,
    roll_agents, roll_agents_mask) and returns the slot of each state's injected pedestrian (B,), -1 for none;
    b["hazard_slot"] holds it too."""
    agents, am = b["agents"].numpy().copy(), b["agents_mask"].numpy().copy()
    kind, ra, rm = b["agent_kind"].numpy().copy(), b["roll_agents"].numpy().copy(), b["roll_agents_mask"].numpy().copy()
    route, rmask = b["route"].numpy(), b["route_mask"].numpy() > 0
    B, N = am.shape
    H = fcfg.history
    slot = np.full(B, -1, np.int64)
    for i in np.flatnonzero(rng.random(B) < frac):
        pts = route[i, rmask[i], :2] * POS_SCALE
        if len(pts) < 2:
            continue
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        s_along = np.concatenate([[0.0], np.cumsum(seg)])
        s = rng.uniform(*HAZARD_RANGE)
        if s > s_along[-1]:
            continue
        j = min(int(np.searchsorted(s_along, s)), len(pts) - 1)
        c, sn = route[i, rmask[i]][j, 2], route[i, rmask[i]][j, 3]
        normal = np.array([-sn, c])  # across the route; `side` picks which way
        side = rng.choice([-1.0, 1.0])
        w = rng.uniform(0.8, 2.0)
        if rng.random() < HAZARD_CROSSING:
            p0 = pts[j] + side * rng.uniform(1.5, 4.5) * normal
            vel = -side * w * normal
        else:
            p0 = pts[j] + side * rng.uniform(3.5, 6.0) * normal
            vel = rng.choice([-1.0, 1.0]) * w * np.array([c, sn])
        free = np.flatnonzero(am[i] <= 0)
        k = int(free[0]) if len(free) else N - 1
        yaw = np.arctan2(vel[1], vel[0])
        row = np.zeros(agents.shape[-1], np.float32)
        seen = rng.integers(1, H + 1)
        for h in range(H - seen, H):
            p = p0 - vel * (H - 1 - h) * fcfg.history_dt
            row[h * STEP_DIM:(h + 1) * STEP_DIM] = [p[0] / POS_SCALE, p[1] / POS_SCALE, np.cos(yaw), np.sin(yaw),
                                                   w / SPEED_SCALE, 1.0]
        st = H * STEP_DIM
        row[st], row[st + 1] = PEDESTRIAN_SIZE[0] / 5.0, PEDESTRIAN_SIZE[1] / 2.0
        row[st + 2 + int(AgentKind.PEDESTRIAN)] = 1.0
        agents[i, k], am[i, k], kind[i, k] = row, 1.0, int(AgentKind.PEDESTRIAN)
        t = np.arange(1, ra.shape[2] + 1)[:, None] * ROLL_DT
        ra[i, k] = np.concatenate([p0 + vel * t, np.full((len(t), 1), yaw),
                                   np.broadcast_to(PEDESTRIAN_SIZE, (len(t), 2))], 1)
        rm[i, k] = 1.0
        slot[i] = k
    for key, v in (("agents", agents), ("agents_mask", am), ("agent_kind", kind), ("roll_agents", ra),
                   ("roll_agents_mask", rm)):
        b[key] = torch.as_tensor(v)
    b["hazard_slot"] = torch.as_tensor(slot)
    return slot


class EgoRollout:
    """The egos of a batch of rollouts (E,): kinematic bicycle + the deployed PID controller, from the origin of
    the t=0 ego frame at speeds v0, stepped `run` by `run`; the path may change between runs (re-planning), the
    vehicle and controller state carry over. `copy` branches it."""

    def __init__(self, v0: np.ndarray, dt: float = ROLL_DT):
        E = len(v0)
        self.x, self.y, self.yaw = np.zeros(E), np.zeros(E), np.zeros(E)
        self.v, self.sa = v0.astype(np.float64).copy(), np.zeros(E)
        self.ctl, self.dt = PIDController(E, dt=dt), dt

    def copy(self) -> EgoRollout:
        import copy

        return copy.deepcopy(self)

    def run(self, paths: np.ndarray, target: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Follow each path (E, Q, 2) (t=0 ego frame) at its target speed (E,), or at each step's (E, steps).
        Returns poses (E, steps, 3) and speeds (E, steps)."""
        E = len(paths)
        poses, speeds = np.zeros((E, steps, 3)), np.zeros((E, steps))
        for k in range(steps):
            dx, dy = paths[..., 0] - self.x[:, None], paths[..., 1] - self.y[:, None]
            c, s = np.cos(self.yaw)[:, None], np.sin(self.yaw)[:, None]
            local = np.stack([dx * c + dy * s, -dx * s + dy * c], -1)
            thr, st, br = self.ctl(local, target if target.ndim == 1 else target[:, k], self.v)
            self.x, self.y, self.yaw, self.v, self.sa, _ = bicycle_step(self.x, self.y, self.yaw, self.v, self.sa,
                                                                         thr, st, br, self.dt)
            poses[:, k] = np.stack([self.x, self.y, self.yaw], -1)
            speeds[:, k] = self.v
        return poses, speeds


def ego_rollout(paths: np.ndarray, target: np.ndarray, v0: np.ndarray, steps: int, dt: float = ROLL_DT):
    """Kinematic bicycle + the deployed PID controller following each path (E, Q, 2) (ego frame at t=0) at
    its target speed (E,), or at each step's (E, steps). Returns poses (E, steps, 3) and speeds (E, steps)."""
    return EgoRollout(v0, dt).run(paths, target, steps)


def to_frame(xy: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Points (E, ..., 2) -> the frame of pose (E, 3) (x, y, yaw in the points' frame)."""
    sh = (len(pose),) + (1,) * (xy.ndim - 2)
    c, s = np.cos(pose[:, 2]).reshape(sh), np.sin(pose[:, 2]).reshape(sh)
    dx, dy = xy[..., 0] - pose[:, 0].reshape(sh), xy[..., 1] - pose[:, 1].reshape(sh)
    return np.stack([dx * c + dy * s, -dx * s + dy * c], -1)


def from_frame(xy: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Points (E, ..., 2) in the frame of pose (E, 3) -> the frame the pose is given in (to_frame's inverse)."""
    sh = (len(pose),) + (1,) * (xy.ndim - 2)
    c, s = np.cos(pose[:, 2]).reshape(sh), np.sin(pose[:, 2]).reshape(sh)
    return np.stack([pose[:, 0].reshape(sh) + xy[..., 0] * c - xy[..., 1] * s,
                     pose[:, 1].reshape(sh) + xy[..., 0] * s + xy[..., 1] * c], -1)


def reframe(inp: dict[str, np.ndarray], pose: np.ndarray, speed: np.ndarray, accel: np.ndarray, driven: np.ndarray,
            hist: np.ndarray, hist_ok: np.ndarray, route_step: float) -> dict[str, np.ndarray]:
    """The planner's inputs (models/features.py, E rows) of the same scene seen from a later ego pose (E, 3)
    (x, y [m], yaw, in the frame of `inp`) at `speed` and `accel` after `driven` metres: the route ahead with the
    points passed dropped (it starts where the ego is, `route_step` metres apart), the lanes and the agents in
    the new frame; the agents' history is `hist` (E, N, H, 4): x, y [m], yaw, speed at the H history times ending
    now, in the frame of `inp`, seen where hist_ok (E, N, H); light and stop-sign distances shortened by `driven`
    (a capped one, nothing within DIST_CAP, stays capped). The light states, the command and the set of lanes and
    agents stay those of the first frame."""
    E = len(pose)
    yaw = pose[:, 2]
    out = {k: np.array(v, np.float32, copy=True) for k, v in inp.items()}

    def rot(cs: np.ndarray) -> np.ndarray:  # (..., 2) cos, sin of headings -> relative to the new yaw
        sh = (E,) + (1,) * (cs.ndim - 2)
        c, s = np.cos(yaw).reshape(sh), np.sin(yaw).reshape(sh)
        return np.stack([cs[..., 0] * c + cs[..., 1] * s, cs[..., 1] * c - cs[..., 0] * s], -1)

    ego = out["ego"]
    ego[:, 0], ego[:, 1] = speed / SPEED_SCALE, accel / 5.0
    for col in (3, 7):
        d = ego[:, col]
        ego[:, col] = np.where(d >= 1.0 - 1e-6, d, np.maximum(d * DIST_CAP - driven, 0.0) / DIST_CAP)
    R = out["route"].shape[1]
    k = np.clip(np.round(driven / route_step).astype(int), 0, R)
    idx = np.arange(R)[None] + k[:, None]
    ok = idx < R
    idx = np.minimum(idx, R - 1)
    route = np.take_along_axis(out["route"], idx[..., None], 1)
    rmask = np.take_along_axis(out["route_mask"] > 0, idx, 1) & ok
    route = np.concatenate([to_frame(route[..., :2] * POS_SCALE, pose) / POS_SCALE, rot(route[..., 2:4])], -1)
    out["route"] = np.where(rmask[..., None], route, 0.0).astype(np.float32)
    out["route_mask"] = rmask.astype(out["route_mask"].dtype)
    lanes = out["lanes"]
    lanes[..., :2] = to_frame(lanes[..., :2] * POS_SCALE, pose) / POS_SCALE
    lanes[..., 2:4] = rot(lanes[..., 2:4])
    out["lanes"] = np.where((inp["lanes_mask"] > 0)[:, :, None, None], lanes, 0.0).astype(np.float32)
    ag = out["agents"]
    H = hist.shape[2]
    for h in range(H):
        col = h * STEP_DIM
        xy = to_frame(hist[:, :, h, :2], pose) / POS_SCALE
        a = hist[:, :, h, 2] - yaw[:, None]
        row = np.concatenate([xy, np.cos(a)[..., None], np.sin(a)[..., None], hist[:, :, h, 3:4] / SPEED_SCALE,
                              np.ones_like(a)[..., None]], -1)
        ag[:, :, col:col + STEP_DIM] = np.where(hist_ok[:, :, h, None], row, 0.0)
    out["agents"] = ag
    return out


def interpolate_agents(start: np.ndarray, traj: np.ndarray, t_src: float, steps: int, dt: float) -> np.ndarray:
    """start (E, N, 2) and predictions (E, N, T, 2) every t_src seconds -> positions (E, N, steps, 2) every dt."""
    pts = np.concatenate([start[:, :, None], traj], 2)
    tq = np.arange(1, steps + 1) * dt / t_src
    i0 = np.minimum(np.floor(tq).astype(int), pts.shape[2] - 2)
    w = (tq - i0)[None, None, :, None]
    return pts[:, :, i0] * (1 - w) + pts[:, :, i0 + 1] * w


def ttc_conflict(poses: np.ndarray, speeds: np.ndarray, agents: np.ndarray, amask: np.ndarray, horizon: float,
                 step: float = 0.25, dt: float = ROLL_DT) -> np.ndarray:
    """(E,) whether, from the rollout's last step, the ego and an agent held at their last velocities (nuPlan's
    time-to-collision projection) meet within `horizon` seconds, the agent not behind the ego at the start: a
    rollout that ends closing in on a slower cyclist has not collided within the horizon, but it will. `dt`: the
    time between the agents' last two steps (their velocity)."""
    ex, ey, eyaw = poses[:, -1, 0], poses[:, -1, 1], poses[:, -1, 2]
    ev = speeds[:, -1]
    ok = amask[:, :, -1] & amask[:, :, -2]  # (E, N)
    a, a1 = agents[:, :, -1], agents[:, :, -2]
    vel = (a[..., :2] - a1[..., :2]) / dt
    c, s = np.cos(eyaw)[:, None], np.sin(eyaw)[:, None]
    ahead = (a[..., 0] - ex[:, None]) * c + (a[..., 1] - ey[:, None]) * s > -0.5 * DEFAULT_VEHICLE.length
    out = np.zeros(len(ev), bool)
    for t in np.arange(step, horizon + 1e-6, step):
        x, y = ex + ev * np.cos(eyaw) * t, ey + ev * np.sin(eyaw) * t
        bx, by = a[..., 0] + vel[..., 0] * t, a[..., 1] + vel[..., 1] * t
        hit = obb_overlap(x[:, None], y[:, None], eyaw[:, None], DEFAULT_VEHICLE.length, DEFAULT_VEHICLE.width,
                          bx, by, a[..., 2], a[..., 3], a[..., 4]) & ok & ahead
        out |= hit.any(1)
    return out


def rewards(cfg: RLConfig, b: dict, poses: np.ndarray, speeds: np.ndarray, agents: np.ndarray, amask: np.ndarray,
            kind: np.ndarray, G: int, seen: int | None = None) -> dict[str, np.ndarray]:
    """Reward terms (E,) of rollouts. poses (E, K, 3); agents (E, N, K, 5) x, y, yaw, length, width; amask
    (E, N, K); kind (E, N); b: the batch (B = E / G states); seen: agents from this column on are the unseen
    ones (`collided_unseen` counts collisions with them)."""
    E, K = speeds.shape
    rep = lambda a: np.repeat(np.asarray(a), G, axis=0)  # noqa: E731
    hit = obb_overlap(poses[:, None, :, 0], poses[:, None, :, 1], poses[:, None, :, 2], DEFAULT_VEHICLE.length,
                      DEFAULT_VEHICLE.width, agents[..., 0], agents[..., 1], agents[..., 2], agents[..., 3],
                      agents[..., 4]) & amask  # (E, N, K)
    # at-fault collisions only (as nuPlan's scoring): an agent that runs into the ego from behind is not the
    # speed choice's fault, and counting it would teach the ego never to brake
    c, s = np.cos(poses[:, None, :, 2]), np.sin(poses[:, None, :, 2])
    lon = (agents[..., 0] - poses[:, None, :, 0]) * c + (agents[..., 1] - poses[:, None, :, 1]) * s
    hit &= lon > -0.5 * DEFAULT_VEHICLE.length
    any_hit = hit.any(1)  # (E, K)
    collided = any_hit.any(1)
    first = np.where(collided, np.argmax(any_hit, 1), K)
    alive = np.arange(K)[None] < first[:, None]  # steps before the collision
    who = np.argmax(hit[np.arange(E), :, np.minimum(first, K - 1)], 1)
    k = kind[np.arange(E), who]
    pen = np.where(k == AgentKind.PEDESTRIAN, cfg.collision_pedestrian,
                   np.where(k == AgentKind.STATIC, cfg.collision_static, cfg.collision_vehicle))
    r_coll = np.where(collided, pen, 0.0)
    dist = (speeds * ROLL_DT * alive).sum(1)
    ego = rep(b["ego"].numpy())
    limit = np.maximum(ego[:, 2] * SPEED_SCALE, 1.0)
    r_prog = cfg.w_progress * np.clip(dist / (limit * K * ROLL_DT), 0, 1)
    route = rep(b["route"].numpy())[..., :2] * POS_SCALE
    rmask = rep(b["route_mask"].numpy()) > 0
    d = np.linalg.norm(poses[:, :, None, :2] - route[:, None], axis=-1)
    d = np.where(rmask[:, None], d, np.inf).min(-1)
    r_off = cfg.off_route * ((d > OFF_ROUTE) & alive).mean(1)
    log, lm = rep(b["roll_ego"].numpy())[:, :K], rep(b["roll_ego_mask"].numpy())[:, :K] > 0
    err = np.linalg.norm(poses[..., :2] - log, axis=-1)
    r_imit = -cfg.w_imitation * (err * lm).sum(1) / np.maximum(lm.sum(1), 1) / 2.0
    light_d = ego[:, 3] * DIST_CAP
    stop_light = (ego[:, 4] + ego[:, 5] > 0) & (light_d > 0.5) & (light_d < DIST_CAP - 1)
    r_light = np.where(stop_light & (dist > light_d + 1.0), cfg.red_light, 0.0)
    r_ttc = np.where(~collided & (ttc_conflict(poses, speeds, agents, amask, cfg.ttc_horizon) if cfg.ttc < 0
                                   else False), cfg.ttc, 0.0)
    hslot = rep(b["hazard_slot"].numpy()) if "hazard_slot" in b else np.full(E, -1)
    r_imit = np.where(hslot >= 0, 0.0, r_imit)  # the log never met the injected pedestrian: no imitation target
    total = r_coll + r_prog + r_off + r_imit + r_light + r_ttc
    unseen = collided & (who >= (seen if seen is not None else agents.shape[1]))
    return {"total": total, "collision": r_coll, "progress": r_prog, "off_route": r_off, "imitation": r_imit,
            "red_light": r_light, "ttc": r_ttc, "collided": collided.astype(float),
            "collided_unseen": unseen.astype(float), "collided_hazard": (collided & (who == hslot)).astype(float),
            "distance_m": dist}


class Rollouts:
    """The rollouts of one update, given the sampled actions: every state's path followed at each of its G target
    speeds for `horizon` steps (ego_rollout), the other agents from the world model conditioned on that rollout's
    plan or from the log (`logged` per state), and the reward terms. It needs no policy (the learner samples the
    actions), so it runs where the learner is or, the same code, in Ray actors (`RayRollouts`)."""

    def __init__(self, cfg: RLConfig, fcfg, ncfg, wm: WorldModel | None, planner: Planner | None = None):
        self.cfg, self.fcfg, self.ncfg, self.wm, self.planner = cfg, fcfg, ncfg, wm, planner
        if cfg.replan > 0:
            r = cfg.replan / ROLL_DT
            if planner is None:
                raise ValueError("--replan: the rollouts re-plan the path with the planner's lateral head; none given")
            if abs(r - round(r)) > 1e-6 or not 0 < round(r) < cfg.horizon or \
                    abs(cfg.replan / fcfg.history_dt - round(cfg.replan / fcfg.history_dt)) > 1e-6:
                raise ValueError(f"--replan {cfg.replan}: a multiple of the agents' history step "
                                 f"({fcfg.history_dt} s) shorter than the horizon ({cfg.horizon * ROLL_DT:.1f} s)")

    def _predict(self, inp: dict[str, torch.Tensor], poses: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
        """The world model's top-1 agents over K steps of ROLL_DT given the ego's rollout poses (E, >= 3 s, 3),
        everything in the frame of the inputs `inp` (E rows): (E, N, K, 5) x, y, yaw, length, width, and the mask."""
        N, H = self.fcfg.num_agents, self.fcfg.history
        every, now = int(round(WM_DT / ROLL_DT)), (H - 1) * STEP_DIM
        plan = torch.as_tensor(poses[:, every - 1::every][:, :self.ncfg.wm_steps], dtype=torch.float32)
        with torch.no_grad():
            traj, ml = self.wm(*(inp[k] for k in INPUT_NAMES), plan)
        top = traj[torch.arange(len(traj))[:, None], torch.arange(N)[None], ml.argmax(-1)].numpy()  # (E, N, T, 2)
        feats = inp["agents"].numpy()
        start = feats[..., now:now + 2] * POS_SCALE
        xy = interpolate_agents(start, top, WM_DT, K, ROLL_DT)
        d = np.diff(np.concatenate([start[:, :, None], xy], 2), axis=2)
        yaw0 = np.arctan2(feats[..., now + 3], feats[..., now + 2])
        moving = np.linalg.norm(d, axis=-1) > 0.05
        yaw = np.where(moving, np.arctan2(d[..., 1], d[..., 0]), yaw0[:, :, None])
        sz = np.stack([feats[..., H * STEP_DIM] * 5.0, feats[..., H * STEP_DIM + 1] * 2.0], -1)
        agents = np.concatenate([xy, yaw[..., None], np.broadcast_to(sz[:, :, None], (*xy.shape[:3], 2))], -1)
        return agents, (inp["agents_mask"].numpy() > 0)[:, :, None].repeat(K, 2)

    def _replan_inputs(self, inp: dict[str, torch.Tensor], poses: np.ndarray, sp: np.ndarray, v0: np.ndarray,
                       agents: np.ndarray, amask: np.ndarray, r: int) -> dict[str, np.ndarray]:
        """The inputs at step r (after r steps of ROLL_DT) of the rollouts so far: the ego's pose and speed there,
        the agents' history from the first frame's (before t=0) and the rollout's agents (after)."""
        fcfg, H, hdt = self.fcfg, self.fcfg.history, self.fcfg.history_dt
        feats = inp["agents"].numpy()
        E, N = amask.shape[:2]
        hist, ok = np.zeros((E, N, H, 4)), np.zeros((E, N, H), bool)
        t_r = r * ROLL_DT
        for h in range(H):
            tau = t_r - (H - 1 - h) * hdt
            if tau <= 1e-9:  # seen before the rollout: the first frame's history step
                j = H - 1 + int(round(tau / hdt))
                if j < 0:
                    continue
                c = j * STEP_DIM
                hist[:, :, h] = np.stack([feats[..., c] * POS_SCALE, feats[..., c + 1] * POS_SCALE,
                                          np.arctan2(feats[..., c + 3], feats[..., c + 2]),
                                          feats[..., c + 4] * SPEED_SCALE], -1)
                ok[:, :, h] = feats[..., c + 5] > 0
            else:
                k = int(round(tau / ROLL_DT)) - 1
                prev = agents[:, :, k - 1, :2] if k > 0 else feats[..., (H - 1) * STEP_DIM:(H - 1) * STEP_DIM + 2] * POS_SCALE
                v = np.linalg.norm(agents[:, :, k, :2] - prev, axis=-1) / ROLL_DT
                hist[:, :, h] = np.concatenate([agents[:, :, k, :3], v[..., None]], -1)
                ok[:, :, h] = amask[:, :, k]
        ok &= (inp["agents_mask"].numpy() > 0)[:, :, None]
        prev_v = sp[:, r - 2] if r > 1 else v0
        return reframe({k: inp[k].numpy() for k in INPUT_NAMES}, poses[:, r - 1], sp[:, r - 1],
                       (sp[:, r - 1] - prev_v) / ROLL_DT, (sp[:, :r] * ROLL_DT).sum(1), hist, ok,
                       float(fcfg.route_step))

    def __call__(self, b: dict, path: np.ndarray, act: np.ndarray, logged: np.ndarray) -> dict[str, np.ndarray]:
        """b: the states' batch (tensors, B rows); path (B, Q, 2), or (B, G, Q, 2) a path per sample (`path_top_k`);
        act (B, G) speed bins; logged (B,) bool. Returns the reward terms (B, G).

        With `replan` (seconds), the ego re-plans its path once, as the deployed planner does every tick: the
        rollout follows `path` for `replan` seconds, then the planner's lateral head (greedy) plans again from the
        scene as it is then (the inputs re-expressed at the ego's new pose, the agents' history from the
        rollout: `reframe`) and the ego follows that path, at the same target speed, to the horizon; the world
        model predicts the agents again from there, given the new plan. Without it, a path that will swerve
        around a parked car once the ego is closer reads as a collision at every speed but 0."""
        cfg = self.cfg
        B, G = act.shape
        speeds = self.ncfg.speeds()[act].reshape(-1)
        ctl_path = (extend_path(path.reshape(B * G, *path.shape[2:]).astype(np.float64)) if path.ndim == 4
                    else np.repeat(extend_path(path.astype(np.float64)), G, 0))
        v0 = np.repeat(b["ego"][:, 0].numpy() * SPEED_SCALE, G)
        K = cfg.horizon
        steps = max(K, int(round(self.ncfg.wm_steps * WM_DT / ROLL_DT)))
        r = int(round(cfg.replan / ROLL_DT)) if cfg.replan > 0 else 0
        ego = EgoRollout(v0)
        if r:
            p_a, s_a = ego.run(ctl_path, speeds, r)
            at_r = ego.copy()
            p_b, s_b = ego.run(ctl_path, speeds, steps - r)
            poses, sp = np.concatenate([p_a, p_b], 1), np.concatenate([s_a, s_b], 1)
        else:
            poses, sp = ego.run(ctl_path, speeds, steps)
        N = self.fcfg.num_agents
        inp = {k: torch.repeat_interleave(b[k], G, 0) for k in INPUT_NAMES}
        log_agents = np.repeat(b["roll_agents"].numpy()[:, :, :K], G, 0)
        lmask = np.repeat(b["roll_agents_mask"].numpy()[:, :, :K] > 0, G, 0)
        use_log_e = np.repeat(logged, G) if self.wm is not None else np.ones(len(speeds), bool)
        if self.wm is not None:
            pred_agents, pmask = self._predict(inp, poses, K)
            agents = np.where(use_log_e[:, None, None, None], log_agents, pred_agents)
            amask = np.where(use_log_e[:, None, None], lmask, pmask)
        else:
            agents, amask = log_agents, lmask
        if r:
            new = self._replan_inputs(inp, poses, sp, v0, agents, amask, r)
            pose_r = poses[:, r - 1].copy()
            new_t = {k: torch.as_tensor(v) for k, v in new.items()}
            with torch.no_grad():
                tok, _ = self.planner.scene(*(new_t[k] for k in INPUT_NAMES))
                logits, paths = self.planner.lateral(tok[:, 0])
            p_new = paths[torch.arange(len(paths)), logits.argmax(1)].numpy().astype(np.float64)
            p2, s2 = at_r.run(extend_path(from_frame(p_new, pose_r)), speeds, steps)  # 3 s: the world model's plan
            poses, sp = np.concatenate([poses[:, :r], p2], 1), np.concatenate([sp[:, :r], s2], 1)
            if self.wm is not None:  # the agents from step r on: predicted again, given the new plan
                rel = np.concatenate([to_frame(p2[..., :2], pose_r), (p2[..., 2] - pose_r[:, 2:3])[..., None]], -1)
                pa, pm = self._predict(new_t, rel, K - r)
                pa = np.concatenate([from_frame(pa[..., :2], pose_r), (pa[..., 2] + pose_r[:, 2:3, None])[..., None],
                                     pa[..., 3:]], -1)
                agents = np.where(use_log_e[:, None, None, None], agents,
                                  np.concatenate([agents[:, :, :r], pa], 2))
                amask = np.where(use_log_e[:, None, None], amask, np.concatenate([amask[:, :, :r], pm], 2))
        if "hazard_slot" in b:  # an injected pedestrian keeps its scripted walk under the world model too
            hs = np.repeat(b["hazard_slot"].numpy(), G)
            e = np.flatnonzero(hs >= 0)
            agents[e, hs[e]], amask[e, hs[e]] = log_agents[e, hs[e]], lmask[e, hs[e]]
        kind = np.repeat(b["agent_kind"].numpy().astype(int), G, 0)
        if cfg.unseen_agents:  # the log's unseen agents, replayed in every rollout
            agents = np.concatenate([agents, np.repeat(b["roll_unseen"].numpy()[:, :, :K], G, 0)], 1)
            amask = np.concatenate([amask, np.repeat(b["roll_unseen_mask"].numpy()[:, :, :K] > 0, G, 0)], 1)
            kind = np.concatenate([kind, np.repeat(b["unseen_kind"].numpy().astype(int), G, 0)], 1)
        r_terms = rewards(cfg, b, poses[:, :K], sp[:, :K], agents, amask, kind, G, seen=N)
        return {k: v.reshape(B, G) for k, v in r_terms.items()}

    def close(self) -> None:
        pass


def _actor_rollouts(cfg: RLConfig, fcfg, ncfg, wm_state: dict | None, planner_state: dict | None = None) -> Rollouts:
    """On a Ray actor (one CPU): the world model (and, to re-plan, the planner), loaded once, and `Rollouts` over
    the chunks it is sent."""
    torch.set_num_threads(1)
    wm = planner = None
    if wm_state is not None:
        wm = WorldModel(fcfg, ncfg).eval()
        wm.load_state_dict(wm_state)
    if planner_state is not None:
        planner = Planner(fcfg, ncfg, planner_state["anchors"].numpy()).eval()
        planner.load_state_dict(planner_state)
    return Rollouts(cfg, fcfg, ncfg, wm, planner)


class RayRollouts:
    """`Rollouts` spread over `n` Ray actors (evaluation/dispatch.RayChunks): an update's states go in n contiguous
    chunks, the reward terms come back in order. The learner samples every action, so the update is the
    in-process one (tests/test_ray.py)."""

    def __init__(self, cfg: RLConfig, fcfg, ncfg, wm: WorldModel | None, address: str, n: int, log=print,
                 planner: Planner | None = None):
        from ..evaluation.dispatch import RayChunks

        state = {k: v.cpu() for k, v in wm.state_dict().items()} if wm is not None else None
        pstate = {k: v.cpu() for k, v in planner.state_dict().items()} if planner is not None else None
        self.chunks = RayChunks(_actor_rollouts, (cfg, fcfg, ncfg, state, pstate), address, n, log, "rl rollouts")

    def __call__(self, b: dict, path: np.ndarray, act: np.ndarray, logged: np.ndarray) -> dict[str, np.ndarray]:
        return self.chunks.map(len(act), lambda i, j: ({k: v[i:j] for k, v in b.items()}, path[i:j], act[i:j],
                                                       logged[i:j]))

    def close(self) -> None:
        self.chunks.close()


class RLStage:
    name = "rl"

    def __init__(self, cfg: RLConfig, log=print):
        self.cfg, self.log = cfg, log
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        torch.set_num_threads(cfg.threads)
        self.rng = np.random.default_rng(cfg.seed)
        if cfg.agents not in ("world_model", "log_replay"):
            raise ValueError(f"--agents {cfg.agents!r}: use world_model or log_replay")
        if cfg.algo not in ("grpo", "ppo"):
            raise ValueError(f"--algo {cfg.algo!r}: use grpo or ppo")
        if cfg.device == "cuda":
            raise ValueError("--device cuda: rl runs on the CPU (its rollouts are numpy; the networks are small); "
                             "use --device cpu")
        model, ck = load_model(cfg.init)
        if not isinstance(model, Planner):
            raise ValueError(f"--init {cfg.init}: not a planner checkpoint (stage {ck.get('stage')})")
        self.model: Planner = model
        self.fcfg, self.ncfg = model.fcfg, model.ncfg
        self.wm: WorldModel | None = None
        if cfg.agents == "world_model":
            wm, ck2 = load_model(cfg.world_model)
            if not isinstance(wm, WorldModel):
                raise ValueError(f"--world-model {cfg.world_model}: not a world-model checkpoint")
            self.wm = wm
        # the reference policy of GRPO's KL term: the imitation planner as loaded (frozen); its encoder and lateral
        # head are the live model's (RL leaves them), so the rollouts re-plan with it (--replan)
        import copy

        self.ref = copy.deepcopy(self.model).eval()
        planner = self.ref if cfg.replan > 0 else None
        self.sim = (RayRollouts(cfg, self.fcfg, self.ncfg, self.wm, cfg.ray, cfg.rollout_actors, log, planner)
                    if cfg.ray else Rollouts(cfg, self.fcfg, self.ncfg, self.wm, planner))
        # only the longitudinal head learns; the encoder and the lateral head stay as imitation left them
        for p in self.model.parameters():
            p.requires_grad_(False)
        heads = (self.model.path_enc, self.model.speed_q, self.model.speed_kv, self.model.speed_head)
        if cfg.path_top_k:  # RL over paths: the anchor head (which path) learns too; the path offsets stay
            if not 2 <= cfg.path_top_k <= self.ncfg.num_anchors:
                raise ValueError(f"--path-top-k {cfg.path_top_k}: between 2 and the planner's {self.ncfg.num_anchors} "
                                 "anchors (0: the top-1 path, only the speed learns)")
            heads = (self.model.anchor_head, *heads)
            if cfg.path_search and cfg.group % cfg.path_top_k:
                raise ValueError(f"--path-search: --group {cfg.group} must be a multiple of --path-top-k "
                                 f"{cfg.path_top_k} (each anchor gets group / K samples)")
        elif cfg.path_search:
            raise ValueError("--path-search needs --path-top-k K >= 2 (the anchors it splits each group over)")
        self.params = [p for m in heads for p in m.parameters()]
        for p in self.params:
            p.requires_grad_(True)
        self.opt = torch.optim.Adam(self.params, lr=cfg.lr)
        self.data = build_samples(DataConfig(cfg.data, cfg.maps_dir, cfg.workers, cfg.max_episodes), self.fcfg, log)
        if cfg.horizon > self.data["roll_ego"].shape[1]:
            raise ValueError(f"--horizon {cfg.horizon}: the samples hold {self.data['roll_ego'].shape[1]} steps of the "
                             f"log (learn/data.py ROLL_STEPS); use a shorter horizon")
        self.tr, self.va = split(self.data, cfg.val_fraction, cfg.seed)
        self.crit = self.tr[critical_states(self.data, self.tr, steps=cfg.horizon)]
        log(f"rl start states: {len(self.tr)}, {len(self.crit)} of them critical (a logged agent within "
            f"{CRITICAL_GAP:.0f} m of the logged ego); {cfg.critical:.0%} of every batch drawn from those")
        self.update, self.history = 0, []
        self._anchor: dict | None = None  # with path_top_k: the sampled anchors of the last rollout (see rollout)
        if cfg.resume and (self.out / "ckpt.pt").exists():
            ck = torch.load(self.out / "ckpt.pt", weights_only=False)
            self.model.load_state_dict(ck["model"])
            self.opt.load_state_dict(ck["opt"])
            self.update, self.history = ck["update"], ck["history"]
            self.rng = np.random.default_rng(cfg.seed + self.update)
            log(f"resumed from {self.out / 'ckpt.pt'} at update {self.update}")

    def draw(self) -> np.ndarray:
        """An update's start states: a `critical` fraction from the critical ones, the rest from all."""
        n = min(self.cfg.states, len(self.tr))
        nc = min(int(round(self.cfg.critical * n)), len(self.crit))
        c = self.rng.choice(self.crit, size=nc, replace=False) if nc else np.zeros(0, np.int64)
        rest = self.rng.choice(np.setdiff1d(self.tr, c), size=n - nc, replace=False)
        return np.concatenate([c, rest])

    def keys(self):
        return (*INPUT_NAMES, "path", "roll_ego", "roll_ego_mask", "roll_agents", "roll_agents_mask", "agent_kind",
                "roll_unseen", "roll_unseen_mask", "unseen_kind")

    def _anchor_logp(self, logits: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """log pi(anchor): the anchor logits (B, A) renormalised over the sampled set `top` (B, A) bool."""
        return torch.log_softmax(logits.masked_fill(~top, float("-inf")), -1)

    def rollout(self, b: dict, p_logged: float, greedy: bool = False):
        """Sample speeds (here, with the policy) and roll them out (`self.sim`: here, or on Ray actors).
        Returns (scene, paths, actions (B, G), their log-probabilities, reward terms (B, G), rollout steps/s).

        With `path_top_k` K, every sample draws its path too: anchor a ~ pi(a | s) over the lateral head's K most
        likely anchors (renormalised), then the speed bin v ~ pi(v | s, path_a), so
        log pi(a, v | s) = log pi(a | s) + log pi(v | s, path_a); paths (B, G, Q, 2). A state on the logged path
        (the curriculum) keeps the logged path for every sample and contributes only the speed term. Greedy: the
        top anchor and the top speed, as the deployed planner drives."""
        cfg, G = self.cfg, self.cfg.group
        inputs = [b[k] for k in INPUT_NAMES]
        with torch.no_grad():
            tok, mask = self.model.scene(*inputs)
            logits, paths = self.model.lateral(tok[:, 0])
            B = len(tok)
            use_log = torch.as_tensor(self.rng.random(B) < p_logged)
            if cfg.path_top_k:
                topi = logits.topk(cfg.path_top_k, 1).indices  # (B, K), most likely first
                top = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, topi, True)
                a_logp = self._anchor_logp(logits, top)
                search = cfg.path_search and not greedy
                if greedy:
                    anc = a_logp.argmax(1, keepdim=True).expand(B, G)
                elif search:  # sample g follows anchor topi[:, g % K]: every anchor gets G / K samples
                    anc = topi.repeat(1, G // cfg.path_top_k)
                else:
                    anc = torch.distributions.Categorical(logits=a_logp).sample((G,)).T  # (B, G)
                path = paths[torch.arange(B)[:, None], anc]  # (B, G, Q, 2)
                path = torch.where(use_log[:, None, None, None], b["path"][:, None].expand_as(path), path)
                sl = self.model.speed_logits(tok, mask, path)  # (B, G, S)
                act = sl.argmax(-1) if greedy else torch.distributions.Categorical(logits=sl).sample()  # (B, G)
                learn = ~use_log[:, None]  # the anchor term counts where the policy chose the path
                logp_old = torch.log_softmax(sl, -1).gather(2, act[..., None])[..., 0]
                if not search:  # searched anchors are not drawn from the policy: their term is path_search's target
                    logp_old = logp_old + torch.where(learn, a_logp.gather(1, anc), 0.0)
                self._ref_logp = torch.log_softmax(self.ref.speed_logits(tok, mask, path), -1)
                self._anchor = {"anc": anc, "top": top, "topi": topi, "learn": learn, "top1": logits.argmax(1),
                                "search": search, "prior": a_logp.gather(1, topi),
                                "ref": torch.log_softmax(self.ref.anchor_head(tok[:, 0]), -1)}
            else:
                pred = paths[torch.arange(B), logits.argmax(1)]
                path = torch.where(use_log[:, None, None], b["path"], pred)
                sl = self.model.speed_logits(tok, mask, path[:, None])[:, 0]
                act = (sl.argmax(-1, keepdim=True).expand(B, G) if greedy
                       else torch.distributions.Categorical(logits=sl).sample((G,)).T)  # (B, G)
                logp_old = torch.log_softmax(sl, -1).gather(1, act)
                self._ref_logp = torch.log_softmax(self.ref.speed_logits(tok, mask, path[:, None])[:, 0], -1)
        # the states whose agents are the log's this update (the curriculum; always where the path is)
        logged = (use_log.numpy() | (self.rng.random(B) < p_logged)) if self.wm is not None else np.ones(B, bool)
        t0 = time.perf_counter()
        r = self.sim({k: v for k, v in b.items() if k != "path"}, path.numpy(), act.numpy(), logged)
        sps = B * G * cfg.horizon / max(time.perf_counter() - t0, 1e-9)
        return (tok, mask), path, act, logp_old, r, sps

    def loss(self, scene, path, act, logp_old, adv):
        ref = getattr(self, "_ref_logp", None)
        if path.ndim == 4:  # a path per sample (path_top_k): log pi(a, v) = log pi(a) + log pi(v | path_a)
            sl = self.model.speed_logits(*scene, path)  # (B, G, S)
            logp_all = torch.log_softmax(sl, -1)
            a = self._anchor
            a_all = torch.log_softmax(self.model.anchor_head(scene[0][:, 0]), -1)  # (B, A), every anchor
            a_top = self._anchor_logp(self.model.anchor_head(scene[0][:, 0]), a["top"])
            logp = logp_all.gather(2, act[..., None])[..., 0]
            if a["search"]:  # cross-entropy to the improved anchor distribution, where the policy chose the path
                ce = -(a["target"] * a_top.gather(1, a["topi"])).sum(-1)
                learn = a["learn"][:, 0].float()
                path_loss = (ce * learn).sum() / learn.sum().clamp(min=1.0)
            else:
                logp = logp + torch.where(a["learn"], a_top.gather(1, a["anc"]), 0.0)
                path_loss = logp.sum() * 0
            ent = (-(logp_all.exp() * logp_all).sum(-1).mean()
                   - (a_top.exp() * a_top.masked_fill(~a["top"], 0.0)).sum(-1).mean())
            # KL to the imitation planner: over every anchor, plus the speed's at the sampled paths
            kl_ref = ((a_all.exp() * (a_all - a["ref"])).sum(-1).mean()
                      + (logp_all.exp() * (logp_all - ref)).sum(-1).mean())
        else:
            sl = self.model.speed_logits(*scene, path[:, None])[:, 0]
            logp_all = torch.log_softmax(sl, -1)
            logp = logp_all.gather(1, act)
            path_loss = logp.sum() * 0
            ent = -(logp_all.exp() * logp_all).sum(-1).mean()
            # KL(pi || pi_ref) to the imitation planner, GRPO's anchor against drifting off what the expert does
            kl_ref = (logp_all.exp() * (logp_all - ref)).sum(-1).mean() if ref is not None else logp_all.sum() * 0
        if self.cfg.algo == "ppo":
            ratio = (logp - logp_old).exp()
            pg = -torch.min(ratio * adv, ratio.clamp(1 - self.cfg.clip, 1 + self.cfg.clip) * adv).mean()
        else:
            pg = -(adv * logp).mean()
        kl = (logp_old - logp).mean()
        self._kl_ref = float(kl_ref.detach())
        return pg + path_loss - self.cfg.entropy * ent + self.cfg.kl_ref * kl_ref, ent, kl

    def advantages(self, R: torch.Tensor) -> torch.Tensor:
        """Group-centred advantages scaled by the batch's spread, not each group's own: a group whose samples
        differ by a few centimetres of progress must not weigh as much as one where a speed collides. R (B, G).

        With `path_search` the baseline is each anchor's own mean, Q(s, a) (a speed is judged against the other
        speeds on its path), and the anchor head's target is the improved distribution over the K anchors,
        q(a) proportional to pi(a | s) exp(Q(s, a) / (path_eta std(R))), stored for `loss`."""
        a = self._anchor
        if a is None or not a["search"]:
            return (R - R.mean(1, keepdim=True)) / (R.std() + 1e-4)
        B, G = R.shape
        K = self.cfg.path_top_k
        q = R.reshape(B, G // K, K).mean(1)  # (B, K): column k is anchor topi[:, k]
        scale = R.std() + 1e-4
        a["target"] = torch.softmax(a["prior"] + q / (self.cfg.path_eta * scale), -1)
        a["q"] = q
        return (R - q.repeat(1, G // K)) / scale

    def save(self):
        tmp = self.out / "ckpt.tmp.pt"
        torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(), "update": self.update,
                    "history": self.history, "config": asdict(self.cfg), "net": asdict(self.ncfg),
                    "features": asdict(self.fcfg), "stage": "rl"}, tmp)
        tmp.replace(self.out / "ckpt.pt")

    def run(self) -> dict:
        try:
            return self._run()
        finally:
            self.sim.close()  # Ray actors (and a Ray this stage started) go with the run

    def _run(self) -> dict:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        cfg = self.cfg
        (self.out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        tb = SummaryWriter(str(self.out / "tb"))
        start_file = self.out / "heldout_start.json"  # the imitation policy on the held-out states, update 0
        if cfg.eval_every > 0 and self.update == 0:
            start_file.write_text(json.dumps(self.validate(cfg.eval_states)))
        heldout_start = json.loads(start_file.read_text()) if start_file.exists() else {}
        for k, v in heldout_start.items():
            tb.add_scalar(f"rl/heldout/{k}", v, 0)
        bar = tqdm(range(self.update, cfg.updates), desc=f"rl ({cfg.agents}, {cfg.algo})", disable=None,
                   mininterval=1.0)
        for _ in bar:
            t0 = time.perf_counter()
            p_logged = max(0.0, 1.0 - self.update / max(cfg.curriculum, 1))
            idx = self.draw()
            b = batch(self.data, idx, self.keys())
            if cfg.hazards > 0:
                inject_pedestrians(b, self.rng, cfg.hazards, self.fcfg)
            scene, path, act, logp_old, r, sps = self.rollout(b, p_logged)
            adv = self.advantages(torch.as_tensor(r["total"], dtype=torch.float32))
            for _ in range(cfg.ppo_epochs if cfg.algo == "ppo" else 1):
                loss, ent, _ = self.loss(scene, path, act, logp_old, adv)
                self.opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.params, 1.0)
                self.opt.step()
            with torch.no_grad():  # how far this update moved the policy on its own samples
                _, _, kl = self.loss(scene, path, act, logp_old, adv)
            self.update += 1
            row = {"update": self.update, "p_logged": p_logged, "loss": loss.item(), "entropy": ent.item(),
                   "approx_kl": kl.item(), "kl_ref": self._kl_ref, "rollout_steps_per_s": sps, "update_s": time.perf_counter() - t0,
                   "speed_mean_m_s": float(self.ncfg.speeds()[act.numpy()].mean()),
                   **{f"reward/{k}": float(v.mean()) for k, v in r.items()}}
            if self._anchor is not None and bool(self._anchor["learn"].any()):  # how often the policy's sampled
                # path is not the lateral head's top-1
                a, lrn = self._anchor, self._anchor["learn"][:, 0]
                if a["search"]:  # the target's mass off the top-1 anchor (topi[:, 0])
                    row["path_not_top1"] = float(1.0 - a["target"][lrn, 0].mean())
                else:
                    row["path_not_top1"] = float((a["anc"] != a["top1"][:, None])[lrn].float().mean())
            if cfg.eval_every > 0 and (self.update % cfg.eval_every == 0 or self.update == cfg.updates):
                row.update({f"heldout/{k}": v for k, v in self.validate(cfg.eval_states).items()})
            self.history.append(row)
            for k, v in row.items():
                if k != "update":
                    tb.add_scalar(f"rl/{k}", v, self.update)
            bar.set_postfix(R=f"{row['reward/total']:.2f}", coll=f"{row['reward/collided']:.2f}")
            if self.update % 10 == 0 or self.update == cfg.updates:
                self.log(f"rl update {self.update}/{cfg.updates}: reward {row['reward/total']:.2f} "
                         f"(collision rate {row['reward/collided']:.3f}, with unseen agents "
                         f"{row['reward/collided_unseen']:.3f}, progress {row['reward/progress']:.2f}, "
                         f"imitation {row['reward/imitation']:.2f}), entropy {row['entropy']:.3f}, "
                         f"approx-KL {row['approx_kl']:.4f}, {sps:.0f} rollout steps/s")
                self.save()
        tb.close()
        metrics = {"stage": "rl", "agents": cfg.agents, "algo": cfg.algo, "history": self.history,
                   "heldout_start": heldout_start, "val": self.validate()}
        (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        return metrics

    def validate(self, n: int = 512) -> dict:
        """Greedy speeds on held-out states (the same `n` every time, from the validation episodes), predicted
        paths and agents: mean reward terms. Draws nothing from the training's random stream."""
        if not len(self.va):
            return {}
        idx = np.random.default_rng(123).choice(self.va, size=min(n, len(self.va)), replace=False)
        b = batch(self.data, idx, self.keys())
        saved, saved_rng = self.cfg.group, self.rng
        self.cfg.group, self.rng = 1, np.random.default_rng(124)
        try:
            _, _, _, _, r, _ = self.rollout(b, 0.0, greedy=True)
        finally:
            self.cfg.group, self.rng = saved, saved_rng
        return {k: float(v.mean()) for k, v in r.items()}


__all__ = ["RLConfig", "RLStage", "RayRollouts", "Rollouts", "ego_rollout", "rewards"]
