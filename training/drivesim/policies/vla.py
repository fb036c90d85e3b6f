"""`--policy takevla`: TakeVLA run from ONNX (learn/vla.py exports it), and its commentary runtime.

Each step: the perceived scene -> `FeatureBuilder` (the planner's features) -> the bird's-eye-view raster
(vla/raster.py) and the route instruction's tokens -> the action graph (vla.onnx: path points and speed points,
each point's target-speed scores) -> the deployed PID controller along the path, at the speed profile's value
`speed_lookahead_s` ahead (sim/control.profile_target over the best-scored speed of each point; the manifest says
both; an export with one speed point is followed at it). `explain(e)` decodes the
commentary of env e's last step with the text graph (vla_text.onnx: greedy, one call per token, stopping at
<eos>) and turns it into an advisory (stop / slow_down / proceed) with a speed cap; the `vla_reasoning` node
publishes it. Not privileged: it sees what the learned planners see.

Which files: `model=` (the vla.onnx; vla_text.onnx and vla.manifest.json beside it), else
``<dir>/takevla/vla.onnx`` from $DRIVE_STACK_MODELS, then the committed models/takevla/. `verify_vla` refuses a
file that is not TakeVLA's before anything drives.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..models.features import FeatureBuilder, FeatureConfig
from ..models.paths import extend_path
from ..sim.control import PIDController
from ..sim.perception import PerceivedScene
from ..sim.world import Controls
from .learned import ModelError, find_model, model_id
from .rule import Plan, capped

ACTION_INPUTS = ("raster", "ego", "prompt")
ACTION_OUTPUTS = ("path", "speed_logits", "memory", "memory_mask")
TEXT_INPUTS = ("memory", "memory_mask", "tokens")


def resolve_vla(model: str | Path | None = None, name: str = "takevla") -> Path:
    if model:
        p = Path(model).resolve()
        if not p.exists():
            raise FileNotFoundError(f"--model {model}: no such file")
        return p
    return find_model(name, kind="vla").resolve()


def verify_vla(path: str | Path) -> dict:
    """Open a TakeVLA export before anything drives: vla.onnx with the action graph's inputs and outputs, its
    manifest (vocabulary, raster, features, speeds) and the text graph beside it. Returns the action graph's
    model_id (path + sha256) with the text graph's sha256; raises ModelError naming what is wrong."""
    import onnxruntime as ort

    p = Path(path)
    man = p.with_name(p.stem + ".manifest.json")
    if not man.exists():
        raise ModelError(f"{p}: no manifest {man.name}; export TakeVLA with `drive-stack train takevla` "
                         "(or learn.vla.export_vla)")
    m = json.loads(man.read_text())
    if m.get("kind") != "vla":
        raise ModelError(f"{p}: the manifest says kind {m.get('kind')!r}, not a TakeVLA export (kind 'vla'); "
                         "a planner.onnx drives with --policy perlad/il/takead")
    text = p.with_name(m.get("text_file", "vla_text.onnx"))
    for f, ins, outs in ((p, ACTION_INPUTS, ACTION_OUTPUTS), (text, TEXT_INPUTS, ("logits",))):
        try:
            sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types
            raise ModelError(f"{f}: not a readable ONNX model ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                             "re-export it with `drive-stack train takevla`") from None
        got_in, got_out = [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()]
        if sorted(got_in) != sorted(ins) or not set(outs) <= set(got_out):
            raise ModelError(f"{f}: not TakeVLA's graph: expected inputs {sorted(ins)} and outputs {list(outs)}, "
                             f"found inputs {sorted(got_in)} and outputs {got_out}")
        if f == p:
            shape = sess.get_outputs()[got_out.index("speed_logits")].shape
            K, S = len(m.get("speed_times_s", [0.0])), len(m.get("speeds_m_s", []))
            if int(np.prod(shape[1:])) != K * S:
                raise ModelError(f"{p}: speed_logits {shape} does not match the manifest's {K} speed points x {S} "
                                 "speeds; re-export the model with `drive-stack train takevla`")
    vocab_out = sess.get_outputs()[0].shape[-1]
    if len(m.get("vocab", [])) != vocab_out:
        raise ModelError(f"{p}: the manifest's vocabulary ({len(m.get('vocab', []))} words) does not match the text "
                         f"graph's logits ({vocab_out}); re-export the model")
    return {**model_id(p), "text_sha256": model_id(text)["sha256"]}


class VLARuntime:
    """The two exported graphs on the inference runtime (TensorRT, ONNX Runtime CUDA or CPU)."""

    def __init__(self, path: str | Path, backend: str = "auto"):
        from ..models.runtime import InferenceModel

        self.model_id = verify_vla(path)
        self.action = InferenceModel(path, backend)
        self.manifest = self.action.manifest
        self.text = InferenceModel(Path(path).with_name(self.manifest.get("text_file", "vla_text.onnx")), backend)
        self.action.warmup()
        self.text.warmup()
        self.vocab = self.manifest["vocab"]
        self.max_len = int(self.manifest["max_len"])
        self.speeds = np.asarray(self.manifest["speeds_m_s"], float)
        self.speed_times = np.asarray(self.manifest.get("speed_times_s", [0.0]), float)
        self.speed_lookahead = float(self.manifest.get("speed_lookahead_s", 0.0))

    def speed_profile(self, speed_logits: np.ndarray) -> np.ndarray:
        """One sample's speed points (K,) [m/s]: each point's best-scored speed. speed_logits (K, S) or (S,)."""
        return self.speeds[np.argmax(np.reshape(speed_logits, (len(self.speed_times), -1)), -1)]

    def target_speed(self, speed_logits: np.ndarray) -> float:
        """What the deployed PID follows: the profile `speed_lookahead` seconds ahead (sim/control.profile_target)."""
        from ..sim.control import profile_target

        return float(profile_target(self.speed_profile(speed_logits), self.speed_times, self.speed_lookahead))

    def commentary(self, memory: np.ndarray, memory_mask: np.ndarray) -> tuple[str, int]:
        """Greedy decoding of one sample's commentary: (text, number of text-graph calls)."""
        from ..vla.language import BOS, EOS, PAD, decode

        tokens = np.full((1, self.max_len), PAD, np.float32)
        tokens[0, 0] = BOS
        calls = 0
        for i in range(self.max_len - 1):
            logits = self.text({"memory": memory, "memory_mask": memory_mask, "tokens": tokens})["logits"]
            calls += 1
            nxt = int(np.argmax(logits[0, i]))
            tokens[0, i + 1] = nxt
            if nxt == EOS:
                break
        return decode(tokens[0].astype(np.int64)), calls


class VLAPolicy:
    privileged = False
    needs_map = True
    model_id: dict | None = None

    def __init__(self, num_envs: int, g=None, name: str = "takevla", model: str | None = None, backend: str = "auto",
                 dt: float = 0.05):
        if g is None:
            raise ValueError(f"policy {name!r} needs the map (make_policy(..., g=lane_graph))")
        self.name, self.E, self.dt = name, num_envs, dt
        self.rt = VLARuntime(resolve_vla(model, name), backend)
        self.model_id = self.rt.model_id
        self.net = self.rt.action  # (what the planner node describes: file and backend)
        self.fcfg = FeatureConfig(**self.rt.manifest["features"])
        self.features = FeatureBuilder(g, num_envs, self.fcfg)
        self.speeds = self.rt.speeds
        self.ctl = PIDController(num_envs, dt=dt)
        self.steps = 0
        self.status = [""] * num_envs
        self.last: list[dict | None] = [None] * num_envs

    def reset(self) -> None:
        self.features.reset()
        self.ctl.reset()
        self.steps = 0
        self.last = [None] * self.E

    def plan(self, scene: PerceivedScene) -> tuple[np.ndarray, np.ndarray]:
        from ..vla.language import prompts
        from ..vla.raster import raster

        t = scene.t if scene.t is not None else np.full(self.E, self.steps * self.dt)
        inputs = self.features(scene, t).inputs()
        img = raster(inputs, self.fcfg.history)
        prm = prompts(inputs["ego"]).astype(np.float32)
        paths, speeds = [], []
        for e in range(self.E):
            out = self.rt.action({"raster": img[e:e + 1], "ego": inputs["ego"][e:e + 1], "prompt": prm[e:e + 1]})
            paths.append(out["path"][0])
            v = self.rt.target_speed(out["speed_logits"][0])
            speeds.append(v)
            self.last[e] = {"memory": out["memory"], "memory_mask": out["memory_mask"], "speed": v,
                            "profile": self.rt.speed_profile(out["speed_logits"][0])}
            self.status[e] = f"speed {v:.1f} m/s (profile " + " ".join(f"{x:.0f}" for x in self.last[e]["profile"]) + ")"
        self.steps += 1
        return np.asarray(paths, np.float64), np.asarray(speeds)

    def act(self, scene: PerceivedScene, truth=None) -> tuple[Controls, Plan]:
        path, target = self.plan(scene)
        target = capped(self, target)
        ctl_path = extend_path(path)
        throttle, steer, brake = self.ctl(ctl_path, target, scene.ego_speed)
        return Controls(throttle, steer, brake), Plan(ctl_path, target, np.repeat(target[:, None], ctl_path.shape[1], 1))

    def explain(self, e: int = 0):
        """The commentary of env e's last step, as an Advice (text, advisory, speed cap); None before a step."""
        from ..vla.language import Advice, advisory

        last = self.last[e]
        if last is None:
            return None
        text, _ = self.rt.commentary(last["memory"], last["memory_mask"])
        adv, cap = advisory(text, last["speed"])
        return Advice(text, adv, cap)
