"""Training stages: imitation of the planner (`il`), the prediction world model (`wm`), RL of the longitudinal
head (`rl`, learn/rl.py). One command each (`drive-stack train il|wm|rl`), a dataclass config whose fields are
the command's options, tqdm progress, TensorBoard scalars (<out>/tb), a checkpoint per epoch (<out>/ckpt.pt;
`--resume` continues from it), metrics (<out>/metrics.json) and the exported ONNX (<out>/*.onnx + manifest.json).
Seeds are fixed (torch, numpy); with torch's deterministic CPU kernels the same config gives the same model.
Under torchrun the supervised stages train data-parallel (learn/dist.py): ``torchrun --nproc-per-node N -m
drivesim.cli train il ...`` follows the loss trajectory of one process with the same global batch.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..models.features import SPEED_SCALE, FeatureConfig
from ..models.nets import INPUT_NAMES, NetConfig, Planner, WorldModel, kmeans_anchors
from . import dist
from .configs import ILConfig, TrainConfig, WMConfig
from .data import WM_DT, DataConfig, build_samples

SPEED_CHANGE = 1.0  # [m/s] a speed label this far from the current speed counts as a change


def config_from_args(cls, argv_ns) -> object:
    """The config from parsed options whose dest is the field's dotted path (``il.epochs``); unset ones keep
    their defaults."""
    from ..typed import build, options

    return build(cls, {o.path: getattr(argv_ns, o.path) for o in options(cls)
                       if getattr(argv_ns, o.path, None) is not None})


def split(data: dict, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/val sample indices, split by episode."""
    eps = np.unique(data["episode"])
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(len(eps) * val_fraction))) if len(eps) > 1 else 0
    val_eps = rng.permutation(eps)[:n_val]
    val = np.isin(data["episode"], val_eps)
    return np.flatnonzero(~val), np.flatnonzero(val)


def batch(data: dict, idx: np.ndarray, keys, device: torch.device | None = None) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.asarray(data[k][idx], np.float32), device=device) for k in keys}


def speed_bin(speed: torch.Tensor, ncfg: NetConfig) -> torch.Tensor:
    step = ncfg.max_speed / (ncfg.num_speeds - 1)
    return torch.clamp(torch.round(speed / step), 0, ncfg.num_speeds - 1).long()


def target_anchor(paths: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    return ((paths[:, None] - anchors[None]) ** 2).sum(-1).mean(-1).argmin(1)


def planner_losses(model: Planner, b: dict, cfg: ILConfig | None = None, fwd=None) -> dict[str, torch.Tensor]:
    """The imitation losses of a batch. fwd: what computes the forward pass (the DDP wrapper under torchrun;
    default the model). Every mean is a global-batch one (dist.mean)."""
    logits, paths, speed_logits = (fwd or model)(*(b[k] for k in INPUT_NAMES))
    tgt = target_anchor(b["path"], model.anchors)
    B = len(tgt)
    ar = torch.arange(B, device=tgt.device)
    l_anchor = dist.mean(F.cross_entropy(logits, tgt, reduction="sum"), B)
    sel = paths[ar, tgt]
    l_path = dist.mean(F.smooth_l1_loss(sel, b["path"], reduction="sum"), sel.numel())
    sb = speed_bin(b["speed"], model.ncfg)
    # frames where the expert's speed departs from the current one (braking for a lead, starting at a green
    # light) weigh more: otherwise "keep your speed" explains most labels (the copycat problem)
    change = (b["speed"] - b["ego"][:, 0] * SPEED_SCALE).abs() > SPEED_CHANGE
    wt = 1.0 + (cfg.w_speed_change if cfg else 2.0) * change.float()
    l_speed = dist.mean((F.cross_entropy(speed_logits[ar, tgt], sb, reduction="none") * wt).sum(), wt.sum())
    w = cfg or ILConfig()
    with torch.no_grad():
        err = (paths[ar, logits.argmax(1)] - b["path"]).norm(dim=-1)
        ade = dist.mean(err.sum(), err.numel())
        speeds = torch.as_tensor(model.ncfg.speeds(), dtype=torch.float32, device=tgt.device)
        sp_err = dist.mean((speeds[speed_logits[ar, logits.argmax(1)].argmax(-1)]
                            - b["speed"].clamp(0, model.ncfg.max_speed)).abs().sum(), B)
        acc = dist.mean((speed_logits[ar, tgt].argmax(-1) == sb).float().sum(), B)
    return {"loss": w.w_anchor * l_anchor + w.w_path * l_path + w.w_speed * l_speed, "anchor_ce": l_anchor,
            "path_l1": l_path, "speed_ce": l_speed, "path_ade_m": ade, "speed_err_m_s": sp_err, "speed_acc": acc}


def group_best_mode(ade: torch.Tensor, group: torch.Tensor | None = None) -> torch.Tensor:
    """ade (B, N, K) -> the winning mode (B, N): per row, or, with group (B,), the mode with the least ADE
    summed over the rows of the row's group (one frame under several ego plans takes one mode per agent)."""
    if group is None:
        return ade.argmin(-1)
    return torch.zeros(int(group.max()) + 1, *ade.shape[1:], device=ade.device).index_add_(0, group, ade).argmin(-1)[group]


def wm_losses(model: WorldModel, b: dict, cfg: WMConfig | None = None, fwd=None) -> dict[str, torch.Tensor]:
    """The world model's losses of a batch (fwd as in planner_losses). The branch metrics (cf_) come when the
    batch says which rows are branches (is_branch)."""
    traj, mode_logits = (fwd or model)(*(b[k] for k in INPUT_NAMES), b["ego_future"])
    gt, m = b["agents_future"], b["agents_future_mask"]  # (B, N, T, 2), (B, N, T)
    err = (traj - gt[:, :, None]).norm(dim=-1)  # (B, N, K, T)
    cnt = m.sum(-1).clamp(min=1)[:, :, None]
    ade = (err * m[:, :, None]).sum(-1) / cnt  # (B, N, K)
    has = m.any(-1)  # (B, N)
    best = group_best_mode(ade, b.get("group"))  # (B, N)
    sel = torch.gather(traj, 2, best[:, :, None, None, None].expand(-1, -1, 1, *traj.shape[-2:]))[:, :, 0]
    wm = m * b["agent_weight"][:, :, None] if "agent_weight" in b else m  # reacting agents weigh more
    reg = dist.mean((F.smooth_l1_loss(sel, gt, reduction="none").sum(-1) * wm).sum(), wm.sum())
    # an empty selection sums to 0 and keeps the mode head in the graph (DDP wants every parameter used)
    ce = dist.mean(F.cross_entropy(mode_logits[has], best[has], reduction="sum"), has.sum())
    w = cfg or WMConfig()
    out = {"loss": reg + w.w_mode * ce, "reg": reg, "mode_ce": ce}
    with torch.no_grad():
        full = m.all(-1)  # agents seen over the whole horizon: minFDE at T
        cf = b.get("is_branch", torch.zeros(len(m), dtype=torch.bool, device=m.device))[:, None]
        for name, sel_rows in (("", ~cf), ("cf_", cf)) if "is_branch" in b else (("", ~cf),):
            h, f = has & sel_rows, full & sel_rows
            out[f"{name}minADE_m"] = dist.mean(ade.min(-1).values[h].sum(), h.sum())
            out[f"{name}minFDE_m"] = dist.mean(err[..., -1].min(-1).values[f].sum(), f.sum())
    return out


class Stage:
    """The loop shared by the supervised stages: epochs over shuffled batches, validation, TensorBoard,
    checkpoints, resume; data-parallel under torchrun (learn/dist.py: every process takes its share of each
    global batch, process 0 alone logs and writes)."""

    name = "stage"
    keys: tuple[str, ...] = ()
    data_keys: tuple[str, ...] | None = None  # the sample arrays the stage loads (None: all of them)

    def __init__(self, cfg: TrainConfig, log=print):
        self.cfg = cfg
        self.dist = dist.setup(cfg.device)
        self.log = log if self.dist.main else (lambda *_: None)
        log = self.log
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.set_num_threads(cfg.threads)
        self.fcfg = FeatureConfig()
        self.ncfg = cfg.net()
        with dist.main_first():  # process 0 builds the sample cache, the others read it
            self.data = build_samples(DataConfig(cfg.data, cfg.maps_dir, cfg.workers, cfg.max_episodes,
                                                 self.data_keys), self.fcfg, log)
        self.tr, self.va = split(self.data, cfg.val_fraction, cfg.seed)
        self.prepare()
        self.model = self.make_model().to(self.dist.device)
        self._ddp = dist.wrap(self.model) if self.dist.on else None
        if self.dist.on:
            log(f"{self.name}: data-parallel over {self.dist.world} processes ({self.dist.device.type}), "
                f"{cfg.batch_size} samples per global batch")
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        # warm-up then cosine decay over this config's steps (a resumed run with more epochs stretches it)
        self.total_steps = cfg.epochs * max(1, int(np.ceil(len(self.tr) / cfg.batch_size)))
        warm = max(1, self.total_steps // 20)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(1.0, (s + 1) / warm) * max(
            0.05, 0.5 * (1 + np.cos(np.pi * min(s / self.total_steps, 1.0)))))
        self.epoch, self.step, self.history = 0, 0, []
        if cfg.resume and (self.out / "ckpt.pt").exists():
            self.load(self.out / "ckpt.pt")
            log(f"resumed from {self.out / 'ckpt.pt'} at epoch {self.epoch}")

    @property
    def fwd(self):
        """What computes the forward pass: the DDP wrapper under torchrun, else the model itself."""
        return self._ddp if self._ddp is not None else self.model

    def make_model(self):
        raise NotImplementedError

    def losses(self, b):
        raise NotImplementedError

    def prepare(self) -> None:
        """Hook: anything a stage derives from its data before the model is made."""

    def fetch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """The batch of the given training rows."""
        return batch(self.data, idx, self.keys, self.dist.device)

    def save(self) -> None:
        if not self.dist.main:  # one checkpoint, written by process 0
            return
        tmp = self.out / "ckpt.tmp.pt"
        torch.save({"model": {k: v.cpu() for k, v in self.model.state_dict().items()}, "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                    "epoch": self.epoch, "step": self.step, "history": self.history, "config": asdict(self.cfg),
                    "net": asdict(self.ncfg), "features": asdict(self.fcfg), "stage": self.name}, tmp)
        tmp.replace(self.out / "ckpt.pt")

    def load(self, path: Path) -> None:
        ck = torch.load(path, weights_only=False, map_location=self.dist.device)
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["opt"])
        self.sched.load_state_dict(ck["sched"])
        self.epoch, self.step, self.history = ck["epoch"], ck["step"], ck["history"]

    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        sums: dict[str, float] = {}
        n: dict[str, int] = {}
        with torch.no_grad():
            for i in range(0, len(self.va), 1024):
                idx = self.va[i:i + 1024]
                out = dist.reduce_values(self.losses(self.fetch(dist.shard(idx))))
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + v * len(idx)
                    n[k] = n.get(k, 0) + len(idx)
        self.model.train()
        return {k: v / max(n[k], 1) for k, v in sums.items()}

    def run(self) -> dict:
        from torch.utils.tensorboard import SummaryWriter

        cfg, main = self.cfg, self.dist.main
        if main:
            (self.out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        tb = SummaryWriter(str(self.out / "tb")) if main else None
        rng = np.random.default_rng(cfg.seed + self.epoch)  # the same order in every process
        self.model.train()
        self.log(f"{self.name}: {len(self.tr)} train / {len(self.va)} val samples, "
                 f"{sum(p.numel() for p in self.model.parameters())} parameters")
        while self.epoch < cfg.epochs:
            t0 = time.perf_counter()
            perm = rng.permutation(self.tr)
            bar = tqdm(range(0, len(perm), cfg.batch_size), desc=f"{self.name} epoch {self.epoch + 1}/{cfg.epochs}",
                       leave=False, mininterval=1.0, disable=None if main else True)
            run_sum, nb = {}, 0
            for i in bar:
                out = self.losses(self.fetch(dist.shard(perm[i:i + cfg.batch_size])))
                self.opt.zero_grad()
                out["loss"].backward()  # under DDP: the gradients averaged over the processes
                gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
                self.opt.step()
                self.sched.step()
                self.step += 1
                vals = dist.reduce_values(out)
                for k, v in vals.items():
                    run_sum[k] = run_sum.get(k, 0.0) + v
                if tb:
                    for k, v in vals.items():
                        tb.add_scalar(f"train/{k}", v, self.step)
                    tb.add_scalar("train/grad_norm", float(gn), self.step)
                    tb.add_scalar("train/lr", self.sched.get_last_lr()[0], self.step)
                nb += 1
                bar.set_postfix(loss=f"{vals['loss']:.3f}")
            self.epoch += 1
            dt = time.perf_counter() - t0
            val = self.evaluate() if len(self.va) else {}
            if tb:
                for k, v in val.items():
                    tb.add_scalar(f"val/{k}", v, self.step)
                tb.add_scalar("train/samples_per_s", len(perm) / dt, self.step)
            row = {"epoch": self.epoch, "train": {k: v / max(nb, 1) for k, v in run_sum.items()}, "val": val,
                   "samples_per_s": round(len(perm) / dt, 1)}
            self.history.append(row)
            self.log(f"{self.name} epoch {self.epoch}: train loss {row['train']['loss']:.4f}"
                     + "".join(f", val {k} {v:.3f}" for k, v in val.items() if k != "loss")
                     + f" ({row['samples_per_s']:.0f} samples/s)")
            self.save()
        if tb:
            tb.close()
        metrics = {"stage": self.name, "history": self.history, "final_val": self.history[-1]["val"] if self.history else {}}
        if main:
            (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        return metrics


class ILStage(Stage):
    name = "il"
    keys = (*INPUT_NAMES, "path", "speed")
    data_keys = keys  # a third of the memory of every array (data.DataConfig.keys)

    def make_model(self):
        if self.cfg.init:
            return self.initial_planner()
        anchors = kmeans_anchors(self.data["path"][self.tr], self.ncfg.num_anchors, seed=self.cfg.seed)
        return Planner(self.fcfg, self.ncfg, anchors)

    def initial_planner(self) -> Planner:
        """The planner of --init (weights and anchors), which fixes the network's width and depth."""
        from ..models.checkpoint import load_model

        model, _ = load_model(self.cfg.init)
        if not isinstance(model, Planner):
            raise ValueError(f"--init {self.cfg.init}: not a planner (a train il|rl checkpoint or an exported "
                             "planner.onnx); a world-model checkpoint cannot start imitation")
        if model.fcfg != self.fcfg:
            raise ValueError(f"--init {self.cfg.init}: its features ({model.fcfg}) are not this build's "
                             f"({self.fcfg}); retrain it from scratch without --init")
        self.ncfg = model.ncfg
        self.log(f"il: starting from {self.cfg.init} (d_model {model.ncfg.d_model}, {model.ncfg.layers} layers, "
                 "its anchors)")
        return model.train()

    def losses(self, b):
        return planner_losses(self.model, b, self.cfg, self.fwd)


class WMStage(Stage):
    """The world model learns from every logged frame (the ego's logged future as the plan) and from the
    datasets' counterfactual branches (the same frame under other ego plans, sim/branch.py). A training unit
    is a frame: its logged row and its branch rows (wmb_*) go into the same batch as one group, and an agent
    takes the same mode in every row of its group (the mode that fits all the group's futures best). So a
    mode is what the agent intends (turn, go straight, stop), the same under every ego plan, and how it reacts
    to the plan must come from the plan: left free, winner-takes-all explains "it yields" and "it goes on" as
    two modes that ignore the plan (measured, issue 5 notes). Agents that react in the branches (their futures
    end up apart) weigh `w_react` more in the regression. Metrics: minADE/minFDE over the logged rows (as
    before branches existed), `cf_` ones over the branch rows."""

    name = "wm"
    keys = (*INPUT_NAMES, "ego_future", "agents_future", "agents_future_mask")

    def prepare(self) -> None:
        brow = self.data.get("wmb_row", np.zeros(0, np.int64))
        if len(brow) and np.any(np.diff(brow) < 0):
            raise ValueError("counterfactual rows out of order (wmb_row must not decrease): rebuild the samples")
        self.react = reacting_agents(self.data) if len(brow) else np.zeros((0, self.fcfg.num_agents), bool)
        self.log(f"wm: {len(brow)} counterfactual rows, {int(np.isin(brow, self.tr).sum())} of them in training")

    def fetch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        idx = np.asarray(idx)
        brow = self.data.get("wmb_row", np.zeros(0, np.int64))
        lo, hi = np.searchsorted(brow, idx, "left"), np.searchsorted(brow, idx, "right")
        n = hi - lo
        br = np.repeat(lo - np.r_[0, np.cumsum(n)[:-1]], n) + np.arange(n.sum())  # every frame's branch rows
        rows = np.concatenate([idx, brow[br]])
        dev = self.dist.device
        out = batch(self.data, rows, INPUT_NAMES, dev)
        for k in ("ego_future", "agents_future", "agents_future_mask"):
            out[k] = torch.as_tensor(np.concatenate([self.data[k][idx], self.data[f"wmb_{k}"][br]]).astype(np.float32),
                                     device=dev)
        w = np.ones((len(rows), self.fcfg.num_agents), np.float32)
        w[len(idx):] += self.cfg.w_react * self.react[br]
        out["agent_weight"] = torch.as_tensor(w, device=dev)
        out["group"] = torch.as_tensor(np.concatenate([np.arange(len(idx)), np.repeat(np.arange(len(idx)), n)]),
                                       device=dev)
        if len(brow):  # the dataset has branches: the cf_ metrics come too
            out["is_branch"] = torch.as_tensor(np.arange(len(rows)) >= len(idx), device=dev)
        return out

    def make_model(self):
        assert abs(WM_DT * self.ncfg.wm_steps - 3.0) < 1e-6
        return WorldModel(self.fcfg, self.ncfg)

    def run(self) -> dict:
        """Train, then add the reactivity report (learn/pipeline.py reactivity_report: the held-out scenes under a
        braking and a committing ego plan, and against the simulator's counterfactual branches) to the metrics
        and metrics.json."""
        from .pipeline import reactivity_report

        metrics = super().run()
        if not self.dist.main:
            return metrics
        self.model.cpu().eval()  # the report builds its batches on the CPU
        metrics["reactivity"] = reactivity_report(self.model, self.data, self.va)
        self.model.train()
        self.log(f"world-model reactivity: {json.dumps(metrics['reactivity'])}")
        (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        return metrics

    def losses(self, b):
        return wm_losses(self.model, b, self.cfg, self.fwd)


def reacting_agents(data: dict, apart: float = 1.0) -> np.ndarray:
    """(M, N) bool per counterfactual row: the agent's futures under the frame's branches end up more than
    `apart` metres apart somewhere in the 3 s (it reacted to the ego's plan). A frame's branches are
    consecutive rows with the same wmb_row."""
    row, fut, m = data["wmb_row"], data["wmb_agents_future"], data["wmb_agents_future_mask"]
    first = np.r_[0, np.flatnonzero(np.diff(row)) + 1]  # the first row of each frame's group
    grp = np.repeat(np.arange(len(first)), np.diff(np.r_[first, len(row)]))
    f0 = first[grp]
    d = np.linalg.norm(fut - fut[f0], axis=-1) > apart  # (M, N, T)
    moved = (d & m & m[f0]).any(-1)  # (M, N)
    return np.logical_or.reduceat(moved, first, axis=0)[grp]
