"""Global route planning: densify route keypoints to 1 m along the lane graph.

Like CARLA's GlobalRoutePlanner: each consecutive pair of keypoints is joined by a shortest path over the
lane topology (successor edges cost their length, a lane change to a same-direction neighbour costs
LANE_CHANGE_COST), so lane changes happen where the keypoints ask for them. Each dense point carries the
high-level command (RoadOption): LEFT / RIGHT / STRAIGHT inside junctions by the turn of the junction
lane, CHANGELANELEFT / CHANGELANERIGHT over the metres before a lane change, LANEFOLLOW elsewhere.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from ..geometry import polyline_headings, polyline_lengths, resample_polyline, wrap_angle
from ..maps.lanegraph import Command, LaneGraph
from .xml import RouteError, RouteSpec

LANE_CHANGE_COST = 8.0  # [m] equivalent distance of a lane change
MAX_KEYPOINT_OFFSET = 8.0  # [m] a keypoint further than this from any lane is an error
TURN_THRESHOLD = np.deg2rad(30.0)  # junction lane turning less than this is STRAIGHT
LANE_CHANGE_COMMAND_SPAN = 10.0  # [m] points before a lane change that carry its command


@dataclass
class DenseRoute:
    """A route densified to 1 m; all arrays are (N,) or (N, 2), CARLA frame."""

    xy: np.ndarray  # (N, 2) [m]
    yaw: np.ndarray  # (N,) [rad]
    lane: np.ndarray  # (N,) int32 lane of each point
    command: np.ndarray  # (N,) int8 Command
    cum_s: np.ndarray  # (N,) arc length from the start [m]

    @property
    def length(self) -> float:
        return float(self.cum_s[-1]) if len(self.cum_s) else 0.0

    def __len__(self) -> int:
        return len(self.xy)


def _path_search(g: LaneGraph, a: int, sa: float, b: int, sb: float, budget: float,
                 with_cost: bool = False):
    """Dijkstra from (lane a, s=sa) to lane b. Returns [(lane, how_entered)] with how in {start, succ, left, right}
    (with_cost: (that, the cost to reach (b, sb)); None when there is no path within `budget`.

    Successor edges cost the length left on the lane being left; lane changes cost LANE_CHANGE_COST.
    """
    if a == b and sb >= sa - 0.5:
        return ([(a, "start")], max(sb - sa, 0.0)) if with_cost else [(a, "start")]

    def moves(u: int, d: float, here: float):
        for v in g.lane_succ[u]:
            if v >= 0:
                yield int(v), "succ", d + float(g.lane_length[u]) - here
        for nb, how in ((g.lane_left[u], "left"), (g.lane_right[u], "right")):
            if nb >= 0:
                yield int(nb), how, d + LANE_CHANGE_COST

    dist: dict[int, float] = {}
    prev: dict[int, tuple[int, str]] = {}
    heap: list[tuple[float, int]] = []
    for v, how, nd in moves(a, 0.0, sa):  # the start lane itself is never a node: b == a means a loop
        if nd < dist.get(v, np.inf):
            dist[v], prev[v] = nd, (a, how)
            heapq.heappush(heap, (nd, v))
    while heap:
        d, u = heapq.heappop(heap)
        if d > dist.get(u, np.inf) or d > budget:
            continue
        if u == b:
            path = [(b, prev[b][1])]
            w = prev[b][0]
            while w != a:
                path.append((w, prev[w][1]))
                w = prev[w][0]
            path.append((a, "start"))
            return (path[::-1], d + sb) if with_cost else path[::-1]
        for v, how, nd in moves(u, d, 0.0):
            if nd < dist.get(v, np.inf):
                dist[v], prev[v] = nd, (u, how)
                heapq.heappush(heap, (nd, v))
    return None


def _candidate_lanes(g: LaneGraph, xy: np.ndarray, heading: float, k: int = 24) -> list[tuple[int, float]]:
    """Lanes containing a point with a heading within 60 degrees, nearest first: [(lane, s)]."""
    d, idx = g.tree.query(xy, k=min(k, len(g.pt_xy)))
    out, seen = [], set()
    for di, pi in zip(np.atleast_1d(d), np.atleast_1d(idx), strict=True):
        lane = int(g.pt_lane[pi])
        if lane in seen or np.cos(g.pt_yaw[pi] - heading) < 0.5 or di > g.lane_width[lane]:
            continue
        seen.add(lane)
        out.append((lane, float(g.pt_s[pi])))
    return out


def _lane_s_of(g: LaneGraph, lane: int, xy: np.ndarray) -> float:
    pts = g.lane_points(lane)
    i = int(np.argmin(np.sum((pts - xy) ** 2, axis=1)))
    return float(g.pt_s[g.lane_start[lane] + i])


def sparse_lanes(g: LaneGraph, kp: np.ndarray, where: str = "route") -> tuple[np.ndarray, np.ndarray]:
    """Directions of travel at keypoints far apart (the Leaderboard's downsampled CarlaRoute: up to 200 m between
    poses, turns between them, its orientations unusable), where the chord to the next keypoint may point
    anywhere: each keypoint's candidates are the lanes through it (any direction), and the chosen sequence is
    the one whose lane paths from keypoint to keypoint are shortest in all (dynamic programming; at a junction
    entry, where every connector starts at the same point with the same heading, the one that leads on to the
    next keypoint). Returns the chosen lanes (K,) and the keypoints' positions s along them (K,), for
    `plan_route(..., lanes=)`."""
    kp = np.asarray(kp, np.float64)[:, :2]
    cands = []
    for k, p in enumerate(kp):
        d, idx = g.tree.query(p, k=min(32, len(g.pt_xy)))
        c, seen = [], set()
        for di, pi in zip(np.atleast_1d(d), np.atleast_1d(idx), strict=True):
            lane = int(g.pt_lane[pi])
            if lane not in seen and di <= max(0.6 * g.lane_width[lane], 1.0):  # the poses are lane centres
                seen.add(lane)
                c.append((lane, float(g.pt_s[pi]), float(g.pt_yaw[pi])))
        if not c:
            raise RouteError(f"{where}: keypoint {k} at ({p[0]:.1f}, {p[1]:.1f}) is on no lane of {g.name}")
        cands.append(c)
    cost = [np.zeros(len(cands[0]))]
    back = []
    for k in range(1, len(kp)):
        budget = 5.0 * float(np.linalg.norm(kp[k] - kp[k - 1])) + 300.0
        ck, bk = np.full(len(cands[k]), np.inf), np.full(len(cands[k]), -1)
        for j, (b, sb, _) in enumerate(cands[k]):
            for i, (a, sa, _) in enumerate(cands[k - 1]):
                if not np.isfinite(cost[-1][i]):
                    continue
                r = _path_search(g, a, sa, b, sb, budget, with_cost=True)
                if r is not None and cost[-1][i] + r[1] < ck[j]:
                    ck[j], bk[j] = cost[-1][i] + r[1], i
        if not np.isfinite(ck).any():
            raise RouteError(f"{where}: no lane path from keypoint {k - 1} to keypoint {k} on {g.name}")
        cost.append(ck)
        back.append(bk)
    j = int(np.argmin(cost[-1]))
    lanes, ss = np.zeros(len(kp), np.int64), np.zeros(len(kp))
    for k in range(len(kp) - 1, -1, -1):
        lanes[k], ss[k] = cands[k][j][0], cands[k][j][1]
        if k:
            j = int(back[k - 1][j])
    return lanes, ss


def plan_route(g: LaneGraph, route: RouteSpec, spacing: float = 1.0,
               lanes: tuple[np.ndarray, np.ndarray] | None = None) -> DenseRoute:
    """Densify a route's keypoints along the lane graph. Raises RouteError naming the route and keypoint.
    lanes: each keypoint's lane and position along it (`sparse_lanes`, for keypoints far apart); default: the
    nearest lane in the direction of the next keypoint (right for the dense keypoints of route files)."""
    kp = route.keypoints[:, :2].astype(np.float64)
    where = f"{route.source or 'route file'}: route {route.route_id} ({route.town})"
    # headings of the keypoints (direction of travel) help pick the right-direction lane
    heads = polyline_headings(kp)
    pi, _, dist = g.project(kp, heads)
    far = np.flatnonzero(dist > MAX_KEYPOINT_OFFSET)
    if len(far):
        i = int(far[0])
        raise RouteError(
            f"{where}: keypoint {i} at ({kp[i, 0]:.1f}, {kp[i, 1]:.1f}) is {dist[i]:.1f} m from any lane of "
            f"{g.name} (limit {MAX_KEYPOINT_OFFSET} m); is the route on this town?"
        )
    if lanes is not None:
        given = lanes
        lanes, ss = np.asarray(given[0], int).copy(), np.asarray(given[1], float).copy()
    else:
        lanes = g.pt_lane[pi].astype(int)
        ss = g.pt_s[pi].astype(float)

    # pieces: (lane, s0, s1, lane-change command leaving this piece or None)
    pieces: list[list] = []
    cur_lane, cur_s = lanes[0], ss[0]
    for k in range(1, len(kp)):
        b, sb = lanes[k], ss[k]
        if b == cur_lane and sb >= cur_s - 0.5:
            if pieces and pieces[-1][0] == cur_lane:
                pieces[-1][2] = max(pieces[-1][2], sb)
            else:
                pieces.append([cur_lane, cur_s, max(sb, cur_s), None])
            cur_s = max(sb, cur_s)
            continue
        budget = 5.0 * float(np.linalg.norm(kp[k] - kp[k - 1])) + 300.0
        path = _path_search(g, cur_lane, cur_s, b, sb, budget)
        if path is None:  # overlapping lanes (junction connectors sharing an entry): try the other candidates
            for b2, sb2 in _candidate_lanes(g, kp[k], heads[k]):
                if b2 != b:
                    path = _path_search(g, cur_lane, cur_s, b2, sb2, budget)
                    if path is not None:
                        b, sb = b2, sb2
                        lanes[k], ss[k] = b2, sb2
                        break
        if path is None and pieces and pieces[-1][0] == cur_lane:
            # the previous keypoints sat where sibling lanes overlap (a junction entry): switch to the sibling
            # that leads to this keypoint
            sib = {int(x) for p_ in g.predecessors(cur_lane) for x in g.successors(p_)} - {cur_lane}
            for b2, sb2 in _candidate_lanes(g, kp[k], heads[k]):
                if b2 in sib:
                    s_prev = _lane_s_of(g, b2, kp[k - 1])
                    pieces[-1] = [b2, 0.0 if pieces[-1][1] <= 0.5 else s_prev, s_prev, None]
                    cur_lane, cur_s = b2, s_prev
                    path = _path_search(g, cur_lane, cur_s, b2, sb2, budget)
                    b, sb = b2, sb2
                    lanes[k], ss[k] = b2, sb2
                    break
        if path is None:
            raise RouteError(
                f"{where}: no lane path from keypoint {k - 1} to keypoint {k} "
                f"({kp[k - 1, 0]:.1f}, {kp[k - 1, 1]:.1f}) -> ({kp[k, 0]:.1f}, {kp[k, 1]:.1f}) on {g.name}"
            )
        s_enter = cur_s
        for idx, (lane, _how) in enumerate(path):
            nxt = path[idx + 1] if idx + 1 < len(path) else None
            s0 = s_enter
            if nxt is None:
                s1 = sb
            elif nxt[1] == "succ":
                s1 = float(g.lane_length[lane])
            else:  # lane change: leave at once
                s1 = s0
            if pieces and pieces[-1][0] == lane and idx == 0:
                pieces[-1][2] = max(pieces[-1][2], s1)
            else:
                pieces.append([lane, s0, max(s1, s0), None])
            if nxt is not None:
                if nxt[1] == "succ":
                    s_enter = 0.0
                else:
                    pieces[-1][3] = Command.CHANGELANELEFT if nxt[1] == "left" else Command.CHANGELANERIGHT
                    x, y, _ = g.lane_position(lane, s1)
                    s_enter = _lane_s_of(g, nxt[0], np.array([float(x), float(y)]))
        cur_lane, cur_s = b, sb

    # sample the pieces finely, then resample the whole route at `spacing`
    xs, lane_of, cmd_of = [], [], []
    for lane, s0, s1, lc in pieces:
        n = max(int(np.ceil((s1 - s0) / 0.25)), 1)
        s = np.linspace(s0, s1, n + 1)
        x, y, _ = g.lane_position(np.full(len(s), lane), s)
        xs.append(np.stack([x, y], 1))
        lane_of.append(np.full(len(s), lane))
        if g.lane_junction[lane] >= 0:
            a = g.lane_start[lane]
            turn = wrap_angle(g.pt_yaw[a + g.lane_npts[lane] - 1] - g.pt_yaw[a])
            c = Command.STRAIGHT if abs(turn) < TURN_THRESHOLD else (Command.RIGHT if turn > 0 else Command.LEFT)
        else:
            c = Command.LANEFOLLOW
        cmd = np.full(len(s), int(c))
        if lc is not None:
            cmd[s >= s1 - LANE_CHANGE_COMMAND_SPAN] = int(lc)
        cmd_of.append(cmd)
    fine = np.concatenate(xs)
    fine_lane = np.concatenate(lane_of)
    fine_cmd = np.concatenate(cmd_of)
    dense, s_new = resample_polyline(fine, spacing)
    if len(dense) < 2:
        raise RouteError(f"{where}: route is shorter than {spacing} m after planning")
    fine_s = polyline_lengths(fine[np.concatenate([[True], np.linalg.norm(np.diff(fine, axis=0), axis=1) > 1e-6])])
    keep = np.concatenate([[True], np.linalg.norm(np.diff(fine, axis=0), axis=1) > 1e-6])
    idx = np.clip(np.searchsorted(fine_s, s_new), 0, keep.sum() - 1)
    dl, dc = fine_lane[keep][idx], fine_cmd[keep][idx]
    return DenseRoute(
        xy=dense,
        yaw=polyline_headings(dense),
        lane=dl.astype(np.int32),
        command=dc.astype(np.int8),
        cum_s=s_new,
    )
