"""ONNX export of the deployed networks (static shapes, opset 17) with a manifest, and the parity check.

`export_checkpoint(ckpt, out_dir)` writes ``planner.onnx`` (or ``world_model.onnx``) and ``manifest.json``:
how the model was made (stage, config, dataset, metrics, torch/onnx versions, the ONNX file's sha256), the
input and output names and shapes, and the parity error measured against torch at export time.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .features import EGO_DIM, LANE_DIM, FeatureConfig
from .nets import INPUT_NAMES, NetConfig, Planner, WorldModel

OPSET = 17
PLANNER_OUTPUTS = ("anchor_logits", "paths", "speed_logits")
WM_OUTPUTS = ("traj", "mode_logits")
PARITY_TOL = 1e-4


def input_shapes(fcfg: FeatureConfig, batch: int) -> dict[str, tuple[int, ...]]:
    c = fcfg
    return {"ego": (batch, EGO_DIM), "route": (batch, c.route_points, 4), "route_mask": (batch, c.route_points),
            "agents": (batch, c.num_agents, c.agent_dim), "agents_mask": (batch, c.num_agents),
            "lanes": (batch, c.num_lanes, c.lane_points, LANE_DIM), "lanes_mask": (batch, c.num_lanes)}


def random_inputs(model, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of the right shapes (masks 0/1, at least one agent and lane present)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, shp in input_shapes(model.fcfg, batch).items():
        if k.endswith("_mask"):
            m = (rng.random(shp) < 0.7).astype(np.float32)
            m[..., 0] = 1.0
            out[k] = m
        else:
            out[k] = rng.normal(0, 1, shp).astype(np.float32)
    if isinstance(model, WorldModel):
        T = model.ncfg.wm_steps
        plan = np.cumsum(rng.uniform(0, 4, (batch, T, 3)), 1).astype(np.float32)
        plan[..., 1:] = rng.normal(0, 0.5, (batch, T, 2))
        out["ego_plan"] = plan
    return out


def names(model) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if isinstance(model, WorldModel):
        return (*INPUT_NAMES, "ego_plan"), WM_OUTPUTS
    return INPUT_NAMES, PLANNER_OUTPUTS


def export_onnx(model, path: str | Path, batch: int = 1) -> Path:
    """Export with static shapes (batch fixed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    ins, outs = names(model)
    x = random_inputs(model, batch)
    args = tuple(torch.as_tensor(x[k]) for k in ins)
    tmp = path.with_suffix(".tmp.onnx")
    # the TorchScript exporter: static shapes, no onnxscript dependency; its deprecation notice is not ours to fix
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, args, str(tmp), input_names=list(ins), output_names=list(outs), opset_version=OPSET,
                          dynamo=False, do_constant_folding=True)
    tmp.replace(path)
    return path


def parity(model, onnx_path: str | Path, batch: int = 1, seed: int = 1) -> float:
    """Max abs difference between torch and ONNX Runtime (CPU) on random inputs."""
    import onnxruntime as ort

    ins, outs = names(model)
    x = random_inputs(model, batch, seed)
    with torch.no_grad():
        ref = model(*(torch.as_tensor(x[k]) for k in ins))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(list(outs), {k: x[k] for k in ins})
    return max(float(np.max(np.abs(r.numpy() - g))) for r, g in zip(ref, got))


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def export_checkpoint(ckpt: str | Path, out_dir: str | Path, name: str | None = None, batch: int = 1,
                      extra: dict | None = None) -> dict:
    """Export a stage checkpoint's network to out_dir/<planner|world_model>.onnx with manifest.json."""
    from .checkpoint import load_model

    model, ck = load_model(ckpt)
    kind = "world_model" if isinstance(model, WorldModel) else "planner"
    out_dir = Path(out_dir)
    path = export_onnx(model, out_dir / f"{kind}.onnx", batch)
    err = parity(model, path, batch)
    if err > PARITY_TOL:
        raise RuntimeError(f"{path}: ONNX/torch parity error {err:.2e} exceeds {PARITY_TOL:.0e}")
    ins, outs = names(model)
    import onnx
    import onnxruntime

    m = onnx.load(str(path))
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in [*m.graph.input, *m.graph.output]}
    metrics_file = Path(ckpt).parent / "metrics.json"
    manifest = {
        "name": name or kind, "kind": kind, "file": path.name, "checkpoint": str(ckpt), "sha256": sha256(path), "opset": OPSET,
        "inputs": {k: shapes[k] for k in ins}, "outputs": {k: shapes[k] for k in outs},
        "parity_max_abs_err": err, "stage": ck.get("stage"), "config": ck.get("config"), "net": ck.get("net"),
        "features": ck.get("features"), "speeds_m_s": NetConfig(**ck["net"]).speeds().tolist(),
        "metrics": json.loads(metrics_file.read_text()).get("final_val") if metrics_file.exists() else None,
        "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
        "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **(extra or {}),
    }
    (out_dir / f"{kind}.manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


__all__ = ["OPSET", "PARITY_TOL", "Planner", "WorldModel", "export_checkpoint", "export_onnx", "parity",
           "random_inputs"]
