"""The learned planners (``--policy il|perlad|perlad_logreplay``): PerlAD's decoupled planner run from ONNX.

Each step: the perceived scene -> `FeatureBuilder` -> the planner network (models/runtime.py: TensorRT, ONNX
Runtime CUDA or CPU) -> the best-scored path anchor with its regressed offsets (lateral) and the best-scored
target speed for that path (longitudinal) -> the deployed PID controller. The policy is not privileged: it sees
only the perceived scene (range + occlusion) and the map.

Which model file (`resolve_model`, the one rule every entry point uses): `model=` if given (`--model`), else
``<dir>/<name>/planner.onnx`` for the first dir of $DRIVE_STACK_MODELS that has it, else the committed
``models/<name>/planner.onnx``. Nothing is looked up relative to the working directory: a model never changes
under the user because of where a command runs. `verify_planner` refuses, before anything drives, a file that is
not a planner (unreadable, truncated, another network, no manifest); `model_id` (path + sha256) is printed and
recorded by every run.
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
from .rule import Plan, capped

LEARNED = ("il", "perlad", "perlad_logreplay", "takead")
REPO_MODELS = Path(__file__).resolve().parents[3] / "models"


PLANNER_OUTPUTS = ("anchor_logits", "paths", "speed_logits")


class ModelError(ValueError):
    """A model file that cannot serve the policy (named, with what was expected and what was found)."""


def model_dirs() -> list[Path]:
    """Where `find_model` looks, in order: $DRIVE_STACK_MODELS (os.pathsep-separated), then the committed models/."""
    dirs = [Path(p).resolve() for p in os.environ.get("DRIVE_STACK_MODELS", "").split(os.pathsep) if p]
    return [*dirs, REPO_MODELS]


def find_model(name: str, kind: str = "planner") -> Path:
    for d in model_dirs():
        p = d / name / f"{kind}.onnx"
        if p.exists():
            return p
    raise FileNotFoundError(f"no {kind} model for policy {name!r}: looked for {name}/{kind}.onnx in "
                            + ", ".join(str(d) for d in model_dirs())
                            + "; train one with `drive-stack train pipeline` and pass --model FILE or set "
                              "DRIVE_STACK_MODELS to its models folder")


def resolve_model(name: str, model: str | Path | None = None) -> Path:
    """The model file of a learned policy: an explicit `model`, else `find_model` (see the module docstring)."""
    if model:
        p = Path(model).resolve()
        if not p.exists():
            raise FileNotFoundError(f"--model {model}: no such file")
        return p
    return find_model(name).resolve()


def model_id(path: str | Path) -> dict:
    """What a run prints and records about its model: the resolved path and the file's sha256."""
    import hashlib

    p = Path(path).resolve()
    return {"path": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}


def verify_planner(path: str | Path) -> dict:
    """Open `path` as a planner before anything drives: a readable ONNX graph with the planner's inputs
    (the feature tensors) and outputs (PLANNER_OUTPUTS) and a manifest with features and speeds. Returns its
    `model_id`; raises ModelError naming the file, what was expected and what was found."""
    import onnxruntime as ort

    from ..models.features import Features

    p = Path(path)
    try:
        sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
        raise ModelError(f"{p}: not a readable ONNX model ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                         "re-export it with `drive-stack export` or pass another --model") from None
    ins, outs = [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()]
    if sorted(ins) != sorted(Features.NAMES) or not set(PLANNER_OUTPUTS) <= set(outs):
        raise ModelError(f"{p}: not a planner: expected inputs {sorted(Features.NAMES)} and outputs "
                         f"{list(PLANNER_OUTPUTS)}, found inputs {sorted(ins)} and outputs {outs}")
    man = p.with_name(p.stem + ".manifest.json")
    if not man.exists():
        raise ModelError(f"{p}: no manifest {man.name} (features and speeds); export the model with `drive-stack export`")
    import json

    m = json.loads(man.read_text())
    n_speeds = sess.get_outputs()[outs.index("speed_logits")].shape[-1]
    if "features" not in m or len(m.get("speeds_m_s", [])) != n_speeds:
        raise ModelError(f"{p}: the manifest's speeds ({len(m.get('speeds_m_s', []))}) do not match the model's "
                         f"speed_logits ({n_speeds}), or it has no features; re-export the model")
    return model_id(p)


class LearnedPolicy:
    privileged = False
    needs_map = True
    model_id: dict | None = None  # {'path', 'sha256'} of the planner file (set when loaded)

    def __init__(self, num_envs: int, g=None, name: str = "il", model: str | None = None, backend: str = "auto",
                 dt: float = 0.05):
        from ..models.runtime import InferenceModel

        if g is None:
            raise ValueError(f"policy {name!r} needs the map (make_policy(..., g=lane_graph))")
        self.name, self.E, self.dt = name, num_envs, dt
        path = resolve_model(name, model)
        self.model_id = verify_planner(path)
        self.net = InferenceModel(path, backend)
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
        target = capped(self, target)
        ctl_path = extend_path(path)
        throttle, steer, brake = self.ctl(ctl_path, target, scene.ego_speed)
        return Controls(throttle, steer, brake), Plan(ctl_path, target, np.repeat(target[:, None], ctl_path.shape[1], 1))
