"""The PerlAD pipeline in one command (`drive-stack train pipeline`): the expert's datasets (collect) ->
imitation (il) -> world model (wm) ->
on-policy start states (dagger) -> RL of the longitudinal head with world-model agents (perlad) and, the
ablation, with log-replay agents (perlad_logreplay); every network exported to ONNX under `models_out/<name>/`
(what `--policy il|perlad|perlad_logreplay` load by default), a world-model reactivity report and training
curves (PNG).

The dagger stage lets the imitation planner just trained (behaviour cloning, exported as models/il_bc) drive
`dagger_routes` in the pseudo-simulator while the expert labels every frame (`collect --driver il`). Two uses:
(1) DAgger proper (`dagger_epochs`): imitation fine-tunes the planner on the data aggregated with those labels,
so both heads learn what the expert does in the states the planner drives itself into (its drift toward a parked
car, its late brakings); on the Proc3 validation suite one epoch took the planner from 71.0 to 83.3 DS (README,
PerlAD). That planner is exported as models/il and RL starts from it. (2) RL starts its rollouts from those
on-policy states, with the expert's speed there for the imitation term: from the expert's own states RL left the
held-out Proc0 Driving Score where imitation had it; from these it rose by about a tenth. Without the stage, RL
starts from `rl_data` if given, else from `data`, and from the behaviour-cloning planner.

The collect stage lets the privileged expert drive `collect_routes` (as recorded) and `collect_noisy_routes`
(with recovery noise: the expert's way back from perturbed controls) into `out/collect/data_<i>`; those datasets
are then the `data` of every later stage (with `--data`, if given, after them). Every stage's wall-clock time is
in `pipeline.json` (`stages.<name>.wall_s`, `wall_s` for the run) and printed as a table at the end.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..machine import machine_facts
from ..typed import check
from .configs import ILConfig, RLConfig, WMConfig

STAGES = ("collect", "il", "wm", "dagger", "perlad", "perlad_logreplay")


@dataclass
class PipelineConfig:
    data: str | None = None  # collected datasets, comma-separated (after the collect stage's, if it runs)
    out: str = "results/pipeline"  # stage run directories
    models_out: str = "results/models"  # exported ONNX models, by policy name
    maps_dir: str | None = None  # OpenDRIVE folder of the datasets' towns (Proc<seed> towns need none)
    stages: str = ",".join(STAGES)  # comma-separated, in order: collect, il, wm, dagger, perlad, perlad_logreplay
    collect_routes: str | None = None  # route suites the expert drives as recorded (stage collect), comma-separated
    collect_noisy_routes: str | None = None  # route suites the expert drives with recovery noise (stage collect)
    collect_steer_noise: float = 0.15  # std of the steering offset of a noise event (collect_noisy_routes)
    collect_speed_noise: float = 1.5  # [m/s] std of the speed error of a noise event (collect_noisy_routes)
    collect_branches: int = 3  # counterfactual ego plans per branch point of the collection (the world model's
    # reactive rows; 0: none), in the datasets the world model trains on (all of them without --wm-data)
    wm_data: str | None = None  # datasets of the world model, comma-separated (default: those of the other stages)
    dagger_routes: str | None = None  # route suites (comma-separated) the imitation planner drives (stage dagger)
    dagger_epochs: int = 1  # stage dagger, after the drive: imitation epochs from the il planner on the data and the
    # dagger datasets (the expert's labels at the states the planner drove itself into: both heads learn there);
    # exported as models/il, RL starts from it; the behaviour-cloning planner stays in models/il_bc (0: no fine-tuning)
    dagger_lr: float = 3e-4  # learning rate of that fine-tuning (warm-up and cosine decay over its epochs)
    rl_data: str | None = None  # datasets of RL start states (default: what the dagger stage collected, else data)

    # shared by every stage when set (else each stage's own value, e.g. --il.seed):
    seed: int | None = None  # training seed of every stage
    threads: int | None = None  # torch CPU threads of every stage
    workers: int | None = None  # feature-building processes of every stage (and dagger collection workers)
    d_model: int | None = None  # network width of every stage (the planner and the world model)
    layers: int | None = None  # transformer layers of every stage
    max_episodes: int | None = None  # use at most this many episodes of each dataset
    resume: bool | None = None  # continue each stage from its last checkpoint
    notes: list[str] = field(default_factory=list)

    # each stage's own settings (`--il.epochs 12`, `--rl.kl-ref 0.03`, ...); data, out, init, world_model and
    # agents are set by the pipeline
    il: ILConfig = field(default_factory=lambda: ILConfig(epochs=12))  # the imitation stage
    wm: WMConfig = field(default_factory=lambda: WMConfig(epochs=12))  # the world-model stage
    rl: RLConfig = field(default_factory=lambda: RLConfig(updates=200))  # the RL stages (perlad, perlad_logreplay)

    SHARED = ("seed", "threads", "workers", "d_model", "layers", "max_episodes", "resume")
    SET_BY_PIPELINE = ("data", "out", "init", "world_model", "agents")

    def __post_init__(self):
        check(self)
        for name in ("il", "wm", "rl"):
            stage, default = getattr(self, name), type(getattr(self, name))()
            for f in self.SET_BY_PIPELINE:
                if hasattr(stage, f) and getattr(stage, f) != getattr(default, f):
                    raise ValueError(f"PipelineConfig.{name}.{f}: set by the pipeline (use --data / --out / "
                                     "--stages); leave it unset")

    def collect_jobs(self) -> list[tuple[str, bool]]:
        """(route suite, with recovery noise) of the collect stage, in the order of their datasets."""
        def split(v):
            return [r for r in (v or "").split(",") if r]
        return [(r, False) for r in split(self.collect_routes)] + [(r, True) for r in split(self.collect_noisy_routes)]

    def datasets(self) -> str:
        """The training datasets: the collect stage's (out/collect/data_<i>), then --data."""
        dirs = [str(Path(self.out) / "collect" / f"data_{i}") for i in range(len(self.collect_jobs()))]
        dirs += [d for d in (self.data or "").split(",") if d]
        if not dirs:
            raise ValueError("train pipeline: no training data: give --data (collected datasets) or "
                             "--collect-routes / --collect-noisy-routes (suites for the expert to drive first)")
        return ",".join(dirs)

    def common(self) -> dict:
        """What the pipeline sets in every stage: its data, maps and the shared fields given."""
        return {"data": self.datasets(), "maps_dir": self.maps_dir,
                **{k: getattr(self, k) for k in self.SHARED if getattr(self, k) is not None}}


def reactivity(wm, data: dict, idx: np.ndarray, commit_speed: float = 8.0) -> dict:
    """The same scenes under two ego plans, 'brake' (stand still) and 'commit' (drive straight on at
    commit_speed): how far do the world model's top-1 agents move? Followers (agents behind the ego in its
    lane) should advance less when the ego brakes; agents crossing ahead should advance less when it commits."""
    import torch

    from ..models.features import POS_SCALE, STEP_DIM
    from ..models.nets import INPUT_NAMES

    T = wm.ncfg.wm_steps
    b = {k: torch.as_tensor(np.asarray(data[k][idx], np.float32)) for k in INPUT_NAMES}
    t = (np.arange(1, T + 1) * 0.5).astype(np.float32)
    plans = {"brake": np.zeros((len(idx), T, 3), np.float32),
             "commit": np.stack([commit_speed * t, 0 * t, 0 * t], -1)[None].repeat(len(idx), 0).astype(np.float32)}
    now = (wm.fcfg.history - 1) * STEP_DIM
    pos = data["agents"][idx][..., now:now + 2] * POS_SCALE
    speed = data["agents"][idx][..., now + 4] * 10.0
    present = data["agents_mask"][idx]
    follower = present & (pos[..., 0] < -3) & (pos[..., 0] > -30) & (np.abs(pos[..., 1]) < 1.5) & (speed > 0.5)
    ahead = present & (pos[..., 0] > 3) & (pos[..., 0] < 30) & (speed > 0.5)
    moved = {}
    with torch.no_grad():
        for name, plan in plans.items():
            traj, ml = wm(*(b[k] for k in INPUT_NAMES), torch.as_tensor(plan))
            top = traj[torch.arange(len(idx))[:, None], torch.arange(traj.shape[1])[None], ml.argmax(-1)].numpy()
            moved[name] = np.linalg.norm(top[:, :, -1] - pos, axis=-1)  # (B, N) metres in 3 s
    out = {"scenes": int(len(idx)), "followers": int(follower.sum()), "agents_ahead": int(ahead.sum())}
    if follower.any():
        out["follower_moved_m"] = {k: round(float(v[follower].mean()), 3) for k, v in moved.items()}
        out["follower_less_when_brake"] = round(float((moved["brake"][follower] < moved["commit"][follower]).mean()), 3)
    if ahead.any():
        out["ahead_moved_m"] = {k: round(float(v[ahead].mean()), 3) for k, v in moved.items()}
    out["mean_abs_diff_m"] = round(float(np.abs(moved["brake"] - moved["commit"])[present].mean()), 3) if present.any() else 0.0
    return out


def counterfactual_reactivity(wm, data: dict, idx: np.ndarray) -> dict:
    """Against the simulator: for the counterfactual branches of the frames idx (the stop plan, branch 0, and
    the 12 m/s plan, branch 1, sim/branch.py), how far apart each agent ends up in 3 s under the two plans in
    the simulator, and in the world model's top-1 prediction under the same two plans. Agents whose two
    futures differ by more than 1 m in the simulator are the ones that reacted."""
    import torch

    from ..models.nets import INPUT_NAMES

    if "wmb_row" not in data or not len(data["wmb_row"]):
        return {}
    rows = np.flatnonzero(np.isin(data["wmb_row"], idx))
    K = int(np.bincount(data["wmb_row"][rows]).max()) if len(rows) else 0
    if K < 2:
        return {}
    rows = rows.reshape(-1, K)[:, :2]  # branches of a frame are consecutive rows: stop, 12 m/s, ...
    frames = data["wmb_row"][rows[:, 0]]
    b = {k: torch.as_tensor(np.asarray(data[k][frames], np.float32)) for k in INPUT_NAMES}
    end = []
    with torch.no_grad():
        for j in range(2):
            plan = torch.as_tensor(data["wmb_ego_future"][rows[:, j]])
            traj, ml = wm(*(b[k] for k in INPUT_NAMES), plan)
            end.append(traj[torch.arange(len(frames))[:, None], torch.arange(traj.shape[1])[None], ml.argmax(-1)][:, :, -1].numpy())
    m = data["wmb_agents_future_mask"][rows[:, 0], :, -1] & data["wmb_agents_future_mask"][rows[:, 1], :, -1]
    sim_d = np.linalg.norm(data["wmb_agents_future"][rows[:, 0], :, -1] - data["wmb_agents_future"][rows[:, 1], :, -1], axis=-1)
    wm_d = np.linalg.norm(end[0] - end[1], axis=-1)
    react = m & (sim_d > 1.0)
    out = {"frames": int(len(frames)), "agents": int(m.sum()), "reacting_agents": int(react.sum())}
    if react.any():
        out["reacting_sim_apart_m"] = round(float(sim_d[react].mean()), 3)
        out["reacting_wm_apart_m"] = round(float(wm_d[react].mean()), 3)
    if (m & ~react).any():
        out["others_wm_apart_m"] = round(float(wm_d[m & ~react].mean()), 3)
    return out


def reactivity_report(wm, data: dict, val_idx: np.ndarray, seed: int = 0) -> dict:
    """The world model's reactivity report in its metrics.json (`train wm` and the pipeline's wm stage alike):
    `reactivity` on up to 512 held-out frames drawn with `seed`, and `counterfactual_reactivity` on every
    held-out frame with branches (under "counterfactual"). Without a held-out episode, on every frame."""
    pool = np.asarray(val_idx) if len(val_idx) else np.arange(len(data["speed"]))
    idx = np.random.default_rng(seed).choice(pool, size=min(512, len(pool)), replace=False)
    rep = reactivity(wm, data, idx)
    if not len(val_idx):
        rep["frames"] = "all (no held-out episode)"
    cf = counterfactual_reactivity(wm, data, pool)
    if cf:
        rep["counterfactual"] = cf
    return rep


def smooth(ys: list[float], window: int) -> list[float]:
    """Centred moving average over `window` points (shorter at the ends), NaN-aware."""
    y = np.asarray(ys, np.float64)
    ok = np.isfinite(y)
    k = np.ones(window)
    num = np.convolve(np.where(ok, y, 0.0), k, "same")
    den = np.convolve(ok.astype(float), k, "same")
    return list(np.where(den > 0, num / np.maximum(den, 1), np.nan))


SMOOTH_ABOVE = 30  # series longer than this are drawn raw (faint) with a moving average (1/10 of their length) on top


def plot_curves(series: dict[str, tuple[list[float], list[float]]], out: str | Path, title: str = "") -> Path:
    """A small multi-panel line plot (one panel per series) with PIL; no plotting library needed. A series of
    more than SMOOTH_ABOVE points shows its raw values faint behind their moving average."""
    from PIL import Image, ImageDraw

    n = max(len(series), 1)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    W, H, pad = 360, 220, 40
    img = Image.new("RGB", (cols * W, rows * H + 24), "white")
    d = ImageDraw.Draw(img)
    d.text((8, 4), title, fill="black")
    for i, (name, (xs, ys)) in enumerate(series.items()):
        ox, oy = (i % cols) * W, (i // cols) * H + 24
        d.rectangle([ox + pad, oy + 20, ox + W - 10, oy + H - 25], outline="gray")
        d.text((ox + pad, oy + 4), name, fill="black")
        ys_f = [y for y in ys if np.isfinite(y)]
        if len(xs) < 2 or not ys_f:
            continue
        x0, x1, y0, y1 = min(xs), max(xs), min(ys_f), max(ys_f)
        if y1 - y0 < 1e-9:
            y0, y1 = y0 - 1, y1 + 1
        def to_px(xv, yv, ox=ox, oy=oy, x0=x0, x1=x1, y0=y0, y1=y1):
            return [(ox + pad + (x - x0) / max(x1 - x0, 1e-9) * (W - pad - 10),
                     oy + H - 25 - (y - y0) / (y1 - y0) * (H - 45)) for x, y in zip(xv, yv) if np.isfinite(y)]

        if len(xs) > SMOOTH_ABOVE:
            d.line(to_px(xs, ys), fill=(190, 205, 235), width=1)  # raw, faint
            d.line(to_px(xs, smooth(ys, max(len(xs) // 10, 3))), fill=(30, 90, 200), width=2)
        else:
            d.line(to_px(xs, ys), fill=(30, 90, 200), width=2)
        d.text((ox + 2, oy + 18), f"{y1:.3g}", fill="black")
        d.text((ox + 2, oy + H - 32), f"{y0:.3g}", fill="black")
        d.text((ox + W - 60, oy + H - 22), f"{x1:.0f}", fill="black")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out


def stage_curves(metrics: dict) -> dict[str, tuple[list[float], list[float]]]:
    h = metrics.get("history", [])
    if metrics.get("stage") == "rl":
        x = [r["update"] for r in h]
        keys = ["reward/total", "reward/collided", "reward/progress", "reward/ttc", "entropy", "approx_kl",
                "speed_mean_m_s"]
        out = {k: (x, [r[k] for r in h]) for k in keys if h and k in h[0]}
        start = metrics.get("heldout_start", {})  # update 0: the imitation policy itself
        for k in ("heldout/total", "heldout/collided", "heldout/progress", "heldout/ttc"):  # every eval_every
            pts = [(0, start[k.split("/")[1]])] if k.split("/")[1] in start else []
            pts += [(r["update"], r[k]) for r in h if k in r]
            if pts:
                out[f"{k} (greedy, held-out states)"] = ([p[0] for p in pts], [p[1] for p in pts])
        return out
    x = [r["epoch"] for r in h]
    out = {"train loss": (x, [r["train"]["loss"] for r in h])}
    if h and h[0]["val"]:
        for k in h[0]["val"]:
            out[f"val {k}"] = (x, [r["val"][k] for r in h])
    return out


def _drive(cfg: PipelineConfig, out: Path, driver: Path, name: str, seed_base: int, log) -> tuple[list[str], list]:
    """The exported planner `driver` drives every suite of `dagger_routes` while the expert labels every frame
    (`collect --driver il`) into out/<name>/data_<i> (kept with --resume). Returns the datasets and their report."""
    from ..dataset import CollectConfig, collect

    if not cfg.dagger_routes:
        raise ValueError(f"stage {name} needs --dagger-routes (route suites to drive, comma-separated)")
    if not driver.exists():
        raise FileNotFoundError(f"stage {name} drives the planner {driver}: run the stage that exports it first "
                                "(or point --models-out at a pipeline's models)")
    il = replace(cfg.il, **cfg.common())  # the shared workers and seed, as the stages get them
    dirs, reps = [], []
    for i, routes in enumerate(r for r in cfg.dagger_routes.split(",") if r):
        d = out / name / f"data_{i}"
        if cfg.resume and (d / "index.json").exists():
            log(f"{name}: {d} exists (--resume): kept")
            idx = json.loads((d / "index.json").read_text())
        else:
            idx = collect(CollectConfig(routes=routes, out=str(d), maps_dir=cfg.maps_dir, workers=il.workers,
                                        seed=il.seed + seed_base * (i + 1), b2d=False, driver="il", branches=0,
                                        driver_model=str(driver.resolve())), log)
        eps = idx["episodes"]
        reps.append({"routes": routes, "out": str(d), "episodes": len(eps), "frames": sum(e["frames"] for e in eps),
                     "driver_driving_score": round(float(np.mean([e["driving_score"] for e in eps])), 2)
                     if eps else None})
        log(f"{name}: {routes}: {len(eps)} episodes, {reps[-1]['frames']} frames, {driver} DS "
            f"{reps[-1]['driver_driving_score']}")
        dirs.append(str(d))
    return dirs, reps


def _finetune(cfg: PipelineConfig, out: Path, name: str, data: list[str], init: Path, epochs: int, log) -> dict:
    """Imitation from the planner `init` on `data` (the expert's labels) into out/<name>: DAgger's update."""
    from .train import ILStage

    il = replace(cfg.il, **cfg.common())
    m = ILStage(replace(il, out=str(out / name), data=",".join(data), init=str(init), epochs=epochs,
                        lr=cfg.dagger_lr), log).run()
    log(f"{name}: fine-tuned on {len(data)} datasets ({epochs} epochs): val loss "
        f"{m['final_val'].get('loss', float('nan')):.4f}")
    return {"init": str(out / name / "ckpt.pt"), "final": m["final_val"]}


def _dagger(cfg: PipelineConfig, out: Path, models: Path, log) -> dict:
    """Stage dagger: the behaviour-cloning planner (models/il_bc, what stage il exported) drives every suite of
    `dagger_routes`, the expert labels; then, with `dagger_epochs`, imitation fine-tunes that planner on the data
    aggregated with those labels (out/il_dagger), which is exported as models/il and is where RL starts."""
    dirs, reps = _drive(cfg, out, models / "il_bc" / "planner.onnx", "dagger", 1000, log)
    rep = {"datasets": reps, "rl_data": ",".join(dirs)}
    if cfg.dagger_epochs > 0:
        rep.update(_finetune(cfg, out, "il_dagger", [cfg.datasets(), *dirs], out / "il" / "ckpt.pt",
                             cfg.dagger_epochs, log))
    return rep


def _collect(cfg: PipelineConfig, out: Path, log) -> dict:
    """Stage collect: the expert drives every suite of collect_jobs into out/collect/data_<i> (an existing
    dataset is kept with --resume). Returns a report: episodes, frames and hours of driving per dataset."""
    from ..dataset import CollectConfig, collect

    jobs = cfg.collect_jobs()
    if not jobs:
        raise ValueError("stage collect needs --collect-routes or --collect-noisy-routes (route suites, comma-separated)")
    il = replace(cfg.il, **cfg.common())  # the shared workers and seed, as the stages get them
    # counterfactual branches only where the world model trains: they cost a quarter of the collection's time
    wm_dirs = None if cfg.wm_data is None else {Path(d).resolve() for d in cfg.wm_data.split(",") if d}
    rep = {"datasets": []}
    for i, (routes, noisy) in enumerate(jobs):
        d = out / "collect" / f"data_{i}"
        branches = cfg.collect_branches if wm_dirs is None or d.resolve() in wm_dirs else 0
        if cfg.resume and (d / "index.json").exists():
            log(f"collect: {d} exists (--resume): kept")
            idx = json.loads((d / "index.json").read_text())
        else:
            idx = collect(CollectConfig(routes=routes, out=str(d), maps_dir=cfg.maps_dir, workers=il.workers,
                                        seed=il.seed + (100 * (i + 1) if noisy else i), b2d=False,
                                        branches=branches,
                                        steer_noise=cfg.collect_steer_noise if noisy else 0.0,
                                        speed_noise=cfg.collect_speed_noise if noisy else 0.0), log)
        eps = idx["episodes"]
        frames = sum(e["frames"] for e in eps)
        rep["datasets"].append({"routes": routes, "noise": noisy,
                                "branches": idx.get("config", {}).get("branches", branches), "out": str(d), "episodes": len(eps),
                                "frames": frames, "hours": round(frames * idx.get("frame_dt", 0.1) / 3600, 3),
                                "skipped_towns": idx.get("skipped_towns", [])})
        log(f"collect: {routes}{' (recovery noise)' if noisy else ''}: {len(eps)} episodes, {frames} frames")
    return rep


def timing_table(report: dict) -> str:
    """The stages' wall-clock times as a text table (minutes), and the total."""
    rows = [(k, v["wall_s"]) for k, v in report["stages"].items() if "wall_s" in v]
    total = sum(w for _, w in rows)
    return "\n".join([f"{'stage':18s} {'min':>7s}"] + [f"{k:18s} {w / 60:7.1f}" for k, w in rows]
                     + [f"{'total':18s} {total / 60:7.1f}"])


def run_pipeline(cfg: PipelineConfig, log=print) -> dict:
    from ..models.export import export_checkpoint
    from .rl import RLStage
    from .train import ILStage, WMStage

    out, models = Path(cfg.out), Path(cfg.models_out)
    stages = [s for s in cfg.stages.split(",") if s]
    if cfg.stages == ",".join(STAGES) and not cfg.dagger_routes:  # the default run, with no suites to drive
        stages.remove("dagger")
        log("stage dagger skipped (no --dagger-routes): RL starts from " + ("--rl-data" if cfg.rl_data else "--data"))
    if cfg.stages == ",".join(STAGES) and not cfg.collect_jobs():  # the default run, on datasets collected before
        stages.remove("collect")
    bad = sorted(set(stages) - set(STAGES))
    if bad:
        raise ValueError(f"unknown stages {bad}; choose from {', '.join(STAGES)}")
    common = cfg.common()
    report: dict = {"config": asdict(cfg), "stages": {}}
    if (out / "pipeline.json").exists():  # stages run earlier into this directory keep their entries
        try:
            report["stages"] = json.loads((out / "pipeline.json").read_text()).get("stages", {})
        except json.JSONDecodeError:
            pass
    made = {"command": "drive-stack train pipeline", "pipeline_config": asdict(cfg)}
    rl_data = cfg.rl_data
    for st in stages:
        t0 = time.perf_counter()
        log(f"== stage {st}")
        if st in ("collect", "dagger"):
            if st == "collect":
                report["stages"][st] = _collect(cfg, out, log)
            else:
                rep = _dagger(cfg, out, models, log)
                rl_data = rep["rl_data"]
                if "init" in rep:  # the DAgger planner is the il policy from here on
                    man = export_checkpoint(rep["init"], models / "il", name="il", extra={"made_by": made})
                    rep["onnx"], rep["parity_max_abs_err"] = str(models / "il" / man["file"]), man["parity_max_abs_err"]
                report["stages"][st] = rep
            report["stages"][st]["wall_s"] = round(time.perf_counter() - t0, 1)
            report["stages"][st]["machine"] = machine_facts()
            (out / "pipeline.json").write_text(json.dumps(report, indent=2))
            continue
        if st == "il":
            m = ILStage(replace(cfg.il, out=str(out / "il"), **common), log).run()
            ck = out / "il" / "ckpt.pt"
            report["stages"].pop("dagger", None)  # a new planner: DAgger's states and fine-tuning are not its
            export_checkpoint(ck, models / "il_bc", name="il", extra={"made_by": made})
        elif st == "wm":
            # WMStage.run adds the reactivity report (reactivity_report) to m and to wm/metrics.json
            wm_common = {**common, "data": cfg.wm_data} if cfg.wm_data else common
            m = WMStage(replace(cfg.wm, out=str(out / "wm"), **wm_common), log).run()
            ck = out / "wm" / "ckpt.pt"
        else:
            agents = "world_model" if st == "perlad" else "log_replay"
            dag = report["stages"].get("dagger", {})  # this run's, or an earlier run's into this directory
            rl_common = {**common, "data": rl_data or dag.get("rl_data") or common["data"]}
            m = RLStage(replace(cfg.rl, out=str(out / st), init=dag.get("init", str(out / "il" / "ckpt.pt")),
                                world_model=str(out / "wm" / "ckpt.pt"), agents=agents, **rl_common), log).run()
            ck = out / st / "ckpt.pt"
        name = "world_model" if st == "wm" else st
        man = export_checkpoint(ck, models / name, name=name, extra={"made_by": made})
        curves = plot_curves(stage_curves(m), out / st / "curves.png", title=f"{st} ({common['data']})")
        report["stages"][st] = {"wall_s": round(time.perf_counter() - t0, 1), "onnx": str(models / name / man["file"]),
                                "parity_max_abs_err": man["parity_max_abs_err"], "curves": str(curves),
                                "final": m.get("final_val") or m.get("val"), "reactivity": m.get("reactivity"),
                                "machine": machine_facts()}  # a resumed pipeline's stages may come from several
        log(f"== {st}: {report['stages'][st]['wall_s']} s, exported {report['stages'][st]['onnx']} "
            f"(parity {man['parity_max_abs_err']:.1e}), curves {curves}")
        (out / "pipeline.json").write_text(json.dumps(report, indent=2))
    report["wall_s"] = round(sum(v.get("wall_s", 0.0) for v in report["stages"].values()), 1)
    (out / "pipeline.json").write_text(json.dumps(report, indent=2))
    log(timing_table(report))
    return report
