"""RouteMonitor: the Leaderboard 2.0 criteria, step by step, for E envs each driving its own route.

Tests per step (``update``): route completion (forward progress over the 1 m route points, a window of
PROGRESS_WINDOW points ahead, snapping to 100 % when > 99 % and within 10 m of the end), collisions (one per
actor per 5 s, none within 5 m of a registered one, none while the ego is slower than 0.1 m/s), red lights,
stop signs, outside-route-lanes distance, route deviation (> 30 m from the route), blocked (< 0.1 m/s for
60 s) and route timeout (0.8 s per metre + 5 s). ``record(e)`` returns the Leaderboard 2.0 route record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from ..maps.lanegraph import LaneGraph
from ..routes.planner import DenseRoute
from ..sim.events import (
    ego_collisions,
    ego_lane_status,
    in_stop_boxes,
    red_light_crossings,
    time_to_collision,
)
from ..sim.state import BEH, DT, EGO, KIND, AgentKind, SimState
from .bench2drive import (
    comfort_score,
    efficiency_checkpoints,
    empty_infractions,
    route_status,
    score_route,
)

PROGRESS_WINDOW = 2  # route points ahead examined per step (Leaderboard's RouteCompletionTest)
COMPLETION_PCT, COMPLETION_DIST = 99.0, 10.0
COLLISION_SAME_ACTOR_TIME = 5.0  # [s]
COLLISION_AREA = 5.0  # [m]
COLLISION_MIN_SPEED = 0.1  # [m/s]
ROUTE_DEVIATION_DIST = 30.0  # [m]
DEVIATION_WINDOW = 40  # route points ahead of the progress index searched for the nearest route point
BLOCKED_SPEED, BLOCKED_TIME = 0.1, 60.0
SECONDS_PER_METER, TIMEOUT_BASE = 0.8, 5.0
STOP_SPEED = 0.1  # [m/s]

_KIND_KEY = {
    KIND.VEHICLE: ("collisions_vehicle", "vehicle"),
    KIND.CYCLIST: ("collisions_vehicle", "vehicle.bicycle"),
    KIND.PEDESTRIAN: ("collisions_pedestrian", "walker.pedestrian"),
    KIND.STATIC: ("collisions_layout", "static.prop"),
    KIND.EMERGENCY: ("collisions_vehicle", "vehicle.emergency"),
}
YIELD_BEHIND = 15.0  # [m] an emergency vehicle this close behind the ego, in its lane, ...
YIELD_LATERAL = 2.0  # [m]
YIELD_SLOW = 0.8  # ... and below this fraction of its desired speed, is being blocked by the ego
YIELD_TIME = 5.0  # [s] blocked this long (in total) = failure to yield (one infraction per route)
_EMERGENCY, _VEHICLE, _IDM, _REPLAY = KIND.EMERGENCY, KIND.VEHICLE, BEH.IDM, BEH.REPLAY  # ints for the kernels


# The average time to collision (TakeVLA's safety-margin measure): over the ticks on which some agent is on a
# collision course with the ego within AVG_TTC_HORIZON seconds (constant velocities, sim.events.time_to_collision),
# the mean of that TTC. Per route in meta (`avg_ttc`, None without such a tick; `ttc_ticks`), over a run in
# summary.json (`average_ttc`: every such tick of every route weighs the same). Higher: more margin kept.
AVG_TTC_HORIZON = 5.0  # [s]


def pad_routes(routes: list[DenseRoute]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(E, N, 2) points, (E, N, 2) unit directions, (E, N) completion %, (E,) lengths; padded by repeating the end."""
    E, N = len(routes), max(len(r) for r in routes)
    xy = np.zeros((E, N, 2))
    d = np.zeros((E, N, 2))
    pct = np.zeros((E, N))
    n = np.array([len(r) for r in routes])
    for e, r in enumerate(routes):
        xy[e, : len(r)], xy[e, len(r):] = r.xy, r.xy[-1]
        dd = np.stack([np.cos(r.yaw), np.sin(r.yaw)], 1)
        d[e, : len(r)], d[e, len(r):] = dd, dd[-1]
        pct[e, : len(r)], pct[e, len(r):] = 100.0 * r.cum_s / max(r.length, 1e-6), 100.0
    return xy, d, pct, n


@dataclass(frozen=True)
class MonitorEvent:
    """One row of the monitor's event table: env, sim time [s], infraction key (Leaderboard 2.0 name), where
    (CARLA world frame [m]: the ego for collisions, deviation, blocking, yielding and timeouts, the stop line's
    middle for red lights, the stop box for stop signs), the actor slot (collisions, else -1) and a code (the
    collided agent's AgentKind, the light's or stop sign's OpenDRIVE id, else -1)."""

    env: int
    t: float
    key: str
    x: float
    y: float
    actor: int = -1
    code: int = -1

    def message(self, g: LaneGraph | None = None) -> str:
        """The Leaderboard 2.0 infraction string of this event."""
        at = f"(x={self.x:.1f}, y={self.y:.1f}, z=0.0)"
        if self.key in ("collisions_vehicle", "collisions_pedestrian", "collisions_layout"):
            return f"Agent collided against object with type={_KIND_KEY[AgentKind(self.code)][1]} and id={self.actor} at {at}"
        return {"red_light": f"Agent ran a red light {self.code} at {at}",
                "stop_infraction": f"Agent ran a stop sign {self.code} at {at}",
                "route_dev": f"Agent deviated from the route at {at}",
                "vehicle_blocked": f"Agent got blocked at {at}",
                "yield_emergency_vehicle_infractions": f"Agent did not yield to an emergency vehicle at {at}",
                "route_timeout": f"Route timeout after {self.t:.1f} s"}[self.key]

    def row(self) -> dict:
        return {"t": round(self.t, 3), "kind": self.key, "actor": self.actor, "x": round(self.x, 3),
                "y": round(self.y, 3)}


class RouteMonitor:
    def __init__(self, g: LaneGraph, routes: list[DenseRoute], scenario_types: list[str | None] | None = None,
                 dt: float = DT, log_trajectory: bool = True, scenarios: list | None = None):
        """scenarios: each route's ScenarioSpec (or None); scenarios that allow the opposite lane (the TwoWays
        types) switch the wrong-direction test off along their stretch, and ParkingExit switches the whole
        outside-route-lanes test off until the ego has left its parking space, as scenario_runner does."""
        from ..scenarios import lanes_test_window, wrong_way_window

        self.map, self.dt, self.routes = g, dt, routes
        E = len(routes)
        self.scenario_types = scenario_types or [s.type if s is not None else None for s in (scenarios or [None] * E)]
        def windows(fn) -> np.ndarray:  # (E, 2) route arc-length windows; an empty one where fn gives None
            win = [fn(r, s) for r, s in zip(routes, scenarios or [None] * E, strict=True)]
            return np.array([w if w is not None else (np.inf, -np.inf) for w in win], np.float64).reshape(E, 2)

        self.wrong_ok = windows(wrong_way_window)
        self.lanes_ok = windows(lanes_test_window)
        self.route_xy, self.route_dir, self.route_pct, self.route_n = pad_routes(routes)
        self.route_len = np.array([r.length for r in routes], np.float64)
        self.length = np.array([r.length for r in routes])
        self.timeout = SECONDS_PER_METER * self.length + TIMEOUT_BASE
        self.idx = np.zeros(E, np.int64)
        self.rc = np.zeros(E)
        self.completed = np.zeros(E, bool)
        self.done = np.zeros(E, bool)
        self.outside_dist = np.zeros(E)
        self.blocked_t = np.zeros(E)
        self.last_coll_actor = np.full(E, -1, np.int64)  # the last collision's actor slot and time, per env
        self.last_coll_t = np.full(E, -1e9)
        self.stop_inside = np.zeros((E, len(g.stop_id)), bool)
        self.stop_done = np.zeros((E, len(g.stop_id)), bool)
        self.last_red = np.full(E, -1)
        self.min_ttc = np.full(E, np.inf)
        self.ttc_sum = np.zeros(E)  # the average TTC's sum and ticks (AVG_TTC_HORIZON)
        self.ttc_ticks = np.zeros(E, np.int64)
        self.ev_blocked_t = np.zeros(E)
        self.yielded = np.zeros(E, bool)  # a failure to yield was registered (one per route)
        self.steps = np.zeros(E, np.int64)
        self.events: list[MonitorEvent] = []  # every infraction, in order (the Leaderboard's strings are made from it)
        self._coll_live: list[int] = []  # indices of collision events whose location still suppresses new ones
        self.log = log_trajectory
        self._traj: list[tuple] = []

    PER_ENV = ("idx", "rc", "completed", "done", "outside_dist", "blocked_t", "last_coll_actor", "last_coll_t",
               "stop_inside", "stop_done", "last_red", "min_ttc", "ttc_sum", "ttc_ticks", "ev_blocked_t", "yielded",
               "steps")
    """Every per-env state array (first axis = env): what `carry_over` moves and what a masked reset touches."""

    def carry_over(self, keep: np.ndarray, old: RouteMonitor) -> None:
        """Take env e's progress from `old` where keep[e] (the routes of kept envs must be the same): gym's
        autoreset as one masked update of the state arrays and the event table."""
        keep = np.asarray(keep, bool)
        if self.log or old.log:
            raise ValueError("RouteMonitor.carry_over: only for monitors without a trajectory log (log_trajectory=False)")
        for f in self.PER_ENV:
            getattr(self, f)[keep] = getattr(old, f)[keep]
        kept = [i for i, ev in enumerate(old.events) if keep[ev.env]]
        remap = {i: k for k, i in enumerate(kept)}
        self.events = [old.events[i] for i in kept] + self.events
        self._coll_live = [remap[i] for i in old._coll_live if i in remap]

    def add_event(self, e: int, t: float, key: str, x: float, y: float, actor: int = -1, code: int = -1) -> None:
        self.events.append(MonitorEvent(int(e), float(t), key, float(x), float(y), int(actor), int(code)))

    def env_events(self, e: int) -> list[MonitorEvent]:
        return [ev for ev in self.events if ev.env == e]

    @property
    def infractions(self) -> list[dict[str, list[str]]]:
        """Per env, the Leaderboard 2.0 infraction strings of the events so far (made on demand)."""
        out = [empty_infractions() for _ in range(len(self.idx))]
        for ev in self.events:
            out[ev.env][ev.key].append(ev.message(self.map))
        return out

    # ------------------------------------------------------------------ per step
    def update(self, prev: SimState, state: SimState, lights: np.ndarray) -> np.ndarray:
        """Apply every criterion to the transition prev -> state. Returns `done` (E,).

        The per-env arithmetic of route progress, lanes, deviation, blocked, yielding, timeout and the logs is
        compiled (`_progress`, `_criteria`); this method turns its flags into the Leaderboard's entries."""
        active = ~self.done
        E = state.num_envs
        ex, ey = state.x[:, EGO].astype(np.float64), state.y[:, EGO].astype(np.float64)
        ev = state.speed[:, EGO]
        t = state.t
        g = self.map
        self.steps += active
        # 1. route completion (and, for 6., the distance to the route ahead of the progress index)
        dmin = _progress(self.route_xy, self.route_dir, self.route_n, self.idx, ex, ey, active)
        # 2. collisions
        hits = ego_collisions(state)
        if hits.any():
            hits &= active[:, None] & (ev[:, None] >= COLLISION_MIN_SPEED)
            for e in np.flatnonzero(hits.any(axis=1)):
                for a in np.flatnonzero(hits[e]):
                    self._register_collision(e, int(a), state, float(t[e]))
        if self._coll_live:  # a collision's location stops suppressing new ones once the ego is COLLISION_AREA away
            self._coll_live = [i for i in self._coll_live if np.linalg.norm(
                self._coll_xy(i) - np.array([ex[self.events[i].env], ey[self.events[i].env]])) <= COLLISION_AREA]
        # 3. red lights
        cross = red_light_crossings(prev, state, g, lights)
        if cross.any():
            for e, s in zip(*np.nonzero(cross & active[:, None]), strict=True):
                light = int(g.stopline_light[s])
                if light != self.last_red[e]:
                    self.last_red[e] = light
                    p = 0.5 * (g.stopline_p0[s] + g.stopline_p1[s])
                    self.add_event(e, t[e], "red_light", p[0], p[1], code=int(g.light_id[light]))
        # 4. stop signs
        if self.stop_inside.shape[1]:
            inside = in_stop_boxes(state, g)
            if inside.any() or self.stop_inside.any():
                self.stop_done |= inside & (ev[:, None] < STOP_SPEED)
                left = self.stop_inside & ~inside & active[:, None]
                for e, k in zip(*np.nonzero(left & ~self.stop_done), strict=True):
                    b = g.stop_box[k]
                    self.add_event(e, t[e], "stop_infraction", b[0], b[1], code=int(g.stop_id[k]))
                self.stop_done &= ~left
            self.stop_inside = inside
        # 5.-8. lanes, deviation, blocked, emergency vehicles, timeout; TTC and the efficiency log
        off, wrong = ego_lane_status(state, g)
        flags = np.zeros((5, E), np.bool_)  # reach, dev, blocked, tout, yield
        tspeed, cnt = np.zeros(E), np.zeros(E, np.int64)
        ttc = time_to_collision(state)
        course = active & (ttc <= AVG_TTC_HORIZON)  # ticks on a collision course: the average TTC's
        self.ttc_sum += np.where(course, ttc, 0.0)
        self.ttc_ticks += course
        _criteria(active, ex, ey, prev.x, prev.y, t, self.dt, self.idx, self.route_pct, self.route_xy, self.route_n,
                  self.route_len, self.rc, self.completed, off, wrong, self.wrong_ok, self.lanes_ok,
                  self.outside_dist, dmin, self.blocked_t, self.timeout, state.x, state.y, state.yaw, state.speed,
                  state.desired_speed, state.valid, state.kind, state.behavior, self.ev_blocked_t,
                  ttc, self.min_ttc, flags, tspeed, cnt)
        reach, dev, blocked, tout, yielded = flags
        if flags[1:].any():
            for e in np.flatnonzero(dev):
                self.add_event(e, t[e], "route_dev", ex[e], ey[e])
            for e in np.flatnonzero(blocked):
                self.add_event(e, t[e], "vehicle_blocked", ex[e], ey[e])
            for e in np.flatnonzero(yielded & ~self.yielded):  # one per route
                self.yielded[e] = True
                self.add_event(e, t[e], "yield_emergency_vehicle_infractions", ex[e], ey[e])
            for e in np.flatnonzero(tout):
                self.add_event(e, t[e], "route_timeout", ex[e], ey[e])
        if self.log:
            self._traj.append((ex, ey, state.yaw[:, EGO].astype(np.float64), ev.astype(np.float64), self.rc.copy(),
                               tspeed, cnt, active.copy()))
        self.done |= reach | dev | blocked | tout
        return self.done.copy()

    def _coll_xy(self, i: int) -> np.ndarray:
        return np.array([self.events[i].x, self.events[i].y])

    def _register_collision(self, e: int, a: int, state: SimState, t: float) -> None:
        if a == self.last_coll_actor[e] and t - self.last_coll_t[e] < COLLISION_SAME_ACTOR_TIME:
            return
        here = np.array([float(state.x[e, EGO]), float(state.y[e, EGO])])
        if any(self.events[i].env == e and np.linalg.norm(self._coll_xy(i) - here) <= COLLISION_AREA
               for i in self._coll_live):
            return
        self.last_coll_actor[e], self.last_coll_t[e] = a, t
        key, _ = _KIND_KEY[AgentKind(int(state.kind[e, a]))]
        self._coll_live.append(len(self.events))
        self.add_event(e, t, key, here[0], here[1], actor=a, code=int(state.kind[e, a]))

    # ------------------------------------------------------------------ results
    def outside_pct(self, e: int) -> float:
        return float(min(100.0, 100.0 * self.outside_dist[e] / max(self.length[e], 1e-6)))

    def record(self, e: int, route_id: str, index: int = 0, duration_system: float = 0.0, town: str = "") -> dict:
        """The Leaderboard 2.0 route record (plus Bench2Drive signals under ``meta``, and the event table of the
        route under ``meta.events``: time, kind, actor slot, position)."""
        inf = empty_infractions()
        for ev in self.env_events(e):
            inf[ev.key].append(ev.message(self.map))
        pct = self.outside_pct(e)
        if pct > 0:
            inf["outside_route_lanes"].append(
                f"Agent went outside its route lanes for about {self.outside_dist[e]:.3f} meters "
                f"({pct:.2f}% of the completed route)")
        meta = {"route_length": float(self.length[e]), "duration_game": float(self.steps[e] * self.dt),
                "duration_system": float(duration_system), "town": town,
                "scenario_type": self.scenario_types[e], "min_ttc": float(self.min_ttc[e]) if np.isfinite(
                    self.min_ttc[e]) else None,
                "avg_ttc": float(self.ttc_sum[e] / self.ttc_ticks[e]) if self.ttc_ticks[e] else None,
                "ttc_ticks": int(self.ttc_ticks[e]), "efficiency": None, "comfort": None, "comfort_chunks": 0,
                "events": [ev.row() for ev in self.env_events(e)]}
        if self._traj:
            cols = [np.array([row[i][e] for row in self._traj]) for i in range(8)]
            act = cols[7].astype(bool)
            x, y, yaw, sp, rc, tsp, cnt = (c[act] for c in cols[:7])
            # comfort at 10 Hz (every other 20 Hz frame), as Bench2Drive's recorded metric frames
            stride = max(int(round(0.1 / self.dt)), 1)
            score, ok, chunks = comfort_score(x[::stride], y[::stride], yaw[::stride], self.dt * stride)
            meta["comfort"], meta["comfort_chunks"], meta["comfort_passing"] = score, chunks, ok
            eff = efficiency_checkpoints(rc, sp, tsp, cnt)
            meta["efficiency"] = float(np.mean(eff)) if eff else None
            for k, v in enumerate(eff):
                if v < 100.0:
                    inf["min_speed_infractions"].append(
                        f"Average speed is {v:.2f}% of the surrounding traffic's one (checkpoint {k})")
        scores = score_route(self.rc[e], inf, pct)
        status = route_status(bool(self.completed[e]), inf, scores["score_penalty"])
        return {
            "index": index,
            "route_id": route_id,
            "status": status,
            "num_infractions": sum(len(v) for v in inf.values()),
            "infractions": inf,
            "scores": scores,
            "meta": meta,
        }


@njit(cache=True)
def _progress(route_xy, route_dir, route_n, idx, ex, ey, active):  # pragma: no cover (compiled)
    """Advance each active env's progress index (E,) in place over the next PROGRESS_WINDOW route points the ego
    has passed (its centre beyond the point along the route's direction); returns the distance from the ego to
    the nearest of the DEVIATION_WINDOW route points from the (new) index on (E,)."""
    E = len(idx)
    dmin = np.full(E, np.inf)
    for e in range(E):
        if active[e]:
            for k in range(1, PROGRESS_WINDOW + 1):  # from the index as advanced so far (as the vectorised form)
                j = min(idx[e] + k, route_n[e] - 1)
                if route_dir[e, j, 0] * (ex[e] - route_xy[e, j, 0]) + route_dir[e, j, 1] * (ey[e] - route_xy[e, j, 1]) > 0:
                    idx[e] = max(idx[e], j)
        for k in range(DEVIATION_WINDOW):
            j = min(idx[e] + k, route_n[e] - 1)
            dmin[e] = min(dmin[e], math.hypot(route_xy[e, j, 0] - ex[e], route_xy[e, j, 1] - ey[e]))
    return dmin


@njit(cache=True)
def _criteria(active, ex, ey, px, py, t, dt, idx, route_pct, route_xy, route_n, route_len, rc, completed, off, wrong,
              wrong_ok, lanes_ok, outside_dist, dmin, blocked_t, timeout, x, y, yaw, speed, desired, valid, kind,
              behavior, ev_blocked_t, ttc, min_ttc, flags, tspeed, cnt):  # pragma: no cover (compiled)
    """Per env: completion (RC rounded to 0.01 %, snapping to 100 within COMPLETION_DIST of the end), metres
    outside the route lanes (off road, or against the traffic outside the scenario's exempt stretches), route
    deviation, blocked time, time an emergency vehicle is held up right behind the ego, timeout, minimum TTC,
    and the background vehicles' mean speed (efficiency). State arrays are updated in place; flags (5, E) =
    reached the end, deviated, blocked, timed out, failed to yield."""
    E, A = x.shape
    for e in range(E):
        act = active[e]
        if act:
            rc[e] = np.rint(route_pct[e, idx[e]] * 100.0) / 100.0  # numpy's round(x, 2)
        j = route_n[e] - 1
        reach = act and rc[e] > COMPLETION_PCT and math.hypot(ex[e] - route_xy[e, j, 0], ey[e] - route_xy[e, j, 1]) < COMPLETION_DIST
        if reach:
            rc[e], completed[e] = 100.0, True
        s_route = route_pct[e, idx[e]] * 0.01 * route_len[e]
        exempt = lanes_ok[e, 0] <= s_route <= lanes_ok[e, 1]
        wr = wrong[e] and not (wrong_ok[e, 0] <= s_route <= wrong_ok[e, 1])
        if act and not exempt and (off[e] or wr):
            outside_dist[e] += math.hypot(ex[e] - px[e, 0], ey[e] - py[e, 0])
        dev = act and not completed[e] and dmin[e] > ROUTE_DEVIATION_DIST
        blocked_t[e] = blocked_t[e] + dt if speed[e, 0] < BLOCKED_SPEED else 0.0
        blocked = act and not completed[e] and blocked_t[e] > BLOCKED_TIME
        c, s = math.cos(yaw[e, 0]), math.sin(yaw[e, 0])
        held, n, total = False, 0, 0.0
        for a in range(1, A):
            if not valid[e, a]:
                continue
            if kind[e, a] == _EMERGENCY:
                dx, dy = x[e, a] - ex[e], y[e, a] - ey[e]
                lon, lat = dx * c + dy * s, -dx * s + dy * c
                if -YIELD_BEHIND < lon < 0 and abs(lat) < YIELD_LATERAL and speed[e, a] < YIELD_SLOW * desired[e, a]:
                    held = True
            if kind[e, a] == _VEHICLE and (behavior[e, a] == _IDM or behavior[e, a] == _REPLAY):
                n += 1
                total += speed[e, a]
        if act and held:
            ev_blocked_t[e] += dt
        tout = act and not completed[e] and not dev and not blocked and t[e] > timeout[e]
        if act:
            min_ttc[e] = min(min_ttc[e], ttc[e])
        flags[0, e], flags[1, e], flags[2, e], flags[3, e] = reach, dev, blocked, tout
        flags[4, e] = act and ev_blocked_t[e] > YIELD_TIME
        cnt[e], tspeed[e] = n, total / n if n > 0 else 0.0
