"""The lane graph: a town map as flat arrays, built once from OpenDRIVE and cached.

Points are lane centrelines resampled uniformly (spacing <= 1 m) and concatenated lane after lane; a lane
is a (road, section, lane_id) segment of CARLA's topology. Everything is in the CARLA world frame.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numba import njit
from scipy.spatial import cKDTree

MAX_LINKS = 8  # successors / predecessors per lane (padded with -1)


class MarkingType(enum.IntEnum):
    """Lane marking types (names and values of carla.LaneMarkingType)."""

    Other = 0
    Broken = 1
    Solid = 2
    SolidSolid = 3
    SolidBroken = 4
    BrokenSolid = 5
    BrokenBroken = 6
    BottsDots = 7
    Grass = 8
    Curb = 9
    NONE = 10


class Command(enum.IntEnum):
    """High-level route commands (CARLA RoadOption values)."""

    VOID = -1
    LEFT = 1
    RIGHT = 2
    STRAIGHT = 3
    LANEFOLLOW = 4
    CHANGELANELEFT = 5
    CHANGELANERIGHT = 6


@dataclass
class LaneMatch:
    """Result of `LaneGraph.match` for N points."""

    point: np.ndarray  # (N,) index of the best-matching centreline point
    lateral: np.ndarray  # (N,) [m] offset from that point, positive = left of the lane
    distance: np.ndarray  # (N,) [m] distance to that point
    inside: np.ndarray  # (N,) bool: inside some driving lane
    inside_lane: np.ndarray  # (N,) a lane containing the point, -1 if none


@dataclass
class LaneGraph:
    """A town as arrays. P points, L lanes, T traffic lights, G stop signs, C crosswalks."""

    name: str
    source_hash: str
    # points (P,)
    pt_xy: np.ndarray  # (P, 2) float64 [m]
    pt_yaw: np.ndarray  # (P,) [rad]
    pt_lane: np.ndarray  # (P,) int32
    pt_s: np.ndarray  # (P,) arc length inside its lane [m]
    pt_left_mark: np.ndarray  # (P,) int8 MarkingType of the left boundary
    pt_right_mark: np.ndarray  # (P,) int8 MarkingType of the right boundary
    # lanes (L,)
    lane_start: np.ndarray  # (L,) int64 first point index
    lane_npts: np.ndarray  # (L,) int64
    lane_length: np.ndarray  # (L,) [m]
    lane_ds: np.ndarray  # (L,) point spacing [m]
    lane_width: np.ndarray  # (L,) [m]
    lane_speed_limit: np.ndarray  # (L,) [m/s]
    lane_junction: np.ndarray  # (L,) int32 junction id, -1 outside junctions
    lane_road: np.ndarray  # (L,) int32 OpenDRIVE road id
    lane_section: np.ndarray  # (L,) int32
    lane_id: np.ndarray  # (L,) int32 OpenDRIVE lane id (sign = direction)
    lane_succ: np.ndarray  # (L, MAX_LINKS) int32, -1 padded
    lane_pred: np.ndarray  # (L, MAX_LINKS) int32, -1 padded
    lane_left: np.ndarray  # (L,) int32 left neighbour driving lane, same direction, -1 none
    lane_right: np.ndarray  # (L,) int32 right neighbour driving lane, same direction, -1 none
    lane_light: np.ndarray  # (L,) int32 traffic light governing entry into this lane, -1 none
    lane_stop: np.ndarray  # (L,) int32 stop sign governing entry into this lane, -1 none
    # traffic lights (T,)
    light_id: np.ndarray  # (T,) int64 OpenDRIVE signal id
    light_junction: np.ndarray  # (T,) int32
    light_slot: np.ndarray  # (T,) int32 position in its junction's cycle
    light_nslots: np.ndarray  # (T,) int32 number of slots in that cycle
    light_pos: np.ndarray  # (T, 2) mean stop-line position [m]
    # stop lines of traffic lights (S,): a segment across the lane where a governed lane starts
    stopline_light: np.ndarray  # (S,) int32
    stopline_lane: np.ndarray  # (S,) int32 the governed (junction) lane
    stopline_p0: np.ndarray  # (S, 2)
    stopline_p1: np.ndarray  # (S, 2)
    # stop signs (G,): trigger volume = box on the approach, ending at the junction entry
    stop_id: np.ndarray  # (G,) int64
    stop_lane: np.ndarray  # (G,) int32 governed (junction) lane
    stop_box: np.ndarray  # (G, 5) centre x, y, yaw, length, width
    # crosswalks: polygons, flattened
    cw_pts: np.ndarray  # (N, 2)
    cw_start: np.ndarray  # (C + 1,) offsets into cw_pts
    # parking lanes (K,): points about 1 m apart on parking lanes, beside the driving lane they border
    park_xy: np.ndarray  # (K, 2)
    park_yaw: np.ndarray  # (K,) [rad] the parking lane's direction (= its driving neighbour's)
    park_lane: np.ndarray  # (K,) int32 the adjacent driving lane
    park_width: np.ndarray  # (K,) [m]
    _tree: cKDTree | None = field(default=None, repr=False, compare=False)
    _f32: dict | None = field(default=None, repr=False, compare=False)
    _last_match: tuple | None = field(default=None, repr=False, compare=False)  # (key arrays, params, LaneMatch)

    # ---------------------------------------------------------------- basic facts
    @property
    def num_lanes(self) -> int:
        return len(self.lane_start)

    @property
    def num_lights(self) -> int:
        return len(self.light_id)

    def validate(self) -> None:
        """Check shapes, dtypes and index ranges; raises ValueError naming the field."""
        P, L = len(self.pt_xy), len(self.lane_start)
        checks = {
            "pt_xy": self.pt_xy.shape == (P, 2),
            "pt_lane": self.pt_lane.shape == (P,) and (P == 0 or (self.pt_lane.min() >= 0 and self.pt_lane.max() < L)),
            "lane_npts": bool(np.all(self.lane_npts >= 1)),
            "lane_start": bool(np.all(self.lane_start + self.lane_npts <= P)),
            "lane_succ": self.lane_succ.shape == (L, MAX_LINKS) and self.lane_succ.max(initial=-1) < L,
            "lane_pred": self.lane_pred.shape == (L, MAX_LINKS) and self.lane_pred.max(initial=-1) < L,
            "lane_ds": bool(np.all(self.lane_ds <= 1.0 + 1e-6)),
            "lane_light": self.lane_light.max(initial=-1) < len(self.light_id),
            "stopline_light": self.stopline_light.max(initial=-1) < len(self.light_id),
            "lane_stop": self.lane_stop.max(initial=-1) < len(self.stop_id),
            "park_lane": self.park_xy.shape == (len(self.park_lane), 2) and self.park_lane.max(initial=-1) < L,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"lane graph {self.name!r}: invalid fields {bad}")

    def lane_points(self, lane: int) -> np.ndarray:
        a = int(self.lane_start[lane])
        return self.pt_xy[a : a + int(self.lane_npts[lane])]

    def successors(self, lane: int) -> list[int]:
        return [int(x) for x in self.lane_succ[lane] if x >= 0]

    def predecessors(self, lane: int) -> list[int]:
        return [int(x) for x in self.lane_pred[lane] if x >= 0]

    def crosswalks(self) -> list[np.ndarray]:
        return [self.cw_pts[self.cw_start[i] : self.cw_start[i + 1]] for i in range(len(self.cw_start) - 1)]

    # ---------------------------------------------------------------- spatial queries
    @property
    def tree(self) -> cKDTree:
        if self._tree is None:
            self._tree = cKDTree(self.pt_xy)
        return self._tree

    @property
    def f32(self) -> dict[str, np.ndarray]:
        """float32 copies of the arrays the per-step code gathers from (the state is float32)."""
        if self._f32 is None:
            self._f32 = {"pt_x": self.pt_xy[:, 0].astype(np.float32), "pt_y": self.pt_xy[:, 1].astype(np.float32),
                         "pt_yaw": self.pt_yaw.astype(np.float32), "lane_length": self.lane_length.astype(np.float32),
                         "lane_inv_ds": (1.0 / np.maximum(self.lane_ds, 1e-9)).astype(np.float32)}
        return self._f32

    def lane_position(self, lane, s):
        """Point on a lane at arc length s (clipped to the lane): returns (x, y, yaw); vectorised.

        float32 in, float32 out (the simulator's state); float64 arc lengths give float64 positions."""
        lane = np.asarray(lane)
        s = np.asarray(s)
        if s.dtype == np.float32:
            f32 = self.f32
            px, py, pyaw, length, inv_ds = f32["pt_x"], f32["pt_y"], f32["pt_yaw"], f32["lane_length"], f32["lane_inv_ds"]
        else:
            s = s.astype(np.float64)
            px, py, pyaw, length = self.pt_xy[:, 0], self.pt_xy[:, 1], self.pt_yaw, self.lane_length
            inv_ds = 1.0 / np.maximum(self.lane_ds, 1e-9)
        f = np.clip(s, 0.0, length[lane]) * inv_ds[lane]
        last = self.lane_npts[lane] - 1
        i0 = np.minimum(f.astype(np.int64), last)  # f >= 0, so truncation is floor
        w = f - i0
        a = self.lane_start[lane]
        p0 = a + i0
        p1 = a + np.minimum(i0 + 1, last)
        x0, y0 = px[p0], py[p0]
        return x0 + (px[p1] - x0) * w, y0 + (py[p1] - y0) * w, pyaw[p0]

    def project(self, xy: np.ndarray, yaw: np.ndarray | None = None, k: int = 8, yaw_weight: float = 4.0):
        """Match points to lanes. xy (N, 2), optional heading (N,) to prefer lanes of the same direction.

        Returns (point index (N,), lateral offset (N,) [m, positive = left of the lane], distance (N,) [m]).
        The cost is distance + yaw_weight * (1 - cos(heading error)) when a heading is given.
        """
        m = self.match(xy, yaw, k=k, yaw_weight=yaw_weight)
        return m.point, m.lateral, m.distance

    def on_lane(self, xy: np.ndarray, k: int = 8, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Drivable-area test: for (N, 2) points, whether each lies inside some driving lane.

        A point is inside a lane when, relative to one of its k nearest centreline points, its lateral
        offset is within half the lane width (+ margin) and its longitudinal offset within half a spacing.
        Returns (inside (N,), lane index or -1 (N,)).
        """
        m = self.match(xy, None, k=k, margin=margin)
        return m.inside, m.inside_lane

    def match(self, xy: np.ndarray, yaw: np.ndarray | None = None, k: int = 8, yaw_weight: float = 4.0,
              margin: float = 0.0) -> LaneMatch:
        """One k-nearest query serving both `project` (best centreline point by distance + heading cost)
        and `on_lane` (inside test). See those methods for the definitions.

        The last answer is kept: asked again for the same points (the simulator matches the ego to its lane
        in a step, the monitor asks the same of that state), it is returned without a second query."""
        xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        yaw_a = None if yaw is None else np.asarray(yaw, dtype=np.float64)
        params = (k, yaw_weight, margin, yaw is None)
        memo = self._last_match
        if (memo is not None and memo[1] == params and memo[0][0].shape == xy.shape and np.array_equal(memo[0][0], xy)
                and (yaw_a is None or np.array_equal(memo[0][1], yaw_a))):
            return memo[2]
        m = self._match(xy, yaw_a, k, yaw_weight, margin)
        for a in (m.point, m.lateral, m.distance, m.inside, m.inside_lane):
            a.flags.writeable = False  # shared with the next caller that asks the same
        self._last_match = ((xy.copy(), None if yaw_a is None else yaw_a.copy()), params, m)
        return m

    def _match(self, xy: np.ndarray, yaw: np.ndarray | None, k: int, yaw_weight: float, margin: float) -> LaneMatch:
        N = len(xy)
        k = min(k, len(self.pt_xy))
        d, idx = self.tree.query(xy, k=k)
        d, idx = d.reshape(N, k), idx.reshape(N, k).astype(np.int64)
        point, lateral, distance, inside, inside_lane = _match_candidates(
            xy, np.zeros(N) if yaw is None else np.ascontiguousarray(yaw, np.float64), yaw is not None, d, idx,
            self.pt_xy, self.pt_yaw, self.pt_lane, self.lane_width, self.lane_ds, float(yaw_weight), float(margin))
        return LaneMatch(point=point, lateral=lateral, distance=distance, inside=inside, inside_lane=inside_lane)

    def bounds(self) -> tuple[float, float, float, float]:
        mn, mx = self.pt_xy.min(axis=0), self.pt_xy.max(axis=0)
        return float(mn[0]), float(mn[1]), float(mx[0]), float(mx[1])

    # ---------------------------------------------------------------- persistence
    def save(self, path: Path) -> None:
        arrays = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}
        arrays["name"] = np.array(self.name)
        arrays["source_hash"] = np.array(self.source_hash)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> LaneGraph:
        with np.load(path, allow_pickle=False) as z:
            kw = {f.name: z[f.name] for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        kw["name"] = str(kw["name"])
        kw["source_hash"] = str(kw["source_hash"])
        g = cls(**kw)
        g.validate()
        return g


@njit(cache=True)
def _match_candidates(xy, yaw, use_yaw, d, idx, pt_xy, pt_yaw, pt_lane, lane_width, lane_ds, yaw_weight, margin,
                      ):  # pragma: no cover (compiled)
    """From each point's k nearest centreline points (d, idx (N, k)): the best by distance (+ heading cost), its
    lateral offset (positive left) and distance; and whether the point is inside one of their lanes (|lateral| <=
    half the width + margin, |longitudinal| <= half a spacing + 5 cm), the first such lane."""
    N, K = idx.shape
    point, lateral, distance = np.empty(N, np.int64), np.empty(N), np.empty(N)
    inside, inside_lane = np.zeros(N, np.bool_), np.full(N, -1, np.int64)
    for n in range(N):
        best, best_cost = 0, np.inf
        for j in range(K):
            p = idx[n, j]
            cost = d[n, j] + (yaw_weight * (1.0 - math.cos(yaw[n] - pt_yaw[p])) if use_yaw else 0.0)
            if cost < best_cost:
                best, best_cost = j, cost
            c, s = math.cos(pt_yaw[p]), math.sin(pt_yaw[p])
            rx, ry = xy[n, 0] - pt_xy[p, 0], xy[n, 1] - pt_xy[p, 1]
            lon, lat = rx * c + ry * s, rx * s - ry * c
            lane = pt_lane[p]
            if not inside[n] and abs(lat) <= lane_width[lane] / 2 + margin and abs(lon) <= lane_ds[lane] / 2 + 0.05:
                inside[n], inside_lane[n] = True, lane
        p = idx[n, best]
        c, s = math.cos(pt_yaw[p]), math.sin(pt_yaw[p])
        rx, ry = xy[n, 0] - pt_xy[p, 0], xy[n, 1] - pt_xy[p, 1]
        point[n], lateral[n], distance[n] = p, rx * s - ry * c, d[n, best]
    return point, lateral, distance, inside, inside_lane
