"""Closed-loop evaluation of one route in the pseudo-simulator (20 Hz), scored as Bench2Drive does."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..maps.lanegraph import LaneGraph
from ..metrics.bench2drive import leaderboard_route_id, takeover_record
from ..policies import make_policy
from ..routes.planner import DenseRoute
from ..routes.xml import RouteSpec
from ..sim.state import SimState


def scenario_note(types) -> str | None:
    """What the summary says about scenario types that run with background traffic only (not simulated yet)."""
    from ..scenarios import SIMULATED_TYPES

    missing = sorted({t for t in types if t and t not in SIMULATED_TYPES})
    return (f"scenario types not simulated yet (background traffic only): {', '.join(missing)}" if missing else None)



@dataclass
class Episode:
    """What a closed-loop run leaves behind: the record and (optionally) every state."""

    record: dict
    route: DenseRoute
    states: list[SimState] = field(default_factory=list)
    steps: int = 0
    wall_time: float = 0.0
    takeovers: list = field(default_factory=list)  # the takeover gate's records (offline takeovers)


def run_route(g: LaneGraph, spec: RouteSpec, policy="rule", seed: int = 0, max_agents: int = 64,
              background: bool = True, keep_states: bool = False, index: int = 0, observer=None,
              driver=None, perturb=None, gate=None, expert=None, **perception) -> Episode:
    """Drive one route to its end (completion, deviation, blocked or timeout) in the closed loop and score it.

    policy: a policy name (`make_policy`) or a `Policy`; observer(Step): called every step before the simulator
    steps (the dataset writer, renders); driver / perturb / gate / expert: see `loop.drive` (DAgger, recovery
    noise, offline takeovers); perception: ClosedLoop's `perception`, `geo_ref`, `gnss_noise` (what a non-privileged
    policy localises with)."""
    from ..loop import ClosedLoop, drive

    t0 = time.perf_counter()
    loop = ClosedLoop.for_route(g, spec, seed=seed, max_agents=max_agents, background=background, **perception)
    pol = make_policy(policy, 1, g=g) if isinstance(policy, str) else policy
    out = drive(loop, pol, driver=driver, perturb=perturb, observer=observer, gate=gate, expert=expert,
                keep_states=keep_states)
    wall = time.perf_counter() - t0
    rec = loop.record(0, leaderboard_route_id(spec.route_id), index=index, duration_system=wall, town=spec.town)
    rec["meta"]["seed"] = seed
    rec["meta"]["model"] = pol.model_id  # {'path', 'sha256'} of a learned policy's file, None for rule-based ones
    if gate is not None:
        rec["meta"]["takeovers"] = takeover_record(out["takeovers"][0], [c[0] for c in out["controllers"]],
                                                   out["moved"][:, 0], loop.sim.dt)
    ep = Episode(rec, loop.routes[0], out["states"], out["steps"], wall)
    ep.takeovers = out["takeovers"][0] if gate is not None else []
    return ep


def realtime_factor(ep: Episode, dt: float = 0.05) -> float:
    return ep.steps * dt / max(ep.wall_time, 1e-9)


__all__ = ["Episode", "leaderboard_route_id", "realtime_factor", "run_route", "scenario_note"]
