"""`drive-stack collect`: the expert drives a route suite and every episode is written at 10 Hz, both in the
Bench2Drive annotation format (``<episode>/anno/00000.json.gz``, dataset/b2d.py) and as a columnar copy for
training (``<episode>/arrays.npz`` + the dataset's ``index.json``). `read_episode` loads either.

Noise (recovery data, DART-style): with `steer_noise` > 0, at random moments (a Poisson process of rate
`noise_rate` per second) the *executed* steering gets an offset drawn from N(0, steer_noise) for
`noise_duration` seconds, and the executed throttle/brake a speed perturbation with `speed_noise`; the
recorded labels are always the expert's own controls and plan, so the data shows how to recover.

DAgger: with `driver` set (e.g. ``il``), that policy drives (its controls are executed, from its own,
non-privileged view of the scene) while the collection policy (the expert) only labels every frame: the
data covers the states the learned policy visits, with what the expert would do there.

Columnar arrays per episode (F frames, A agent slots, P plan points):
  t (F,) [s]; ego (F, 8): x, y, yaw, speed, accel, throttle, steer, brake (the label);
  command (F, 2) near/far; target (F, 4) near xy, far xy; agents (F, A, 7): x, y, yaw, speed, length, width,
  kind; agents_valid (F, A); agent_ids (A,); plan (F, P, 2) the expert's path in the ego frame;
  plan_speed (F, P) its speed profile; target_speed (F,); lights (F, T) the map's light states;
  route_xy (N, 2), route_command (N,), route_yaw (N,), route_lane (N,) (the dense route, for rebuilding scenes);
  with `takeover` (shadow mode, TakeAD), controller (F,) who drove the frame (CONTROLLER_CODES: 0 the driver,
  1 the expert, 2 a safe stop) and policy_ctl (F, 3) the driver's own throttle, steer, brake (the labels stay the
  expert's), and the episode's takeovers (time, cause, seconds and metres driven) in its index entry;
  with `branches` > 0, counterfactual futures every `branch_every` seconds (sim/branch.py; the world model's
  reactivity data): branch_frame (M,) the frame, branch_speed (M, K) the ego's target speeds, branch_ego
  (M, K, T, 3) its poses, branch_agents (M, K, T, A, 2) and branch_valid (M, K, T, A) the agents', every 0.5 s
  for 3 s, world frame.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..evaluation.dispatch import dispatch, import_ray
from ..loop import is_privileged
from ..maps import TownLoader
from ..routes import parse_routes
from ..routes.xml import RouteSpec
from ..sim.state import DT, EGO
from ..sim.world import Controls
from .b2d import FAR_DIST, NEAR_DIST, FrameError, frame_to_arrays, make_frame, read_frame, write_frame

FRAME_EVERY = 2  # simulator steps (20 Hz) per recorded frame: 10 Hz
CONTROLLER_CODES = {"planner": 0, "expert": 1, "safe_stop": 2}  # arrays' `controller` (shadow-mode collection)
PLAN_POINTS = 30  # plan path points kept per frame (1 m apart)
FORMAT_VERSION = 2  # 2: route_yaw and route_lane (the learned policies' features need the dense route)
BRANCH_MAX = 12.0  # [m/s] the fastest branch plan (the planner's top target speed)
BRANCH_SECONDS, BRANCH_EVERY_S = 3.0, 0.5  # a branch's length and record step (the world model's horizon)


@dataclass
class CollectConfig:
    routes: str  # route XML (a suite)
    out: str
    maps_dir: str | None = None
    policy: str = "expert"
    workers: int = 1
    seed: int = 0
    route_ids: list[str] | None = None
    max_routes: int | None = None
    b2d: bool = True  # also write the Bench2Drive anno/*.json.gz frames
    steer_noise: float = 0.0  # std of the executed steering offset during a noise event
    speed_noise: float = 0.0  # std [m/s] of the executed speed error during a noise event (throttle/brake)
    noise_rate: float = 0.1  # noise events per second
    noise_duration: float = 1.0  # [s]
    driver: str | None = None  # DAgger: this policy drives, `policy` labels (None: `policy` drives)
    driver_model: str | None = None  # the driver's model file (learned drivers; default: the usual lookup)
    driver_check: float = 0.0  # [s] a learned driver's candidate check horizon (policies/learned.py CandidateCheck;
    # 0: off): the driver drives as `eval --check` would, so shadow mode takes over where the checked planner fails
    driver_unstall: float = 0.0  # [s] with driver_check: the check's unstall (`eval --unstall`; 0: off)
    takeover: bool = False  # shadow mode (TakeAD): the labelling expert watches the driver through the takeover
    # gate and drives for takeover_duration when the driver's plan is about to fail or steers away from its own
    takeover_steer: float = 0.2  # steering disagreement that triggers a takeover (TakeAD's 0.2; 0: off)
    takeover_steer_min_speed: float = 0.5  # [m/s] ... while the ego moves this fast (0: at a standstill too)
    takeover_duration: float = 2.0  # [s] a takeover lasts at least this long
    takeover_stall: float = 0.0  # [s] the expert takes over where the ego has stood this long and it would drive
    # (stack/takeover.py STALLED; 0: off)
    takeover_stall_speed: float = 2.0  # [m/s] ... and its plan reaches this speed (a creep to a stop point a few
    # metres ahead is not a stall; 0: its command alone, as before session 27)
    branches: int = 3  # counterfactual ego plans per branch point (0: none): target speeds 0, BRANCH_MAX, random
    branch_every: float = 1.0  # [s] between branch points
    notes: list[str] = field(default_factory=list)
    ray: str | None = None  # episodes as Ray tasks: "local" (a Ray of `workers` CPUs), "auto", "host:port", "ray://..."
    max_retries: int = 1  # Ray: re-runs of a route whose worker process or node died before it counts as failed
    route_timeout_s: float | None = None  # wall-clock limit per route before its worker counts as hung (None: none)


class ControlNoise:
    """Perturbs the executed controls during random events (see the module docstring)."""

    def __init__(self, cfg: CollectConfig, seed: int):
        self.cfg, self.rng = cfg, np.random.default_rng(seed)
        self.until = -1.0
        self.d_steer = 0.0
        self.d_speed = 0.0

    def __call__(self, state, controls: Controls) -> Controls:
        c, t = self.cfg, float(state.t[0])
        if t >= self.until and self.rng.random() < c.noise_rate * DT:
            self.until = t + c.noise_duration
            self.d_steer = float(self.rng.normal(0.0, c.steer_noise))
            self.d_speed = float(self.rng.normal(0.0, c.speed_noise))
        if t >= self.until:
            return controls
        thr, brk = np.asarray(controls.throttle, float), np.asarray(controls.brake, float)
        if self.d_speed > 0:
            thr, brk = np.clip(thr + 0.2 * self.d_speed, 0, 1), np.zeros_like(brk)
        elif self.d_speed < 0:
            thr, brk = np.zeros_like(thr), np.clip(brk - 0.15 * self.d_speed, 0, 1)
        return Controls(thr, np.clip(np.asarray(controls.steer, float) + self.d_steer, -1, 1), brk)


class EpisodeRecorder:
    """The observer passed to `run_route` (a `loop.Step` each step): keeps every FRAME_EVERY-th step (arrays, and
    anno frames); the labels are the labelling policy's own controls and plan."""

    def __init__(self, g, spec: RouteSpec, anno_dir: Path | None, max_agents: int, branches: int = 0,
                 branch_every: float = 1.0, seed: int = 0, shadow: bool = False):
        self.g, self.spec, self.anno_dir = g, spec, anno_dir
        self.steps = 0
        self.branches = branches
        self.branch_frames = max(int(round(branch_every / (FRAME_EVERY * DT))), 1)
        self.branch_rng = np.random.default_rng(seed + 7919)
        self.branch_rows: dict[str, list] = {k: [] for k in ("branch_frame", "branch_speed", "branch_ego",
                                                              "branch_agents", "branch_valid")}
        self._sim = None
        self.rows: dict[str, list] = {k: [] for k in ("t", "ego", "command", "target", "agents", "agents_valid",
                                                       "plan", "plan_speed", "target_speed", "lights")}
        if shadow:  # who drove each frame and what the driving policy itself wanted
            self.rows.update(controller=[], policy_ctl=[])
        self.prev = None
        self.route = None
        self.max_agents = max_agents

    def __call__(self, st) -> None:
        state, lights, controls, plan, pol = st.state, st.lights, st.controls, st.plan, st.policy
        step = self.steps
        self.steps += 1
        if step % FRAME_EVERY:
            return
        route = self.route
        ex, ey, eyaw, ev = (float(state.x[0, EGO]), float(state.y[0, EGO]), float(state.yaw[0, EGO]),
                            float(state.speed[0, EGO]))
        i = int(np.argmin(np.hypot(route.xy[:, 0] - ex, route.xy[:, 1] - ey)))
        prev_speed, prev_yaw = self.prev if self.prev is not None else (ev, eyaw)
        self.prev = (ev, eyaw)
        lab = (float(controls.throttle[0]), float(controls.steer[0]), float(controls.brake[0]))
        i_near = min(int(np.searchsorted(route.cum_s, route.cum_s[i] + NEAR_DIST)), len(route) - 1)
        i_far = min(int(np.searchsorted(route.cum_s, route.cum_s[i] + FAR_DIST)), len(route) - 1)
        r = self.rows
        r["t"].append(float(state.t[0]))
        r["ego"].append([ex, ey, eyaw, ev, float(state.accel[0, EGO]), *lab])
        r["command"].append([int(route.command[i_near]), int(route.command[i_far])])
        r["target"].append([*route.xy[i_near], *route.xy[i_far]])
        r["agents"].append(np.stack([state.x[0], state.y[0], state.yaw[0], state.speed[0], state.length[0],
                                     state.width[0], state.kind[0].astype(np.float32)], -1)[1:])
        r["agents_valid"].append(state.valid[0, 1:].copy())
        P = min(PLAN_POINTS, plan.path.shape[1])
        path = np.zeros((PLAN_POINTS, 2), np.float32)
        path[:P] = plan.path[0, :P]
        path[P:] = path[P - 1]
        speed = np.zeros(PLAN_POINTS, np.float32)
        if plan.speed_profile is not None:
            speed[:P] = plan.speed_profile[0, :P]
            speed[P:] = speed[P - 1]
        r["plan"].append(path)
        r["plan_speed"].append(speed)
        r["target_speed"].append(float(plan.target_speed[0]))
        r["lights"].append(lights[0].astype(np.int8) if lights.size else np.zeros(0, np.int8))
        if "controller" in r:
            r["controller"].append(CONTROLLER_CODES[st.controller[0]])
            a = st.acting
            r["policy_ctl"].append([float(a.throttle[0]), float(a.steer[0]), float(a.brake[0])])
        if self.branches > 0 and (len(r["t"]) - 1) % self.branch_frames == 0:
            self.branch(state, path)
        if self.anno_dir is not None:
            status = pol.status[0] if is_privileged(pol) else ""
            extras = {"t": round(float(state.t[0]), 3), "route_id": self.spec.route_id,
                      "scenario_type": self.spec.scenario_type, "expert_status": status,
                      "target_speed": round(float(plan.target_speed[0]), 3),
                      "plan": np.round(path[::3], 2).tolist()}
            frame = make_frame(state, 0, lights, self.g, route, i, lab, extras, prev_speed, prev_yaw,
                               FRAME_EVERY * DT)
            write_frame(self.anno_dir / f"{len(r['t']) - 1:05d}.json.gz", frame)

    def branch(self, state, path: np.ndarray) -> None:
        """Counterfactual futures of this frame (sim/branch.py): the ego follows the expert's path at target
        speeds 0, BRANCH_MAX and a random one (the first `branches` of those, then random ones); the world reacts."""
        from ..sim.branch import branch_rollouts, to_world
        from ..sim.world import Simulator

        if self._sim is None:
            self._sim = Simulator(self.g)
        fixed = [0.0, BRANCH_MAX]
        speeds = np.array([fixed[k] if k < len(fixed) else self.branch_rng.uniform(0.0, BRANCH_MAX)
                           for k in range(self.branches)])
        pose = (float(state.x[0, EGO]), float(state.y[0, EGO]), float(state.yaw[0, EGO]))
        seg = np.diff(np.concatenate([[[0.0, 0.0]], path]), axis=0)
        moving = np.flatnonzero(np.linalg.norm(seg, axis=1) > 1e-3)
        d = seg[moving[-1]] if len(moving) else np.array([1.0, 0.0])
        d = d / float(np.linalg.norm(d))
        ahead = path[-1] + np.arange(1, 31)[:, None] * d  # continued straight for the fastest branch (60 m)
        out = branch_rollouts(self._sim, state, to_world(np.concatenate([path, ahead]), pose), speeds,
                              BRANCH_SECONDS, BRANCH_EVERY_S)
        b = self.branch_rows
        b["branch_frame"].append(len(self.rows["t"]) - 1)
        b["branch_speed"].append(speeds.astype(np.float32))
        b["branch_ego"].append(out["ego"])
        b["branch_agents"].append(out["agents"])
        b["branch_valid"].append(out["valid"])

    def arrays(self) -> dict[str, np.ndarray]:
        r = self.rows
        out = {k: np.asarray(v, np.float32) for k, v in r.items()
               if k not in ("agents_valid", "command", "lights", "controller")}
        if "controller" in r:
            out["controller"] = np.asarray(r["controller"], np.int8)
        out["agents_valid"] = np.asarray(r["agents_valid"], bool)
        out["command"] = np.asarray(r["command"], np.int8)
        out["lights"] = np.asarray(r["lights"], np.int8)
        out["t"] = np.asarray(r["t"], np.float64)
        out["agent_ids"] = np.arange(1, self.max_agents, dtype=np.int64)
        out["route_xy"] = self.route.xy.astype(np.float32)
        out["route_command"] = self.route.command.astype(np.int8)
        out["route_yaw"] = self.route.yaw.astype(np.float32)
        out["route_lane"] = self.route.lane.astype(np.int32)
        if self.branch_rows["branch_frame"]:
            b = self.branch_rows
            out["branch_frame"] = np.asarray(b["branch_frame"], np.int32)
            out.update({k: np.stack(b[k]) for k in ("branch_speed", "branch_ego", "branch_agents", "branch_valid")})
        return out


def episode_name(spec: RouteSpec, seed: int) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in spec.route_id)
    return f"{spec.town}_{safe}_s{seed}"


def collect_route(cfg: CollectConfig, spec: RouteSpec, seed: int, max_agents: int = 64) -> dict:
    """Drive one route with the collection policy and write its episode; returns its index entry."""
    from ..evaluation.runner import run_route
    from ..policies import make_policy
    from ..policies.learned import CandidateCheck
    from ..routes.planner import plan_route

    t0 = time.perf_counter()
    g = TownLoader(cfg.maps_dir).load(spec.town)
    name = episode_name(spec, seed)
    ep_dir = Path(cfg.out) / "episodes" / name
    anno = ep_dir / "anno"
    anno.mkdir(parents=True, exist_ok=True)
    rec = EpisodeRecorder(g, spec, anno if cfg.b2d else None, max_agents, cfg.branches, cfg.branch_every, seed,
                          shadow=cfg.takeover)
    rec.route = plan_route(g, spec)
    noise = ControlNoise(cfg, seed) if (cfg.steer_noise > 0 or cfg.speed_noise > 0) else None
    dkw = {**({"model": cfg.driver_model} if cfg.driver_model else {}),
           **({"check": CandidateCheck(cfg.driver_check, unstall=cfg.driver_unstall)} if cfg.driver_check > 0 else {})}
    driver = make_policy(cfg.driver, 1, g=g, **dkw) if cfg.driver else None
    labeller = make_policy(cfg.policy, 1, g=g)
    gate = None
    if cfg.takeover:  # shadow mode: the labelling expert is the one the gate hands the car to
        from ..stack.takeover import TakeoverConfig, TakeoverGate

        gate = TakeoverGate(TakeoverConfig(steer_threshold=cfg.takeover_steer,
                                           steer_min_speed=cfg.takeover_steer_min_speed, duration=cfg.takeover_duration,
                                           stall_time=cfg.takeover_stall, stall_speed=cfg.takeover_stall_speed),
                            expert_offered=True)
    ep = run_route(g, spec, policy=labeller, seed=seed, max_agents=max_agents, observer=rec, driver=driver,
                   perturb=noise, gate=gate, expert=labeller if gate is not None else None)
    arrays = rec.arrays()
    tmp = ep_dir / "arrays.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    tmp.replace(ep_dir / "arrays.npz")
    entry = {"episode": name, "route_id": spec.route_id, "town": spec.town, "scenario_type": spec.scenario_type,
             "seed": seed, "frames": int(len(arrays["t"])), "duration_s": float(len(arrays["t"]) * FRAME_EVERY * DT),
             "driving_score": ep.record["scores"]["score_composed"], "status": ep.record["status"],
             "wall_s": round(time.perf_counter() - t0, 2)}
    if gate is not None:  # the takeovers: when, why, and how far the expert drove (frames: arrays' controller)
        entry["takeovers"] = ep.record["meta"]["takeovers"]
    if cfg.driver_check > 0:  # ticks on which the driver's candidate check replaced its plain decoding
        entry["driver_vetoed"] = int(driver.vetoed.sum())
        if cfg.driver_unstall > 0:  # of which: ticks on which it drove a cleared candidate after standing
            entry["driver_unstalled"] = int(driver.unstalled.sum())
    (ep_dir / "meta.json").write_text(json.dumps({**entry, "format_version": FORMAT_VERSION,
                                                  "frame_dt": FRAME_EVERY * DT}, indent=2))
    return entry


def _worker(cfg: CollectConfig, spec: RouteSpec, seed: int) -> dict:
    try:
        return collect_route(cfg, spec, seed)
    except Exception as e:  # noqa: BLE001 - one failing route must not stop the collection
        return _failed(spec, seed, f"{type(e).__name__}: {e}")


def _failed(spec: RouteSpec, seed: int, error: str) -> dict:
    return {"episode": episode_name(spec, seed), "route_id": spec.route_id, "town": spec.town, "error": error}


def _ray_worker(cfg: CollectConfig, spec: RouteSpec, seed: int) -> tuple[dict, dict[str, bytes]]:
    """A Ray task: the episode is written into a scratch folder of the node that runs it and comes back as its
    files, so the dataset lands in the driver's --out whatever file systems the nodes have."""
    with tempfile.TemporaryDirectory(prefix="drive-stack-collect-") as tmp:
        entry = _worker(replace(cfg, out=tmp), spec, seed)
        ep = Path(tmp) / "episodes" / entry["episode"]
        files = {} if "error" in entry else {p.relative_to(ep).as_posix(): p.read_bytes()
                                             for p in sorted(ep.rglob("*")) if p.is_file()}
    return entry, files


def _write_episode(ep_dir: Path, files: dict[str, bytes]) -> None:
    """A shipped episode's files under ep_dir; arrays.npz last and atomically (its presence means complete)."""
    for rel in sorted(files, key=lambda r: r == "arrays.npz"):
        path = ep_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(files[rel])
        tmp.replace(path)


def collect(cfg: CollectConfig, log=print) -> dict:
    """Collect every route of the suite (skipping towns whose map is missing); writes OUT/index.json."""
    from ..policies import LEARNED, check_policy

    if cfg.takeover and not cfg.driver:
        raise ValueError("collect --takeover: shadow mode needs a --driver (the policy the expert watches)")
    if cfg.driver_check < 0 or not np.isfinite(cfg.driver_check) or (cfg.driver_check > 0 and cfg.driver not in LEARNED):
        raise ValueError(f"collect --driver-check {cfg.driver_check}: the candidate check is a horizon in seconds (> 0) "
                         f"of a learned --driver ({', '.join(LEARNED)}); the driver is {cfg.driver!r}")
    if cfg.driver_unstall < 0 or not np.isfinite(cfg.driver_unstall) or (cfg.driver_unstall > 0 and cfg.driver_check <= 0):
        raise ValueError(f"collect --driver-unstall {cfg.driver_unstall}: a time in seconds (> 0) that needs "
                         "--driver-check (unstalling drives only what the check clears)")
    models = {"policy": check_policy(cfg.policy)}  # fail fast on a missing or wrong model; say which file drives
    if cfg.driver:
        models["driver"] = check_policy(cfg.driver, cfg.driver_model)
    for role, m in models.items():
        if m is not None:
            log(f"{role} {getattr(cfg, role)}: model {m['path']} (sha256 {m['sha256'][:16]})")
    rf = parse_routes(cfg.routes)
    loader = TownLoader(cfg.maps_dir)
    specs = [s for s in rf.routes if cfg.route_ids is None or s.route_id in cfg.route_ids]
    missing = sorted({s.town for s in specs if not loader.available(s.town)})
    for town in missing:
        log(f"skipping routes in {town}: no map {town}.xodr in {cfg.maps_dir or 'the default maps directory'}")
    specs = [s for s in specs if loader.available(s.town)]
    if cfg.max_routes is not None:
        specs = specs[: cfg.max_routes]
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(cfg, s, cfg.seed + i) for i, s in enumerate(specs)]
    if cfg.ray:
        import_ray()  # fail fast when the ray extra is missing
    t0 = time.perf_counter()
    entries: list = [None] * len(jobs)  # in suite order, whatever order the routes finish in
    done = 0
    for o in dispatch(_ray_worker if cfg.ray else _worker, jobs, workers=cfg.workers, ray=cfg.ray,
                      timeout_s=cfg.route_timeout_s, max_retries=cfg.max_retries,
                      inline=cfg.route_timeout_s is None):  # one worker, no timeout: in this process, as always
        _, spec, seed = jobs[o.job]
        if o.kind != "ok":  # the worker died (after Ray's retries) or hung
            entry = _failed(spec, seed, f"simulation crashed: {o.message}")
        elif cfg.ray:
            entry, files = o.result
            if files:
                _write_episode(out / "episodes" / entry["episode"], files)
        else:
            entry = o.result
        entries[o.job] = entry
        done += 1
        log(_line(entry, done, len(jobs)))
    index = {"format_version": FORMAT_VERSION, "frame_dt": FRAME_EVERY * DT, "config": asdict(cfg), "models": models,
             "episodes": [e for e in entries if "error" not in e], "failed": [e for e in entries if "error" in e],
             "skipped_towns": missing, "wall_s": round(time.perf_counter() - t0, 1)}
    (out / "index.json").write_text(json.dumps(index, indent=2))
    return index


def _line(e: dict, i: int, n: int) -> str:
    if "error" in e:
        return f"[{i}/{n}] {e['route_id']}: FAILED {e['error']}"
    return (f"[{i}/{n}] {e['route_id']} ({e['town']}, {e['scenario_type']}): {e['frames']} frames, "
            f"DS {e['driving_score']:.1f}, {e['wall_s']:.1f} s")


def read_episode(ep_dir: str | Path) -> dict[str, np.ndarray]:
    """An episode's arrays: the columnar copy when present, else rebuilt from its anno/*.json.gz frames (ours
    or a real Bench2Drive clip: ego, controls, commands, target, agents by id)."""
    ep_dir = Path(ep_dir)
    npz = ep_dir / "arrays.npz"
    if npz.exists():
        try:
            with np.load(npz) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise FrameError(f"{npz}: corrupt columnar episode ({e}); delete it to fall back to anno/") from e
    files = sorted((ep_dir / "anno").glob("*.json.gz"))
    if not files:
        raise FrameError(f"{ep_dir}: neither arrays.npz nor anno/*.json.gz: not an episode directory")
    frames = [frame_to_arrays(read_frame(f), str(f)) for f in files]
    ids = sorted({int(i) for fr in frames for i in fr["ids"]})
    slot = {i: k for k, i in enumerate(ids)}
    F, A = len(frames), len(ids)
    agents = np.zeros((F, A, 7), np.float32)
    valid = np.zeros((F, A), bool)
    for f, fr in enumerate(frames):
        k = [slot[int(i)] for i in fr["ids"]]
        agents[f, k] = fr["agents"]
        valid[f, k] = True
    ego = np.array([[*fr["ego"], 0.0, *fr["controls"]] for fr in frames], np.float32)
    ego[1:, 4] = np.diff(ego[:, 3]) / (FRAME_EVERY * DT)
    return {"t": np.arange(F) * FRAME_EVERY * DT, "ego": ego, "agents": agents, "agents_valid": valid,
            "agent_ids": np.array(ids, np.int64),
            "command": np.array([[fr["command_near"], fr["command_far"]] for fr in frames], np.int8),
            "target": np.array([[*fr["target"], np.nan, np.nan] for fr in frames], np.float32)}


def load_index(root: str | Path) -> dict:
    p = Path(root) / "index.json"
    if not p.exists():
        raise FileNotFoundError(f"{p}: no dataset index; run `drive-stack collect --routes ... --out {root}`")
    return json.loads(p.read_text())


def dataset_stats(root: str | Path) -> dict:
    """Frames, hours, per-scenario-type counts, speed and command histograms of a collected dataset."""
    idx = load_index(root)
    frames, per_type, speeds, commands = 0, {}, [], []
    for e in idx["episodes"]:
        arr = read_episode(Path(root) / "episodes" / e["episode"])
        n = len(arr["t"])
        frames += n
        key = e.get("scenario_type") or "none"
        per_type[key] = per_type.get(key, 0) + n
        speeds.append(arr["ego"][:, 3])
        commands.append(arr["command"][:, 0])
    sp = np.concatenate(speeds) if speeds else np.zeros(0)
    cm = np.concatenate(commands) if commands else np.zeros(0, np.int8)
    edges = np.arange(0.0, 22.0, 2.0)
    hist, _ = np.histogram(np.clip(sp, 0, edges[-1] - 1e-6), edges)
    from ..maps.lanegraph import Command

    return {"root": str(root), "episodes": len(idx["episodes"]), "failed": len(idx.get("failed", [])),
            "frames": int(frames), "hours": round(frames * idx["frame_dt"] / 3600.0, 3),
            "frames_per_scenario_type": dict(sorted(per_type.items())),
            "speed_histogram": {"edges_m_s": edges.tolist(), "counts": hist.tolist()},
            "speed_mean_m_s": round(float(sp.mean()), 3) if len(sp) else 0.0,
            "stopped_fraction": round(float((sp < 0.1).mean()), 4) if len(sp) else 0.0,
            "command_histogram": {Command(int(c)).name: int((cm == c).sum()) for c in np.unique(cm)}}
