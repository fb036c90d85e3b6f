"""The pseudo-simulator at the CARLA / Leaderboard 2.0 boundary, without ROS: one route, one tick at a time.

The ROS node (`drive_stack.pseudo_sim`) publishes `observation()` as the carla-ros-bridge topics, feeds
commands to `offer_command()`, and calls `tick()` when the command for the current tick arrived or its
timeout expired. The Leaderboard's rule is kept: a command is applied only if its stamp equals the current
tick's sim time (within 1 ms) and it is not a repeat of an already applied stamp. A tick with no applied
command is a *missed tick*: the Leaderboard then applies `carla.VehicleControl()`, throttle, steer and brake 0
(ros_base_agent.run_step after 1.0 s of wall time; stack/leaderboard.py ZERO_CONTROL): the car coasts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..loop import ClosedLoop
from ..maps.lanegraph import LaneGraph
from ..metrics.bench2drive import leaderboard_route_id
from ..policies import make_policy
from ..routes.xml import RouteSpec
from ..sim.state import DT, SimState
from ..sim.world import Controls
from .takeover import command_problems

STAMP_TOLERANCE = 1e-3  # [s] the Leaderboard's tolerance between a command's stamp and the tick's time


@dataclass
class ControlCommand:
    """A CarlaEgoVehicleControl as plain numbers; stamp in sim seconds."""

    stamp: float
    throttle: float
    steer: float
    brake: float
    hand_brake: bool = False
    reverse: bool = False

    def problems(self) -> list[str]:
        """Why this command may not be applied (empty if fine): non-finite or out-of-range fields."""
        bad = command_problems(self.throttle, self.steer, self.brake)
        if not np.isfinite(self.stamp):
            bad.append("stamp is not finite")
        return bad


class PseudoSimCore:
    """State, simulator and Bench2Drive monitor for one route; the tick protocol of the Leaderboard."""

    def __init__(self, g: LaneGraph, spec: RouteSpec, seed: int = 0, max_agents: int = 64,
                 expert_policy: str | None = "expert", geo_ref: tuple | None = None, gnss_noise: float | None = None):
        self.map, self.spec, self.seed = g, spec, seed
        # with the map's geoReference: the loop's GNSS draws each tick's fix as the library loop in perception
        # `sensors` does (sim/localization.py), for the GNSS sensor to publish (`gnss_fix`)
        gnss = {} if geo_ref is None else {"perception": "sensors", "geo_ref": geo_ref, "gnss_noise": gnss_noise}
        self.loop = ClosedLoop.for_route(g, spec, seed=seed, max_agents=max_agents, **gnss)
        self.route = self.loop.routes[0]
        self.controls = Controls.zeros(1)
        self.applied_stamps: set[int] = set()
        self.pending: ControlCommand | None = None
        self.missed_ticks = 0
        self.rejected: list[str] = []
        self.ticks = 0
        self.tick_t: list[float] = []  # sim time of each tick stepped
        self.moved: list[float] = []  # how far the ego went in each tick [m]
        self.done = False
        self.t0_wall = time.perf_counter()
        # the privileged expert the takeover monitor may hand control to (it sees what the loop shows a
        # privileged policy: the whole state, no perception limits)
        self._expert = make_policy(expert_policy, 1, g=g) if expert_policy else None
        self.expert_plan = None  # the expert's plan of the last expert_command()

    @property
    def state(self) -> SimState:
        return self.loop.state

    @property
    def lights(self) -> np.ndarray:
        return self.loop.lights

    @property
    def monitor(self):
        return self.loop.monitor

    @property
    def t(self) -> float:
        return float(self.state.t[0])

    def stamp_key(self, t: float) -> int:
        return int(round(t / STAMP_TOLERANCE))

    def offer_command(self, cmd: ControlCommand) -> str:
        """Returns 'accepted', 'stale' (stamp is not this tick's), 'repeat' or 'invalid: ...'."""
        if abs(cmd.stamp - self.t) > STAMP_TOLERANCE:
            return "stale"
        if self.stamp_key(cmd.stamp) in self.applied_stamps or self.pending is not None:
            return "repeat"
        bad = cmd.problems()
        if bad:
            self.rejected.append(f"t={self.t:.2f}: " + ", ".join(bad))
            return "invalid: " + ", ".join(bad)
        self.pending = cmd
        return "accepted"

    def expert_command(self) -> ControlCommand | None:
        """What the privileged expert would do at this tick (it sees the whole state); its plan (path, speed
        profile, target speed: the labels a takeover's training samples carry) is kept in `expert_plan`."""
        if self._expert is None:
            return None
        controls, plan = self._expert.act(*self.loop.observe(self._expert))
        self.expert_plan = plan
        return ControlCommand(self.t, float(controls.throttle[0]), float(controls.steer[0]), float(controls.brake[0]))

    def tick(self) -> bool:
        """Advance one step with the pending command (or, if none arrived, the Leaderboard's all-zero control: a
        missed tick). Returns done."""
        if self.done:
            return True
        if self.pending is None:
            self.missed_ticks += 1
            self.controls = Controls.zeros(1)
        else:
            c = self.pending
            self.controls = Controls(np.array([c.throttle]), np.array([c.steer]), np.array([c.brake]),
                                     hand_brake=np.array([c.hand_brake]), reverse=np.array([c.reverse]))
            self.applied_stamps.add(self.stamp_key(c.stamp))
            self.pending = None
        x0, y0, t0 = float(self.state.x[0, 0]), float(self.state.y[0, 0]), self.t
        done = self.loop.step(self.controls)
        self.tick_t.append(t0)
        self.moved.append(float(np.hypot(self.state.x[0, 0] - x0, self.state.y[0, 0] - y0)))
        self.ticks += 1
        self.done = bool(done[0])
        return self.done

    def record(self, index: int = 0) -> dict:
        rec = self.loop.record(0, leaderboard_route_id(self.spec.route_id), index=index,
                               duration_system=time.perf_counter() - self.t0_wall, town=self.spec.town)
        rec["meta"].update({"seed": self.seed, "missed_ticks": self.missed_ticks, "rejected_commands": len(self.rejected),
                            "via": "ros"})
        return rec


__all__ = ["DT", "STAMP_TOLERANCE", "ControlCommand", "PseudoSimCore"]
