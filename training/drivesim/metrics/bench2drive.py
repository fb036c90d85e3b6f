"""Bench2Drive scoring (Bench2Drive 0.0.4 on CARLA Leaderboard 2.0), as pure functions of route records.

Per route: RC (score_route), infraction penalty (score_penalty), DS (score_composed) and status, in the
Leaderboard 2.0 results-JSON record shape. Aggregates: Driving Score, Success Rate, Efficiency,
Comfortness and the five multi-ability success rates.
"""

from __future__ import annotations

import math

import numpy as np

from ..routes.xml import ABILITIES, ABILITY_NAMES

INFRACTION_KEYS = (
    "collisions_layout",
    "collisions_pedestrian",
    "collisions_vehicle",
    "red_light",
    "stop_infraction",
    "outside_route_lanes",
    "min_speed_infractions",
    "yield_emergency_vehicle_infractions",
    "scenario_timeouts",
    "route_dev",
    "vehicle_blocked",
    "route_timeout",
)
PENALTY = {
    "collisions_pedestrian": 0.50,
    "collisions_vehicle": 0.60,
    "collisions_layout": 0.65,
    "red_light": 0.70,
    "stop_infraction": 0.80,
    "scenario_timeouts": 0.70,
    "yield_emergency_vehicle_infractions": 0.70,
}
# Ending a route without a multiplier, with the Leaderboard's failure messages.
FAILURES = {
    "route_dev": "Failed - Agent deviated from the route",
    "vehicle_blocked": "Failed - Agent got blocked",
    "route_timeout": "Failed - Agent timed out",
}
STATUS_PERFECT = "Perfect"
STATUS_COMPLETED = "Completed"
STATUS_FAILED = "Failed"
STATUS_AGENT_CRASHED = "Failed - Agent crashed"
STATUS_SIM_CRASHED = "Failed - Simulation crashed"

# Comfortness thresholds (nuPlan's, as Bench2Drive uses them)
COMFORT_BOUNDS = {
    "lon_accel": (-4.05, 2.40),
    "lat_accel": (-4.89, 4.89),
    "jerk": (-8.37, 8.37),
    "lon_jerk": (-4.13, 4.13),
    "yaw_accel": (-1.93, 1.93),
    "yaw_rate": (-0.95, 0.95),
}
COMFORT_CHUNK = 20  # frames
SAVGOL_WINDOW, SAVGOL_ORDER = 7, 2
EFFICIENCY_CHECKPOINTS = 20  # every 5 % of the route


def leaderboard_route_id(route_id: str, rep: int = 0) -> str:
    """The Leaderboard 2.0 id of a route's repetition in results.json."""
    return f"RouteScenario_{route_id}_rep{rep}"


def empty_infractions() -> dict[str, list[str]]:
    return {k: [] for k in INFRACTION_KEYS}


def score_route(route_completion: float, infractions: dict[str, list], outside_pct: float = 0.0) -> dict[str, float]:
    """Leaderboard 2.0 scores: penalty = product of coefficients ** counts x (1 - outside% / 100)."""
    penalty = 1.0
    for key, coef in PENALTY.items():
        penalty *= coef ** len(infractions.get(key, []))
    penalty *= 1.0 - outside_pct / 100.0
    rc = float(route_completion)
    return {"score_route": rc, "score_penalty": penalty, "score_composed": max(rc * penalty, 0.0)}


def route_status(completed: bool, infractions: dict[str, list], penalty: float) -> str:
    for key, msg in FAILURES.items():
        if infractions.get(key):
            return msg
    if completed:
        return STATUS_PERFECT if penalty >= 1.0 else STATUS_COMPLETED
    return STATUS_FAILED


def is_success(record: dict) -> bool:
    """Bench2Drive success: route completed and no infraction other than min-speed entries."""
    if record.get("status") not in (STATUS_PERFECT, STATUS_COMPLETED):
        return False
    return all(not v for k, v in record["infractions"].items() if k != "min_speed_infractions")


# ------------------------------------------------------------------ multi-ability (Bench2Drive 0.0.4)
JUNCTION_PASS_POINTS = 8  # route points past the first junction point ("+8 to ensure the ego pass the trigger volume")


def junction_meta(g, dense) -> dict:
    """What a route record's ``meta`` needs for the Traffic_Signs junction credit: ``first_junction_index``
    (0-based index of the first point of the densified route that lies on a junction lane, None when the route
    crosses no junction) and ``route_points`` (points of the densified route). g: the LaneGraph, dense: the
    route's DenseRoute (1 m points, as Bench2Drive's GlobalRoutePlanner trace at 1 m)."""
    on_junction = np.asarray(g.lane_junction)[np.asarray(dense.lane)] >= 0
    hit = np.flatnonzero(on_junction)
    return {"first_junction_index": int(hit[0]) if len(hit) else None, "route_points": int(len(dense.lane))}


def junction_completion(meta: dict) -> float | None:
    """The route completion (fraction) a failed Traffic_Signs route must exceed to be credited: (count + 8) / N
    with count the 1-based index of the route's first junction point and N its points; None when unknown."""
    j, n = meta.get("first_junction_index"), meta.get("route_points")
    if j is None or not n:
        return None
    return float(j + 1 + JUNCTION_PASS_POINTS) / float(n)


def traffic_signs_junction_credit(record: dict) -> bool:
    """Bench2Drive 0.0.4 credits a *failed* Traffic_Signs route as a Traffic_Signs success when its route
    completion passed the route's first junction (+8 points) without running a red light or a stop sign.

    Thinklab-SJTU/Bench2Drive, tools/ability_benchmark.py at the "Release Bench2Drive 0.0.4" commit 7ec25d1c
    (lines 128-153): for a route whose type is in Ability["Traffic_Signs"] and not ``record_success_status``,
    the keypoints are densified with GlobalRoutePlanner(map, 1.0) (trace_route between consecutive keypoints,
    lines 60-68), ``count`` is the 1-based index of the first waypoint with ``is_junction``, ``junction_completion
    = (count + 8) / len(waypoint_route)``, and when ``score_route / 100 > junction_completion`` and both
    ``stop_infraction`` and ``red_light`` are empty, ``Ability_Statistic['Traffic_Signs'][0] += 1`` (the route
    was already counted in the denominator by update_Ability). Here the densified route is our planner's (1 m
    points; upstream's concatenated traces repeat each inner keypoint's waypoint, a point or two of difference)
    and the junction index comes from the record's meta (junction_meta). Upstream raises on a route with no
    junction point; here such a route, or a record without the meta fields, gets no credit."""
    thr = junction_completion(record.get("meta", {}))
    if thr is None:
        return False
    inf = record["infractions"]
    return record["scores"]["score_route"] / 100.0 > thr and not inf.get("stop_infraction") and not inf.get("red_light")


def multi_ability(records: list[dict]) -> dict[str, dict]:
    """The five multi-ability success rates [%], as Bench2Drive 0.0.4's tools/ability_benchmark.py computes
    them (commit 7ec25d1c, lines 12-18 the ability lists, 119-126 the per-route success and update_Ability,
    128-153 the Traffic_Signs junction credit): a route counts once in every ability whose list holds its
    (first) scenario type, as a success when is_success; a failed Traffic_Signs route also counts as a
    Traffic_Signs success when traffic_signs_junction_credit. Our ABILITIES (routes/xml.py) hold upstream's
    lists for the 44 Bench2Drive types (a test pins them) plus our DOS types. An ability without routes is
    None (upstream divides by zero there)."""
    out: dict[str, dict] = {}
    for a in ABILITY_NAMES:
        rs, credited = [], 0
        for r in records:
            if a not in ABILITIES.get(r["meta"].get("scenario_type") or "", ()):
                continue
            ok = is_success(r)
            if a == "Traffic_Signs" and not ok and traffic_signs_junction_credit(r):
                ok, credited = True, credited + 1
            rs.append(ok)
        out[a] = {"success_rate": 100.0 * float(np.mean(rs)) if rs else None, "routes": len(rs)}
        if a == "Traffic_Signs":
            out[a]["junction_credited"] = credited
    return out


def multi_ability_mean(ability: dict[str, dict]) -> float:
    """Upstream's mean: the sum of the five rates / 5 (tools/ability_benchmark.py line 156). Where an ability has
    no routes (upstream fails), the mean of those that have."""
    rates = [v["success_rate"] for v in ability.values() if v["success_rate"] is not None]
    return float(np.mean(rates)) if rates else 0.0


# ------------------------------------------------------------------ comfort and efficiency
def comfort_signals(x, y, yaw, dt: float) -> dict[str, np.ndarray]:
    """Savitzky-Golay (window 7, order 2) derivatives of a trajectory: the six comfort signals per frame."""
    x, y, yaw = (np.asarray(v, dtype=np.float64) for v in (x, y, yaw))
    n = len(x)
    w = min(SAVGOL_WINDOW, n if n % 2 == 1 else n - 1)
    if w <= SAVGOL_ORDER:
        z = np.zeros(n)
        return {k: z for k in COMFORT_BOUNDS}
    yaw = np.unwrap(yaw)
    from scipy.signal import savgol_filter  # here, not at the top: scipy.signal costs 0.8 s to import, paid by
    # every node of the ROS stack and every CLI command that imports the loop, of which few score a route

    def d(v, k):
        return savgol_filter(v, w, SAVGOL_ORDER, deriv=k, delta=dt, mode="interp")

    vx, vy = d(x, 1), d(y, 1)
    ax, ay = d(x, 2), d(y, 2)
    h = d(yaw, 0)
    c, s = np.cos(h), np.sin(h)
    lon_acc = ax * c + ay * s
    lat_acc = -ax * s + ay * c
    jx, jy = d(ax, 1), d(ay, 1)
    yaw_rate = d(yaw, 1)
    return {
        "lon_accel": lon_acc,
        "lat_accel": lat_acc,
        "jerk": np.hypot(jx, jy),
        "lon_jerk": d(lon_acc, 1),
        "yaw_accel": d(yaw_rate, 1),
        "yaw_rate": yaw_rate,
        "speed": np.hypot(vx, vy),
    }


def comfort_score(x, y, yaw, dt: float) -> tuple[float, int, int]:
    """Fraction of 20-frame chunks whose every frame is within all bounds. Returns (score, passing, chunks)."""
    n = len(x)
    chunks = n // COMFORT_CHUNK
    if chunks == 0:
        return 1.0, 0, 0
    sig = comfort_signals(x, y, yaw, dt)
    ok = np.ones(n, bool)
    for k, (lo, hi) in COMFORT_BOUNDS.items():
        ok &= (sig[k] > lo) & (sig[k] < hi)
    per_chunk = ok[: chunks * COMFORT_CHUNK].reshape(chunks, COMFORT_CHUNK).all(axis=1)
    return float(per_chunk.mean()), int(per_chunk.sum()), int(chunks)


def efficiency_checkpoints(progress_pct, ego_speed, traffic_speed, traffic_count) -> list[float]:
    """Per 5 % of route: 100 x mean ego speed / mean background speed over the frames of that segment.

    progress_pct (N,) route completion per frame; traffic_speed (N,) mean speed of background vehicles per frame;
    traffic_count (N,) how many there were. A segment with no traffic scores 100.
    """
    progress_pct = np.asarray(progress_pct)
    out = []
    seg = np.minimum((progress_pct / (100.0 / EFFICIENCY_CHECKPOINTS)).astype(int), EFFICIENCY_CHECKPOINTS - 1)
    for k in range(EFFICIENCY_CHECKPOINTS):
        m = seg == k
        if not m.any():
            continue
        tm = m & (np.asarray(traffic_count) > 0)
        if not tm.any():
            out.append(100.0)
            continue
        tv = float(np.mean(np.asarray(traffic_speed)[tm]))
        ev = float(np.mean(np.asarray(ego_speed)[m]))
        out.append(100.0 if tv < 1e-3 else 100.0 * ev / tv)
    return out


# ------------------------------------------------------------------ aggregation
def _mean(v):
    return float(np.mean(v)) if len(v) else 0.0


def summarize(records: list[dict], total_routes: int | None = None, skipped: list[dict] | None = None,
              notes: list[str] | None = None) -> dict:
    """Aggregate per-route records (Leaderboard 2.0 shape, with our ``meta``) into summary.json.

    Driving Score is the mean DS over evaluated routes; ``driving_score_all_routes`` divides by every route in
    the file (skipped/missing ones count 0, as the official 220-route figure does).
    """
    n = len(records)
    ds = [r["scores"]["score_composed"] for r in records]
    succ = [is_success(r) for r in records]
    ability = multi_ability(records)
    eff = [r["meta"]["efficiency"] for r in records if r["meta"].get("efficiency") is not None]
    comf = [r["meta"]["comfort"] for r in records if r["meta"].get("comfort") is not None]
    counts = {k: sum(len(r["infractions"][k]) for r in records) for k in INFRACTION_KEYS}
    km = sum(r["meta"]["route_length"] * r["scores"]["score_route"] / 100.0 for r in records) / 1000.0
    total = total_routes if total_routes is not None else n
    return {
        "routes_evaluated": n,
        "routes_skipped": len(skipped or []),
        "routes_total": total,
        "driving_score": _mean(ds),
        "driving_score_all_routes": float(np.sum(ds)) / total if total else 0.0,
        "route_completion": _mean([r["scores"]["score_route"] for r in records]),
        "infraction_penalty": _mean([r["scores"]["score_penalty"] for r in records]),
        "success_rate": 100.0 * _mean(succ),
        "efficiency": _mean(eff),
        "comfortness": 100.0 * _mean(comf),
        "multi_ability": ability,
        "multi_ability_mean": multi_ability_mean(ability),
        "infractions": counts,
        "infractions_per_km": {k: (v / km if km > 0 else 0.0) for k, v in counts.items()},
        "km_driven": km,
        # the average TTC (metrics.monitor AVG_TTC_HORIZON): over every tick of every route on a collision course
        "average_ttc": (sum(r["meta"].get("avg_ttc") * r["meta"]["ttc_ticks"] for r in records
                            if r["meta"].get("avg_ttc") is not None)
                        / max(sum(r["meta"].get("ttc_ticks", 0) for r in records), 1)
                        if any(r["meta"].get("ttc_ticks") for r in records) else None),
        "ttc_ticks": int(sum(r["meta"].get("ttc_ticks", 0) for r in records)),
        "failed_routes": [r["route_id"] for r in records if r["status"] in (STATUS_AGENT_CRASHED, STATUS_SIM_CRASHED)],
        "takeovers": takeover_summary(records),
        "skipped": skipped or [],
        "notes": notes or [],
    }


CONTROLLERS = ("planner", "expert", "safe_stop")


def takeover_record(events: list[dict], controllers: list[str], moved: np.ndarray, dt: float) -> dict:
    """A route's ``meta.takeovers``: the takeover events (t, cause, detail, ttc), their count and causes, and how
    many seconds and metres each controller drove (controllers[k] and moved[k] [m]: who drove tick k, how far
    the ego went in it)."""
    causes: dict[str, int] = {}
    for ev in events:
        causes[ev["cause"]] = causes.get(ev["cause"], 0) + 1
    moved = np.asarray(moved, np.float64)
    who = np.asarray(controllers)
    return {"count": len(events), "causes": causes, "events": events,
            "seconds": {c: round(float((who == c).sum()) * dt, 3) for c in CONTROLLERS},
            "metres": {c: round(float(moved[who == c].sum()), 2) for c in CONTROLLERS}}


def takeover_summary(records: list[dict]) -> dict | None:
    """The policy's own driving apart from the expert's (None when no record says who drove): takeovers, seconds
    and metres by controller, the policy's share of the distance, and the Driving Score over the routes the
    policy drove alone (a score earned with the expert's help is never read as the policy's)."""
    tk = [r["meta"].get("takeovers") for r in records]
    if not any(t is not None for t in tk):
        return None
    alone = [r["scores"]["score_composed"] for r, t in zip(records, tk, strict=True) if t is not None and t["count"] == 0]
    metres = {c: sum(t["metres"][c] for t in tk if t) for c in CONTROLLERS}
    total = sum(metres.values())
    return {"routes_with_takeovers": sum(1 for t in tk if t and t["count"] > 0),
            "takeovers": sum(t["count"] for t in tk if t),
            "causes": {k: sum(t["causes"].get(k, 0) for t in tk if t) for k in sorted({c for t in tk if t for c in t["causes"]})},
            "seconds": {c: round(sum(t["seconds"][c] for t in tk if t), 2) for c in CONTROLLERS},
            "metres": {c: round(v, 1) for c, v in metres.items()},
            "policy_share_of_distance": round(metres["planner"] / total, 4) if total > 0 else None,
            "takeovers_per_km": round(sum(t["count"] for t in tk if t) / (total / 1000.0), 3) if total > 0 else None,
            "driving_score_routes_without_takeover": _mean(alone) if alone else None,
            "routes_without_takeover": len(alone)}


def global_record(records: list[dict]) -> dict:
    """The Leaderboard 2.0 ``_checkpoint.global_record``."""
    keys = ("score_composed", "score_route", "score_penalty")
    means = {k: _mean([r["scores"][k] for r in records]) for k in keys}
    stds = {k: float(np.std([r["scores"][k] for r in records])) if records else 0.0 for k in keys}
    km = sum(r["meta"]["route_length"] * r["scores"]["score_route"] / 100.0 for r in records) / 1000.0
    return {
        "index": -1,
        "route_id": -1,
        "status": STATUS_COMPLETED if records and all(r["status"] in (STATUS_PERFECT, STATUS_COMPLETED) for r in records)
        else STATUS_FAILED,
        "infractions": {k: (round(sum(len(r["infractions"][k]) for r in records) / km, 3) if km > 0 else 0.0)
                        for k in INFRACTION_KEYS},
        "scores_mean": means,
        "scores_std_dev": stds,
        "meta": {
            "total_length": float(sum(r["meta"]["route_length"] for r in records)),
            "duration_game": float(sum(r["meta"]["duration_game"] for r in records)),
            "duration_system": float(sum(r["meta"]["duration_system"] for r in records)),
            "exceptions": [(r["route_id"], r["index"], r["status"]) for r in records
                           if r["status"] not in (STATUS_PERFECT, STATUS_COMPLETED, STATUS_FAILED)
                           and not r["status"].startswith("Failed - Agent deviated")],
        },
    }


def finite_or_none(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v
