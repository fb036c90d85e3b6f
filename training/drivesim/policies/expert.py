"""The privileged expert (``--policy expert``): a vector-space counterpart of CARLA's PDM-Lite.

It sees the whole simulator state (``privileged = True``: `act` gets a `Truth`), and plans every
``replan_every`` steps:

1. **Forecast** every agent near the ego over the horizon: lane followers (IDM, flows) along their lane and
   chosen successor at their speed, walkers along their walk, scripted actors along their script path at the
   speed their current phase asks for, replayed agents from their log, everything else standing.
2. **Path proposals**: the route centreline, and when the route is blocked by something that will not move
   (parked or crashed cars, construction, a stopped scripted actor), lateral offsets that pass it on the
   left or the right; when an emergency vehicle closes in from behind, an offset into a neighbouring lane.
   An offset path must keep the whole car on driving lanes (`LaneGraph.on_lane`); passing through a lane of
   the opposite direction costs more than a same-direction one. Standing beside the route (leaving a parking
   space, ParkingExit), a pull-out ramp from where the ego stands back onto the route.
3. **Speed proposals**: IDM along the path (leaders: agents in the path corridor; stop points: red/yellow
   lights, stop signs, static blockers with room to swing out), simulated over the horizon against the
   forecasts (oriented boxes with margins). The first predicted collision becomes a stop point just before it
   and the proposal is simulated again (a few rounds): the ego yields to whatever crosses its path in time,
   and goes when the conflict has passed.
4. **Creeping**: approaching a junction where the ego gives way to lanes it cannot see far enough up (hidden
   behind vehicles or props, `sight.py`), the speed is capped to approach the junction slowly and creep
   (``creep_speed``) up to the nearest hidden lane; the cap lifts as soon as the view opens. The expert knows
   what is hidden, but a driver without that knowledge must creep, and imitation learns from the expert.
5. **Selection**: an overtaking offset is committed only when its whole manoeuvre (out, past, back) is
   collision-free over a longer horizon; the centreline otherwise. The committed path is kept until the
   obstacle is passed.

The output is a `Plan` (ego-frame path, target speed, speed profile) turned into controls by the same
PIDController that the stack deploys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry import obb_overlap
from ..maps.lanegraph import LaneGraph
from ..sim.control import ControllerConfig, PIDController
from ..sim.dynamics import DEFAULT_VEHICLE
from ..sim.perception import PerceivedScene, Truth
from ..sim.script import path_position, phase_speed
from ..sim.state import EGO, AgentKind, Behavior
from ..sim.traffic import IDMParams, idm_accel
from ..sim.world import Controls
from .rule import Plan, stop_line_gaps
from .sight import gives_way, occluded_conflicts

EGO_HALF_L, EGO_HALF_W = DEFAULT_VEHICLE.length / 2, DEFAULT_VEHICLE.width / 2


@dataclass(frozen=True)
class ExpertConfig:
    max_speed: float = 14.0  # [m/s] cap on the speed limit
    horizon: float = 4.0  # [s] speed planning horizon
    dt: float = 0.2  # [s] forecast / roll-out step
    overtake_horizon: float = 10.0  # [s] an overtaking manoeuvre must be clear this long
    replan_every: int = 2  # simulator steps between plans (the PID runs every step)
    standoff_time: float = 4.0  # [s] standing this long, standing agents in the way count as obstacles
    margin_lon: float = 1.0  # [m] added to the ego's length (front and back) in collision checks
    margin_lat: float = 0.35  # [m] added to each side of the ego
    stop_before_conflict: float = 1.5  # [m] the ego's centre stops this far before a predicted collision
    conflict_rounds: int = 4
    blocker_speed: float = 0.5  # [m/s] below this a non-traffic agent in the route is a blocker
    blocker_lookahead: float = 45.0  # [m]
    blocker_gap: float = 6.0  # [m] stand this far behind a blocker (room to swing out)
    pass_clearance: float = 0.7  # [m] lateral clearance when passing
    max_offset: float = 4.6  # [m] the largest lateral offset tried
    ramp: float = 14.0  # [m] length of the swing out / back
    wrong_way_cost: float = 3.0  # cost per metre of offset path in an opposite-direction lane (vs 1 / m offset)
    emergency_range: float = 40.0  # [m] behind the ego: an emergency vehicle this close makes room
    path_points: int = 60  # points of the published plan, 1 m apart
    creep_speed: float = 2.0  # [m/s] into a junction whose conflicting lanes are hidden from view
    creep_lookahead: float = 35.0  # [m] junction entries this close (along the route) are checked for sight
    pull_out_lateral: float = 1.5  # [m] standing this far beside the route, off the driving lanes (a parking
    # space): pull out onto it
    pull_out_speed: float = 2.0  # [m/s] ... when slower than this
    pull_out_ramps: tuple = (12.0, 10.0, 8.0, 7.0, 6.0, 5.0, 4.0)  # [m] ramp lengths tried, gentlest first
    idm: IDMParams = field(default_factory=lambda: IDMParams(max_accel=2.0, comfort_brake=3.0, min_gap=3.0,
                                                             headway=1.0, max_brake=8.0))


@dataclass
class Offset:
    """A lateral offset of the route: `o_from` before u0, smooth ramp to `o` over [u0, u0+l1], held to u1, smooth
    ramp back to 0 over [u1, u1+l2]. u is the route's arc length; o > 0 is to the left."""

    o: float
    u0: float
    l1: float
    u1: float
    l2: float
    reason: str = "overtake"
    o_from: float = 0.0

    def __call__(self, u: np.ndarray) -> np.ndarray:
        def smooth(x):
            x = np.clip(x, 0.0, 1.0)
            return x * x * (3 - 2 * x)

        a = smooth((u - self.u0) / self.l1)
        return (self.o_from * (1 - a) + self.o * a) * (1 - smooth((u - self.u1) / self.l2))

    @property
    def end(self) -> float:
        return self.u1 + self.l2


CAUTIOUS_START_ACCEL = 1.0  # [m/s^2] a standing car pulling away, in cautious forecasts
CHAIN = 5  # lanes a lane follower's forecast may run through
_STRAIGHT: dict[str, np.ndarray] = {}


def straight_successors(g: LaneGraph) -> np.ndarray:
    """(L,) the successor of each lane that continues its heading best (-1 at dead ends); cached per map."""
    if g.source_hash not in _STRAIGHT:
        end_yaw = g.pt_yaw[g.lane_start + g.lane_npts - 1]
        succ = g.lane_succ
        yaw_next = np.where(succ >= 0, g.pt_yaw[g.lane_start[np.maximum(succ, 0)]], np.nan)
        score = np.where(succ >= 0, np.cos(yaw_next - end_yaw[:, None]), -np.inf)
        best = np.argmax(score, axis=1)
        _STRAIGHT[g.source_hash] = np.where((succ >= 0).any(axis=1), succ[np.arange(len(succ)), best], -1)
    return _STRAIGHT[g.source_hash]


@dataclass
class Forecast:
    """Agents near one ego over the planning times: (N, T) poses, (N,) boxes."""

    index: np.ndarray  # (N,) agent slots
    x: np.ndarray
    y: np.ndarray
    yaw: np.ndarray
    length: np.ndarray
    width: np.ndarray
    kind: np.ndarray
    behavior: np.ndarray
    speed: np.ndarray  # (N,) now
    will_move: np.ndarray  # (N,) bool: traffic or a scripted actor whose phase asks for speed

    def take(self, m: np.ndarray) -> Forecast:
        return Forecast(**{k: v[m] for k, v in self.__dict__.items()})


def _lane_chains(g: LaneGraph, lane: np.ndarray, nxt: np.ndarray, reach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lane sequences a lane follower may drive: its lane, its chosen next lane, then every successor of that
    (one branch each, when the agent can get there within `reach` metres; the choice is made only on entry),
    then the straightest successors. Returns (rows (R, CHAIN) lane ids, -1 padded; owner (R,) input index)."""
    straight = straight_successors(g)
    rows, owner = [], []
    for i in range(len(lane)):
        base = [int(lane[i])]
        if nxt[i] >= 0:
            base.append(int(nxt[i]))
        branches = [base]
        if len(base) == 2:
            succ = g.successors(base[1])
            if len(succ) > 1 and reach[i] > g.lane_length[base[0]] + g.lane_length[base[1]]:
                branches = [base + [q] for q in succ]
        for br in branches:
            while len(br) < CHAIN and br[-1] >= 0:
                br.append(int(straight[br[-1]]))
            rows.append((br + [-1] * CHAIN)[:CHAIN])
            owner.append(i)
    return np.array(rows, np.int64).reshape(-1, CHAIN), np.array(owner, np.int64)


def forecast(truth: Truth, e: int, times: np.ndarray, radius: float = 120.0, moving_speed: float = 0.5,
             cautious: bool = False) -> Forecast:
    """Where every valid agent within `radius` of the ego of env e will be at `times` (T,) [s from now]. A lane
    follower that may still choose between successors has one row per choice (rows share `index`).
    cautious: lane followers drive at least at their desired speed (a waiting car may pull out any moment):
    what a manoeuvre through another lane must be safe against."""
    st, g = truth.state, truth.map
    ex, ey = st.x[e, EGO], st.y[e, EGO]
    m = st.valid[e] & (np.hypot(st.x[e] - ex, st.y[e] - ey) < radius)
    m[EGO] = False
    idx0 = np.flatnonzero(m)
    beh0 = st.behavior[e, idx0]
    # lane followers get one row per possible lane sequence; every other agent one row
    fol = (beh0 == Behavior.IDM) & (st.lane[e, idx0] >= 0)
    v_all = np.maximum(st.speed[e, idx0].astype(np.float64), 0.0)
    chains, owner = _lane_chains(g, st.lane[e, idx0[fol]], st.next_lane[e, idx0[fol]], v_all[fol] * times[-1]
                                 + st.s[e, idx0[fol]])
    idx = np.r_[idx0[~fol], idx0[fol][owner]].astype(np.int64)
    N, T = len(idx), len(times)
    x0, y0, yaw0 = st.x[e, idx].astype(np.float64), st.y[e, idx].astype(np.float64), st.yaw[e, idx].astype(np.float64)
    v = np.maximum(st.speed[e, idx].astype(np.float64), 0.0)
    beh = st.behavior[e, idx]
    # distance each lane follower covers by each time: at its speed; cautious: moving ones at least at their
    # desired speed, standing ones pulling away at CAUTIOUS_START_ACCEL
    dist = v[:, None] * times[None, :]
    if cautious:
        vd = st.desired_speed[e, idx].astype(np.float64)[:, None]
        moving = (v > 0.5)[:, None]
        start = np.minimum(0.5 * CAUTIOUS_START_ACCEL * times[None, :] ** 2, vd * times[None, :])
        dist = np.where(beh[:, None] == Behavior.IDM, np.where(moving, np.maximum(v[:, None], vd) * times[None, :],
                                                              start), dist)
    x = np.repeat(x0[:, None], T, 1)
    y = np.repeat(y0[:, None], T, 1)
    yaw = np.repeat(yaw0[:, None], T, 1)
    t = times[None, :]
    will_move = np.zeros(N, bool)
    # lane followers: along their lane sequence at their speed
    k = np.arange(N - len(owner), N)
    if len(k):
        lengths = np.where(chains >= 0, g.lane_length[np.maximum(chains, 0)], np.inf)
        start = np.concatenate([np.zeros((len(k), 1)), np.cumsum(lengths, axis=1)[:, :-1]], axis=1)  # (n, H)
        s = st.s[e, idx[k]].astype(np.float64)[:, None] + dist[k]  # (n, T)
        hop = np.clip((start[:, None, 1:] <= s[..., None]).sum(-1), 0, CHAIN - 1)  # (n, T)
        lane_t = np.take_along_axis(chains, hop, axis=1)
        s_t = s - np.take_along_axis(start, hop, axis=1)
        px, py, pyaw = g.lane_position(np.maximum(lane_t, 0), s_t)
        x[k], y[k], yaw[k] = px, py, pyaw
        will_move[k] = True
    # walkers: straight on for the distance left
    k = np.flatnonzero(beh == Behavior.WALKER)
    if len(k):
        d = np.minimum(st.desired_speed[e, idx[k], None] * t, np.maximum(st.s[e, idx[k], None], 0.0))
        x[k] = x0[k, None] + d * np.cos(yaw0[k, None])
        y[k] = y0[k, None] + d * np.sin(yaw0[k, None])
        will_move[k] = st.s[e, idx[k]] > 0.1
    # scripted actors: along the path, speed ramping to what the current phase asks for
    k = np.flatnonzero(beh == Behavior.SCRIPTED)
    if len(k) and st.script is not None:
        sc = st.script
        a = idx[k]
        target = phase_speed(sc, sc.t_act, st.t[:, None] - sc.t_act)[e, a]
        acc = sc.accel[e, a]
        # distance covered with speed ramping from v to target at acc, then constant
        v0 = v[k]
        t_ramp = np.abs(target - v0) / np.maximum(acc, 1e-3)
        tt = np.minimum(t, t_ramp[:, None])
        sgn = np.sign(target - v0)[:, None]
        d = v0[:, None] * tt + 0.5 * sgn * acc[:, None] * tt ** 2 + target[:, None] * (t - tt)
        s = np.minimum(st.s[e, a, None] + d, sc.cum[e, a, -1, None])
        px, py, heading, seg_len = path_position(sc, s, (e, a))
        x[k], y[k] = px, py
        yaw[k] = np.where(seg_len > 1e-6, heading, yaw0[k, None])
        will_move[k] = (target > moving_speed) | (v0 > moving_speed)
    # log replay
    k = np.flatnonzero(beh == Behavior.REPLAY)
    if len(k) and st.log_xyyv is not None:
        K = st.log_xyyv.shape[2]
        step = np.clip(np.round((st.t[e] + times) / 0.05).astype(np.int64), 0, K - 1)
        log = st.log_xyyv[e, idx[k]][:, step]  # (n, T, 4)
        x[k], y[k], yaw[k] = log[..., 0], log[..., 1], log[..., 2]
        will_move[k] = True
    return Forecast(index=idx, x=x, y=y, yaw=yaw, length=st.length[e, idx].astype(np.float64),
                    width=st.width[e, idx].astype(np.float64), kind=st.kind[e, idx], behavior=beh, speed=v,
                    will_move=will_move)




@dataclass
class PathFrame:
    """One candidate path over a window of the route: arc length u (M,) (the route's), points, headings."""

    u: np.ndarray
    xy: np.ndarray
    yaw: np.ndarray
    v_cap: np.ndarray  # (M,) [m/s] curvature speed cap ahead of each point

    def pose(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.interp(s, self.u, self.xy[:, 0]), np.interp(s, self.u, self.xy[:, 1]),
                np.interp(s, self.u, np.unwrap(self.yaw)))

    def locate(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(u, lateral offset, positive left) of points relative to the path."""
        d = np.hypot(self.xy[None, :, 0] - x[:, None], self.xy[None, :, 1] - y[:, None])
        i = np.argmin(d, axis=1)
        c, s = np.cos(self.yaw[i]), np.sin(self.yaw[i])
        rx, ry = x - self.xy[i, 0], y - self.xy[i, 1]
        return self.u[i] + rx * c + ry * s, rx * s - ry * c


@dataclass
class Rollout:
    s: np.ndarray  # (T,) ego centre arc length
    v: np.ndarray  # (T,)
    hit: int  # first forecast index (into Forecast) hit while moving, -1 if none
    hit_t: int  # time index of that collision
    yielded: tuple = ()  # forecast indices the plan stops for (predicted conflicts)


LEFT_LANE_LAT_LIMIT = 2.5  # [m] |lateral| of an emergency vehicle that counts as in the ego's lane


class ExpertPolicy:
    """The privileged rule-based planner (see the module docstring)."""

    name = "expert"
    privileged = True
    model_id = None  # no model file (learned policies record theirs)

    def __init__(self, num_envs: int, config: ExpertConfig | None = None, controller: ControllerConfig | None = None,
                 dt: float = 0.05, speed_profile: bool = True):
        self.cfg = config or ExpertConfig()
        self.E, self.dt = num_envs, dt
        self.controller = PIDController(num_envs, controller or ControllerConfig(), DEFAULT_VEHICLE, dt)
        self.times = np.arange(0.0, self.cfg.overtake_horizon + 1e-6, self.cfg.dt)
        self.T_short = int(round(self.cfg.horizon / self.cfg.dt)) + 1
        self.reset()

    def reset(self) -> None:
        self.controller.reset()
        self.served_stop = np.full(self.E, -1, np.int64)
        self.offset: list[Offset | None] = [None] * self.E
        self.calls = 0
        self.standing = np.zeros(self.E)  # [s] the ego has been standing
        self._plans: list[tuple | None] = [None] * self.E
        self.status = [""] * self.E  # what the last plan does and why (for renders and debugging)
        self.trace: list[list[str]] = [[] for _ in range(self.E)]  # offsets tried and why they were refused

    # ------------------------------------------------------------------ geometry
    def _route_window(self, truth: Truth, e: int, ahead: float = 170.0):
        r = truth.routes[e]
        i0 = int(truth.route_idx[e])
        st = truth.state
        ex, ey = float(st.x[e, EGO]), float(st.y[e, EGO])
        dx, dy = np.cos(r.yaw[i0]), np.sin(r.yaw[i0])
        s_e = float(r.cum_s[i0] + (ex - r.xy[i0, 0]) * dx + (ey - r.xy[i0, 1]) * dy)
        a = max(i0 - 8, 0)
        b = int(np.searchsorted(r.cum_s, r.cum_s[i0] + ahead)) + 1
        u, xy, yaw = r.cum_s[a:b], r.xy[a:b], r.yaw[a:b]
        if u[-1] < s_e + ahead:  # past the route's end: carry straight on
            ext = np.arange(1.0, s_e + ahead - u[-1] + 1.0)
            d = np.stack([np.cos(yaw[-1]), np.sin(yaw[-1])])
            u = np.r_[u, u[-1] + ext]
            xy = np.r_[xy, xy[-1] + ext[:, None] * d[None]]
            yaw = np.r_[yaw, np.full(len(ext), yaw[-1])]
        return s_e, u, xy, yaw

    def _frame(self, u, xy, yaw, offset: Offset | None) -> PathFrame:
        if offset is not None:
            o = offset(u)
            xy = xy + o[:, None] * np.stack([np.sin(yaw), -np.cos(yaw)], 1)
            d = np.diff(xy, axis=0)
            yaw = np.r_[np.arctan2(d[:, 1], d[:, 0]), np.arctan2(d[-1, 1], d[-1, 0])]
        # curvature cap: lateral acceleration <= 3 m/s^2, looking 15 m ahead
        k = np.abs(np.gradient(np.unwrap(yaw), u, edge_order=1)) if len(u) > 2 else np.zeros(len(u))
        vc = np.sqrt(3.0 / np.maximum(k, 1e-4))
        n = 15
        pad = np.r_[vc, np.full(n, vc[-1])]
        v_cap = np.min(np.lib.stride_tricks.sliding_window_view(pad, n + 1)[: len(u)], axis=1)
        return PathFrame(u, xy, yaw, v_cap)

    # ------------------------------------------------------------------ speed
    def _rollout(self, path: PathFrame, s0: float, v0: float, v_limit: float, b: np.ndarray, vl: np.ndarray,
                 T: int) -> tuple[np.ndarray, np.ndarray]:
        """IDM along the path: leaders at centre-referenced positions b (K,) moving at vl (K,)."""
        p, dt = self.cfg.idm, self.cfg.dt
        s = np.empty(T)
        v = np.empty(T)
        s[0], v[0] = s0, v0
        for i in range(1, T):
            t = (i - 1) * dt
            gaps = b + vl * t - s[i - 1] if len(b) else np.empty(0)
            if len(gaps):
                j = int(np.argmin(gaps))
                gap, dv = gaps[j], v[i - 1] - vl[j]
            else:
                gap, dv = np.inf, 0.0
            vmax = min(v_limit, float(np.interp(s[i - 1], path.u, path.v_cap)))
            a = float(idm_accel(v[i - 1], vmax, gap, dv, p))
            if v[i - 1] > vmax:  # slow for a curve at a comfortable rate
                a = min(a, -min(p.comfort_brake, (v[i - 1] - vmax) / dt))
            vn = max(v[i - 1] + a * dt, 0.0)
            if gap < 0.5 * p.min_gap:
                vn = max(v[i - 1] - p.max_brake * dt, 0.0)
            s[i] = s[i - 1] + 0.5 * (v[i - 1] + vn) * dt
            v[i] = vn
        return s, v

    def _first_hit(self, path: PathFrame, s: np.ndarray, v: np.ndarray, F: Forecast, ignore: np.ndarray,
                   ) -> tuple[int, int]:
        """First (forecast index, time index) where the ego, moving, overlaps an agent; (-1, -1) if none."""
        T = len(s)
        if len(F.index) == 0:
            return -1, -1
        c = self.cfg
        x, y, yaw = path.pose(s)
        hit = obb_overlap(x[None], y[None], yaw[None], DEFAULT_VEHICLE.length + 2 * c.margin_lon,
                          DEFAULT_VEHICLE.width + 2 * c.margin_lat, F.x[:, :T], F.y[:, :T], F.yaw[:, :T],
                          F.length[:, None], F.width[:, None])
        hit &= ~ignore[:, None]
        hit &= (v > 0.3)[None]
        if not hit.any():
            return -1, -1
        ti = np.where(hit.any(axis=0))[0][0]
        return int(np.argmax(hit[:, ti])), int(ti)

    def _speed_plan(self, path: PathFrame, s_e: float, v_e: float, v_limit: float, F: Forecast, ignore: np.ndarray,
                    stops: list[float], T: int) -> Rollout:
        """IDM with leaders and stop points, then stop before predicted collisions (a few rounds)."""
        c = self.cfg
        p = c.idm
        # leaders: agents roughly along the path, ahead, inside the corridor
        b, vl = [x + p.min_gap for x in stops], [0.0] * len(stops)
        if len(F.index):
            # leaders: heading along the path, ahead, inside its corridor now or at a forecast time (a car in
            # the lane an offset path moves into)
            n, Ts = len(F.index), min(T, F.x.shape[1])
            u, lat = path.locate(F.x[:, :Ts].ravel(), F.y[:, :Ts].ravel())
            u, lat = u.reshape(n, Ts), lat.reshape(n, Ts)
            hd = np.cos(F.yaw[:, :Ts] - np.interp(u, path.u, np.unwrap(path.yaw)))
            half_w = 0.5 * (F.width[:, None] * np.abs(hd) + F.length[:, None] * np.sqrt(np.maximum(1 - hd ** 2, 0)))
            inside = (np.abs(lat) < half_w + EGO_HALF_W + 0.3) & (hd > 0.5) & (u > s_e)
            lead = inside.any(axis=1) & ~ignore & (u[:, 0] > s_e)
            for j in np.flatnonzero(lead):
                b.append(u[j, 0] - F.length[j] / 2 - EGO_HALF_L)
                vl.append(F.speed[j] * hd[j, 0])
        b, vl = np.asarray(b, np.float64), np.asarray(vl, np.float64)
        yielded = []
        for _ in range(c.conflict_rounds):
            s, v = self._rollout(path, s_e, v_e, v_limit, b, vl, T)
            j, ti = self._first_hit(path, s, v, F, ignore)
            if j < 0:
                return Rollout(s, v, -1, -1, tuple(yielded))
            yielded.append(j)
            stop = s[ti] - c.stop_before_conflict
            b = np.r_[b, stop + p.min_gap]
            vl = np.r_[vl, 0.0]
        return Rollout(s, v, j, ti, tuple(yielded))

    # ------------------------------------------------------------------ passing
    def _blockers(self, path: PathFrame, s_e: float, F: Forecast, ignore: np.ndarray) -> np.ndarray:
        """Agents that will not move, inside the path corridor ahead (mask over F)."""
        c = self.cfg
        if len(F.index) == 0:
            return np.zeros(0, bool)
        u, lat = path.locate(F.x[:, 0], F.y[:, 0])
        hd = np.cos(F.yaw[:, 0] - np.interp(u, path.u, np.unwrap(path.yaw)))
        half_w = 0.5 * (F.width * np.abs(hd) + F.length * np.sqrt(np.maximum(1 - hd ** 2, 0)))
        still = ~F.will_move & (F.speed < c.blocker_speed)
        return still & ~ignore & (np.abs(lat) < half_w + EGO_HALF_W + 0.2) & (u > s_e) & (u < s_e + c.blocker_lookahead)

    def _pull_out(self, e: int, g: LaneGraph, u, xy, yaw, s_e: float, ex: float, ey: float, F: Forecast,
                  ignore: np.ndarray) -> Offset | None:
        """Leaving a parking space (ParkingExit: the ego stands beside the route, off the driving lanes): a path
        from where the ego is back onto the route, the gentlest ramp whose path clears what stands around (the parked cars), else the
        sharpest. None when the ego is on the route."""
        lat = float(self._frame(u, xy, yaw, None).locate(np.array([ex]), np.array([ey]))[1][0])
        if abs(lat) < self.cfg.pull_out_lateral or g.on_lane(np.array([[ex, ey]]))[0][0]:
            return None  # on the route, or beside it in a driving lane (waiting to merge): not a parking space
        ramps = [Offset(0.0, s_e, L, s_e + L, 1.0, "pull out", o_from=lat) for L in self.cfg.pull_out_ramps]
        standing_only = ignore | F.will_move  # traffic is the speed plan's business; the ramp must clear the rest
        T = len(self.times)
        for off in ramps:
            ro = self._speed_plan(self._frame(u, xy, yaw, off), s_e, 0.0, 5.0, F, standing_only, [], T)
            if ro.hit < 0 and not ro.yielded and ro.s[-1] > off.end + 2.0:
                return off
            self.trace[e].append(f"pull out over {off.l1:.0f} m: blocked")
        return ramps[-1]

    def _drivable(self, g: LaneGraph, path: PathFrame, a: float, b: float) -> tuple[bool, float]:
        """Whether the car stays on driving lanes along [a, b] of the path; and the metres in opposite lanes."""
        us = np.arange(a, b, 2.0)
        if len(us) == 0:
            return True, 0.0
        x, y, yaw = path.pose(us)
        nx, ny = np.sin(yaw), -np.cos(yaw)
        pts = np.concatenate([np.stack([x, y], 1), np.stack([x + nx * EGO_HALF_W, y + ny * EGO_HALF_W], 1),
                              np.stack([x - nx * EGO_HALF_W, y - ny * EGO_HALF_W], 1)])
        m = g.match(pts, np.tile(yaw, 3), margin=0.3)
        if not m.inside.all():
            return False, 0.0
        lane = m.inside_lane[: len(us)]
        # against the path's direction: the containing lane's heading at the nearest point
        same = np.abs(m.lateral[: len(us)]) <= g.lane_width[g.pt_lane[m.point[: len(us)]]] / 2
        against = ~same & (g.lane_junction[lane] < 0)
        return True, float(against.sum() * 2.0)

    def _try_offsets(self, truth: Truth, e: int, base, s_e: float, v_e: float, v_limit: float, ignore_slots: set,
                     candidates: list[Offset], allow_wrong_way: bool) -> Offset | None:
        """The cheapest candidate whose whole manoeuvre is drivable and clear against cautious forecasts."""
        u, xy, yaw = base
        F = forecast(truth, e, self.times, moving_speed=self.cfg.blocker_speed, cautious=True)
        ignore = np.isin(F.index, list(ignore_slots))
        best, best_cost = None, np.inf
        T = len(self.times)
        for off in candidates:
            path = self._frame(u, xy, yaw, off)
            ok, wrong = self._drivable(truth.map, path, max(off.u0, s_e), off.end)
            if not ok or (wrong > 0 and not allow_wrong_way):
                self.trace[e].append(f"{off.o:+.1f} m: {'off the driving lanes' if not ok else 'opposite lane'}")
                continue
            cost = abs(off.o) + self.cfg.wrong_way_cost * wrong / 10.0
            if cost >= best_cost:
                continue
            ro = self._speed_plan(path, s_e, v_e, v_limit, F, ignore, [], T)
            # the whole manoeuvre must be collision-free and must not stall
            if ro.hit >= 0 or (ro.s[-1] < off.end and ro.v[-1] < 0.5):
                why = f"conflict with agent {int(F.index[ro.hit])}" if ro.hit >= 0 else \
                    f"stalls (yields to {[int(F.index[j]) for j in ro.yielded]})"
                self.trace[e].append(f"{off.o:+.1f} m: {why}")
                continue
            best, best_cost = off, cost
        return best

    # ------------------------------------------------------------------ creeping
    def _creep(self, truth: Truth, e: int, s_e: float) -> tuple[float, float] | None:
        """(route arc length of the junction entry, of the nearest hidden conflict point) when the ego gives way
        at the junction ahead to lanes it cannot see (see `sight.py`); None when it sees them, has its front past
        the hidden conflict point, or no junction is near."""
        r, g = truth.routes[e], truth.map
        i0 = int(truth.route_idx[e])
        i1 = int(np.searchsorted(r.cum_s, r.cum_s[i0] + self.cfg.creep_lookahead))
        inj = g.lane_junction[r.lane[i0:i1 + 1]] >= 0
        if not inj.any():
            return None
        k = i0 + int(np.argmax(inj))
        j0, jl = k, k  # where the junction starts on the route, and where its lane at k starts
        while j0 > 0 and g.lane_junction[r.lane[j0 - 1]] >= 0:
            j0 -= 1
        while jl > 0 and r.lane[jl - 1] == r.lane[k]:
            jl -= 1
        conflicts = gives_way(g, int(r.lane[k]), truth.lights[e])
        u_entry, u_lane = float(r.cum_s[j0]), float(r.cum_s[jl])
        conflicts = [c for c in conflicts if u_lane + c.u > s_e + EGO_HALF_L]  # its front is not past it yet
        if not conflicts:
            return None
        hidden = occluded_conflicts(g, truth.state, e, conflicts)
        if not hidden:
            return None
        return u_entry, u_lane + min(conflicts[i].u for i in hidden)

    def _creep_cap(self, path: PathFrame, u_entry: float, u_conflict: float) -> np.ndarray:
        """Speed cap (M,) over the path: braking comfortably to creep_speed with the front 1 m before the junction
        entry, creep_speed until the front reaches the hidden conflict point, no cap beyond."""
        c = self.cfg
        u_line = u_entry - EGO_HALF_L - 1.0
        u_stop = max(u_conflict - EGO_HALF_L, u_line)
        cap = np.sqrt(c.creep_speed ** 2 + 2 * c.idm.comfort_brake * np.maximum(u_line - path.u, 0.0))
        return np.where(path.u <= u_stop, cap, np.inf)

    # ------------------------------------------------------------------ the plan
    def _plan_env(self, scene: PerceivedScene, truth: Truth, e: int, stop_gaps):
        """For env e: world-frame path (P, 2), times (T,), planned speeds (T,), speed at each path point (P,)."""
        c = self.cfg
        st = truth.state
        self.trace[e] = []
        v_e = max(float(st.speed[e, EGO]), 0.0)
        v_limit = min(float(scene.speed_limit[e]), c.max_speed)
        s_e, u, xy, yaw = self._route_window(truth, e)
        base = (u, xy, yaw)
        F = forecast(truth, e, self.times, moving_speed=c.blocker_speed)
        # a standoff (the ego stands, yielding, for a while): whatever stands as well will not move for the ego
        # (it waits for the ego in turn), so it is passed like an obstacle
        self.standing[e] = self.standing[e] + c.replan_every * self.dt if v_e < 0.1 else 0.0
        if self.standing[e] > c.standoff_time:
            F.will_move &= F.speed > 0.1
        # agents behind the ego (followers, the emergency vehicle) are theirs to avoid
        ex, ey, eyaw = float(st.x[e, EGO]), float(st.y[e, EGO]), float(st.yaw[e, EGO])
        rel_x = (F.x[:, 0] - ex) * np.cos(eyaw) + (F.y[:, 0] - ey) * np.sin(eyaw)
        rel_y = -(F.x[:, 0] - ex) * np.sin(eyaw) + (F.y[:, 0] - ey) * np.cos(eyaw)
        ignore = rel_x < -EGO_HALF_L + 0.3
        off = self.offset[e]
        if off is not None and s_e > off.end:
            off = None
        # an emergency vehicle behind in the ego's lane: make room (a neighbouring lane), keep it while it is behind
        emergency = (F.kind == AgentKind.EMERGENCY) & (rel_x < 0) & (rel_x > -c.emergency_range) & (
            np.abs(rel_y) < LEFT_LANE_LAT_LIMIT + 2.0)
        if emergency.any():
            if off is not None and off.reason == "yield":
                off.u1 = max(off.u1, s_e + 30.0)
            elif off is None and (np.abs(rel_y[emergency]) < LEFT_LANE_LAT_LIMIT).any():
                lane = int(truth.routes[e].lane[int(truth.route_idx[e])])
                w = float(truth.map.lane_width[lane])
                cands = [Offset(o, s_e, max(10.0, 1.5 * v_e + 6.0), s_e + 40.0, 15.0, "yield") for o in (-w, w)]
                off = self._try_offsets(truth, e, base, s_e, v_e, v_limit, set(F.index[ignore]), cands,
                                        allow_wrong_way=False)
        if off is None and v_e < c.pull_out_speed:
            off = self._pull_out(e, truth.map, u, xy, yaw, s_e, ex, ey, F, ignore)
        path = self._frame(u, xy, yaw, off)
        stops = []
        stop_light, lgap, stop_sign, sgap = stop_gaps
        if stop_light[e]:
            stops.append(s_e + max(float(lgap[e]), 0.0))
        if stop_sign[e]:
            stops.append(s_e + max(float(sgap[e]), 0.0))
        blk = self._blockers(path, s_e, F, ignore)
        status = "follow route" if off is None else f"{off.reason} {'left' if off.o > 0 else 'right'} ({off.o:+.1f} m)"
        if blk.any():
            # the path is blocked by something that will not move: pass it if a clear offset exists (from
            # wherever the current path is, relative to the route)
            base_path = path if off is None else self._frame(u, xy, yaw, None)
            bu, blat = base_path.locate(F.x[:, 0], F.y[:, 0])
            j = np.flatnonzero(blk)
            u_start = float(np.min(bu[j] - F.length[j] / 2))
            u_end = float(np.max(bu[j] + F.length[j] / 2))
            # everything standing near the blocked stretch shapes the offset
            near = (~F.will_move) & (bu > u_start - 3) & (bu < u_end + 12) & (np.abs(blat) < 6.0)
            near |= blk
            u_end = max(u_end, float(np.max(bu[near] + F.length[near] / 2)))
            # half extent across the path, of a box turned against it (a crashed car stands askew)
            hd = np.abs(np.cos(F.yaw[:, 0] - np.interp(bu, base_path.u, np.unwrap(base_path.yaw))))
            half = 0.5 * np.maximum(F.width * hd + F.length * np.sqrt(np.maximum(1 - hd ** 2, 0)), 0.3)
            lat_hi = float(np.max(blat[near] + half[near]))
            lat_lo = float(np.min(blat[near] - half[near]))
            u0 = max(u_start - 2.0 - c.ramp, s_e)
            l1 = max(u_start - 2.0 - u0, 6.0)
            u1 = u_end + EGO_HALF_L + 2.0
            o_now = float(off(np.array([s_e]))[0]) if off is not None else 0.0
            cands = [Offset(o, u0, l1, u1, c.ramp, o_from=o_now)
                     for o in (lat_hi + EGO_HALF_W + c.pass_clearance, lat_lo - EGO_HALF_W - c.pass_clearance)
                     if abs(o) <= c.max_offset]
            cand = self._try_offsets(truth, e, base, s_e, v_e, v_limit, set(F.index[ignore]), cands,
                                     allow_wrong_way=True)
            if cand is not None:
                off = cand
                path = self._frame(u, xy, yaw, off)
                status = f"overtake {'left' if off.o > 0 else 'right'} ({off.o:+.1f} m)"
            else:
                stops.append(u_start - EGO_HALF_L - c.blocker_gap)
                status = "wait behind a blocker"
        self.offset[e] = off
        creep = self._creep(truth, e, s_e)
        if creep is not None:
            path.v_cap = np.minimum(path.v_cap, self._creep_cap(path, *creep))
            status += "; creep (view occluded)"
        ro = self._speed_plan(path, s_e, v_e, v_limit, F, ignore, stops, self.T_short)
        if ro.hit >= 0:
            status = f"emergency stop (agent {int(F.index[ro.hit])} at {self.times[ro.hit_t]:.1f} s)"
            v = np.maximum(v_e - c.idm.max_brake * self.times[: self.T_short], 0.0)
            ro = Rollout(s_e + np.cumsum(np.r_[0, 0.5 * (v[1:] + v[:-1]) * c.dt]), v, ro.hit, ro.hit_t)
        elif ro.yielded:
            status += f"; yield to agent {', '.join(str(int(F.index[j])) for j in ro.yielded)}"
        elif ro.v[-1] < 0.3:
            status += "; stop"
        self.status[e] = status
        us = s_e + np.arange(c.path_points, dtype=np.float64)
        px, py, _ = path.pose(us)
        return np.stack([px, py], 1), self.times[: self.T_short], ro.v, np.interp(us, ro.s, ro.v)

    def act(self, scene: PerceivedScene, truth: Truth | None = None) -> tuple[Controls, Plan]:
        if truth is None:
            raise ValueError("the expert is a privileged policy: act(scene, truth) needs the simulator's Truth "
                             "(ScenePerceiver.truth(state, lights))")
        st = truth.state
        E = self.E
        replan = self.calls % self.cfg.replan_every == 0
        stop_gaps = stop_line_gaps(scene, self.served_stop, self.cfg.idm.comfort_brake)
        paths = np.zeros((E, self.cfg.path_points, 2))
        target = np.zeros(E)
        profile = np.zeros((E, self.cfg.path_points))
        for e in range(E):
            if replan or self._plans[e] is None:
                pw, times, v, prof = self._plan_env(scene, truth, e, stop_gaps)
                self._plans[e] = (float(st.t[e]), pw, times, v, prof)
            t0, pw, times, v, prof = self._plans[e]
            elapsed = float(st.t[e]) - t0
            ex, ey, eyaw = float(st.x[e, EGO]), float(st.y[e, EGO]), float(st.yaw[e, EGO])
            dx, dy = pw[:, 0] - ex, pw[:, 1] - ey
            c, s = np.cos(eyaw), np.sin(eyaw)
            paths[e, :, 0] = dx * c + dy * s
            paths[e, :, 1] = -dx * s + dy * c
            target[e] = float(np.interp(elapsed + 0.6, times, v))
            if v[min(int(round((elapsed + 0.2) / self.cfg.dt)), len(v) - 1)] < 0.05:
                target[e] = 0.0
            profile[e] = prof
        self.calls += 1
        plan = Plan(paths, target, profile)
        throttle, steer, brake = self.controller(plan.path, plan.target_speed, scene.ego_speed)
        return Controls(throttle, steer, brake), plan
