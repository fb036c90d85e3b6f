"""What the stack sees and decides, as markers for RViz and Foxglove (the `views` node publishes them as
visualization_msgs/MarkerArray on /drive_stack/markers; the recorder keeps them in every bag). No ROS here: each
marker is a `MarkerSpec` in the ROS-handed map frame, built from the numbers the stack's messages carry.

Namespaces: `agents` (a box per perceived agent, coloured by kind, at its height), `agent_ids` (its actor track id
and speed as text above it), `route` (the route ahead, a line), `plan` (the planned path, a line coloured by who
drives: planner green, expert orange, safe stop red), `ego` (the ego's box), `takeover` (the last takeover's cause
as text above the ego, for TAKEOVER_SHOW seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

KIND_COLORS = {0: (0.2, 0.5, 1.0, 0.8), 1: (1.0, 0.85, 0.1, 0.9), 2: (0.1, 0.9, 0.9, 0.9), 3: (0.6, 0.6, 0.6, 0.8)}
CONTROLLER_COLORS = {"planner": (0.1, 0.9, 0.2, 1.0), "expert": (1.0, 0.55, 0.0, 1.0), "safe_stop": (1.0, 0.1, 0.1, 1.0)}
EGO_SIZE = (4.9, 2.1)  # [m] the ego's box (the Leaderboard's Lincoln MKZ)
TAKEOVER_SHOW = 2.0  # [s sim] a takeover's text stays this long
HEIGHT = {0: 1.5, 1: 1.8, 2: 1.6, 3: 1.0}


@dataclass
class MarkerSpec:
    ns: str
    id: int
    kind: str  # cube | line_strip | text
    x: float = 0.0  # pose, map frame (ROS-handed) [m, rad]
    y: float = 0.0
    z: float = 0.0
    yaw: float = 0.0
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    points: list[tuple[float, float]] = field(default_factory=list)  # line_strip, map frame
    text: str = ""


def to_map(ego: tuple[float, float, float], x: float, y: float) -> tuple[float, float]:
    """A point of the ego frame (x forward, y left) to the map frame, the ego at (x, y, yaw) there."""
    ex, ey, eyaw = ego
    c, s = math.cos(eyaw), math.sin(eyaw)
    return ex + c * x - s * y, ey + s * x + c * y


def scene_markers(ego: tuple[float, float, float], agents: list[tuple], route: list[tuple[float, float]]) -> list[MarkerSpec]:
    """ego: the ego's map pose (x, y, yaw); agents: (id, kind, x, y, yaw, speed, length, width) in the ego frame (a
    PerceivedScene's AgentState fields); route: points ahead, ego frame."""
    out = [MarkerSpec("ego", 0, "cube", *ego[:2], 0.75, ego[2], (*EGO_SIZE, 1.5), (1.0, 1.0, 1.0, 0.9))]
    for aid, kind, x, y, yaw, speed, length, width in agents:
        mx, my = to_map(ego, x, y)
        h = HEIGHT.get(int(kind), 1.5)
        out.append(MarkerSpec("agents", int(aid), "cube", mx, my, h / 2, ego[2] + yaw, (max(length, 0.2), max(width, 0.2), h),
                              KIND_COLORS.get(int(kind), KIND_COLORS[3])))
        out.append(MarkerSpec("agent_ids", int(aid), "text", mx, my, h + 0.8, 0.0, (0.0, 0.0, 0.8), (1.0, 1.0, 1.0, 1.0),
                              text=f"{int(aid)} {speed:.1f} m/s"))
    if len(route) >= 2:
        out.append(MarkerSpec("route", 0, "line_strip", scale=(0.3, 0.0, 0.0), color=(0.7, 0.7, 1.0, 0.6),
                              points=[to_map(ego, x, y) for x, y in route]))
    return out


def plan_markers(ego: tuple[float, float, float], path: list[tuple[float, float]], target_speed: float,
                 controller: str) -> list[MarkerSpec]:
    """The plan answering a tick (path in the ego frame) and who drives it."""
    if len(path) < 2:
        return []
    pts = [to_map(ego, x, y) for x, y in path]
    color = CONTROLLER_COLORS.get(controller, CONTROLLER_COLORS["planner"])
    return [MarkerSpec("plan", 0, "line_strip", scale=(0.5, 0.0, 0.0), color=color, points=pts),
            MarkerSpec("plan", 1, "text", *pts[-1], 1.5, 0.0, (0.0, 0.0, 0.9), color,
                       text=f"{controller} {target_speed:.1f} m/s")]


def takeover_marker(ego: tuple[float, float, float], cause: str, controller: str, t: float, now: float) -> list[MarkerSpec]:
    """The last takeover's cause above the ego, for TAKEOVER_SHOW seconds after it."""
    if not 0.0 <= now - t <= TAKEOVER_SHOW:
        return []
    return [MarkerSpec("takeover", 0, "text", ego[0], ego[1], 4.0, 0.0, (0.0, 0.0, 1.5),
                       CONTROLLER_COLORS.get(controller, (1.0, 0.1, 0.1, 1.0)), text=f"TAKEOVER: {cause} -> {controller}")]


__all__ = ["MarkerSpec", "plan_markers", "scene_markers", "takeover_marker", "to_map"]
