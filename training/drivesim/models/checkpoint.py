"""Loading a training checkpoint (a stage's model.pt) into its network: what export and the benchmarks need,
without importing the training code. A planner exported by this project (`planner.onnx` with its
`planner.manifest.json`) loads too (`planner_from_onnx`), so post-training can start from a committed model
whose checkpoint is not around (`train takead --init models/perlad/planner.onnx`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .features import FeatureConfig
from .nets import NetConfig, Planner, WorldModel


def load_model(path: str | Path):
    """A Planner or WorldModel from a stage checkpoint (or a Planner from an exported planner.onnx)."""
    if str(path).endswith(".onnx"):
        return planner_from_onnx(path)
    ck = torch.load(path, weights_only=False)
    fcfg, ncfg = FeatureConfig(**ck["features"]), NetConfig(**ck["net"])
    sd = ck["model"]
    model = Planner(fcfg, ncfg, sd["anchors"].numpy()) if "anchors" in sd else WorldModel(fcfg, ncfg)
    model.load_state_dict(sd)
    model.eval()
    return model, ck


def planner_from_onnx(path: str | Path, tol: float | None = None):
    """The torch Planner behind an ONNX file this project exported, and a checkpoint-like dict.

    The TorchScript exporter keeps the names of the weights it feeds to Gemm, but folds the others: a Linear
    applied to a 3-D tensor becomes MatMul with an anonymous, transposed weight (`onnx::MatMul_N`), each
    `token_type` row an anonymous Add constant and the anchors one (1, A, P, 2) constant. The anonymous
    initialisers appear in the order the forward pass first uses them, so they are matched to the Linear
    modules (and token rows) in call order, recorded by forward hooks. The result is checked against ONNX
    Runtime on random inputs; a file that does not match (another architecture, another exporter) is refused
    rather than loaded wrong."""
    import onnx
    from onnx import numpy_helper

    from .export import PARITY_TOL, parity

    path = Path(path)
    man_path = path.with_name(path.stem + ".manifest.json")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    if not man_path.exists():
        raise ValueError(f"{path}: no {man_path.name} beside it; a planner.onnx loads into torch only with the "
                         "manifest `drive-stack export` writes (it holds the feature and network configs)")
    man = json.loads(man_path.read_text())
    if man.get("kind") != "planner":
        raise ValueError(f"{path}: manifest kind {man.get('kind')!r}; only planners load from ONNX")
    fcfg, ncfg = FeatureConfig(**man["features"]), NetConfig(**man["net"])
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    A, P = ncfg.num_anchors, ncfg.path_points
    anon = [(k, v) for k, v in inits.items() if k.startswith("onnx::")]
    anchors = [v for _, v in anon if v.shape == (1, A, P, 2)]
    if len(anchors) != 1:
        raise ValueError(f"{path}: expected one (1, {A}, {P}, 2) anchor constant, found {len(anchors)}")
    model = Planner(fcfg, ncfg, anchors[0][0].copy())
    calls: list[str] = []
    mods = {m: n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append(mods[m]) if mods[m] not in calls else None)
             for m in mods]
    from .export import random_inputs
    from .nets import INPUT_NAMES

    x = random_inputs(model, 1)
    with torch.no_grad():
        model(*(torch.as_tensor(x[k]) for k in INPUT_NAMES))
    for h in hooks:
        h.remove()
    sd = model.state_dict()
    matmul = [v for k, v in anon if k.startswith("onnx::MatMul_")]
    rows = [v for k, v in anon if k.startswith("onnx::Add_") and v.shape == (ncfg.d_model,)]
    new = {}
    for name in calls:
        w = f"{name}.weight"
        if w in inits:
            new[w] = inits[w]
        else:
            if not matmul:
                raise ValueError(f"{path}: no anonymous weight left for {w}")
            new[w] = matmul.pop(0).T
        b = f"{name}.bias"
        if b in sd:
            if b not in inits:
                raise ValueError(f"{path}: bias {b} missing")
            new[b] = inits[b]
    tt = sd["encoder.token_type"]
    if len(rows) != tt.shape[0]:
        raise ValueError(f"{path}: expected {tt.shape[0]} token-type rows, found {len(rows)}")
    new["encoder.token_type"] = np.stack(rows)
    for k in sd:
        if k not in new and k != "anchors":
            if k not in inits:
                raise ValueError(f"{path}: no weight for {k}")
            new[k] = inits[k]
    for k, v in new.items():
        if tuple(v.shape) != tuple(sd[k].shape):
            raise ValueError(f"{path}: {k} has shape {tuple(v.shape)}, the network wants {tuple(sd[k].shape)}")
        sd[k] = torch.as_tensor(np.array(v, copy=True))
    model.load_state_dict(sd)
    model.eval()
    err = parity(model, path)
    if err > (tol or PARITY_TOL):
        raise ValueError(f"{path}: the weights recovered from ONNX do not reproduce it (max abs error {err:.2e}); "
                         "pass the training checkpoint (ckpt.pt) instead")
    ck = {"model": sd, "features": man["features"], "net": man["net"], "stage": man.get("stage"),
          "config": man.get("config"), "onnx": str(path), "onnx_sha256": man.get("sha256")}
    return model, ck
