"""`drive-stack train dreaming`: TakeVLA's Scenario Dreaming, GRPO in reconstructed takeover scenarios.

Scenarios (learn/dream_rollout.py): the takeover starts and the `pre_takeover` seconds before them of shadow-mode
collections (`--takeover-data`: `collect --takeover`, `train takead` rounds, `takeover ingest` of bags), each
drawn as recorded or perturbed (agents' timing, positions, speeds; `perturbed` of the variants).
Policy: TakeVLA's action heads as a stochastic policy: a path anchor ~ Categorical(softmax(anchor_logits / T)),
the path ~ N(mu_anchor, sigma^2 I) around that anchor's predicted points, each speed point's speed ~
Categorical(softmax(speed_logits_k / T)) (independently) for the points k the rollout's controller reads (R:
`dream_rollout.read_speed_points`; the others take their most likely bin and have no effect on the rollout);
log pi(a | s) = log p(anchor) + sum_{k in R} log p_k(speed bin_k) - sum_i ||path_i - mu_anchor,i||^2 / (2 sigma^2)
(+ a constant).
GRPO: per scenario a group of `group` sampled actions, rolled out 2 s at 5 Hz (bicycle + deployed PID, agents
replaying their log); reward = -(discounted mean L2 to the expert's trajectory) + collision term; advantages
standardised within each group, A = (R - mean_g) / max(std_g, adv_std_floor) (1e-6: plain GRPO; the default 0.5
keeps a group whose rewards hardly differ from being scaled up to full-size advantages); loss = -mean(A log pi(a | s)) + kl x KL(pi ||
pi_ref) to the starting model (exact for the anchor and speed distributions; for the paths, each anchor's
||mu - mu_ref||^2 / (2 sigma^2) weighted by its probability)
+ w_text x the commentary's cross-entropy on the same scenarios (default 0: the language decoder is frozen, so the
commentary changes only through the shared encoder).
Every `eval_every` updates: the greedy action on fixed held-out scenarios (other episodes, fixed perturbations):
mean reward, L2 and collision rate (TensorBoard heldout/*, OUT/dreaming.json); and the sampled policy's mean
reward there (`group` actions per scenario, fixed draws: `reward_sampled`), which is what GRPO raises: the greedy
action changes only when a bin or anchor overtakes the most likely one. Resume from OUT/ckpt.pt; the
result is exported to OUT/model (vla.onnx + vla_text.onnx) and, with `eval_routes`, evaluated in closed loop.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..typed import check


@dataclass
class DreamConfig:
    init: str = "results/train/takevla/ckpt.pt"  # the TakeVLA checkpoint to start from (train takevla's OUT/ckpt.pt)
    takeover_data: str = ""  # shadow-mode collections with takeovers (comma-separated)
    out: str = "results/train/dreaming"  # run directory
    maps_dir: str | None = None  # OpenDRIVE folder of the collections' towns (Proc<seed> towns need none)
    pre_takeover: float = 3.0  # [s] the window before each takeover whose frames are scenarios too
    updates: int = 200  # GRPO updates
    states: int = 32  # scenarios per update
    group: int = 8  # sampled actions per scenario
    perturbed: float = 0.75  # fraction of drawn scenarios that are perturbed variants (the rest as recorded)
    temperature: float = 1.0  # of the speed distribution when sampling
    sigma: float = 0.5  # [m] the path's Gaussian exploration (per point and axis)
    lr: float = 3e-4  # AdamW learning rate (session 29, Proc3 validation, 2 training seeds: with adv_std_floor 0.5
    # the only step size of 3e-5 / 1e-4 / 3e-4 whose policies drove better than the start; results/takevla/dream_lr)
    kl: float = 0.1  # weight of KL(pi || pi_ref) to the starting model
    w_text: float = 0.0  # weight of the commentary cross-entropy on the scenarios; 0: the language decoder is frozen
    # (the scenarios are nearly all pre-takeover frames: trained on them alone, at 0.1, every commentary began
    # with "careful :" and the advisory accuracy fell from 0.92 to 0.06 on the expert's Proc5 frames)
    adv_std_floor: float = 0.5  # the least std a group's rewards are divided by (1e-6: plain GRPO, which scales a
    # group whose rewards differ by centimetres of L2 up to full-size advantages; the reward's units: metres of L2,
    # -10 a collision)
    gamma: float = 0.9  # discount of the L2 term per rollout step (5 Hz)
    horizon: float = 2.0  # [s] rollout length
    collision: float = -10.0  # reward of an at-fault collision with a vehicle (pedestrian x1.5, static x0.5)
    ttc: float = 0.0  # reward of a rollout that ends on course to hit an agent within ttc_horizon (0: off;
    # dream_rollout's TTC term)
    ttc_horizon: float = 1.5  # [s] that term's constant-velocity projection
    time_shift: float = 0.5  # [s] perturbation: agents' replay offset, +-
    position: float = 1.0  # [m] perturbation: each agent's offset, +-
    speed_scale: float = 0.2  # perturbation: each agent's motion scale, 1 +-
    speed_lookahead: float | None = None  # [s] the PID's target on the speed profile, in the rollouts and the
    # export; unset: the init checkpoint's (train takevla --speed-lookahead)
    val_fraction: float = 0.1  # of the episodes, their scenarios held out (heldout/* curves)
    eval_every: int = 20  # updates between held-out evaluations (0: only at the end)
    eval_routes: str = ""  # after training: closed-loop evaluation of the exported model (never a reported set)
    eval_seed: int = 0  # the closed-loop evaluation's seed
    seed: int = 0  # torch and sampling seed (the scenario draws of every update follow from it: resume repeats them)
    threads: int = 2  # torch CPU threads
    workers: int = 2  # feature-building processes
    ray: str | None = None  # roll out on Ray actors: `local` (a Ray started here), `auto`, `HOST:PORT` or
    # `ray://HOST:PORT` (a running cluster); unset: in this process. The update is the same either way
    rollout_actors: int = 2  # Ray actors (one CPU each) an update's scenarios are split over (with --ray)
    resume: bool = False  # continue from OUT/ckpt.pt

    def __post_init__(self):
        check(self)
        if self.group < 2:
            raise ValueError(f"group {self.group}: GRPO needs at least 2 actions per scenario")
        if self.adv_std_floor <= 0:
            raise ValueError(f"adv_std_floor {self.adv_std_floor}: the least std advantages are divided by, > 0")
        if self.speed_lookahead is not None and self.speed_lookahead < 0:
            raise ValueError(f"speed_lookahead {self.speed_lookahead}: seconds ahead on the speed profile, >= 0")

    def settings(self):
        from .dream_rollout import DreamSettings

        return DreamSettings(horizon=self.horizon, gamma=self.gamma, collision_vehicle=self.collision,
                             collision_pedestrian=1.5 * self.collision, collision_static=0.5 * self.collision,
                             time_shift=self.time_shift, position=self.position, speed_scale=self.speed_scale,
                             ttc=self.ttc, ttc_horizon=self.ttc_horizon)


def load_scenarios(cfg: DreamConfig, fcfg, times: np.ndarray, log=print) -> dict[str, np.ndarray]:
    """The scenario rows of every takeover collection (takeover starts and their pre-windows), with their
    commentary tokens (the precaution on pre-window rows), prompts and the expert's speed points at `times`."""
    from ..dataset.collect import load_index
    from ..vla.language import commentary, encode, precaution, prompts
    from .data import DataConfig, build_samples, concat_samples
    from .dream_rollout import SCENARIO_KEYS
    from .vla import speed_profile, takeover_rows

    parts = []
    for root in [r for r in cfg.takeover_data.split(",") if r]:
        d = build_samples(DataConfig(root, cfg.maps_dir, cfg.workers), fcfg, log)
        rows, causes = takeover_rows(d, load_index(Path(root)), "pre", cfg.pre_takeover)
        ctl = d["controller"].astype(int)
        ep = d["episode"]
        first = np.r_[True, (ctl[:-1] == 0) | (ep[1:] != ep[:-1])] & (ctl != 0)  # a takeover's first frame
        rows = np.array([r for r in rows if r in causes or first[r]], np.int64)
        d["speed_points"] = speed_profile(d, times)
        sub = {k: d[k][rows] for k in (*SCENARIO_KEYS, "episode", "ego_future", "ego_future_mask", "agents_future",
                                        "agents_future_mask")}
        text = commentary(sub)
        for i, r in enumerate(rows):
            if int(r) in causes:
                text[i] = precaution(causes[int(r)], sub, i) + " " + text[i]
        sub["text"] = np.stack([encode(t) for t in text])
        if parts:
            sub["episode"] = sub["episode"] + max(int(p["episode"].max()) for p in parts) + 1
        parts.append(sub)
    if not parts:
        raise ValueError("no --takeover-data: Scenario Dreaming rebuilds takeover scenarios from shadow-mode "
                         "collections (collect --takeover, train takead rounds, takeover ingest)")
    sc = concat_samples(parts) if len(parts) > 1 else parts[0]
    sc["prompt"] = prompts(sc["ego"]).astype(np.float32)
    return sc


def _actor_rollout(s):
    """On a Ray actor: the scenarios' rollout function (learn/dream_rollout.rollout) with the run's settings."""
    from functools import partial

    from .dream_rollout import rollout

    return partial(rollout, s=s)


class Dreaming:
    def __init__(self, cfg: DreamConfig, log=print):
        from ..models.features import FeatureConfig
        from ..vla.net import TakeVLA, VLANetConfig
        from .train import split

        self.cfg, self.log = cfg, log
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        torch.set_num_threads(cfg.threads)
        ck = torch.load(cfg.init, weights_only=False, map_location="cpu")
        self.init_ck = ck
        self.fcfg = FeatureConfig(**ck["features"])
        self.ncfg = VLANetConfig(**ck["net"])
        anchors = ck["model"]["anchors"].numpy()
        self.model, self.ref = TakeVLA(self.ncfg, anchors), TakeVLA(self.ncfg, anchors)
        self.model.load_state_dict(ck["model"])
        self.ref.load_state_dict(ck["model"])
        self.ref.eval()
        for p in self.ref.parameters():
            p.requires_grad_(False)
        self.speeds = torch.as_tensor(self.ncfg.speeds(), dtype=torch.float32)
        from dataclasses import replace

        self.s = replace(cfg.settings(), speed_times=tuple(self.ncfg.speed_times().tolist()),
                         speed_lookahead=float(cfg.speed_lookahead if cfg.speed_lookahead is not None
                                               else (ck.get("config") or {}).get("speed_lookahead", 0.0)))
        from .dream_rollout import read_speed_points

        self.read = torch.as_tensor(read_speed_points(self.s))  # the speed points a rollout's controller reads
        self.sc = load_scenarios(cfg, self.fcfg, self.ncfg.speed_times(), log)
        self.tr, self.va = split(self.sc, cfg.val_fraction, cfg.seed)
        if cfg.w_text == 0:  # the language decoder keeps what supervised training taught it
            for name, p in self.model.named_parameters():
                if name.startswith(("dec.", "dec_norm.", "lm_head.", "text_pos")):
                    p.requires_grad_(False)
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=cfg.lr)
        self.update, self.history = 0, []
        self.chunks = None  # Ray actors for the rollouts (cfg.ray), else this process
        if cfg.ray:
            from ..evaluation.dispatch import RayChunks

            self.chunks = RayChunks(_actor_rollout, (self.s,), cfg.ray, cfg.rollout_actors, log, "dreaming rollouts")
        rng = np.random.default_rng(cfg.seed + 99)  # the fixed held-out scenarios: half as recorded, half perturbed
        va = self.va[:256] if len(self.va) else self.tr[:64]
        self.heldout = self._perturbed(va, rng, np.arange(len(va)) % 2 == 0)
        if cfg.resume and (self.out / "ckpt.pt").exists():
            ck = torch.load(self.out / "ckpt.pt", weights_only=False)
            self.model.load_state_dict(ck["model"])
            self.opt.load_state_dict(ck["opt"])
            self.update, self.history = ck["update"], ck["history"]
            log(f"resumed from {self.out / 'ckpt.pt'} at update {self.update}")

    def _perturbed(self, idx: np.ndarray, rng: np.random.Generator, identity: np.ndarray) -> dict:
        from .dream_rollout import perturb

        sc = {k: v[idx] for k, v in self.sc.items()}
        return perturb(sc, rng, self.s, self.fcfg.history, identity)

    def _rollout(self, sc: dict, paths: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
        """learn/dream_rollout.rollout here or, chunked by scenario, on the Ray actors (the same numbers)."""
        from .dream_rollout import rollout

        if self.chunks is None:
            return rollout(sc, paths, target, self.s)
        G = len(paths) // len(sc["speed"])
        return self.chunks.map(len(sc["speed"]), lambda i, j: ({k: v[i:j] for k, v in sc.items()},
                                                               paths[i * G:j * G], target[i * G:j * G]))

    def _inputs(self, sc: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from ..vla.raster import raster

        img = raster({k: sc[k] for k in ("route", "route_mask", "agents", "agents_mask", "lanes", "lanes_mask")},
                     self.fcfg.history)
        return (torch.from_numpy(img), torch.as_tensor(sc["ego"], dtype=torch.float32),
                torch.as_tensor(sc["prompt"], dtype=torch.float32))

    def _heads(self, model, x) -> dict[str, torch.Tensor]:
        h = model.heads(*x)
        h["logp_speed"] = F.log_softmax(h["speed_logits"] / self.cfg.temperature, -1)  # (B, K, S)
        h["logp_anchor"] = F.log_softmax(h["anchor_logits"] / self.cfg.temperature, -1)
        return h

    def _sample(self, h: dict[str, torch.Tensor], G: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """G actions per row of `h` (rows repeated G times in a row): anchors, speed bins (the unread points: their
        most likely bin) and paths. Draws from torch's global generator."""
        rep = lambda t: t.repeat_interleave(G, 0)  # noqa: E731
        S = h["logp_speed"].shape[2]
        anchor = torch.multinomial(rep(h["logp_anchor"].exp()), 1)[:, 0]
        bins = torch.multinomial(rep(h["logp_speed"].exp()).reshape(-1, S), 1).view(len(anchor), -1)
        bins = torch.where(self.read, bins, rep(h["logp_speed"]).argmax(-1))
        mu = rep(h["paths"])[torch.arange(len(anchor)), anchor]
        return anchor, bins, mu + torch.randn_like(mu) * self.cfg.sigma

    def evaluate(self) -> dict[str, float]:
        """The greedy action on the held-out scenarios, and the sampled policy's mean reward there (fixed draws)."""
        self.model.eval()
        with torch.no_grad():
            h = self._heads(self.model, self._inputs(self.heldout))
            state = torch.get_rng_state()
            torch.manual_seed(self.cfg.seed + 7)
            _, bins, paths = self._sample(h, self.cfg.group)
            torch.set_rng_state(state)  # the training draws do not depend on when the evaluations came
        self.model.train()
        r = self._rollout(self.heldout, h["path"].numpy(), self.speeds[h["logp_speed"].argmax(-1)].numpy())
        rs = self._rollout(self.heldout, paths.numpy(), self.speeds[bins].numpy())
        return {"reward": float(r["total"].mean()), "l2_m": float(r["l2"].mean()),
                "collision_rate": float(r["collided"].mean()), "ttc_rate": float((r["ttc"] != 0).mean()),
                "reward_sampled": float(rs["total"].mean()), "collision_rate_sampled": float(rs["collided"].mean())}

    def step(self, rng: np.random.Generator) -> dict[str, float]:
        from ..vla.language import PAD

        c, G = self.cfg, self.cfg.group
        idx = rng.choice(self.tr, size=min(c.states, len(self.tr)), replace=False)
        sc = self._perturbed(idx, rng, rng.random(len(idx)) >= c.perturbed)
        x = self._inputs(sc)
        h = self._heads(self.model, x)
        rep = lambda t: t.repeat_interleave(G, 0)  # noqa: E731
        with torch.no_grad():  # the group's actions: an anchor, its path with Gaussian noise, a speed bin per point
            anchor, bins, a_path = self._sample(h, G)
            ref = self._heads(self.ref, x)
        ar = torch.arange(len(anchor))
        r = self._rollout(sc, a_path.numpy(), self.speeds[bins].numpy())
        R = torch.as_tensor(r["total"], dtype=torch.float32).view(-1, G)
        std = R.std(1, keepdim=True)
        adv = ((R - R.mean(1, keepdim=True)) / std.clamp(min=c.adv_std_floor)).view(-1)
        # log pi(a | s) = log p(anchor) + sum_{k read} log p_k(speed bin_k) - ||path - mu_anchor||^2 / (2 sigma^2)
        lp = (rep(h["logp_anchor"]).gather(1, anchor[:, None])[:, 0]
              + (rep(h["logp_speed"]).gather(2, bins[..., None])[..., 0] * self.read).sum(1)
              - ((a_path - rep(h["paths"])[ar, anchor]) ** 2).sum((1, 2)) / (2 * c.sigma ** 2))
        pg = -(adv * lp).mean()
        kl_speed = (h["logp_speed"].exp() * (h["logp_speed"] - ref["logp_speed"])).sum((1, 2)).mean()
        kl_anchor = (h["logp_anchor"].exp() * (h["logp_anchor"] - ref["logp_anchor"])).sum(-1).mean()
        # the path: the Gaussians' KL for each anchor, weighted by the anchor's probability
        kl_path = (h["logp_anchor"].exp().detach() * ((h["paths"] - ref["paths"]) ** 2).sum((2, 3))).sum(-1).mean() / (
            2 * c.sigma ** 2)
        mem, mask = h["memory"], h["memory_mask"]
        if c.w_text > 0:
            tokens = torch.as_tensor(sc["text"])
            logits = self.model.text_logits(mem, mask, tokens[:, :-1])
            keep = tokens[:, 1:] != PAD
            l_text = F.cross_entropy(logits[keep], tokens[:, 1:][keep])
        else:
            l_text = torch.zeros(())
        loss = pg + c.kl * (kl_speed + kl_anchor + kl_path) + c.w_text * l_text
        self.opt.zero_grad()
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        ent = -(h["logp_speed"].exp() * h["logp_speed"]).sum(-1).mean()
        hits = torch.as_tensor(r["collided"]).view(-1, G).sum(1)  # per group: how many of its actions collided
        val = lambda x: float(x.detach())  # noqa: E731
        return {"loss": val(loss), "reward": float(R.mean()), "l2_m": float(r["l2"].mean()),
                "collision_rate": float(r["collided"].mean()), "ttc_rate": float((r["ttc"] != 0).mean()),
                "kl_speed": val(kl_speed), "kl_anchor": val(kl_anchor),
                "kl_path": val(kl_path),
                "text": val(l_text), "entropy": val(ent), "grad_norm": float(gn),
                "group_std_median": float(std.median()),
                "mixed_collision_groups": float(((hits > 0) & (hits < G)).float().mean())}

    def save(self) -> None:
        tmp = self.out / "ckpt.tmp.pt"
        torch.save({**{k: v for k, v in self.init_ck.items() if k not in ("model", "opt", "sched")},
                    "model": self.model.state_dict(), "opt": self.opt.state_dict(), "update": self.update,
                    "history": self.history, "dream_config": asdict(self.cfg), "stage": "dreaming"}, tmp)
        tmp.replace(self.out / "ckpt.pt")

    def run(self) -> dict:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        c = self.cfg
        (self.out / "config.json").write_text(json.dumps(asdict(c), indent=2))
        tb = SummaryWriter(str(self.out / "tb"))
        self.log(f"dreaming: {len(self.tr)} scenarios ({len(self.va)} held out), {c.states} x {c.group} rollouts "
                 f"per update, from {c.init}")
        if self.update == 0:
            h = self.evaluate()
            self.history.append({"update": 0, "heldout": h})
            for k, v in h.items():
                tb.add_scalar(f"heldout/{k}", v, 0)
        bar = tqdm(range(self.update, c.updates), desc="dreaming", mininterval=1.0, initial=self.update, total=c.updates)
        t0 = time.perf_counter()
        for u in bar:
            rng = np.random.default_rng(c.seed * 100003 + u)  # the same draws on resume
            m = self.step(rng)
            self.update = u + 1
            for k, v in m.items():
                tb.add_scalar(f"train/{k}", v, self.update)
            bar.set_postfix(reward=f"{m['reward']:.2f}", coll=f"{m['collision_rate']:.2f}")
            row = {"update": self.update, "train": m}
            if (c.eval_every and self.update % c.eval_every == 0) or self.update == c.updates:
                row["heldout"] = self.evaluate()
                for k, v in row["heldout"].items():
                    tb.add_scalar(f"heldout/{k}", v, self.update)
                self.log(f"update {self.update}: held-out reward {row['heldout']['reward']:.3f}, L2 "
                         f"{row['heldout']['l2_m']:.2f} m, collisions {row['heldout']['collision_rate']:.3f}")
                self.save()
            self.history.append(row)
        tb.close()
        self.save()
        if self.chunks is not None:
            self.chunks.close()  # the actors (and a Ray this run started) go with the run
        return {"history": self.history, "wall_s": round(time.perf_counter() - t0, 1)}


def dreaming_curves(history: list[dict], png: str | Path) -> Path:
    """OUT/curves.png: the training reward, collision rate and KL (raw faint, moving average), and the held-out
    reward, L2 and collision rate of the greedy action."""
    from .pipeline import plot_curves

    tr = [h for h in history if "train" in h]
    ho = [h for h in history if "heldout" in h]
    series = {f"train {k}": ([h["update"] for h in tr], [h["train"][k] for h in tr])
              for k in ("reward", "collision_rate", "kl_speed")}
    series.update({f"held-out {k}": ([h["update"] for h in ho], [h["heldout"][k] for h in ho])
                   for k in ("reward", "reward_sampled", "l2_m", "collision_rate") if k in ho[0]["heldout"]})
    return plot_curves(series, png, "Scenario Dreaming (GRPO)")


def run_dreaming(cfg: DreamConfig, log=print) -> dict:
    from .vla import evaluate_vla, export_vla

    d = Dreaming(cfg, log)
    res = d.run()
    out = Path(cfg.out)
    dreaming_curves(res["history"], out / "curves.png")
    man = export_vla(out / "ckpt.pt", out / "model", speed_lookahead=d.s.speed_lookahead)
    log(f"exported {out / 'model' / 'vla.onnx'} (sha256 {man['sha256'][:16]})")
    rep = {"config": asdict(cfg), "history": res["history"], "model": str(out / "model" / "vla.onnx"),
           "first_heldout": res["history"][0].get("heldout"), "last_heldout": res["history"][-1].get("heldout")}
    if cfg.eval_routes:
        rep["eval"] = evaluate_vla(out, cfg, "dreaming", log)
    (out / "dreaming.json").write_text(json.dumps(rep, indent=2, default=str))
    return rep
