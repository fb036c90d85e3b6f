"""Evaluate many routes: parallel worker processes or Ray tasks (dispatch.py), a results checkpoint after every
route, resume, and isolation (a route whose worker raises, dies or hangs is recorded as failed; the others go on).

Output folder: ``results.json`` (Leaderboard 2.0 results shape, rewritten atomically after every route) and
``summary.json`` (Bench2Drive aggregates, routes evaluated / skipped).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..maps import MapError, TownLoader
from ..metrics.bench2drive import (
    STATUS_AGENT_CRASHED,
    STATUS_SIM_CRASHED,
    empty_infractions,
    global_record,
    summarize,
)
from ..policies import LEARNED, UnknownPolicy, check_policy, make_policy
from ..policies.learned import CandidateCheck
from ..routes.xml import RouteError, RouteSpec, parse_routes
from .dispatch import dispatch, import_ray
from .report import render_failures, write_report
from .runner import leaderboard_route_id, run_route, scenario_note


@dataclass
class EvalConfig:
    routes: str
    out: str
    policy: str = "rule"
    model: str | None = None  # learned policies: the planner ONNX file (default: $DRIVE_STACK_MODELS, then models/)
    maps_dir: str | None = None
    route_ids: list[str] | None = None
    workers: int = 1
    resume: bool = False
    seed: int = 0
    route_timeout_s: float = 600.0  # wall-clock limit per route before its worker counts as hung
    max_agents: int = 64
    render_failures: int = 0  # re-drive and render (GIF) this many of the worst failing routes into the report
    fault: str | None = None  # testing aid: "crash:<route_id>", "hang:<route_id>" or "exit:<route_id>", comma-separated
    ray: str | None = None  # routes as Ray tasks: "local" (a Ray of `workers` CPUs), "auto", "host:port", "ray://..."
    max_retries: int = 1  # Ray: re-runs of a route whose worker process or node died before it counts as crashed
    perception: str = "privileged"  # privileged: the simulator's ego pose; sensors: GNSS (CARLA's noise) + IMU +
    # speedometer, filtered (sim/localization.py), as the stack's perception:=sensors
    gnss_noise: float | None = None  # [deg] sensors: the GNSS noise (default the Leaderboard's 5e-6; 0: none)
    check: float = 0.0  # [s] learned planners: the candidate check's horizon (policies/learned.py CandidateCheck; 0: off)
    unstall: float = 0.0  # [s] with the check: drive a cleared candidate where the ego has stood this long and the
    # plan (after the check) still stands (CandidateCheck.unstall; 0: off)
    check_margin: float = 0.0  # [m] with the check: the forecast ego's box is this much wider on each side
    # (CandidateCheck.margin; 0: the box as it is)


def _atomic_write(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def results_document(records: list[dict], total: int, finished: bool) -> dict:
    """The Leaderboard 2.0 results-JSON document (records sorted by index)."""
    records.sort(key=lambda r: r["index"])
    return {
        "_checkpoint": {"global_record": global_record(records) if records else {},
                        "progress": [len(records), total], "records": records},
        "entry_status": "Finished" if finished else "Started",
        "eligible": finished,
        "sensors": [],
        "values": [],
        "labels": [],
    }


def write_results(out: Path, records: list[dict], total_routes: int, skipped: list[dict], notes: list[str],
                  extra: dict | None = None) -> dict:
    """Write results.json (finished) and summary.json into out; returns the summary. Used by `eval` and by
    the ROS pseudo-simulator node, so both worlds leave the same files."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / "results.json", results_document(records, len(records), True))
    summary = summarize(records, total_routes=total_routes, skipped=skipped, notes=notes)
    summary.update(extra or {})
    _atomic_write(out / "summary.json", summary)
    write_report(out, summary, records, {})
    return summary


def skipped_lines(skipped: list[dict], show_ids: int = 6) -> list[str]:
    """What the console says about skipped or refused routes: one line per distinct reason (a missing town's
    routes share one line with their count), naming a few of the routes."""
    groups: dict[tuple[str, str], list[str]] = {}
    for s in skipped:
        groups.setdefault((s.get("status", "error"), s.get("message", "")), []).append(str(s["route_id"]))
    lines = []
    for (status, msg), ids in groups.items():
        if len(ids) == 1:
            lines.append(f"skipped route {ids[0]} ({status}): {msg}")
            continue
        shown = ", ".join(ids[:show_ids]) + (f", ... (+{len(ids) - show_ids} more)" if len(ids) > show_ids else "")
        lines.append(f"skipped {len(ids)} routes ({status}: {shown}): {msg}")
    return lines


def _crash_record(spec: RouteSpec, index: int, status: str, message: str, wall: float) -> dict:
    return {
        "index": index,
        "route_id": leaderboard_route_id(spec.route_id),
        "status": status,
        "num_infractions": 0,
        "infractions": empty_infractions(),
        "scores": {"score_route": 0.0, "score_penalty": 1.0, "score_composed": 0.0},
        "meta": {"route_length": 0.0, "duration_game": 0.0, "duration_system": wall, "town": spec.town,
                 "scenario_type": spec.scenario_type, "efficiency": None, "comfort": None, "error": message},
    }


def _run_route(spec: RouteSpec, index: int, cfg: EvalConfig) -> tuple[str, object]:
    """One route, in its worker (a forked process or a Ray task): ("ok", record), ("error", message) for a route
    or map that cannot be driven, ("crash", message) when anything else raised."""
    try:
        faults = (cfg.fault or "").split(",")
        if f"crash:{spec.route_id}" in faults:
            raise RuntimeError("injected fault: crash")
        if f"exit:{spec.route_id}" in faults:
            os._exit(3)
        if f"hang:{spec.route_id}" in faults:
            time.sleep(1e6)
        loader = TownLoader(cfg.maps_dir)
        g = loader.load(spec.town)
        kw = {"model": cfg.model} if cfg.model else {}
        if cfg.check > 0:
            kw["check"] = CandidateCheck(horizon=cfg.check, unstall=cfg.unstall, margin=cfg.check_margin)
        pol = make_policy(cfg.policy, 1, g=g, **kw)
        perception = {"perception": cfg.perception}
        if cfg.perception == "sensors":
            from ..sim.localization import geo_reference

            perception.update(geo_ref=geo_reference(loader.xodr_text(spec.town)), gnss_noise=cfg.gnss_noise)
        ep = run_route(g, spec, pol, seed=cfg.seed, max_agents=cfg.max_agents, index=index, **perception)
        return ("ok", ep.record)
    except (RouteError, MapError) as e:
        return ("error", str(e))
    except Exception as e:  # anything else: the route fails, the evaluation goes on
        return ("crash", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}")


def evaluate(cfg: EvalConfig, log=print) -> dict:
    """Run the evaluation described by cfg; returns the summary (also written to cfg.out/summary.json)."""
    if cfg.check < 0 or not np.isfinite(cfg.check) or (cfg.check > 0 and cfg.policy not in LEARNED):
        raise ValueError(f"--check {cfg.check}: the candidate check is a horizon in seconds (> 0) for the learned "
                         f"planners ({', '.join(LEARNED)}), not for --policy {cfg.policy}")
    if cfg.unstall < 0 or not np.isfinite(cfg.unstall) or (cfg.unstall > 0 and cfg.check <= 0):
        raise ValueError(f"--unstall {cfg.unstall}: a time in seconds (> 0) that needs the candidate check "
                         "(--check SECONDS) too: it drives only candidates the check clears")
    if cfg.check_margin < 0 or not np.isfinite(cfg.check_margin) or (cfg.check_margin > 0 and cfg.check <= 0):
        raise ValueError(f"--check-margin {cfg.check_margin}: metres (>= 0) by which the candidate check widens the "
                         "ego; it needs --check SECONDS")
    model = check_policy(cfg.policy, cfg.model)  # fail fast: unknown policy, missing model, a file that is no planner
    if model is not None:
        log(f"policy {cfg.policy}: model {model['path']} (sha256 {model['sha256'][:16]})")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    rf = parse_routes(cfg.routes)
    routes = rf.routes
    if cfg.route_ids:
        wanted = [str(r) for r in cfg.route_ids]
        unknown = sorted(set(wanted) - {r.route_id for r in routes} - set(rf.errors))
        if unknown:
            raise RouteError(f"{cfg.routes}: route ids not in the file: {', '.join(unknown)}")
        routes = [r for r in routes if r.route_id in wanted]
    loader = TownLoader(cfg.maps_dir)
    skipped = [{"route_id": rid, "status": "error", "message": msg} for rid, msg in rf.errors.items()
               if not cfg.route_ids or rid in cfg.route_ids]
    todo: list[tuple[int, RouteSpec]] = []
    for i, r in enumerate(routes):
        if not loader.available(r.town):
            skipped.append({"route_id": r.route_id, "town": r.town, "status": "missing_map",
                            "message": loader.missing_reason(r.town)})
        else:
            todo.append((i, r))
    for line in skipped_lines(skipped):  # every skipped or refused route is on the console, not only in summary.json
        log(line)
    results_path = out / "results.json"
    records: list[dict] = []
    if cfg.resume and results_path.exists():
        try:
            records = json.loads(results_path.read_text())["_checkpoint"]["records"]
        except (json.JSONDecodeError, KeyError) as e:
            raise RouteError(f"{results_path}: cannot resume from a damaged checkpoint ({e}); "
                             f"move it away to start over") from e
        done_ids = {r["route_id"] for r in records}
        todo = [(i, r) for i, r in todo if leaderboard_route_id(r.route_id) not in done_ids]
        log(f"resuming: {len(records)} routes already recorded, {len(todo)} to go")
    total = len(routes) + sum(1 for rid in rf.errors if not cfg.route_ids or rid in cfg.route_ids)
    note = scenario_note(r.scenario_type for _, r in todo)
    notes = [note] if note else []

    left = len(todo)  # routes not finished yet (a route refused as "error" leaves the total, as it is not recorded)

    def checkpoint(finished: bool) -> None:
        _atomic_write(results_path, results_document(records, len(records) + left, finished))

    if cfg.ray:
        import_ray()  # fail fast, before any output, when the ray extra is missing
    checkpoint(False)
    for o in dispatch(_run_route, [(spec, i, cfg) for i, spec in todo], workers=cfg.workers, ray=cfg.ray,
                      timeout_s=cfg.route_timeout_s, max_retries=cfg.max_retries):
        i, spec = todo[o.job]
        rec = None
        if o.kind == "ok":
            kind, payload = o.result
            if kind == "ok":
                rec = payload
            elif kind == "error":
                skipped.append({"route_id": spec.route_id, "town": spec.town, "status": "error", "message": payload})
                log(f"route {spec.route_id}: error: {payload}")
            else:
                rec = _crash_record(spec, i, STATUS_AGENT_CRASHED, payload, o.wall)
        else:  # the worker died (after Ray's retries) or hung
            rec = _crash_record(spec, i, STATUS_SIM_CRASHED, o.message, o.wall)
        left -= 1
        if rec is not None:
            records.append(rec)
            sc = rec["scores"]
            why = (rec["meta"].get("error") or "").strip().splitlines()
            log(f"route {spec.route_id} ({spec.town}, {spec.scenario_type}): {rec['status']}, "
                f"RC {sc['score_route']:.1f}, penalty {sc['score_penalty']:.2f}, DS {sc['score_composed']:.1f}"
                + (f": {why[0]}" if why else ""))
        checkpoint(False)
    checkpoint(True)
    summary = summarize(records, total_routes=total, skipped=skipped, notes=notes)
    # what a non-privileged policy localised with: the simulator's pose (privileged) or GNSS + IMU + speedometer
    summary.update({"policy": cfg.policy, "model": model, "routes_file": str(cfg.routes), "seed": cfg.seed,
                    "perception": cfg.perception, **({"check": cfg.check} if cfg.check > 0 else {}),
                    **({"unstall": cfg.unstall} if cfg.unstall > 0 else {}),
                    **({"check_margin": cfg.check_margin} if cfg.check_margin > 0 else {})})
    _atomic_write(out / "summary.json", summary)
    renders = {}
    if cfg.render_failures > 0:
        renders = render_failures(cfg.routes, cfg.maps_dir, cfg.policy, cfg.seed, records, out, cfg.render_failures,
                                  log)
    log(f"report: {write_report(out, summary, records, renders)}")
    return summary


__all__ = ["EvalConfig", "UnknownPolicy", "evaluate", "results_document", "skipped_lines", "write_results"]
