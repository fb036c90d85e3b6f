"""Town maps: OpenDRIVE (CARLA towns or procedural) -> LaneGraph arrays."""

from .lanegraph import Command, LaneGraph, MarkingType
from .opendrive import MapError, MapTimeout, build_lane_graph, build_lane_graph_isolated, load_xodr, load_xodr_text
from .towns import MissingMap, TownLoader, default_maps_dir

__all__ = [
    "Command",
    "LaneGraph",
    "MapError",
    "MapTimeout",
    "MarkingType",
    "MissingMap",
    "TownLoader",
    "build_lane_graph",
    "build_lane_graph_isolated",
    "default_maps_dir",
    "load_xodr",
    "load_xodr_text",
]
