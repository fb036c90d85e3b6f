"""`drive-stack train takevla`: TakeVLA from scratch on collected data, with pre-takeover language supervision.

Base data (`--data`): expert collections; every frame trains the action (the expert's path and planned speed) and
the commentary (vla/language.py: what the expert does and why, from scene facts and what it knew).
Takeover data (`--takeover-data`): shadow-mode collections (`collect --driver P --takeover`, `train takead`'s
rounds, `takeover ingest` of the stack's bags); every frame there has the expert's labels, and `controller` says
who drove. `--supervision` picks what of it trains:
  none: nothing (the base data alone);
  post: the frames the expert drove (the takeovers themselves; TakeAD-style);
  pre: those, and the frames of the `--pre-takeover` seconds before each takeover, their commentary prefixed by
      the precaution of that takeover's cause (vla/language.precaution: "careful : i must brake early for the
      pedestrian ahead ."): the model learns the habit before the failure, not only the recovery after it;
  pre_plain: the same frames as pre with the plain commentary (the action labels of the pre window without its
      language: what the language itself adds).
The result is exported to OUT/model/vla.onnx (action graph) + vla_text.onnx (commentary) + vla.manifest.json,
which `--policy takevla --model OUT/model/vla.onnx` drives and the `vla_reasoning` node runs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..typed import check
from .configs import TrainConfig

FRAME_DT = 0.1  # [s] between recorded frames (dataset/collect.py FRAME_EVERY x DT)
FEATURE_KEYS = ("ego", "route", "route_mask", "agents", "agents_mask", "lanes", "lanes_mask")


@dataclass
class VLAConfig(TrainConfig):
    out: str = "results/train/takevla"
    epochs: int = 6  # passes over the training samples
    takeover_data: str = ""  # shadow-mode collections with takeovers (comma-separated); empty: none
    supervision: Literal["pre", "pre_plain", "post", "none"] = "pre"  # what of the takeover data trains (module doc)
    pre_takeover: float = 3.0  # [s] the window before each takeover that gets precautionary commentary
    takeover_repeat: int = 1  # each selected takeover-data frame counts this many times per epoch
    w_path: float = 1.0  # weight of the path losses (anchor classification + the anchor's smooth L1, metres)
    w_speed: float = 1.0  # weight of the classification loss of the speed point for now (k = 0)
    w_speed_future: float = 0.5  # weight of the later speed points' classification loss (their mean)
    w_speed_change: float = 2.0  # extra weight of speed labels that differ from the current speed by > 1 m/s
    w_text: float = 0.5  # weight of the commentary loss (token cross-entropy)
    speed_lookahead: float = 0.5  # [s] the deployed PID's target: the speed profile this far ahead (manifest;
    # chosen on Proc3 validation: the pre model 65.8 at 0 s, 72.1 at 0.5 s)
    eval_routes: str = ""  # after training: evaluate the exported model on these routes (never a reported set)
    eval_seed: int = 0  # the closed-loop evaluation's seed

    def __post_init__(self):
        check(self)
        if self.pre_takeover < 0:
            raise ValueError(f"pre_takeover {self.pre_takeover}: a window in seconds, >= 0")
        if self.speed_lookahead < 0:
            raise ValueError(f"speed_lookahead {self.speed_lookahead}: seconds ahead on the speed profile, >= 0")

    def net(self):
        from ..vla.net import VLANetConfig

        return VLANetConfig(d_model=self.d_model, enc_layers=self.layers, dec_layers=self.layers, ff=2 * self.d_model)


def speed_profile(data: dict, times: np.ndarray) -> np.ndarray:
    """The speed points' labels, (N, K): the expert's planned speed (`speed`) at the frames times[k] seconds later
    in the same episode (the episode's last frame where it ends first). A table's episodes are runs of rows in frame
    order (learn/data.build_samples); a table that is not (rows dropped or shuffled) is refused."""
    ep, fr = data["episode"], data["frame"]
    n = len(ep)
    if n and not np.all((ep[1:] != ep[:-1]) | (fr[1:] == fr[:-1] + 1)):
        raise ValueError("speed_profile: the table's episodes are not runs of consecutive frames; compute the speed "
                         "points on the table build_samples returns, before selecting rows")
    ends = np.r_[np.flatnonzero(ep[1:] != ep[:-1]), n - 1]
    last = ends[np.searchsorted(ends, np.arange(n))]
    j = np.round(np.asarray(times, np.float64) / FRAME_DT).astype(int)
    rows = np.minimum(np.arange(n)[:, None] + j[None], last[:, None])
    return np.asarray(data["speed"], np.float32)[rows]


def takeover_rows(data: dict, index: dict, supervision: str, pre_s: float) -> tuple[np.ndarray, dict[int, str]]:
    """The rows of a shadow-mode table that train under `supervision`, and {row: cause} for the pre-window rows.

    A takeover starts where `controller` turns from 0 (the driver) to the expert or a safe stop; its cause is that
    of the episode's takeover event nearest in time (index.json). Pre-window rows: the driver's frames within
    `pre_s` seconds before a start (in the same episode)."""
    ctl, ep, fr = data["controller"].astype(int), data["episode"], data["frame"]
    post = ctl != 0
    if supervision == "none":
        return np.zeros(0, np.int64), {}
    if supervision == "post":
        return np.flatnonzero(post), {}
    eps = index["episodes"]
    causes: dict[int, str] = {}
    k = int(round(pre_s / FRAME_DT))
    starts = np.flatnonzero(post & np.r_[True, (ctl[:-1] == 0) | (ep[1:] != ep[:-1])])
    for s in starts:
        events = (eps[int(ep[s])].get("takeovers") or {}).get("events") or []
        if not events:
            continue
        t = fr[s] * FRAME_DT
        cause = min(events, key=lambda e: abs(float(e["t"]) - t))["cause"]
        for r in range(max(s - k, 0), s):
            if ep[r] == ep[s] and ctl[r] == 0:
                causes.setdefault(r, cause)
    rows = np.union1d(np.flatnonzero(post), np.fromiter(causes, np.int64, len(causes)))
    return rows, (causes if supervision == "pre" else {})


def _take(data: dict, rows: np.ndarray) -> dict:
    return {k: v[rows] for k, v in data.items() if not k.startswith("wmb_")}


def make_stage(cfg: VLAConfig, log=print):
    """The TakeVLA stage on the supervised stages' loop (learn/train.Stage: data, split, epochs, TensorBoard,
    checkpoints, resume, torchrun)."""
    from collections import Counter

    from ..dataset.collect import load_index
    from ..vla.language import PAD, commentary, encode, precaution, prompts
    from ..vla.net import TakeVLA
    from ..vla.raster import raster
    from .data import DataConfig, build_samples, concat_samples
    from .train import Stage, speed_bin, split

    class _VLAStage(Stage):
        name = "takevla"

        def prepare(self) -> None:
            c = self.cfg
            times = self.ncfg.speed_times()
            self.data["speed_points"] = speed_profile(self.data, times)
            base = _take(self.data, np.arange(len(self.data["speed"])))
            texts = commentary(base)
            n_base = len(base["speed"])
            parts, n_pre, n_post = [base], 0, 0
            for root in [r for r in c.takeover_data.split(",") if r] if c.supervision != "none" else []:
                d = build_samples(DataConfig(root, c.maps_dir, c.workers), self.fcfg, self.log)
                rows, causes = takeover_rows(d, load_index(Path(root)), c.supervision, c.pre_takeover)
                d["speed_points"] = speed_profile(d, times)
                sub = _take(d, rows)
                t = commentary(sub)
                pos = {int(r): i for i, r in enumerate(rows)}
                for r, cause in causes.items():
                    i = pos[r]
                    t[i] = precaution(cause, sub, i) + " " + t[i]
                n_pre += len(causes)
                n_post += int((sub["controller"] != 0).sum())
                sub["episode"] = sub["episode"] + max(int(p["episode"].max()) for p in parts) + 1
                reps = max(int(c.takeover_repeat), 1)
                for _ in range(reps):
                    parts.append({k: v.copy() for k, v in sub.items()})
                    texts += t
            self.data = concat_samples(parts) if len(parts) > 1 else base
            vocab_ids: dict[str, np.ndarray] = {}
            self.data["text"] = np.stack([vocab_ids.setdefault(x, encode(x)) for x in texts])
            self.data["prompt"] = prompts(self.data["ego"]).astype(np.float32)
            self.tr, self.va = split(self.data, c.val_fraction, c.seed)
            self.log(f"takevla: {n_base} base frames; takeover data ({c.supervision}): {n_post} expert "
                     f"frames, {n_pre} pre-takeover frames (x{max(int(c.takeover_repeat), 1)}); "
                     f"{len(vocab_ids)} distinct commentaries")
            (self.out / "commentary_counts.json").write_text(json.dumps(Counter(texts).most_common(), indent=1))
            self._pad = PAD

        def make_model(self):
            from ..models.nets import kmeans_anchors

            return TakeVLA(self.ncfg, kmeans_anchors(self.data["path"][self.tr], self.ncfg.num_anchors, seed=self.cfg.seed))

        def fetch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
            idx = np.sort(np.asarray(idx))
            d, dev = self.data, self.dist.device
            img = raster({k: d[k][idx] for k in FEATURE_KEYS})
            out = {"raster": torch.from_numpy(img).to(dev)}
            for k in ("ego", "path", "speed", "speed_points", "prompt"):
                out[k] = torch.as_tensor(np.asarray(d[k][idx], np.float32), device=dev)
            out["text"] = torch.as_tensor(d["text"][idx], device=dev)
            return out

        def losses(self, b):
            """Anchor CE (the nearest anchor), smooth L1 of that anchor's path, the speed points' CE (each point's
            label: the expert's planned speed at its time; the point for now weighted w_speed, the later ones'
            mean w_speed_future; the labels that depart from the current speed weighted 1 + w_speed_change: the
            copycat problem, the ego's speed is an input and "keep it" explains most labels), commentary CE over
            the tokens. Every mean
            is a global-batch one (dist.mean: each token and frame of the global batch counts once under torchrun)."""
            from ..models.features import SPEED_SCALE
            from . import dist
            from .train import SPEED_CHANGE, target_anchor

            c = self.cfg
            h = self.fwd(b["raster"], b["ego"], b["prompt"], b["text"][:, :-1])
            tgt = b["text"][:, 1:]
            keep = tgt != self._pad
            logits = h["text_logits"]
            n_tok = keep.sum()
            l_text = dist.mean(F.cross_entropy(logits[keep], tgt[keep], reduction="sum"), n_tok)
            a = target_anchor(b["path"], self.model.anchors)
            B = len(a)
            ar = torch.arange(B, device=a.device)
            l_anchor = dist.mean(F.cross_entropy(h["anchor_logits"], a, reduction="sum"), B)
            sel = h["paths"][ar, a]
            l_path = dist.mean(F.smooth_l1_loss(sel, b["path"], reduction="sum"), sel.numel())
            sb = speed_bin(b["speed_points"], self.ncfg)  # (B, K)
            change = (b["speed_points"] - b["ego"][:, :1] * SPEED_SCALE).abs() > SPEED_CHANGE
            wt = 1.0 + c.w_speed_change * change.float()
            ce = F.cross_entropy(h["speed_logits"].flatten(0, 1), sb.flatten(), reduction="none").view_as(wt)
            # the point for now keeps its own weight (what the PID follows first; mixed into one mean with the
            # later points it lost accuracy: Proc3 validation 68.9 -> 61.9); the later points add w_speed_future
            l_speed = dist.mean((ce[:, 0] * wt[:, 0]).sum(), wt[:, 0].sum())
            l_future = dist.mean((ce[:, 1:] * wt[:, 1:]).sum(), wt[:, 1:].sum())
            loss = (c.w_path * (l_anchor + l_path) + c.w_speed * l_speed + c.w_speed_future * l_future
                    + c.w_text * l_text)
            with torch.no_grad():
                pred = logits.argmax(-1)
                tok_acc = dist.mean((pred[keep] == tgt[keep]).float().sum(), n_tok)
                seq_ok = dist.mean(((pred == tgt) | ~keep).all(1).float().sum(), B)
                ade = dist.mean((h["path"] - b["path"]).norm(dim=-1).sum(), B * b["path"].shape[1])
                hit = h["speed_logits"].argmax(-1) == sb  # (B, K); point 0 is now
                sacc = dist.mean(hit[:, 0].float().sum(), B)
                sacc_change = dist.mean((hit[:, 0] & change[:, 0]).float().sum(), change[:, 0].sum())
                sacc_points = dist.mean(hit.float().sum(), hit.numel())
            return {"loss": loss, "anchor": l_anchor, "path": l_path, "speed": l_speed,
                    "speed_future": l_future, "text": l_text,
                    "token_acc": tok_acc, "commentary_exact": seq_ok, "path_ade_m": ade, "speed_acc": sacc,
                    "speed_acc_changing": sacc_change, "speed_points_acc": sacc_points}

    return _VLAStage(cfg, log)


def export_vla(ckpt: str | Path, out_dir: str | Path, name: str = "takevla", speed_lookahead: float | None = None) -> dict:
    """OUT/vla.onnx (raster, ego, prompt -> path, speed_logits (1, K, S), memory, memory_mask), OUT/vla_text.onnx
    (memory, memory_mask, tokens -> logits) and OUT/vla.manifest.json (vocabulary, raster, features, speeds, the
    speed points' times and the PID's lookahead on them (`speed_lookahead`, else the training config's), both
    files' sha256, the torch/ONNX parity of each)."""
    import warnings

    import onnxruntime as ort

    from ..models.export import OPSET, sha256
    from ..vla import raster as R
    from ..vla.language import BOS, MAX_LEN, PROMPT_LEN, VOCAB
    from ..vla.net import ActionGraph, TakeVLA, TextGraph, VLANetConfig

    ck = torch.load(ckpt, weights_only=False, map_location="cpu")
    ncfg = VLANetConfig(**ck["net"])
    model = TakeVLA(ncfg, ck["model"]["anchors"].numpy())
    model.load_state_dict(ck["model"])
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    from ..models.features import EGO_DIM

    x = {"raster": (rng.random((1, ncfg.channels, ncfg.size, ncfg.size)) < 0.05).astype(np.float32),
         "ego": rng.random((1, EGO_DIM)).astype(np.float32),
         "prompt": rng.integers(4, len(VOCAB), (1, PROMPT_LEN)).astype(np.float32)}
    with torch.no_grad():
        path, sl, mem, mask = model.encode(*(torch.from_numpy(x[k]) for k in ("raster", "ego", "prompt")))
    tokens = np.zeros((1, MAX_LEN), np.float32)
    tokens[0, 0] = BOS
    tokens[0, 1:8] = rng.integers(4, len(VOCAB), 7)
    graphs = [("vla.onnx", ActionGraph(model), ("raster", "ego", "prompt"), ("path", "speed_logits", "memory", "memory_mask"),
               x),
              ("vla_text.onnx", TextGraph(model), ("memory", "memory_mask", "tokens"), ("logits",),
               {"memory": mem.numpy(), "memory_mask": mask.numpy(), "tokens": tokens})]
    parity = {}
    for fname, g, ins, outs, feeds in graphs:
        tmp = out / (fname + ".tmp")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(g, tuple(torch.from_numpy(feeds[k]) for k in ins), str(tmp), input_names=list(ins),
                              output_names=list(outs), opset_version=OPSET, dynamo=False, do_constant_folding=True)
        tmp.replace(out / fname)
        with torch.no_grad():
            ref = g(*(torch.from_numpy(feeds[k]) for k in ins))
        ref = ref if isinstance(ref, tuple) else (ref,)
        got = ort.InferenceSession(str(out / fname), providers=["CPUExecutionProvider"]).run(list(outs), feeds)
        parity[fname] = max(float(np.max(np.abs(r.numpy() - gg))) for r, gg in zip(ref, got, strict=True))
        if parity[fname] > 1e-3:
            raise RuntimeError(f"{out / fname}: ONNX/torch parity error {parity[fname]:.2e}")
    metrics = Path(ckpt).parent / "metrics.json"
    if speed_lookahead is None:
        speed_lookahead = float((ck.get("config") or {}).get("speed_lookahead", 0.0))
    manifest = {"name": name, "kind": "vla", "file": "vla.onnx", "text_file": "vla_text.onnx",
                "sha256": sha256(out / "vla.onnx"), "text_sha256": sha256(out / "vla_text.onnx"), "opset": OPSET,
                "vocab": list(VOCAB), "max_len": MAX_LEN, "prompt_len": PROMPT_LEN,
                "raster": {"size": R.SIZE, "res": R.RES, "ego_row": R.EGO_ROW, "channels": list(R.CHANNELS)},
                "features": ck["features"], "net": ck["net"], "speeds_m_s": ncfg.speeds().tolist(),
                "speed_times_s": ncfg.speed_times().tolist(), "speed_lookahead_s": speed_lookahead,
                "config": ck.get("config"), "checkpoint": str(ckpt), "parity_max_abs_err": parity,
                "metrics": json.loads(metrics.read_text()).get("final_val") if metrics.exists() else None}
    (out / "vla.manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def evaluate_vla(out: Path, cfg, what: str, log=print) -> dict:
    """Closed-loop evaluation of OUT/model/vla.onnx on cfg.eval_routes (into OUT/eval): the summary's headline."""
    from ..evaluation.evaluate import EvalConfig, evaluate

    s = evaluate(EvalConfig(routes=cfg.eval_routes, out=str(out / "eval"), policy="takevla",
                            model=str(out / "model" / "vla.onnx"), maps_dir=cfg.maps_dir, seed=cfg.eval_seed,
                            workers=cfg.workers), log=log)
    log(f"{what} eval DS {s['driving_score']:.2f} on {cfg.eval_routes}")
    return {k: s.get(k) for k in ("driving_score", "route_completion", "infraction_penalty", "success_rate",
                                  "infractions", "average_ttc")}


def run_vla(cfg: VLAConfig, log=print) -> dict:
    """Train, export to OUT/model, evaluate on cfg.eval_routes if given; returns the report (OUT/takevla.json).
    Under torchrun every process trains (data-parallel) and process 0 alone exports and evaluates (cli.cmd_train
    calls `finish_vla` itself after the processes leave the group)."""
    return finish_vla(cfg, make_stage(cfg, log).run(), log)


def finish_vla(cfg: VLAConfig, metrics: dict, log=print) -> dict:
    """After training: export OUT/ckpt.pt to OUT/model, evaluate on cfg.eval_routes, write OUT/takevla.json."""
    out = Path(cfg.out)
    man = export_vla(out / "ckpt.pt", out / "model", speed_lookahead=cfg.speed_lookahead)
    log(f"exported {out / 'model' / 'vla.onnx'} (sha256 {man['sha256'][:16]}), parity {man['parity_max_abs_err']}")
    rep = {"config": asdict(cfg), "metrics": metrics, "model": str(out / "model" / "vla.onnx"), "sha256": man["sha256"]}
    if cfg.eval_routes:
        rep["eval"] = evaluate_vla(out, cfg, "takevla", log)
    (out / "takevla.json").write_text(json.dumps(rep, indent=2, default=str))
    return rep


def language_eval(model: str | Path, data: str, maps_dir: str | None = None, max_frames: int = 2000, seed: int = 0,
                  workers: int = 2, log=print) -> dict:
    """The language metrics (vla/language.language_metrics) of an exported TakeVLA on a collected dataset (the
    expert on held-out routes; never training data): for up to `max_frames` frames drawn evenly, the commentary
    the deployed graphs decode greedily against the label the same frame would get. Also the decision's advisory
    against the label's."""
    from ..models.features import FeatureConfig
    from ..policies.vla import VLARuntime
    from ..vla.language import advisory, commentary, language_metrics, prompts
    from ..vla.raster import raster
    from .data import DataConfig, build_samples

    rt = VLARuntime(model, "ort-cpu")
    fcfg = FeatureConfig(**rt.manifest["features"])
    d = build_samples(DataConfig(data, maps_dir, workers), fcfg, log)
    n = len(d["speed"])
    idx = np.unique(np.linspace(0, n - 1, min(max_frames, n)).astype(int))
    sub = {k: v[idx] for k, v in d.items() if not k.startswith("wmb_")}
    labels = commentary(sub, fcfg.history)
    img = raster({k: sub[k] for k in FEATURE_KEYS}, fcfg.history)
    prm = prompts(sub["ego"]).astype(np.float32)
    preds, adv_ok = [], []
    for i in range(len(idx)):
        out = rt.action({"raster": img[i:i + 1], "ego": sub["ego"][i:i + 1].astype(np.float32), "prompt": prm[i:i + 1]})
        text, _ = rt.commentary(out["memory"], out["memory_mask"])
        preds.append(text)
        v = float(rt.target_speed(out["speed_logits"][0]))
        adv_ok.append(advisory(text, v)[0] == advisory(labels[i], float(sub["speed"][i]))[0])
    m = language_metrics(preds, labels)
    m["advisory_acc"] = round(float(np.mean(adv_ok)), 4) if adv_ok else None
    m["model"] = str(model)
    m["data"] = str(data)
    m["examples"] = [{"label": labels[i], "predicted": preds[i]} for i in range(0, len(preds), max(len(preds) // 8, 1))][:8]
    return m
