"""The offline dataset: expert episodes in the Bench2Drive annotation format plus a columnar copy (collect.py,
b2d.py), read back by `read_episode`, summarised by `dataset_stats`."""

from .b2d import FrameError, frame_to_arrays, make_frame, read_frame, replay_state, write_frame
from .collect import CollectConfig, collect, dataset_stats, load_index, read_episode

__all__ = ["CollectConfig", "FrameError", "collect", "dataset_stats", "frame_to_arrays", "load_index",
           "make_frame", "read_episode", "read_frame", "replay_state", "write_frame"]
