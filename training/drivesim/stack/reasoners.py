"""What the `vla_reasoning` node runs: a reasoner turns a perceived scene into an `Advice` (text, advisory, speed
cap) and names itself (`name`: what each Reasoning message says produced it).

- `rule`: the rule reasoner (stack/reasoner.py), no model.
- `takevla`: TakeVLA's exported graphs (policies/vla.py): features, raster, the action graph, greedy commentary.
- `hf`: a pretrained vision-language model from a local folder through Hugging Face `transformers`
  (`AutoProcessor` + `AutoModelForImageTextToText`, e.g. a LLaVA-style model), for users with weights and a GPU:
  the BEV raster as an RGB image (`raster_image`), or a camera's image where the user has one (the node's
  `camera_topic`, e.g. the Leaderboard camera the drive-stack agent declares with `camera=front`), the route
  instruction in the prompt (the processor's chat template if it has one), greedy generation; the advisory from
  the generated words (`advisory_from_words`). TakeVLA itself is trained on the raster (there are no camera images
  in the pseudo-simulator) and takes no camera.
  Nothing is downloaded (`local_files_only`); without `transformers` it says how to install it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .reasoner import Advice, rule_reasoning

REASONERS = ("rule", "takevla", "hf")
# raster channel -> RGB (vla/raster.py CHANNELS order): lanes grey, route green, vehicles blue, vulnerable red,
# obstacles orange, stop lanes magenta, history light blue; overlapping channels add up (clipped)
PALETTE = np.array([[90, 90, 90], [0, 200, 0], [40, 80, 255], [255, 30, 30], [255, 160, 0], [255, 0, 255],
                    [120, 160, 255]], np.float32)
STOP_WORDS, SLOW_WORDS = ("stop", "stopped", "halt"), ("slow", "yield", "brake", "careful", "wait", "caution")


class ReasonerError(RuntimeError):
    pass


def raster_image(raster: np.ndarray, scale: int = 4):
    """(C, H, W) raster -> an RGB PIL image, each pixel `scale` x `scale` (a VLM's image processor resizes it)."""
    from PIL import Image

    rgb = np.clip(np.einsum("chw,cd->hwd", np.asarray(raster, np.float32), PALETTE[: len(raster)]), 0, 255)
    rgb = np.kron(rgb.astype(np.uint8), np.ones((scale, scale, 1), np.uint8))
    return Image.fromarray(rgb)


def advisory_from_words(text: str, speed: float) -> tuple[str, float]:
    """(advisory, speed cap) from free text: a stop word -> stop (0); a slow-down word -> slow_down (at most the
    current speed, less 2 m/s); else proceed (no cap)."""
    words = set(text.lower().replace(".", " ").replace(",", " ").split())
    if words & set(STOP_WORDS):
        return "stop", 0.0
    if words & set(SLOW_WORDS):
        return "slow_down", max(float(speed) - 2.0, 0.0)
    return "proceed", -1.0


class RuleReasoner:
    name = "rule"
    needs_map = False

    def reason(self, scene) -> Advice:
        return rule_reasoning(scene)


class TakeVLAReasoner:
    needs_map = True

    def __init__(self, g, model: str | None = None, backend: str = "auto"):
        from ..policies import make_policy, warmup

        self.policy = make_policy("takevla", 1, g=g, model=model, backend=backend)
        warmup(self.policy)
        self.model_id = self.policy.model_id
        self.name = f"takevla {self.model_id['sha256'][:16]}"
        self.describe = self.policy.net.describe()

    def reason(self, scene) -> Advice:
        self.policy.plan(scene)
        return self.policy.explain(0)


class HFReasoner:
    """A local Hugging Face vision-language model behind the reasoner interface (see the module doc)."""

    needs_map = True

    def __init__(self, g, model: str | None, device: str = "auto", max_new_tokens: int = 40):
        if not model:
            raise ReasonerError("model hf needs model_file: the folder of a Hugging Face vision-language model "
                                "(config.json, weights, processor files)")
        path = Path(model)
        if not (path / "config.json").exists():
            raise ReasonerError(f"{path}: no config.json: not a Hugging Face model folder (give the folder that "
                                "save_pretrained wrote)")
        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as e:
            raise ReasonerError(f"model hf needs transformers ({e}): pip install -e '.[vla]'") from None
        from ..models.features import FeatureBuilder, FeatureConfig

        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        try:
            self.processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModelForImageTextToText.from_pretrained(str(path), local_files_only=True).to(self.device)
        except (OSError, ValueError, KeyError) as e:
            raise ReasonerError(f"{path}: cannot load it as a vision-language model with its processor "
                                f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
        self.model.eval()
        self.max_new_tokens = max_new_tokens
        self.features = FeatureBuilder(g, 1, FeatureConfig())
        self.name = f"hf {path.name}"
        self.describe = f"{path} on {self.device}"
        self.steps = 0

    def prompt(self, instruction: str) -> str:
        text = f"Instruction: {instruction}. Say what you do next and why."
        if getattr(self.processor, "chat_template", None):
            msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
            return self.processor.apply_chat_template(msgs, add_generation_prompt=True)
        return f"{getattr(self.processor, 'image_token', '<image>')} {text}"

    def generate(self, raster: np.ndarray, instruction: str, camera: np.ndarray | None = None) -> str:
        """The model's words for the scene: it sees the camera image (H, W, 3 uint8 RGB) when one is given, else the
        BEV raster as an image."""
        import torch
        from PIL import Image

        image = Image.fromarray(np.asarray(camera, np.uint8), "RGB") if camera is not None else raster_image(raster)
        inputs = self.processor(images=image, text=self.prompt(instruction), return_tensors="pt")
        inputs.pop("token_type_ids", None)  # (some tokenizers add it; the VLMs' generate refuses it)
        inputs = inputs.to(self.device)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        return self.processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    def reason(self, scene, camera: np.ndarray | None = None) -> Advice:
        """camera: the latest image of the vla_reasoning node's `camera_topic` (a user's camera), else None (the
        BEV raster)."""
        from ..models.features import SPEED_SCALE
        from ..vla.language import instruction
        from ..vla.raster import raster

        t = scene.t if scene.t is not None else np.full(1, self.steps * 0.5)
        inputs = self.features(scene, t).inputs()
        self.steps += 1
        text = self.generate(raster(inputs)[0] if camera is None else None, instruction(inputs["ego"][0]), camera)
        adv, cap = advisory_from_words(text, float(inputs["ego"][0, 0]) * SPEED_SCALE)
        return Advice(text, adv, cap)


def make_reasoner(kind: str, g=None, model: str | None = None, backend: str = "auto"):
    """A reasoner by name (REASONERS); `g` (the map) for the ones that build features (needs_map)."""
    if kind == "rule":
        return RuleReasoner()
    if kind not in REASONERS:
        raise ReasonerError(f"reasoner {kind!r}: use one of {', '.join(REASONERS)}")
    if g is None:
        raise ReasonerError(f"reasoner {kind!r} needs the map")
    if kind == "takevla":
        return TakeVLAReasoner(g, model or None, backend)
    return HFReasoner(g, model, "cuda" if backend in ("tensorrt", "ort-cuda") else "auto")
