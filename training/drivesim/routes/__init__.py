"""Routes: Leaderboard 2.0 / Bench2Drive XML and global planning along the lane graph."""

from .planner import DenseRoute, plan_route
from .xml import (
    ABILITIES,
    ABILITY_NAMES,
    SCENARIO_TYPES,
    RouteError,
    RouteFile,
    RouteSpec,
    ScenarioSpec,
    parse_routes,
    write_routes,
)

__all__ = [
    "ABILITIES",
    "ABILITY_NAMES",
    "SCENARIO_TYPES",
    "DenseRoute",
    "RouteError",
    "RouteFile",
    "RouteSpec",
    "ScenarioSpec",
    "parse_routes",
    "plan_route",
    "write_routes",
]
