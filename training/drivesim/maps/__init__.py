"""Town maps: OpenDRIVE (CARLA towns or procedural) -> LaneGraph arrays."""

from .lanegraph import Command, LaneGraph, MarkingType
from .opendrive import MapError, build_lane_graph, load_xodr, load_xodr_text
from .towns import MissingMap, TownLoader, default_maps_dir

__all__ = [
    "Command",
    "LaneGraph",
    "MapError",
    "MarkingType",
    "MissingMap",
    "TownLoader",
    "build_lane_graph",
    "default_maps_dir",
    "load_xodr",
    "load_xodr_text",
]
