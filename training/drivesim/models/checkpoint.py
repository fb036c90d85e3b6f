"""Loading a training checkpoint (a stage's model.pt) into its network: what export and the benchmarks need,
without importing the training code."""

from __future__ import annotations

from pathlib import Path

import torch

from .features import FeatureConfig
from .nets import NetConfig, Planner, WorldModel


def load_model(path: str | Path):
    """A Planner or WorldModel from a stage checkpoint."""
    ck = torch.load(path, weights_only=False)
    fcfg, ncfg = FeatureConfig(**ck["features"]), NetConfig(**ck["net"])
    sd = ck["model"]
    model = Planner(fcfg, ncfg, sd["anchors"].numpy()) if "anchors" in sd else WorldModel(fcfg, ncfg)
    model.load_state_dict(sd)
    model.eval()
    return model, ck
