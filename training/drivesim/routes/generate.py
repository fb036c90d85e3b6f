"""Random routes on any lane graph (our own route files, same XML schema): seeded walks through the topology."""

from __future__ import annotations

import numpy as np

from ..maps.lanegraph import LaneGraph
from .xml import RouteSpec


def random_route(g: LaneGraph, rng: np.random.Generator, route_id: str, min_length: float = 250.0,
                 keypoint_spacing: float = 2.0, max_tries: int = 50) -> RouteSpec:
    """A route of at least min_length metres, starting mid-lane on a random non-junction lane, following
    random successors (never a dead end). Keypoints every keypoint_spacing metres, as Bench2Drive's."""
    starts = np.flatnonzero((g.lane_junction < 0) & (g.lane_length > 30.0))
    for _ in range(max_tries):
        lane = int(rng.choice(starts))
        s0 = float(g.lane_length[lane]) * 0.3
        pieces, total, cur = [(lane, s0, float(g.lane_length[lane]))], g.lane_length[lane] - s0, lane
        while total < min_length:
            succ = [s for s in g.successors(cur) if (g.lane_succ[s] >= 0).any()]
            if not succ:
                break
            cur = int(rng.choice(succ))
            pieces.append((cur, 0.0, float(g.lane_length[cur])))
            total += g.lane_length[cur]
        if total < min_length:
            continue
        # end mid-lane on a non-junction lane
        while g.lane_junction[pieces[-1][0]] >= 0:
            succ = g.successors(pieces[-1][0])
            if not succ:
                break
            pieces.append((succ[0], 0.0, float(g.lane_length[succ[0]])))
        last = pieces[-1]
        pieces[-1] = (last[0], last[1], max(last[1] + 1.0, 0.6 * last[2]))
        pts = []
        for ln, a, b in pieces:
            s = np.arange(a, b, keypoint_spacing)
            x, y, _ = g.lane_position(np.full(len(s), ln), s)
            pts.append(np.stack([x, y, np.zeros(len(s))], 1))
        kp = np.concatenate(pts)
        keep = np.concatenate([[True], np.linalg.norm(np.diff(kp[:, :2], axis=0), axis=1) > 0.5])
        return RouteSpec(route_id, g.name, kp[keep], [], [{"route_percentage": 0.0, "cloudiness": 5.0,
                                                            "precipitation": 0.0, "sun_altitude_angle": 45.0}])
    raise ValueError(f"{g.name}: no route of {min_length} m found in {max_tries} tries")


def random_routes(g: LaneGraph, n: int, seed: int = 0, min_length: float = 250.0, prefix: str = "") -> list[RouteSpec]:
    rng = np.random.default_rng(seed)
    return [random_route(g, rng, f"{prefix}{i}", min_length) for i in range(n)]
