"""TakeAD: post-training a planner on the takeovers of a privileged expert in shadow mode (`drive-stack train takead`).

Each round r = 1..R:
1. the current planner (exported to ONNX) drives the training suites in the pseudo-simulator while the expert
   watches through the takeover gate (`collect --takeover`: predicted collision, low TTC, steering more than
   `takeover_steer` away from the expert's, and with `takeover_stall` the ego standing that long where the
   expert drives; the expert drives for `takeover_duration`); every frame is labelled with the expert's plan,
   and says who drove;
2. DAgger: `dagger_epochs` of imitation on the data so far (the base dataset and every round's disengagement
   states: the frames the expert drove and the `pre_takeover` seconds before each takeover);
3. DPO: `dpo_epochs` of direct preference optimisation on the disengagement states, the expert's action preferred
   over the policy's own top-1 (`dpo_loss`), against the round's frozen starting policy as the reference;
4. export to ONNX; the round's takeovers per km (from step 1) and, with `eval_routes`, its closed-loop Driving
   Score, go into `<out>/takead.json`.
`ablation` runs DAgger only or DPO only; `dpo_rounds` N makes DPO only in rounds 1..N. Rounds resume
(`--resume`) from the last finished one.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..typed import check

EXPERT = 1  # dataset/collect.CONTROLLER_CODES["expert"]


@dataclass
class TakeADConfig:
    data: str = "results/dataset"  # the base imitation dataset(s), comma-separated (DAgger aggregates with it)
    init: str = "results/train/il/ckpt.pt"  # the planner round 1 starts from: a ckpt.pt, or an exported
    # planner.onnx with its manifest (e.g. models/perlad/planner.onnx; see models/checkpoint.planner_from_onnx)
    routes: str = ""  # training route suites (comma-separated) the planner drives each round; never evaluation routes
    eval_routes: str = ""  # a validation suite evaluated after every round ('' : none)
    eval_seeds: int = 1  # evaluations of it per round (seeds seed, seed+1, ...), their DS averaged: on 44 routes one
    # seed's DS moves 2-6 points between seeds for the same policy (session 25), as much as rounds differ
    out: str = "results/takead"  # run directory: round_<r>/ (data, ckpt, ONNX, eval), takead.json, tb/
    maps_dir: str | None = None  # OpenDRIVE folder of the routes' towns (Proc<seed> towns need none)
    rounds: int = 4  # post-training rounds (the paper saturates after round 4)
    ablation: Literal["both", "dagger", "dpo"] = "both"  # which updates a round makes
    dpo_rounds: int = 0  # with ablation both: DPO in rounds 1..dpo_rounds only, DAgger alone after them (0: DPO
    # every round). From il_bc (README, session 25): DPO lifts round 1; with it in round 1 only, the later rounds
    # fall less below round 1 than with DPO every round
    pre_takeover: float = 3.0  # [s] frames this long before a takeover are disengagement states too
    drop_waiting: bool = False  # leave out disengagement states where the ego stands and the expert keeps it
    # standing (speed and label under 0.5 m/s): why the expert waits (a stop sign's timer, a walker it predicts)
    # is not in the policy's view, so imitating it there teaches the policy to stay stopped
    takeover_steer: float = 0.2  # steering difference that makes the expert take over (TakeAD's 0.2; 0: off)
    takeover_steer_min_speed: float = 0.5  # [m/s] ... while the ego moves this fast (0: at a standstill too, as in
    # the runs before session 27)
    takeover_duration: float = 2.0  # [s] a takeover lasts at least this long
    takeover_stall: float = 0.0  # [s] the expert also takes over where the ego has stood this long and it would
    # drive (STALLED; 0: off): the collision triggers alone hand over only where the policy is about to hit
    # something, so the rounds learn caution only (measured: blocks rise as collisions fall)
    takeover_stall_speed: float = 2.0  # [m/s] STALLED only where the expert's plan reaches this speed (collect
    # --takeover-stall-speed; 0: the expert's command alone, as in the runs before session 27)
    check: float = 0.0  # [s] the planner drives with the candidate check of this horizon (`eval --check`;
    # policies/learned.py CandidateCheck; 0: off) in the shadow rounds and the evaluations: the expert takes over
    # where the checked planner fails, so the rounds teach what the check does not already catch
    unstall: float = 0.0  # [s] with `check`: the check's unstall (`eval --unstall`; 0: off), in the shadow rounds
    # and the evaluations alike
    dagger_epochs: int = 1  # imitation epochs per round over the aggregated data
    train_from: Literal["last", "initial"] = "last"  # the weights round r's updates start from: the policy that
    # drove round r (each round fine-tunes the previous one's), or the starting policy every round (DAgger's
    # textbook form: round r's policy is trained on all the data so far, the earlier rounds' updates not compounded;
    # round 1 is the same either way). The driving policy is always the last round's (or keep_best's choice)
    dagger_scope: Literal["all", "latest"] = "all"  # the disengagement states DAgger and DPO train on: every round's
    # so far (DAgger's aggregation), or only this round's collection (each round corrects the current policy only)
    kl_initial: float = 0.0  # weight of KL(pi || pi_0) to the starting policy beside DAgger's and DPO's losses, on
    # every batch (GRPO's reference-policy anchor): keeps the rounds from drifting away from what the start does well
    aggregate_base: bool = True  # DAgger over the base data and the disengagement states (false: the latter only;
    # a planner whose own training data is not at hand, e.g. a committed perlad, is pulled toward the base data's)
    dpo_epochs: int = 2  # DPO epochs per round over the disengagement states (the paper's 10 took the Proc3
    # validation DS from 42.9 to 13.9 without the NLL term and to 32.5 with it; 2 after DAgger: 49.4, DAgger alone 49.7)
    beta: float = 0.1  # DPO temperature
    w_reg: float = 0.1  # weight of the chosen action's path-offset loss beside DPO (keeps the chosen path's offsets)
    w_nll: float = 1.0  # weight of the chosen action's negative log-likelihood beside DPO (keeps its probability up)
    lr: float = 1e-4  # AdamW learning rate of the DAgger update
    dpo_lr: float | None = None  # AdamW learning rate of the DPO update (None: lr)
    batch_size: int = 256  # samples per gradient step
    workers: int = 2  # collection, feature-building and evaluation processes
    threads: int = 2  # torch CPU threads
    seed: int = 0  # collection, sampling and torch seed
    resume: bool = False  # continue after the last finished round in `out`
    measure_final: bool = True  # after the last round, the final policy drives the training suites in shadow
    # mode once more: its own takeovers per km (each round's figure is that of the policy the round starts from)
    keep_best: bool = False  # each round starts from the policy with the best validation DS so far (round 0
    # included; needs --eval-routes), not from the last round's: a round that lowers it is kept on disk and in the
    # report but not built on (its collection still joins the aggregated data), and the run's final policy is the
    # best one (`best_round` in takead.json). Selection on the validation suite, never on a reported set

    def __post_init__(self):
        check(self)
        if self.keep_best and not self.eval_routes:
            raise ValueError("train takead --keep-best chooses each round's start by its validation DS: give "
                             "--eval-routes (a validation suite of your own, never a reported set)")
        if self.eval_seeds < 1:
            raise ValueError(f"train takead --eval-seeds {self.eval_seeds}: at least 1")
        if self.dpo_rounds < 0 or (self.dpo_rounds and self.ablation != "both"):
            raise ValueError(f"train takead --dpo-rounds {self.dpo_rounds}: a count of rounds >= 0, with --ablation "
                             "both (DAgger every round, DPO in the first N)")
        if self.unstall > 0 and self.check <= 0:
            raise ValueError(f"train takead --unstall {self.unstall}: unstalling drives only what the candidate check "
                             "clears; give --check too (e.g. --check 3.0 --unstall 5.0)")


def action_logp(logits: torch.Tensor, speed_logits: torch.Tensor, anchor: torch.Tensor,
                speed: torch.Tensor) -> torch.Tensor:
    """log pi(a | s) of actions a = (path anchor k, target-speed bin v): the planner's two heads factorise it,
    log pi(a | s) = log p(k | s) + log p(v | s, k). logits (B, A), speed_logits (B, A, S), anchor, speed (B,)."""
    ar = torch.arange(len(anchor))
    return F.log_softmax(logits, -1)[ar, anchor] + F.log_softmax(speed_logits[ar, anchor], -1)[ar, speed]


def dpo_loss(model, ref, b: dict, beta: float = 0.1, w_reg: float = 0.0, w_nll: float = 0.0) -> dict[str, torch.Tensor]:
    """Direct preference optimisation over the planner's heads, the expert's action a_c preferred over the
    policy's own top-1 a_r (the reference policy's argmax anchor and its argmax speed bin):

        L = -E_s[ log sigma( beta * ( [log pi(a_c|s) - log pi_ref(a_c|s)] - [log pi(a_r|s) - log pi_ref(a_r|s)] ) ) ]
            + w_reg * L1(offsets of a_c's path, the expert's path) - w_nll * E_s[ log pi(a_c|s) ]

    with log pi(a|s) = log p(anchor|s) + log p(speed bin|s, anchor) (`action_logp`). States where the policy's
    top-1 already is the expert's action carry no preference and are left out. Logged: the DPO reward margin
    beta * (delta_c - delta_r), the chosen and rejected log-probabilities, and the preference accuracy (the
    fraction of pairs the policy ranks right, delta_c > delta_r). The NLL term on the chosen action keeps its
    probability up: DPO alone raises the margin by pushing both log-probabilities down (measured: 10 epochs at
    lr 1e-4 took the chosen action's log-probability to -12.8 and the closed-loop DS from 42.9 to 13.9)."""
    from ..models.nets import INPUT_NAMES
    from .train import speed_bin, target_anchor

    x = [b[k] for k in INPUT_NAMES]
    with torch.no_grad():
        rl, rpaths, rs = ref(*x)
        chosen_k = target_anchor(b["path"], ref.anchors)
        chosen_v = speed_bin(b["speed"], ref.ncfg)
        rej_k = rl.argmax(1)
        rej_v = rs[torch.arange(len(rej_k)), rej_k].argmax(-1)
        pair = (chosen_k != rej_k) | (chosen_v != rej_v)
    logits, paths, speed_logits = model(*x)
    # batch is [chosen, rejected]: both actions of every state, scored by the policy and by the reference
    k = torch.cat([chosen_k, rej_k])
    v = torch.cat([chosen_v, rej_v])
    lp = action_logp(torch.cat([logits, logits]), torch.cat([speed_logits, speed_logits]), k, v)
    with torch.no_grad():
        lp_ref = action_logp(torch.cat([rl, rl]), torch.cat([rs, rs]), k, v)
    n = len(chosen_k)
    delta_c, delta_r = lp[:n] - lp_ref[:n], lp[n:] - lp_ref[n:]
    margin = beta * (delta_c - delta_r)
    w = pair.float()
    npair = w.sum().clamp(min=1.0)
    l_dpo = -(F.logsigmoid(margin) * w).sum() / npair
    ar = torch.arange(n)
    l_reg = F.smooth_l1_loss(paths[ar, chosen_k], b["path"])
    l_nll = -lp[:n].mean()
    return {"loss": l_dpo + w_reg * l_reg + w_nll * l_nll, "dpo": l_dpo, "reg_l1": l_reg, "nll_chosen": l_nll.detach(),
            "reward_margin": (margin.detach() * w).sum() / npair,
            "chosen_logp": (lp[:n].detach() * w).sum() / npair, "rejected_logp": (lp[n:].detach() * w).sum() / npair,
            "preference_acc": ((delta_c > delta_r).float().detach() * w).sum() / npair, "pairs": w.sum()}


def policy_kl(logits: torch.Tensor, speed_logits: torch.Tensor, ref_logits: torch.Tensor,
              ref_speed_logits: torch.Tensor) -> torch.Tensor:
    """Mean KL(pi || pi_ref) of the planner's joint action distribution over (path anchor k, speed bin v), exactly
    from its factorisation: KL(p_k || q_k) + sum_k p_k KL(p_v|k || q_v|k). logits (B, A), speed logits (B, A, S)."""
    lp, lq = F.log_softmax(logits, -1), F.log_softmax(ref_logits, -1)
    p = lp.exp()
    kl_k = (p * (lp - lq)).sum(-1)
    lpv, lqv = F.log_softmax(speed_logits, -1), F.log_softmax(ref_speed_logits, -1)
    kl_v = (lpv.exp() * (lpv - lqv)).sum(-1)  # (B, A)
    return (kl_k + (p * kl_v).sum(-1)).mean()


def with_anchor(loss_fn, model, initial, weight: float):
    """loss_fn's losses with `weight` x KL(pi || pi_initial) added (logged as kl_initial); loss_fn itself when
    weight is 0."""
    if weight <= 0:
        return loss_fn
    from ..models.nets import INPUT_NAMES

    def fn(b):
        out = loss_fn(b)
        x = [b[k] for k in INPUT_NAMES]
        logits, _, speed_logits = model(*x)
        with torch.no_grad():
            rl, _, rs = initial(*x)
        kl = policy_kl(logits, speed_logits, rl, rs)
        out["loss"] = out["loss"] + weight * kl
        out["kl_initial"] = kl.detach()
        return out

    return fn


def best_round(rows: list[dict]) -> int:
    """`keep_best`: the round with the highest validation DS among the evaluated rows (ties: the later round, which
    has seen more takeovers); the next round starts from its policy."""
    scored = [(r["eval"]["driving_score"], r["round"]) for r in rows if "eval" in r]
    if not scored:
        raise ValueError("keep_best: no round has a validation DS (give --eval-routes)")
    return max(scored)[1]


def round_updates(cfg: TakeADConfig, r: int) -> tuple[str, ...]:
    """The updates round r (1-based) makes: "dagger" and/or "dpo", from `ablation` and `dpo_rounds`."""
    dpo = cfg.ablation in ("both", "dpo") and not 0 < cfg.dpo_rounds < r
    return (*(("dagger",) if cfg.ablation in ("both", "dagger") else ()), *(("dpo",) if dpo else ()))


def train_start(cfg: TakeADConfig, driver: Path | str) -> Path:
    """The checkpoint a round's DAgger/DPO updates start from: `driver` (the policy that drove the round) with
    train_from "last", the run's starting policy (`cfg.init`) with "initial"."""
    return Path(cfg.init) if cfg.train_from == "initial" else Path(driver)


def disengagement_mask(controller: np.ndarray, episode: np.ndarray, frame_dt: float, pre: float) -> np.ndarray:
    """(S,) the samples the expert drove and those within `pre` seconds before a takeover began (in the same
    episode; samples are in frame order within an episode)."""
    expert = controller == EXPERT
    out = expert.copy()
    k = int(round(pre / frame_dt))
    start = expert & ~np.concatenate([[False], expert[:-1]]) | expert & np.concatenate(
        [[True], episode[1:] != episode[:-1]])
    for i in np.flatnonzero(start):
        lo = i
        while lo > 0 and i - lo < k and episode[lo - 1] == episode[i]:
            lo -= 1
        out[lo:i] = True
    return out


WAITING_SPEED = 0.5  # [m/s]


def waiting_mask(data: dict) -> np.ndarray:
    """(S,) samples where the ego stands (its speed feature) and the expert's speed label keeps it standing."""
    from ..models.features import SPEED_SCALE

    return (data["ego"][:, 0] * SPEED_SCALE < WAITING_SPEED) & (data["speed"] < WAITING_SPEED)


def _save(model, path: Path, cfg: TakeADConfig, extra: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "features": asdict(model.fcfg), "net": asdict(model.ncfg),
                "stage": "takead", "config": asdict(cfg), **extra}, tmp)
    tmp.replace(path)


def _epochs(model, opt, rows: np.ndarray, data: dict, keys, loss_fn, epochs: int, batch_size: int, rng, tb, tag: str,
            step: int) -> tuple[dict, int]:
    from .train import batch

    sums, nb = {}, 0
    for _ in range(epochs):
        rows = rng.permutation(rows)
        for i in range(0, len(rows), batch_size):
            out = loss_fn(batch(data, rows[i:i + batch_size], keys))
            opt.zero_grad()
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
            for k, val in out.items():
                sums[k] = sums.get(k, 0.0) + float(val.detach())
                tb.add_scalar(f"{tag}/{k}", float(val.detach()), step)
            nb += 1
    return {k: v / max(nb, 1) for k, v in sums.items()}, step


def report_curves(report: dict) -> dict[str, tuple[list[float], list[float]]]:
    """Per-round series of a takead.json report (x = round): the validation DS (round 0 = the starting policy),
    takeovers per km of each round's collection (made by the policy the round starts from; the final policy's
    own after the last round), the DPO reward margin, preference accuracy and log-probabilities."""
    rows = sorted(report["rounds"], key=lambda r: r["round"])
    out: dict[str, tuple[list[float], list[float]]] = {}
    ev = [(r["round"], r["eval"]["driving_score"]) for r in rows if "eval" in r]
    if ev:
        out["validation DS"] = ([float(x) for x, _ in ev], [float(y) for _, y in ev])
    tk = [(r["round"] - 1, r["takeovers_per_km"]) for r in rows if r.get("takeovers_per_km") is not None]
    if report.get("final", {}).get("takeovers_per_km") is not None:
        tk.append((report["final"]["round"], report["final"]["takeovers_per_km"]))
    if tk:
        out["takeovers per km (policy of round x)"] = ([float(x) for x, _ in tk], [float(y) for _, y in tk])
    for k in ("reward_margin", "preference_acc", "chosen_logp", "rejected_logp"):
        pts = [(r["round"], r["dpo"][k]) for r in rows if k in r.get("dpo", {})]
        if pts:
            out[f"DPO {k}"] = ([float(x) for x, _ in pts], [float(y) for _, y in pts])
    return out


# TakeADConfig fields added after runs were made, with the value those runs had: a config.json without one was
# made with it (`saved_config`; continue_run.py and keep_best.sh rebuild old runs' configs through it)
LEGACY_VALUES = {"takeover_stall_speed": 0.0, "takeover_steer_min_speed": 0.0}


def saved_config(path: str | Path) -> dict:
    """A run's config.json as TakeADConfig fields, the fields it predates filled with the values it ran with."""
    saved = json.loads(Path(path).read_text())
    names = {f.name for f in fields(TakeADConfig)}
    return {k: v for k, v in {**LEGACY_VALUES, **saved}.items() if k in names}


def check_resume(saved: dict, cfg: TakeADConfig, out: Path) -> None:
    """`--resume` continues a run as it was made: the settings that decide what its rounds collect (the training
    suites, the seed, every takeover trigger) must be the saved ones; the others (e.g. --rounds, --train-from,
    --dpo-rounds: continue_run.py's ablations) may change."""
    keep = [f.name for f in fields(TakeADConfig) if f.name.startswith("takeover_") or f.name in ("routes", "seed")]
    diff = [k for k in keep if k in saved and saved[k] != getattr(cfg, k)]
    if diff:
        raise ValueError(f"{out}: --resume of a run made with " + ", ".join(f"{k}={saved[k]!r}" for k in diff)
                         + "; now " + ", ".join(f"{k}={getattr(cfg, k)!r}" for k in diff) + ". Pass the run's own "
                         + " ".join(f"--{k.replace('_', '-')} {saved[k]}" for k in diff) + " to continue it, or a "
                         "new --out for a run with the new settings")


def shadow_figures(episodes: list[dict]) -> dict:
    """The takeover figures of shadow-mode collections (their index.json episodes): takeovers, km driven, takeovers
    per km, takeovers by cause and the collections' mean Driving Score."""
    takeovers = sum(e["takeovers"]["count"] for e in episodes)
    km = sum(sum(e["takeovers"]["metres"].values()) for e in episodes) / 1000.0
    causes: dict[str, int] = {}
    for e in episodes:
        for c, n in e["takeovers"]["causes"].items():
            causes[c] = causes.get(c, 0) + n
    return {"episodes": len(episodes), "takeovers": takeovers, "km": round(km, 3),
            "takeovers_per_km": round(takeovers / km, 3) if km > 0 else None, "causes": causes,
            "driving_score_collect": round(float(np.mean([e["driving_score"] for e in episodes])), 2)
            if episodes else None}


def run_takead(cfg: TakeADConfig, log=print) -> dict:
    """The rounds (see the module docstring). Returns the report written to <out>/takead.json."""
    from torch.utils.tensorboard import SummaryWriter

    from ..dataset import CollectConfig, collect
    from ..evaluation.evaluate import EvalConfig, evaluate
    from ..models.checkpoint import load_model
    from ..models.export import export_checkpoint
    from ..models.nets import INPUT_NAMES, Planner
    from .data import DataConfig, build_samples
    from .pipeline import plot_curves
    from .train import planner_losses

    if not cfg.routes:
        raise ValueError("train takead needs --routes: the training suites the planner drives (never evaluation routes)")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.resume and (out / "config.json").exists():
        check_resume(saved_config(out / "config.json"), cfg, out)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    tb = SummaryWriter(str(out / "tb"))
    report_path = out / "takead.json"
    report = json.loads(report_path.read_text()) if cfg.resume and report_path.exists() else {"rounds": []}
    model, _ = load_model(cfg.init)
    if not isinstance(model, Planner):
        raise ValueError(f"{cfg.init}: not a planner checkpoint (a world model?); pass the il or perlad ckpt.pt")
    initial = copy.deepcopy(model).eval()  # pi_0, the anchor of kl_initial
    for p_ in initial.parameters():
        p_.requires_grad_(False)
    ckpt, datasets, step = Path(cfg.init), [], 0

    def _start(r: int) -> Path:
        """The checkpoint of round r's policy (round 0: the one the run starts from)."""
        return Path(cfg.init) if r == 0 else out / f"round_{r}" / "ckpt.pt"

    keys = (*INPUT_NAMES, "path", "speed")
    suites = [s for s in cfg.routes.split(",") if s]

    def _round_data(rd: Path) -> list[str]:
        """A round's collections: rd/data (one training suite) or rd/data_<i> (suite i of several)."""
        return [str(rd / "data")] if len(suites) == 1 else [str(rd / f"data_{i}") for i in range(len(suites))]

    def _shadow(ckpt: Path, rd: Path, r: int) -> tuple[dict, dict]:
        """The planner of `ckpt` drives the training suites with the expert in shadow mode: the collections
        (`_round_data`) and their takeover figures."""
        driver = export_checkpoint(ckpt, rd / "driver", name="takead_driver")
        onnx = str((rd / "driver" / driver["file"]).resolve())
        idx: dict = {"episodes": []}
        for suite, data_dir in zip(suites, _round_data(rd), strict=True):
            one = collect(CollectConfig(routes=suite, out=data_dir, maps_dir=cfg.maps_dir, workers=cfg.workers,
                                        seed=cfg.seed + 1000 * r, b2d=False, driver="perlad", driver_model=onnx,
                                        driver_check=cfg.check, driver_unstall=cfg.unstall, takeover=True,
                                        takeover_steer=cfg.takeover_steer,
                                        takeover_steer_min_speed=cfg.takeover_steer_min_speed,
                                        takeover_duration=cfg.takeover_duration, takeover_stall=cfg.takeover_stall,
                                        takeover_stall_speed=cfg.takeover_stall_speed, branches=0), log)
            idx = {**one, "episodes": idx["episodes"] + one["episodes"]}
        return idx, shadow_figures(idx["episodes"])

    def _eval(onnx: str, out_dir: Path) -> dict:
        """The validation figures: one evaluation per seed (seed, seed+1, ...; out_dir, out_dir_s<k> after the
        first), the Driving Score, success rate and infraction counts averaged over them."""
        runs = [evaluate(EvalConfig(routes=cfg.eval_routes, out=str(out_dir if k == 0 else f"{out_dir}_s{k}"),
                                    policy="perlad", model=onnx, maps_dir=cfg.maps_dir, workers=cfg.workers,
                                    seed=cfg.seed + k, check=cfg.check, unstall=cfg.unstall), log=lambda *_: None)
                for k in range(cfg.eval_seeds)]
        inf: dict = {}
        for s in runs:
            for k, v in s["infractions"].items():
                inf[k] = inf.get(k, 0) + v
        inf = {k: v / len(runs) if len(runs) > 1 else v for k, v in inf.items()}
        return {"driving_score": float(np.mean([s["driving_score"] for s in runs])),
                "success_rate": float(np.mean([s["success_rate"] for s in runs])), "infractions": inf,
                "driving_scores": [s["driving_score"] for s in runs]}

    # round 0: the policy it starts from, evaluated the same way (the curves start there)
    r0 = out / "round_0"
    if cfg.eval_routes and not (cfg.resume and (r0 / "round.json").exists()):
        r0.mkdir(parents=True, exist_ok=True)
        man = export_checkpoint(ckpt, r0 / "model", name="takead_round0")
        row0 = {"round": 0, "onnx": str(r0 / "model" / man["file"]), "eval": _eval(str(r0 / "model" / man["file"]),
                                                                                    r0 / "eval")}
        tb.add_scalar("round/eval_driving_score", row0["eval"]["driving_score"], 0)
        report["rounds"] = [x for x in report["rounds"] if x["round"] != 0] + [row0]
        report_path.write_text(json.dumps(report, indent=2))
        (r0 / "round.json").write_text(json.dumps(row0, indent=2))
        log(f"round 0 (the starting policy): eval DS {row0['eval']['driving_score']:.2f}")
    for r in range(1, cfg.rounds + 1):
        rd = out / f"round_{r}"
        done = rd / "round.json"
        if cfg.resume and done.exists():
            ckpt = _start(best_round([x for x in report["rounds"] if x["round"] <= r])) if cfg.keep_best \
                else rd / "ckpt.pt"
            datasets.extend(_round_data(rd))
            log(f"round {r}: done already ({done})")
            continue
        t0 = time.perf_counter()
        rd.mkdir(parents=True, exist_ok=True)
        # 1. the current planner drives, the expert watches in shadow mode
        idx, shadow = _shadow(ckpt, rd, r)
        datasets.extend(_round_data(rd))
        # 2.-3. DAgger then DPO on the data so far
        n_base = len(build_samples(DataConfig(cfg.data, cfg.maps_dir, cfg.workers), model.fcfg, log)["speed"])
        data = build_samples(DataConfig(",".join([cfg.data, *datasets]), cfg.maps_dir, cfg.workers), model.fcfg, log)
        dis = disengagement_mask(data["controller"], data["episode"], idx["frame_dt"], cfg.pre_takeover)
        if cfg.drop_waiting:
            dis &= ~waiting_mask(data)
        if cfg.dagger_scope == "latest":  # this round's collection comes last in the concatenation
            n_new = len(build_samples(DataConfig(",".join(_round_data(rd)), cfg.maps_dir, cfg.workers), model.fcfg,
                                      log)["speed"])
            dis &= np.arange(len(dis)) >= len(dis) - n_new
        base = np.arange(len(dis)) < n_base  # the base dataset comes first in the concatenation
        model, _ = load_model(train_start(cfg, ckpt))
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        updates = round_updates(cfg, r)
        row = {"round": r, **shadow, "disengagement_states": int(dis.sum()), "updates": list(updates)}
        if "dagger" in updates:
            rows = np.flatnonzero((base & cfg.aggregate_base) | dis)
            row["dagger"], step = _epochs(model, opt, rows, data, keys,
                                          with_anchor(lambda b, m=model: planner_losses(m, b), model, initial,
                                                      cfg.kl_initial),
                                          cfg.dagger_epochs, cfg.batch_size, rng, tb, "dagger", step)
        if "dpo" in updates and dis.any():
            opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr if cfg.dpo_lr is None else cfg.dpo_lr)
            ref = copy.deepcopy(model).eval()
            for p in ref.parameters():
                p.requires_grad_(False)
            rows = np.flatnonzero(dis)
            row["dpo"], step = _epochs(model, opt, rows, data, keys,
                                       with_anchor(lambda b, m=model, rf=ref: dpo_loss(m, rf, b, cfg.beta, cfg.w_reg,
                                                                                       cfg.w_nll),
                                                   model, initial, cfg.kl_initial),
                                       cfg.dpo_epochs, cfg.batch_size, rng, tb, "dpo", step)
        model.eval()
        ckpt = rd / "ckpt.pt"
        _save(model, ckpt, cfg, {"round": r})
        man = export_checkpoint(ckpt, rd / "model", name="takead")
        row["onnx"] = str(rd / "model" / man["file"])
        if cfg.eval_routes:
            row["eval"] = _eval(row["onnx"], rd / "eval")
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        for k in ("takeovers_per_km", "driving_score_collect"):
            if row[k] is not None:
                tb.add_scalar(f"round/{k}", row[k], r)
        if "eval" in row:
            tb.add_scalar("round/eval_driving_score", row["eval"]["driving_score"], r)
        report["rounds"] = [x for x in report["rounds"] if x["round"] != r] + [row]
        if cfg.keep_best:  # the next round (and the final policy) builds on the best validated policy so far
            b = best_round(report["rounds"])
            row["accepted"], report["best_round"], ckpt = b == r, b, _start(b)
        report_path.write_text(json.dumps(report, indent=2))
        done.write_text(json.dumps(row, indent=2))
        plot_curves(report_curves(report), out / "curves.png", title=f"TakeAD {out.name}: per round")
        log(f"round {r}: {row['takeovers']} takeovers over {row['km']:.2f} km ({row['takeovers_per_km']} per km), "
            f"{row['disengagement_states']} disengagement states"
            + (f", eval DS {row['eval']['driving_score']:.2f}" if "eval" in row else "") + f" ({row['wall_s']} s)"
            + (f"; below round {report['best_round']}'s: the next round starts from that one"
               if cfg.keep_best and not row["accepted"] else ""))
    # the final policy's own takeover rate on the training suites (round r's rate is that of round r-1's policy)
    if cfg.measure_final and cfg.rounds > 0:
        fin = out / "final"
        if not (cfg.resume and (fin / "final.json").exists()):
            _, shadow = _shadow(ckpt, fin, cfg.rounds + 1)
            report["final"] = {"round": cfg.rounds, "policy_round": report.get("best_round", cfg.rounds), **shadow}
            report_path.write_text(json.dumps(report, indent=2))
            fin.mkdir(parents=True, exist_ok=True)
            (fin / "final.json").write_text(json.dumps(report["final"], indent=2))
            plot_curves(report_curves(report), out / "curves.png", title=f"TakeAD {out.name}: per round")
            tb.add_scalar("round/takeovers_per_km", shadow["takeovers_per_km"] or 0.0, cfg.rounds + 1)
            log(f"final policy: {shadow['takeovers']} takeovers over {shadow['km']:.2f} km "
                f"({shadow['takeovers_per_km']} per km)")
    tb.close()
    return report


__all__ = ["TakeADConfig", "action_logp", "best_round", "disengagement_mask", "dpo_loss", "policy_kl",
           "report_curves", "round_updates", "run_takead", "train_start",
           "with_anchor"]
