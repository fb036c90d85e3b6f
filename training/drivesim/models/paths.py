"""Path extension for the deployed controller (the planner's path continued to the pure-pursuit lookahead)."""

from __future__ import annotations

import numpy as np


def extend_path(path: np.ndarray, length: float = 30.0, step: float = 2.0) -> np.ndarray:
    """The controller's path: the (..., P, 2) planned points from the ego, continued straight along the last
    segment to `length` metres (the pure-pursuit lookahead reaches 15 m)."""
    P = path.shape[-2]
    extra = max(int(np.ceil((length - P * step) / step)), 0)
    if extra == 0:
        return path
    d = path[..., -1, :] - path[..., -2, :]
    d = d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-6)
    k = np.arange(1, extra + 1)[:, None] * step
    return np.concatenate([path, path[..., -1:, :] + k * d[..., None, :]], -2)
