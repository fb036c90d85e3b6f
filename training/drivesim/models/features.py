"""Feature builders: the perceived scene -> fixed-size ego-frame tensors with masks (what PerlAD's networks see).

The builder only reads a `PerceivedScene` (visible agents within range and not occluded, the route, the light
status, the ego's odometry) and the map; it never sees the simulator state, so the same code runs on collected
episodes (rebuilt into scenes by `dataset/learn_data.py`), in closed-loop evaluation and in the ROS planner node.
It is stateful per env: it keeps the tracks of the last HISTORY seconds to give each agent a history.

Tensors per env (ego frame: x forward, y right, metres scaled by POS_SCALE):
  ego (EGO_DIM,): speed, accel, speed limit, next light (distance, red/yellow/green/none), stop sign (distance,
      present), near command one-hot (6);
  route (R, 4): x, y, cos, sin of the route ahead, R points ROUTE_STEP apart; route_mask (R,);
  agents (N, AGENT_DIM): per history step (H, oldest first) x, y, cos, sin, speed, seen; then length, width,
      kind one-hot (5); the N nearest visible agents now; agents_mask (N,); agent_ids (N,) track ids (-1 none);
  lanes (L, M, LANE_DIM): polylines of the L lanes nearest to the ego within lane_radius, M points each: x, y,
      cos, sin, left solid, right solid, junction, red, yellow, green (the state of the light governing the
      lane's entry); lanes_mask (L,).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..maps.lanegraph import Command, LaneGraph, MarkingType
from ..sim.perception import PerceivedScene
from ..sim.state import AgentKind, LightState

POS_SCALE = 20.0  # [m] positions are divided by this
SPEED_SCALE = 10.0  # [m/s]
DIST_CAP = 60.0  # [m] light / stop distances are clipped here (and "none" reads as the cap)
SOLID = (MarkingType.Solid, MarkingType.SolidSolid, MarkingType.SolidBroken, MarkingType.BrokenSolid,
         MarkingType.Curb, MarkingType.Grass)
COMMANDS = (Command.LEFT, Command.RIGHT, Command.STRAIGHT, Command.LANEFOLLOW, Command.CHANGELANELEFT,
            Command.CHANGELANERIGHT)
EGO_DIM = 9 + len(COMMANDS)
STEP_DIM = 6  # per history step
STATIC_DIM = 2 + len(AgentKind)
LANE_DIM = 10


@dataclass(frozen=True)
class FeatureConfig:
    num_agents: int = 24  # N
    history: int = 4  # H steps, history_dt apart (the newest is now)
    history_dt: float = 0.5  # [s]
    route_points: int = 20  # R
    route_step: int = 2  # [m] between route points (the perceived route is 1 m apart)
    num_lanes: int = 16  # L
    lane_points: int = 10  # M
    lane_radius: float = 30.0  # [m]

    @property
    def agent_dim(self) -> int:
        return self.history * STEP_DIM + STATIC_DIM


@dataclass
class Features:
    """Batched (E, ...) float32 tensors and bool masks; see the module doc."""

    ego: np.ndarray
    route: np.ndarray
    route_mask: np.ndarray
    agents: np.ndarray
    agents_mask: np.ndarray
    agent_ids: np.ndarray
    lanes: np.ndarray
    lanes_mask: np.ndarray

    NAMES = ("ego", "route", "route_mask", "agents", "agents_mask", "lanes", "lanes_mask")

    def inputs(self) -> dict[str, np.ndarray]:
        """The network inputs by name (masks as float32, as the ONNX graphs take them)."""
        return {k: np.asarray(getattr(self, k), np.float32) for k in self.NAMES}

    def __getitem__(self, i) -> Features:
        return Features(*(getattr(self, f)[i] for f in ("ego", "route", "route_mask", "agents", "agents_mask",
                                                        "agent_ids", "lanes", "lanes_mask")))


def _to_ego(x, y, pose):
    """World (x, y) arrays -> frame of pose (x, y, yaw)."""
    dx, dy = x - pose[0], y - pose[1]
    c, s = np.cos(pose[2]), np.sin(pose[2])
    return dx * c + dy * s, -dx * s + dy * c


class FeatureBuilder:
    """Stateful over time for E envs: call `reset` when an env starts a new episode, then `__call__` once per
    step (at any rate: the history is sampled at history_dt from what was seen)."""

    def __init__(self, g: LaneGraph, num_envs: int, cfg: FeatureConfig | None = None):
        self.g, self.E, self.cfg = g, num_envs, cfg or FeatureConfig()
        self.tracks: list[deque] = [deque() for _ in range(num_envs)]  # (t, ids, world rows (k, 7)) per step
        self._lane_light = np.asarray(g.lane_light)
        # per-lane polylines, resampled once per lane on demand
        self._lane_cache: dict[int, np.ndarray] = {}

    def reset(self, env: int | None = None) -> None:
        for e in range(self.E) if env is None else [env]:
            self.tracks[e].clear()

    # -- pieces ---------------------------------------------------------------------------------------
    def _ego(self, sc: PerceivedScene, e: int) -> np.ndarray:
        out = np.zeros(EGO_DIM, np.float32)
        out[0] = sc.ego_speed[e] / SPEED_SCALE
        out[1] = (sc.ego_accel[e] if sc.ego_accel is not None else 0.0) / 5.0
        out[2] = sc.speed_limit[e] / SPEED_SCALE
        ld, ls = float(sc.light_dist[e]), int(sc.light_state[e])
        out[3] = min(ld if np.isfinite(ld) else DIST_CAP, DIST_CAP) / DIST_CAP
        out[4:7] = [ls == LightState.RED, ls == LightState.YELLOW, ls == LightState.GREEN]
        sd = float(sc.stop_dist[e])
        out[7] = min(sd if np.isfinite(sd) else DIST_CAP, DIST_CAP) / DIST_CAP
        out[8] = np.isfinite(sd)
        cmd = sc.command[e][min(10, sc.command.shape[1] - 1)] if sc.route_valid[e].any() else Command.LANEFOLLOW
        for k, c in enumerate(COMMANDS):
            out[9 + k] = cmd == c
        return out

    def _route(self, sc: PerceivedScene, e: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.cfg
        idx = np.minimum(np.arange(c.route_points) * c.route_step, sc.route.shape[1] - 1)
        pts = sc.route[e, idx]
        nxt = sc.route[e, np.minimum(idx + 1, sc.route.shape[1] - 1)]
        d = nxt - pts
        d[np.linalg.norm(d, axis=1) < 1e-6] = [1.0, 0.0]
        h = np.arctan2(d[:, 1], d[:, 0])
        feats = np.concatenate([pts / POS_SCALE, np.cos(h)[:, None], np.sin(h)[:, None]], 1)
        mask = sc.route_valid[e, idx]
        return np.where(mask[:, None], feats, 0.0).astype(np.float32), mask

    def _agents(self, sc: PerceivedScene, e: int, pose: np.ndarray, t: float):
        c = self.cfg
        vis = sc.agents_valid[e]
        ids = (sc.agent_ids if sc.agent_ids is not None else np.arange(1, vis.shape[0] + 1))[vis]
        rows = sc.agents[e, vis]  # ego frame now
        # to the map frame, to keep the track across ego motion
        cp, sp = np.cos(pose[2]), np.sin(pose[2])
        wx = pose[0] + rows[:, 0] * cp - rows[:, 1] * sp
        wy = pose[1] + rows[:, 0] * sp + rows[:, 1] * cp
        world = np.concatenate([wx[:, None], wy[:, None], (rows[:, 2] + pose[2])[:, None], rows[:, 3:]], 1)
        tr = self.tracks[e]
        tr.append((t, ids.astype(np.int64), world))
        horizon = (c.history - 1) * c.history_dt + 1e-6
        while tr and tr[0][0] < t - horizon - 0.2:
            tr.popleft()
        order = np.argsort(np.hypot(rows[:, 0], rows[:, 1]))[: c.num_agents]
        n = len(order)
        feats = np.zeros((c.num_agents, c.agent_dim), np.float32)
        mask = np.zeros(c.num_agents, bool)
        aid = np.full(c.num_agents, -1, np.int64)
        if n == 0:
            return feats, mask, aid
        sel_ids = ids[order]
        aid[:n], mask[:n] = sel_ids, True
        times = np.array([s[0] for s in tr])
        for h in range(c.history):
            tq = t - (c.history - 1 - h) * c.history_dt
            k = int(np.argmin(np.abs(times - tq)))
            if abs(times[k] - tq) > 0.6 * c.history_dt and h < c.history - 1:
                continue  # nothing seen then
            _, hid, hw = tr[k]
            pos = {int(i): j for j, i in enumerate(hid)}
            j = np.array([pos.get(int(i), -1) for i in sel_ids])
            ok = j >= 0
            if not ok.any():
                continue
            w = hw[j[ok]]
            x, y = _to_ego(w[:, 0], w[:, 1], pose)
            yaw = w[:, 2] - pose[2]
            col = h * STEP_DIM
            feats[:n][ok, col:col + STEP_DIM] = np.stack(
                [x / POS_SCALE, y / POS_SCALE, np.cos(yaw), np.sin(yaw), w[:, 3] / SPEED_SCALE, np.ones_like(x)], -1)
        st = c.history * STEP_DIM
        sel = rows[order]
        feats[:n, st] = sel[:, 4] / 5.0
        feats[:n, st + 1] = sel[:, 5] / 2.0
        kinds = np.clip(sel[:, 6].astype(int), 0, len(AgentKind) - 1)
        feats[np.arange(n), st + 2 + kinds] = 1.0
        return feats, mask, aid

    def _lane_poly(self, lane: int) -> np.ndarray:
        """(K, 5) x, y, left solid, right solid, junction of a lane's points."""
        p = self._lane_cache.get(lane)
        if p is None:
            g = self.g
            a, n = int(g.lane_start[lane]), int(g.lane_npts[lane])
            sl = slice(a, a + n)
            p = np.stack([g.pt_xy[sl, 0], g.pt_xy[sl, 1], np.isin(g.pt_left_mark[sl], SOLID),
                          np.isin(g.pt_right_mark[sl], SOLID),
                          np.full(n, g.lane_junction[lane] >= 0)], -1).astype(np.float64)
            self._lane_cache[lane] = p
        return p

    def _lanes(self, sc: PerceivedScene, e: int, pose: np.ndarray):
        c, g = self.cfg, self.g
        feats = np.zeros((c.num_lanes, c.lane_points, LANE_DIM), np.float32)
        mask = np.zeros(c.num_lanes, bool)
        near = np.asarray(g.tree.query_ball_point(pose[:2], r=c.lane_radius), np.int64)
        if not len(near):
            return feats, mask
        lanes = g.pt_lane[near]
        d = np.hypot(g.pt_xy[near, 0] - pose[0], g.pt_xy[near, 1] - pose[1])
        order = np.lexsort((d, lanes))
        lanes_sorted, d_sorted = lanes[order], d[order]
        first = np.concatenate([[True], lanes_sorted[1:] != lanes_sorted[:-1]])
        uniq, dmin = lanes_sorted[first], d_sorted[first]
        pick = uniq[np.argsort(dmin)][: c.num_lanes]
        lights = sc.lights[e] if sc.lights is not None and sc.lights.size else None
        # every picked lane at once: its points inside the radius (first to last, as one polyline), resampled to
        # M points evenly spaced by arc length, in the ego frame (row i of each (n, ...) array is lane pick[i])
        polys = [self._lane_poly(int(lane)) for lane in pick]
        n, lens = len(pick), np.array([len(p) for p in polys])
        allp = np.concatenate(polys)
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
        inside = np.hypot(allp[:, 0] - pose[0], allp[:, 1] - pose[1]) <= c.lane_radius
        pos = np.arange(len(allp))
        first = np.minimum.reduceat(np.where(inside, pos, len(allp)), starts)
        last = np.maximum.reduceat(np.where(inside, pos, -1), starts)
        none = first > last  # no point inside (the radius' rounding edge): the lane's nearest point alone
        if none.any():
            d = np.hypot(allp[:, 0] - pose[0], allp[:, 1] - pose[1])
            for i in np.flatnonzero(none):
                first[i] = last[i] = starts[i] + int(np.argmin(d[starts[i]:starts[i] + lens[i]]))
        seglen = last - first + 1
        col = np.arange(seglen.max())[None]
        P = allp[np.minimum(first[:, None] + col, last[:, None])]  # (n, K, 5), padded with each lane's last point
        s_arc = np.concatenate([np.zeros((n, 1)), np.cumsum(np.linalg.norm(np.diff(P[..., :2], axis=1), axis=2), 1)], 1)
        q = np.linspace(0.0, s_arc[np.arange(n), seglen - 1], c.lane_points, axis=1)
        xw, yw = np.empty_like(q), np.empty_like(q)
        for i, k in enumerate(seglen):
            xw[i], yw[i] = np.interp(q[i], s_arc[i, :k], P[i, :k, 0]), np.interp(q[i], s_arc[i, :k], P[i, :k, 1])
        at = np.round(np.linspace(0, seglen - 1, c.lane_points, axis=1)).astype(int)
        flags = P[np.arange(n)[:, None], at, 2:5]
        x, y = _to_ego(xw, yw, pose)
        h = (np.arctan2(np.gradient(y, axis=1), np.gradient(x, axis=1)) if c.lane_points > 1
             else np.zeros((n, 1)))
        li = self._lane_light[pick]
        ls = np.where(li >= 0, lights[np.maximum(li, 0)], -1) if lights is not None else np.full(n, -1)
        light = np.stack([ls == LightState.RED, ls == LightState.YELLOW, ls == LightState.GREEN], -1).astype(np.float32)
        feats[:n] = np.concatenate([np.stack([x / POS_SCALE, y / POS_SCALE, np.cos(h), np.sin(h)], -1), flags,
                                    np.broadcast_to(light[:, None], (n, c.lane_points, 3))], 2)
        mask[:n] = True
        return feats, mask

    # -- the builder ----------------------------------------------------------------------------------
    def __call__(self, sc: PerceivedScene, t: float | np.ndarray) -> Features:
        """Features of every env at time t [s] (a scalar or (E,))."""
        if sc.ego_pose is None:
            raise ValueError("PerceivedScene.ego_pose is missing: the feature builder needs the ego's odometry "
                             "(ScenePerceiver fills it; a ROS scene message must carry it)")
        E = self.E
        ts = np.broadcast_to(np.asarray(t, float), (E,))
        out = {k: [] for k in ("ego", "route", "route_mask", "agents", "agents_mask", "agent_ids", "lanes",
                               "lanes_mask")}
        for e in range(E):
            pose = np.asarray(sc.ego_pose[e], float)
            out["ego"].append(self._ego(sc, e))
            r, rm = self._route(sc, e)
            out["route"].append(r)
            out["route_mask"].append(rm)
            a, am, ai = self._agents(sc, e, pose, float(ts[e]))
            out["agents"].append(a)
            out["agents_mask"].append(am)
            out["agent_ids"].append(ai)
            ln, lm = self._lanes(sc, e, pose)
            out["lanes"].append(ln)
            out["lanes_mask"].append(lm)
        return Features(**{k: np.stack(v) for k, v in out.items()})
