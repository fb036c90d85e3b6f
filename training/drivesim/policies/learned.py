"""The learned planners (``--policy il|perlad|perlad_logreplay``): PerlAD's decoupled planner run from ONNX.

Each step: the perceived scene -> `FeatureBuilder` -> the planner network (models/runtime.py: TensorRT, ONNX
Runtime CUDA or CPU) -> the best-scored path anchor with its regressed offsets (lateral) and the best-scored
target speed for that path (longitudinal) -> the deployed PID controller. The policy is not privileged: it sees
only the perceived scene (range + occlusion) and the map.

Which model file: `model=` if given, else ``<dir>/<name>/planner.onnx`` for the first dir of
$DRIVE_STACK_MODELS, ``results/models`` (what `drive-stack train pipeline` last produced) and the package's
committed ``models/`` that has it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..models.features import FeatureBuilder, FeatureConfig
from ..models.paths import extend_path
from ..sim.control import PIDController
from ..sim.perception import PerceivedScene
from ..sim.world import Controls
from .rule import Plan

LEARNED = ("il", "perlad", "perlad_logreplay")
REPO_MODELS = Path(__file__).resolve().parents[3] / "models"


def model_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("DRIVE_STACK_MODELS", "").split(os.pathsep) if p]
    return [*dirs, Path("results/models"), REPO_MODELS]


def find_model(name: str, kind: str = "planner") -> Path:
    for d in model_dirs():
        p = d / name / f"{kind}.onnx"
        if p.exists():
            return p
    raise FileNotFoundError(f"no {kind} model for policy {name!r}: looked for {name}/{kind}.onnx in "
                            + ", ".join(str(d) for d in model_dirs())
                            + "; train one with `drive-stack train pipeline` (or set DRIVE_STACK_MODELS)")


class LearnedPolicy:
    privileged = False
    needs_map = True

    def __init__(self, num_envs: int, g=None, name: str = "il", model: str | None = None, backend: str = "auto",
                 dt: float = 0.05):
        from ..models.runtime import InferenceModel

        if g is None:
            raise ValueError(f"policy {name!r} needs the map (make_policy(..., g=lane_graph))")
        self.name, self.E, self.dt = name, num_envs, dt
        self.net = InferenceModel(model or find_model(name), backend)
        self.net.warmup()
        man = self.net.manifest or {}
        if "features" not in man or "speeds_m_s" not in man:
            raise ValueError(f"{self.net.path}: no manifest (planner.manifest.json with features and speeds); "
                             "export the model with `drive-stack export`")
        self.fcfg = FeatureConfig(**man["features"])
        self.features = FeatureBuilder(g, num_envs, self.fcfg)
        self.speeds = np.asarray(man["speeds_m_s"], float)
        self.ctl = PIDController(num_envs, dt=dt)
        self.steps = 0
        self.status = [""] * num_envs
        self.last = None

    def reset(self) -> None:
        self.features.reset()
        self.ctl.reset()
        self.steps = 0

    def plan(self, scene: PerceivedScene) -> tuple[np.ndarray, np.ndarray, dict]:
        """(paths (E, P, 2), target speeds (E,), raw outputs of the last env)."""
        t = scene.t if scene.t is not None else np.full(self.E, self.steps * self.dt)
        feats = self.features(scene, t)
        inputs = feats.inputs()
        paths, speeds, out = [], [], {}
        for e in range(self.E):
            out = self.net({k: v[e:e + 1] for k, v in inputs.items()})
            a = int(np.argmax(out["anchor_logits"][0]))
            paths.append(out["paths"][0, a])
            speeds.append(self.speeds[int(np.argmax(out["speed_logits"][0, a]))])
            self.status[e] = f"anchor {a}, speed {speeds[-1]:.1f} m/s"
        self.steps += 1
        return np.asarray(paths, np.float64), np.asarray(speeds), out

    def act(self, scene: PerceivedScene, truth=None) -> tuple[Controls, Plan]:
        path, target, _ = self.plan(scene)
        ctl_path = extend_path(path)
        throttle, steer, brake = self.ctl(ctl_path, target, scene.ego_speed)
        return Controls(throttle, steer, brake), Plan(ctl_path, target, np.repeat(target[:, None], ctl_path.shape[1], 1))
