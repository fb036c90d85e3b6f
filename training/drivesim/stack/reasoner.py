"""Rule-based reasoning: the vla_reasoning node's default reasoner (`model:=rule`; stack/reasoners.py has the others).

Input: a single-env PerceivedScene (ego frame, CARLA handedness). Output: text that names the facts that
matter for the next seconds (lead agent, crossing pedestrians, light/stop sign ahead, route command) and an
advisory with a speed cap.
"""

from __future__ import annotations

import numpy as np

from ..maps.lanegraph import Command
from ..sim.perception import PerceivedScene
from ..sim.state import AgentKind, LightState
from ..vla.language import Advice

KIND_NAMES = {AgentKind.VEHICLE: "vehicle", AgentKind.PEDESTRIAN: "pedestrian", AgentKind.CYCLIST: "cyclist",
              AgentKind.STATIC: "obstacle", AgentKind.EMERGENCY: "emergency vehicle"}
CORRIDOR = 2.5  # [m] half width of the lane corridor ahead
NEAR = 25.0  # [m]




def rule_reasoning(scene: PerceivedScene, e: int = 0) -> Advice:
    facts, advisory, cap = [], "proceed", -1.0
    a, valid = scene.agents[e], scene.agents_valid[e]
    ahead = valid & (a[:, 0] > 0) & (np.abs(a[:, 1]) < CORRIDOR) & (a[:, 0] < NEAR)
    if ahead.any():
        j = int(np.argmin(np.where(ahead, a[:, 0], np.inf)))
        kind = KIND_NAMES.get(AgentKind(int(a[j, 6])), "agent")
        facts.append(f"a {kind} {a[j, 0]:.0f} m ahead in my lane at {a[j, 3]:.1f} m/s")
        advisory, cap = "slow_down", float(max(a[j, 3], 0.0))
        if kind == "pedestrian" or a[j, 0] < 8.0:
            advisory, cap = "stop", 0.0
    crossing = valid & (a[:, 6] == AgentKind.PEDESTRIAN) & (a[:, 0] > 0) & (a[:, 0] < NEAR) & ~ahead
    if crossing.any():
        facts.append(f"{int(crossing.sum())} pedestrian(s) near the road ahead")
        if advisory == "proceed":
            advisory, cap = "slow_down", 4.0
    if scene.light_state[e] >= 0 and scene.light_dist[e] < 40:
        name = LightState(int(scene.light_state[e])).name.lower()
        facts.append(f"traffic light {name} in {scene.light_dist[e]:.0f} m")
        if scene.light_state[e] in (LightState.RED, LightState.YELLOW):
            advisory, cap = "stop", 0.0
    if scene.stop_id[e] >= 0 and scene.stop_dist[e] < 30:
        facts.append(f"stop sign in {scene.stop_dist[e]:.0f} m")
        if advisory == "proceed":
            advisory, cap = "slow_down", 3.0
    cmds = scene.command[e][scene.route_valid[e]]
    turn = next((Command(int(c)) for c in cmds[:30] if c in (Command.LEFT, Command.RIGHT, Command.STRAIGHT,
                                                            Command.CHANGELANELEFT, Command.CHANGELANERIGHT)), None)
    if turn is not None:
        facts.append(f"route: {turn.name.lower().replace('changelane', 'change lane ')} ahead")
    text = ("I see " + "; ".join(facts) + "." if facts else "The road ahead is clear.") + f" Decision: {advisory}."
    return Advice(text, advisory, cap)
