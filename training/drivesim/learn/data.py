"""Training samples from a collected dataset: every frame of every episode is rebuilt into a pseudo-simulator
scene, perceived as a policy would (range + occlusion, `ScenePerceiver`), turned into features by the same
`FeatureBuilder` the closed loop uses, and paired with targets taken from the log (never shown to the features):

  path (6, 2): the expert's path at PATH_S metres ahead, ego frame [m];
  speed (): the expert's planned speed SPEED_AT metres ahead on its path [m/s] (its speed profile; more
      decisive than the PID's instantaneous set-point, which is near 0 whenever the car stands);
  ego_future (T, 3), ego_future_mask (T,): the logged ego pose at WM_DT steps, ego frame (the world model's
      conditioning and the RL imitation term);
  agents_future (N, T, 2), agents_future_mask (N, T): the selected agents' logged positions, ego frame;
  roll_ego (K, 2) / roll_ego_mask (K,): the logged ego at 10 Hz over the RL horizon;
  roll_agents (N, K, 5) / roll_agents_mask (N, K): those agents at 10 Hz (x, y, yaw, length, width), for
      log-replay rollouts; agent_kind (N,).
  roll_unseen (U, K, 5) / roll_unseen_mask (U, K) / unseen_kind (U,): agents of the log that the features did
      not show (hidden behind something, out of range, or not there yet: a pedestrian about to step out from
      behind a parked van) but that come within UNSEEN_RADIUS of the logged ego over the RL horizon, nearest
      first. Nothing the policy sees can predict them; RL rollouts can replay them from the log
      (RLConfig.unseen_agents): the pseudo-simulator is made of logs, and what was hidden in the log is there.

Counterfactual branches (episodes collected with `--branches`, sim/branch.py) add world-model rows of their
own, M of them (a leading dimension of their own, prefixed wmb_): wmb_row (M,) the sample whose features they
share, wmb_ego_future (M, T, 3), wmb_agents_future (M, N, T, 2), wmb_agents_future_mask (M, N, T): the same
frame under another ego plan, and where the same agents went then.

The result is cached next to the dataset (``learn_cache/<hash>.npz``), keyed by the dataset index, the feature
config, FORMAT and the constants below (horizons, steps).
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..dataset.b2d import FrameError
from ..dataset.collect import load_index, read_episode
from ..maps import TownLoader
from ..maps.opendrive import load_xodr_text
from ..models.features import FeatureBuilder, FeatureConfig
from ..routes.planner import DenseRoute
from ..sim.perception import ScenePerceiver
from ..sim.state import EGO, empty_state

FORMAT = 5  # 3: counterfactual branch rows (wmb_*); 4: unseen agents of the RL horizon (roll_unseen*); 5: the
# frame's controller (shadow-mode collection: 0 the driver, 1 the expert, 2 a safe stop; 0 without one)
SPEED_AT = 4  # [m] (plan_speed index: points are 1 m apart, index 0 = now)
PATH_S = np.arange(1, 7) * 2.0  # [m] the lateral head's 6 path points, 2 m apart
WM_DT = 0.5  # [s] world-model step (2 Hz)
WM_STEPS = 6  # 3 s
ROLL_DT = 0.1  # [s] RL rollout step (10 Hz)
ROLL_STEPS = 30  # 3 s (the RL horizon is RLConfig.horizon, at most this)
UNSEEN = 8  # roll_unseen rows per sample
UNSEEN_RADIUS = 20.0  # [m] an unseen agent this close to the logged ego at some step of the horizon is replayed


@dataclass(frozen=True)
class DataConfig:
    data: str  # collected datasets (drive-stack collect --out), comma-separated
    maps_dir: str | None = None
    workers: int = 2
    max_episodes: int | None = None
    keys: tuple[str, ...] | None = None  # load only these sample arrays (and episode, frame); None: all. A stage
    # that reads a few keys holds a fraction of the memory: imitation's inputs and labels are about 10 of the
    # 32 kB a sample takes with the rollout futures (roll_agents alone is 14 kB)


def path_points(plan: np.ndarray, s_query: np.ndarray = PATH_S) -> np.ndarray:
    """Points of a path (P, 2) (ego frame, from near the ego) at arc lengths s_query from the ego."""
    pts = np.concatenate([[[0.0, 0.0]], plan], 0)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] < 1e-6:  # a degenerate plan: straight ahead
        return np.stack([s_query, np.zeros_like(s_query)], -1)
    out = np.stack([np.interp(s_query, s, pts[:, 0]), np.interp(s_query, s, pts[:, 1])], -1)
    beyond = s_query > s[-1]  # extend straight along the last direction
    if beyond.any():
        d = pts[-1] - pts[-2] if len(pts) > 1 else np.array([1.0, 0.0])
        d = d / max(np.linalg.norm(d), 1e-6)
        out[beyond] = pts[-1] + (s_query[beyond] - s[-1])[:, None] * d
    return out


def dense_route(arr: dict) -> DenseRoute:
    if "route_lane" not in arr:
        raise FrameError("the episode has no dense route (route_lane): it was collected by an older drive-stack "
                         "(format 1); collect it again with `drive-stack collect`")
    xy = arr["route_xy"].astype(np.float64)
    cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    return DenseRoute(xy, arr["route_yaw"].astype(np.float64), arr["route_lane"].astype(np.int32),
                      arr["route_command"].astype(np.int8), cum)


def _frame_state(arr: dict, f: int, num_lights: int):
    ego, agents, valid = arr["ego"], arr["agents"], arr["agents_valid"]
    A = agents.shape[1] + 1
    st = empty_state(1, A, num_lights)
    st.x[0, EGO], st.y[0, EGO], st.yaw[0, EGO], st.speed[0, EGO], st.accel[0, EGO] = ego[f, :5]
    st.length[0, EGO], st.width[0, EGO], st.valid[0, EGO] = 4.9, 2.1, True
    st.x[0, 1:], st.y[0, 1:], st.yaw[0, 1:], st.speed[0, 1:] = (agents[f, :, i] for i in range(4))
    st.length[0, 1:], st.width[0, 1:] = agents[f, :, 4], agents[f, :, 5]
    st.kind[0, 1:] = agents[f, :, 6].astype(np.int8)
    st.valid[0, 1:] = valid[f]
    st.t[0] = arr["t"][f]
    return st


def _to_frame(x, y, pose):
    dx, dy = x - pose[0], y - pose[1]
    c, s = np.cos(pose[2]), np.sin(pose[2])
    return dx * c + dy * s, -dx * s + dy * c


def episode_samples(ep_dir: str | Path, g, fcfg: FeatureConfig | None = None) -> dict[str, np.ndarray]:
    """Features and targets of every frame of one episode (see the module doc)."""
    fcfg = fcfg or FeatureConfig()
    arr = read_episode(ep_dir)
    route = dense_route(arr)
    F = len(arr["t"])
    frame_dt = float(np.median(np.diff(arr["t"]))) if F > 1 else 0.1
    wm_k = int(round(WM_DT / frame_dt))
    roll_k = max(int(round(ROLL_DT / frame_dt)), 1)
    per = ScenePerceiver(g, [route])
    fb = FeatureBuilder(g, 1, fcfg)
    ego = arr["ego"].astype(np.float64)
    ag, av = arr["agents"].astype(np.float64), arr["agents_valid"]
    N = fcfg.num_agents
    rows: dict[str, list] = {k: [] for k in ("ego", "route", "route_mask", "agents", "agents_mask", "lanes",
                                             "lanes_mask", "path", "speed", "ego_future", "ego_future_mask",
                                             "agents_future", "agents_future_mask", "roll_ego", "roll_ego_mask",
                                             "roll_agents", "roll_agents_mask", "agent_kind", "roll_unseen",
                                             "roll_unseen_mask", "unseen_kind")}
    lights = arr["lights"]
    slots = []
    for f in range(F):
        st = _frame_state(arr, f, g.num_lights)
        lt = lights[f][None] if lights.shape[1] == g.num_lights else np.zeros((1, g.num_lights), np.int8)
        scene = per(st, lt)
        feats = fb(scene, float(arr["t"][f]))
        for k in ("ego", "route", "route_mask", "agents", "agents_mask", "lanes", "lanes_mask"):
            rows[k].append(getattr(feats, k)[0])
        pose = ego[f, :3]
        rows["path"].append(path_points(arr["plan"][f].astype(np.float64)))
        rows["speed"].append(float(arr["plan_speed"][f, SPEED_AT]))
        # logged futures in this frame's ego frame
        fut = f + wm_k * np.arange(1, WM_STEPS + 1)
        ok = fut < F
        fi = np.minimum(fut, F - 1)
        x, y = _to_frame(ego[fi, 0], ego[fi, 1], pose)
        rows["ego_future"].append(np.stack([x, y, np.angle(np.exp(1j * (ego[fi, 2] - pose[2])))], -1) * ok[:, None])
        rows["ego_future_mask"].append(ok)
        rk = f + roll_k * np.arange(1, ROLL_STEPS + 1)
        rok = rk < F
        ri = np.minimum(rk, F - 1)
        x, y = _to_frame(ego[ri, 0], ego[ri, 1], pose)
        rows["roll_ego"].append(np.stack([x, y], -1) * rok[:, None])
        rows["roll_ego_mask"].append(rok)
        ids = feats.agent_ids[0]
        slot = np.where(ids > 0, ids - 1, 0)
        has = ids > 0
        slots.append((slot, has))
        af = np.zeros((N, WM_STEPS, 2))
        am = np.zeros((N, WM_STEPS), bool)
        x, y = _to_frame(ag[fi][:, slot, 0], ag[fi][:, slot, 1], pose)  # (T, N)
        af[:] = np.stack([x, y], -1).transpose(1, 0, 2)
        am[:] = (av[fi][:, slot] & ok[:, None]).T & has[:, None]
        rows["agents_future"].append(af * am[..., None])
        rows["agents_future_mask"].append(am)
        x, y = _to_frame(ag[ri][:, slot, 0], ag[ri][:, slot, 1], pose)
        ra = np.stack([x, y, ag[ri][:, slot, 2] - pose[2], ag[ri][:, slot, 4], ag[ri][:, slot, 5]], -1).transpose(1, 0, 2)
        rm = (av[ri][:, slot] & rok[:, None]).T & has[:, None]
        rows["roll_agents"].append(ra * rm[..., None])
        rows["roll_agents_mask"].append(rm)
        rows["agent_kind"].append(np.where(has, ag[f, slot, 6], -1))
        un, um, uk = unseen_agents(ego, ag, av, ri, rok, slot[has], pose)
        rows["roll_unseen"].append(un)
        rows["roll_unseen_mask"].append(um)
        rows["unseen_kind"].append(uk)
    out = {k: np.asarray(v, np.float32 if k not in ("route_mask", "agents_mask", "lanes_mask", "ego_future_mask",
                                                      "agents_future_mask", "roll_ego_mask", "roll_agents_mask",
                                                      "roll_unseen_mask")
                         else bool) for k, v in rows.items()}
    out["controller"] = np.asarray(arr["controller"], np.int8) if "controller" in arr else np.zeros(F, np.int8)
    out.update(branch_samples(arr, slots, N))
    return out


def unseen_agents(ego: np.ndarray, ag: np.ndarray, av: np.ndarray, ri: np.ndarray, rok: np.ndarray,
                  seen: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The roll_unseen rows of one frame (see the module doc). ego (F, >=2) and ag (F, A, 7) / av (F, A): the
    episode's log; ri (K,) the frames of the horizon, rok (K,) which of them exist; seen: the agent slots the
    features show; pose: the ego's pose at the frame. Returns (U, K, 5) x, y, yaw, length, width in the ego
    frame, (U, K) mask and (U,) kind (-1: empty row)."""
    U, K = UNSEEN, len(ri)
    ok = av[ri] & rok[:, None]  # (K, A)
    d = np.hypot(ag[ri][..., 0] - ego[ri, 0][:, None], ag[ri][..., 1] - ego[ri, 1][:, None])
    dmin = np.where(ok, d, np.inf).min(0)  # (A,)
    dmin[seen] = np.inf
    pick = np.argsort(dmin, kind="stable")[:U]
    pick = pick[dmin[pick] < UNSEEN_RADIUS]
    out, mask, kind = np.zeros((U, K, 5)), np.zeros((U, K), bool), np.full(U, -1.0)
    if len(pick):
        n = len(pick)
        x, y = _to_frame(ag[ri][:, pick, 0], ag[ri][:, pick, 1], pose)  # (K, n)
        yaw = ag[ri][:, pick, 2] - pose[2]
        out[:n] = np.stack([x, y, yaw, ag[ri][:, pick, 4], ag[ri][:, pick, 5]], -1).transpose(1, 0, 2)
        mask[:n] = ok[:, pick].T
        out[:n] *= mask[:n, :, None]
        first = ok[:, pick].argmax(0)  # the first step each one is there
        kind[:n] = ag[ri[first], pick, 6]
    return out, mask, kind


def branch_samples(arr: dict, slots: list, N: int) -> dict[str, np.ndarray]:
    """World-model rows of an episode's counterfactual branches (see the module doc); empty without them.
    slots[f] = (slot (N,), has (N,)): the agent slots the features of frame f selected."""
    rows: dict[str, list] = {"wmb_row": [], "wmb_ego_future": [], "wmb_agents_future": [], "wmb_agents_future_mask": []}
    if "branch_frame" in arr:
        ego = arr["ego"].astype(np.float64)
        bego, bag, bval = arr["branch_ego"].astype(np.float64), arr["branch_agents"].astype(np.float64), arr["branch_valid"]
        if bego.shape[2] != WM_STEPS:
            raise FrameError(f"branches of {bego.shape[2]} steps, the world model predicts {WM_STEPS}: collect again")
        for m, f in enumerate(arr["branch_frame"]):
            pose = ego[f, :3]
            slot, has = slots[f]
            for k in range(bego.shape[1]):
                x, y = _to_frame(bego[m, k, :, 0], bego[m, k, :, 1], pose)
                rows["wmb_row"].append(int(f))
                rows["wmb_ego_future"].append(np.stack([x, y, np.angle(np.exp(1j * (bego[m, k, :, 2] - pose[2])))], -1))
                x, y = _to_frame(bag[m, k][:, slot, 0], bag[m, k][:, slot, 1], pose)  # (T, N)
                am = bval[m, k][:, slot].T & has[:, None]  # (N, T)
                rows["wmb_agents_future"].append(np.stack([x, y], -1).transpose(1, 0, 2) * am[..., None])
                rows["wmb_agents_future_mask"].append(am)
    shapes = {"wmb_row": (), "wmb_ego_future": (WM_STEPS, 3), "wmb_agents_future": (N, WM_STEPS, 2),
              "wmb_agents_future_mask": (N, WM_STEPS)}
    types = {"wmb_row": np.int64, "wmb_agents_future_mask": bool}
    return {k: np.asarray(v, types.get(k, np.float32)).reshape(-1, *shapes[k]) for k, v in rows.items()}


def concat_samples(parts: list[dict]) -> dict[str, np.ndarray]:
    """Samples of several episodes or datasets in one table (wmb_row re-pointed at the concatenated rows). Empties
    the parts key by key as it goes, so memory peaks at the table plus one key of the parts, not twice the table
    (about 32 kB a sample: six CARLA towns and two procedural suites, 390k samples, needed 25 GB before)."""
    offsets = np.cumsum([0] + [len(p["speed"]) for p in parts[:-1]])
    out = {}
    for k in list(parts[0]):
        out[k] = np.concatenate([p[k] + off if k == "wmb_row" else p[k] for p, off in zip(parts, offsets, strict=True)])
        for p in parts:
            del p[k]
    return out


def _episode_worker(args):
    ep_dir, town, maps_dir, fcfg = args
    try:
        xodr = Path(ep_dir) / "map.xodr"  # an ingested bag's episode carries its map (`takeover ingest`)
        g = load_xodr_text(town, xodr.read_text(), source=str(xodr)) if xodr.exists() else TownLoader(maps_dir).load(town)
        out = episode_samples(ep_dir, g, fcfg)
        return str(ep_dir), out, None
    except Exception as e:  # noqa: BLE001 - one bad episode is reported, the rest still load
        return str(ep_dir), None, f"{type(e).__name__}: {e}"


def build_samples(cfg: DataConfig, fcfg: FeatureConfig | None = None, log=print) -> dict[str, np.ndarray]:
    """All samples of the datasets in cfg.data (comma-separated; each cached). Adds `episode` (S,) int (unique
    over the datasets) and `frame` (S,) int."""
    fcfg = fcfg or FeatureConfig()
    roots = [r for r in str(cfg.data).split(",") if r]
    parts = []
    for root in roots:
        d = _build_one(DataConfig(root, cfg.maps_dir, cfg.workers, cfg.max_episodes), fcfg, log, cfg.keys)
        if parts:
            d["episode"] = d["episode"] + parts[-1]["episode"].max() + 1
        parts.append(d)
    return parts[0] if len(parts) == 1 else concat_samples(parts)


def _build_one(cfg: DataConfig, fcfg: FeatureConfig, log, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    root = Path(cfg.data)
    idx = load_index(root)
    eps = idx["episodes"][: cfg.max_episodes] if cfg.max_episodes else idx["episodes"]
    consts = [SPEED_AT, PATH_S.tolist(), WM_DT, WM_STEPS, ROLL_DT, ROLL_STEPS, UNSEEN, UNSEEN_RADIUS]
    key = hashlib.sha1(json.dumps({"eps": [(e["episode"], e["frames"]) for e in eps], "f": asdict(fcfg),
                                   "v": FORMAT, "c": consts}, sort_keys=True).encode()).hexdigest()[:16]
    cache = root / "learn_cache" / f"{key}.npz"
    wanted = (lambda k: True) if keys is None else (lambda k: k in keys or k in ("episode", "frame"))
    if cache.exists():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files if wanted(k)}
    jobs = [(root / "episodes" / e["episode"], e["town"], cfg.maps_dir, fcfg) for e in eps]
    parts, errors = [], []
    if cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers) as ex:
            results = list(ex.map(_episode_worker, jobs))
    else:
        results = [_episode_worker(j) for j in jobs]
    for i, (ep, out, err) in enumerate(results):
        if err:
            errors.append(f"{ep}: {err}")
            continue
        n = len(out["speed"])
        out["episode"] = np.full(n, i, np.int32)
        out["frame"] = np.arange(n, dtype=np.int32)
        parts.append(out)
    for e in errors:
        log(f"skipped episode {e}")
    if not parts:
        raise FrameError(f"{root}: no usable episodes ({len(errors)} failed)" + (f"; first: {errors[0]}" if errors else ""))
    data = concat_samples(parts)
    cache.parent.mkdir(exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **data)
    tmp.replace(cache)
    log(f"{len(data['speed'])} samples ({len(data['wmb_row'])} counterfactual world-model rows) from {len(parts)} "
        f"episodes -> {cache}")
    return {k: v for k, v in data.items() if wanted(k)}
