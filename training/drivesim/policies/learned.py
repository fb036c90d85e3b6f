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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.features import FeatureBuilder, FeatureConfig
from ..models.paths import extend_path
from ..sim.control import PIDController
from ..sim.perception import PerceivedScene
from ..sim.state import LightState
from ..sim.world import Controls
from .check import collision_times
from .rule import Plan, capped

LEARNED = ("il", "perlad", "perlad_logreplay", "takead")
REPO_MODELS = Path(__file__).resolve().parents[3] / "models"


PLANNER_OUTPUTS = ("anchor_logits", "paths", "speed_logits")


@dataclass(frozen=True)
class CandidateCheck:
    """The learned planner's candidate check (off unless `horizon` > 0). The network scores path anchors and,
    per anchor, target speeds; plain decoding drives the best anchor at its best speed. With the check, that
    candidate drives only if the ego following it for `horizon` seconds does not run into a perceived agent
    moving at constant velocity (`policies.check.collision_times`; the speed goes from the ego's current one to
    the target at `accel` / `decel` along the path). Otherwise the best-scored safe candidate among the `top_k`
    anchors and all their speeds drives (score: log p(anchor) + log p(speed | anchor)); when none is safe, the
    one that collides latest, the slowest of those (the best-scored among equals). What the network proposes still decides where
    and how fast to drive; the check only vetoes what a constant-velocity forecast says will hit something."""

    horizon: float = 0.0  # [s] 0: off (plain decoding)
    top_k: int = 6  # anchors considered (by their probability)
    dt: float = 0.1  # [s] of the check's time steps
    accel: float = 2.0  # [m/s^2] towards a higher target speed
    decel: float = 4.0  # [m/s^2] towards a lower one
    moving_speed: float = 0.5  # [m/s] the ego counts as moving above this (a standing ego does not collide)
    unstall: float = 0.0  # [s] 0: off. Where the ego has stood this long and the plan still stands (the network's,
    # or the check's replacement for a vetoed one), the best-scored candidate of at least `unstall_speed` that the
    # check clears drives instead (none cleared: it stands on); never before a red or yellow light within
    # `hold_distance`. The check can only veto, so a planner that stops where it need not is never corrected by
    # it: this is the liveness half of the same test
    unstall_speed: float = 2.0  # [m/s] the lowest target speed an unstall drives at
    hold_distance: float = 20.0  # [m] along the route to a red or yellow light's stop line within which it never unstalls
    margin: float = 0.0  # [m] the forecast ego's box is this much wider on each side (policies.check.collision_times):
    # the controller cuts corners, so a path that clears an agent by a few centimetres may not in the closed loop

    def __post_init__(self):
        for name in ("horizon", "dt", "accel", "decel", "moving_speed", "unstall", "unstall_speed", "hold_distance",
                     "margin"):
            v = getattr(self, name)
            off = name in ("horizon", "unstall", "margin")
            if not (isinstance(v, int | float) and np.isfinite(v) and v >= 0 and (v > 0 or off)):
                raise ValueError(f"CandidateCheck.{name} = {v!r}: expected a {'non-negative' if off else 'positive'} number")
        if self.unstall > 0 and self.horizon <= 0:
            raise ValueError(f"CandidateCheck.unstall = {self.unstall}: unstalling drives only what the check clears; "
                             "set a horizon > 0 too")
        if self.margin > 0 and self.horizon <= 0:
            raise ValueError(f"CandidateCheck.margin = {self.margin}: a margin of the check; set a horizon > 0 too")
        if not (isinstance(self.top_k, int) and self.top_k >= 1):
            raise ValueError(f"CandidateCheck.top_k = {self.top_k!r}: expected an integer >= 1")


def ramp_profiles(paths: np.ndarray, v0: float, targets: np.ndarray, accel: float, decel: float) -> np.ndarray:
    """(C, P) the speed at each point of paths (C, P, 2) (ego frame) going from v0 at the ego to targets (C,)
    at constant acceleration `accel` (speeding up) or deceleration `decel` (slowing down)."""
    seg = np.linalg.norm(np.diff(np.concatenate([np.zeros_like(paths[:, :1]), paths], 1), axis=1), axis=-1)
    d = np.cumsum(seg, 1)
    t = np.asarray(targets, np.float64)[:, None]
    up = np.minimum(np.sqrt(v0 * v0 + 2 * accel * d), t)
    down = np.maximum(np.sqrt(np.maximum(v0 * v0 - 2 * decel * d, 0.0)), t)
    return np.where(t >= v0, up, down)


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
                 dt: float = 0.05, check: CandidateCheck | float | None = None):
        """check: the candidate check (`CandidateCheck`, or its horizon in seconds; None / 0: plain decoding)."""
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
        self.check = check if isinstance(check, CandidateCheck) else CandidateCheck(horizon=float(check or 0.0))
        self.vetoed = np.zeros(num_envs, np.int64)  # ticks on which the check replaced the plain decoding
        self.unstalled = np.zeros(num_envs, np.int64)  # ticks on which an unstall did (CandidateCheck.unstall)
        self.stood_since = np.full(num_envs, np.nan)  # [s] when the ego began to stand (nan: it moves)
        self.steps = 0
        self.status = [""] * num_envs
        self.last = None

    def reset(self) -> None:
        self.features.reset()
        self.ctl.reset()
        self.steps = 0
        self.stood_since[:] = np.nan

    def plan(self, scene: PerceivedScene) -> tuple[np.ndarray, np.ndarray, dict]:
        """(paths (E, P, 2), target speeds (E,), raw outputs of the last env)."""
        t = scene.t if scene.t is not None else np.full(self.E, self.steps * self.dt)
        feats = self.features(scene, t)
        inputs = feats.inputs()
        paths, speeds, out = [], [], {}
        for e in range(self.E):
            out = self.net({k: v[e:e + 1] for k, v in inputs.items()})
            a = int(np.argmax(out["anchor_logits"][0]))
            k = int(np.argmax(out["speed_logits"][0, a]))
            veto = ""
            if self.check.horizon > 0:
                a2, k2, veto = self.checked(scene, e, out, a, k, float(t[e]))
                self.vetoed[e] += (a2, k2) != (a, k)
                self.unstalled[e] += veto.startswith(" (unstalled")
                a, k = a2, k2
            paths.append(out["paths"][0, a])
            speeds.append(self.speeds[k])
            self.status[e] = f"anchor {a}, speed {speeds[-1]:.1f} m/s{veto}"
        self.steps += 1
        return np.asarray(paths, np.float64), np.asarray(speeds), out

    def stalled(self, scene: PerceivedScene, e: int, t: float) -> float:
        """How long [s] env e's ego has stood (0 while it moves; updates the count); 0 as well before a red or
        yellow light within `hold_distance`, where standing is right."""
        c, v0 = self.check, float(scene.ego_speed[e])
        if v0 >= c.moving_speed:
            self.stood_since[e] = np.nan
            return 0.0
        if np.isnan(self.stood_since[e]):
            self.stood_since[e] = t
        held = (int(scene.light_state[e]) in (LightState.RED, LightState.YELLOW)
                and -1.0 <= float(scene.light_dist[e]) <= c.hold_distance)
        return 0.0 if held else t - float(self.stood_since[e])

    def checked(self, scene: PerceivedScene, e: int, out: dict, a: int, k: int, t: float = 0.0) -> tuple[int, int, str]:
        """The candidate check (`CandidateCheck`) of env e's network outputs `out`, whose plain decoding is
        anchor a at speed index k, at time t [s]: (anchor, speed index, status note)."""
        c, v0 = self.check, float(scene.ego_speed[e])
        stood = self.stalled(scene, e, t)
        stalled = c.unstall > 0 and stood >= c.unstall
        paths = extend_path(np.asarray(out["paths"][0], np.float64))  # (A, P, 2)
        prof = lambda ai, ki: ramp_profiles(paths[ai], v0, self.speeds[ki], c.accel, c.decel)  # noqa: E731
        first = collision_times(scene, paths[[a]], prof([a], [k]), c.horizon, c.dt, c.moving_speed, e, c.margin)
        cleared = not np.isfinite(first[0])
        if cleared and not (stalled and self.speeds[k] < c.moving_speed):
            return a, k, ""
        la = out["anchor_logits"][0].astype(np.float64)
        la = la - np.logaddexp.reduce(la)
        ls = out["speed_logits"][0].astype(np.float64)
        ls = ls - np.logaddexp.reduce(ls, axis=1, keepdims=True)
        top = np.argsort(-la, kind="stable")[:c.top_k]
        ai, ki = np.repeat(top, len(self.speeds)), np.tile(np.arange(len(self.speeds)), len(top))
        when = collision_times(scene, paths[ai], prof(ai, ki), c.horizon, c.dt, c.moving_speed, e, c.margin)
        score = la[ai] + ls[ai, ki]
        if cleared:
            pick, note = (a, k), ""
        else:  # the latest collision (inf: none), then (among the colliding ones) the lowest speed, then the best score
            best = int(np.lexsort((score, np.where(np.isfinite(when), -self.speeds[ki], 0.0), when))[-1])
            pick = int(ai[best]), int(ki[best])
            note = (f" (checked: anchor {a} at {self.speeds[k]:.1f} m/s collides in {first[0]:.1f} s"
                    f"{'; every candidate does' if np.isfinite(when[best]) else ''})")
        # the unstall looks at what would drive after the check (the network's plan, or the check's replacement for
        # it, which is often the same path at 0 m/s): judged on the network's plan alone, a vetoed plan handed the
        # car back and forth between a standing replacement and the unstall, tick after tick
        if stalled and self.speeds[pick[1]] < c.moving_speed:
            go = ~np.isfinite(when) & (self.speeds[ki] >= c.unstall_speed)
            if go.any():
                best = int(np.argmax(np.where(go, score, -np.inf)))
                return int(ai[best]), int(ki[best]), (f" (unstalled: stood {stood:.1f} s, anchor {ai[best]} at "
                                                      f"{self.speeds[ki[best]]:.1f} m/s is clear for {c.horizon:.1f} s)")
        return pick[0], pick[1], note

    def act(self, scene: PerceivedScene, truth=None) -> tuple[Controls, Plan]:
        path, target, _ = self.plan(scene)
        target = capped(self, target)
        ctl_path = extend_path(path)
        throttle, steer, brake = self.ctl(ctl_path, target, scene.ego_speed)
        return Controls(throttle, steer, brake), Plan(ctl_path, target, np.repeat(target[:, None], ctl_path.shape[1], 1))
