"""`drive-stack takeover ingest BAGS... --out DIR`: the stack's takeover bags as training data, in the format of
the offline collection (`collect --takeover`), so `train il|takead --data` reads them like any dataset.

A takeover bag (the recorder's `takeover_*` folders, or continuous `seg_*` ones) holds, for its window, the
simulator's topics (odometry, objects, traffic lights), what the stack decided (the planner's
and the executed commands, who drove each tick) and, with the pseudo-simulator's privileged expert offered, the
expert's command and plan at every tick: the labels. The map (/carla/world_info, OpenDRIVE) and the route
(/carla/hero/global_plan, CarlaRoute) are latched; the recorder puts them into every takeover bag.

Each bag becomes one episode: frames at 10 Hz (every second tick, on the ticks the offline recorder keeps), the
scene rebuilt exactly as the stack's perception node rebuilds it (`stack.wire`), the expert's controls and plan
as labels, `controller` (0 planner, 1 expert, 2 safe stop) and `policy_ctl` (the planner's own command; NaN on a
tick it sent none), and the episode's takeovers in its index entry. The map travels with the episode
(`map.xodr`), so the dataset needs no maps folder. A bag cut short by a crash is read to its last complete
chunk (a warning names it; the entry says `truncated`). A bag without the expert's plan (a real car: no
privileged expert) is refused, naming the topic.

Light states are the ones the stack's perception used at the tick (its /drive_stack/scene message; the light
status topic has no header, so its log time cannot say which tick it belongs to). The first
`FeatureConfig.history` seconds of a bag's window have partial agent histories, as the first frames of
a route do offline.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..metrics.bench2drive import takeover_record
from ..sim.state import DT
from ..sim.world import Controls
from ..stack import wire
from ..stack.actors import SlotMap
from ..stack.bags import NS, BagError, _open_bag
from ..stack.leaderboard import route_from_plan
from ..stack.topics import (
    EXPERT_CMD,
    EXPERT_PLAN,
    GLOBAL_PLAN,
    OBJECTS,
    ODOMETRY,
    PLANNER_CMD,
    SCENE,
    STATUS,
    TAKEOVER,
    TRAFFIC_LIGHTS,
    TRAFFIC_LIGHTS_INFO,
    WORLD_INFO,
)
from .collect import CONTROLLER_CODES, FORMAT_VERSION, FRAME_EVERY, EpisodeRecorder

REQUIRED = (ODOMETRY, OBJECTS, EXPERT_CMD, EXPERT_PLAN, WORLD_INFO, GLOBAL_PLAN)


class IngestError(ValueError):
    """A bag that cannot become training data; the message names the bag, what is missing and the fix."""


@dataclass
class _Step:  # what EpisodeRecorder reads of a loop.Step
    state: object
    lights: np.ndarray
    controls: Controls
    plan: object
    policy: object
    controller: list
    acting: Controls


@dataclass
class _Plan:
    path: np.ndarray
    target_speed: np.ndarray
    speed_profile: np.ndarray | None = None
    valid: np.ndarray | None = None


def bag_typestore(bag: Path):
    """A ROS 2 typestore with every message type the bag's MCAP schemas define (a bag carries its own
    definitions: it decodes without the interface packages installed). A file cut short keeps what it has."""
    from mcap.records import Schema
    from mcap.stream_reader import StreamReader
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from ..stack.bags import _bag_files

    ts = get_typestore(Stores.ROS2_KILTED)
    _, mcaps = _bag_files(bag)
    found = {}
    for f in mcaps:
        try:
            with open(f, "rb") as fh:
                for rec in StreamReader(fh, validate_crcs=False).records:
                    if isinstance(rec, Schema) and rec.encoding == "ros2msg" and rec.name not in found:
                        found[rec.name] = get_types_from_msg(rec.data.decode(), rec.name)
        except Exception:  # noqa: BLE001 - a cut file: the schemas before the break are what there is
            pass
    new = {}
    for types in found.values():
        new.update({k: v for k, v in types.items() if k not in ts.fielddefs})
    if new:
        ts.register(new)
    return ts


def read_messages(bag: Path, warn) -> tuple[dict[str, list[tuple[int, object]]], bool]:
    """{topic: [(log time ns, message)]} of a bag, and whether it was cut short."""
    ts = bag_typestore(bag)
    types, it, cut = _open_bag(bag, ts, warn)
    out: dict[str, list] = {}
    for topic, msgtype, t_ns, data in it:
        out.setdefault(topic, []).append((t_ns, ts.deserialize_cdr(data, msgtype)))
    return out, bool(cut)


def _key(stamp) -> int:
    """A tick's index from a header stamp (ticks are DT apart from t = 0)."""
    return int(round(wire.stamp_sec(stamp) / DT))


def _by_tick(msgs: list) -> dict[int, object]:
    out = {}
    for _, m in msgs:
        out[_key(m.header.stamp)] = m  # a re-sent tick (late joiners) carries the same content
    return out


def episode_from_bag(bag: str | Path, max_agents: int = 64, warn=None) -> tuple[dict, dict, str]:
    """(arrays, index entry, the map's OpenDRIVE text) of one takeover bag. Raises IngestError or BagError."""
    from ..maps.opendrive import load_xodr_text
    from ..routes.xml import RouteSpec

    bag = Path(bag)
    warn = warn or (lambda m: print(f"warning: {m}", file=sys.stderr))
    msgs, cut = read_messages(bag, warn)
    missing = [t for t in REQUIRED if not msgs.get(t)]
    if missing:
        hint = {EXPERT_PLAN: "the labels come from the privileged expert, which only the pseudo-simulator offers "
                             "(pseudo_sim offer_expert:=true)",
                EXPERT_CMD: "the labels come from the privileged expert (pseudo_sim offer_expert:=true)",
                WORLD_INFO: "takeover bags carry the latched map since the recorder keeps it; record the bag again",
                GLOBAL_PLAN: "takeover bags carry the latched route since the recorder keeps it; record the bag again"}
        raise IngestError(f"{bag}: no {', '.join(missing)} in this bag; " + "; ".join(
            hint.get(t, "record it with `drive-stack-ros stack run`") for t in missing))
    info = msgs[WORLD_INFO][-1][1]
    xodr = info.opendrive
    town = info.map_name or _xodr_name(xodr) or "bag_map"
    g = load_xodr_text(town, xodr, source=f"{bag} {WORLD_INFO}")
    route = route_from_plan(g, wire.route_positions(msgs[GLOBAL_PLAN][-1][1], f"{bag} {GLOBAL_PLAN}"),
                            bag.name, f"{bag} {GLOBAL_PLAN}")
    # the dense route as keypoints 2 m apart (as route files have them), so plan_route gives it back anywhere
    step = max(int(round(2.0 / max(float(np.median(np.diff(route.cum_s))), 1e-6))), 1)
    keypoints = np.column_stack([route.xy[::step], np.zeros(len(route.xy[::step]))])
    if len(route.xy) and not np.allclose(keypoints[-1, :2], route.xy[-1]):
        keypoints = np.vstack([keypoints, [*route.xy[-1], 0.0]])
    spec = RouteSpec(bag.name, town, keypoints, source=str(bag))
    odom, objects = _by_tick(msgs[ODOMETRY]), _by_tick(msgs[OBJECTS])
    expert, eplan = _by_tick(msgs[EXPERT_CMD]), _by_tick(msgs[EXPERT_PLAN])
    planner = _by_tick(msgs.get(PLANNER_CMD, []))
    who = {}
    for _, m in msgs.get(STATUS, []):
        if m.node == "takeover_monitor" and m.detail.startswith("controller="):
            who[_key(m.header.stamp)] = m.detail.partition("=")[2]
    scenes = _by_tick(msgs.get(SCENE, []))  # the light states the stack's perception used at each tick
    lights = sorted(msgs.get(TRAFFIC_LIGHTS, []), key=lambda r: r[0])  # no header: by the time it was logged
    light_t = np.array([t for t, _ in lights], np.int64)
    info = msgs.get(TRAFFIC_LIGHTS_INFO, [])
    light_map = wire.light_index(info[-1][1], g.light_pos) if info else {}  # light actor id -> the map's light
    slots = SlotMap(max_agents)  # actor ids -> slots, kept over the bag's ticks as the stack's perception keeps it
    rec = EpisodeRecorder(g, spec, None, max_agents, shadow=True)
    rec.route = route
    ticks = sorted(odom)
    skipped, controllers, moved, prev = [], [], [], None
    for k in ticks:
        o = odom[k]
        p = o.pose.pose.position
        moved.append(0.0 if prev is None else float(np.hypot(p.x - prev[0], p.y - prev[1])))
        prev = (p.x, p.y)
        controllers.append(who.get(k, "planner"))
        if k % FRAME_EVERY:
            continue
        if k not in objects or k not in expert or k not in eplan:
            skipped.append(k)
            continue
        sc = scenes.get(k)
        # the ego's acceleration: what the stack's perception used (its scene of the tick), else from the speeds
        if sc is not None:
            accel = float(sc.ego_accel)
        elif k - 1 in odom:
            accel = (o.twist.twist.linear.x - odom[k - 1].twist.twist.linear.x) / DT
        else:
            accel = 0.0
        st = wire.state_from_rows(o, wire.object_rows(objects[k]), max_agents, g.num_lights, accel=accel,
                                  slots=slots)
        st.t[0] = wire.stamp_sec(o.header.stamp)
        if sc is not None and len(sc.light_ids):
            lt = wire.scene_lights(sc, g.light_id)
        else:  # no scene of this tick: the light status logged last before it
            j = int(np.searchsorted(light_t, int(round(k * DT * NS)), side="right")) - 1
            lt = wire.lights_array(lights[j][1] if j >= 0 else None, light_map, g.num_lights)
        e, pm = expert[k], eplan[k]
        path = wire.plan_path(pm)
        plan = _Plan(path[None], np.array([pm.target_speed], np.float64), wire.plan_profile(pm)[None])
        pc = planner.get(k)
        acting = Controls(*(np.array([np.nan if pc is None else float(getattr(pc, f))]) for f in
                            ("throttle", "steer", "brake")))
        rec.steps = k  # the tick's index: the recorder keeps the same ticks it keeps offline
        rec(_Step(st, lt, Controls(np.array([float(e.throttle)]), np.array([float(e.steer)]),
                                   np.array([float(e.brake)])), plan, None, [who.get(k, "planner")], acting))
    if not rec.rows["t"]:
        raise IngestError(f"{bag}: no complete frame (odometry, objects and the expert's command and plan of one "
                          "tick) in this bag")
    if skipped:
        warn(f"{bag}: {len(skipped)} frame(s) left out, a message of their tick missing (first t={skipped[0] * DT:.2f} s)")
    events = [{"t": round(wire.stamp_sec(m.header.stamp), 3), "cause": m.cause_name, "detail": m.detail,
               "ttc": float(m.ttc) if np.isfinite(m.ttc) else None} for _, m in msgs.get(TAKEOVER, [])]
    arrays = rec.arrays()
    info_path = bag / "takeover.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    entry = {"episode": f"bag_{bag.name}", "route_id": bag.name, "town": town, "scenario_type": None, "seed": None,
             "frames": int(len(arrays["t"])), "duration_s": float(len(arrays["t"]) * FRAME_EVERY * DT),
             "driving_score": None, "status": "takeover bag", "source": str(bag.resolve()), "truncated": cut,
             "takeovers": takeover_record(events, controllers, np.asarray(moved), DT)}
    if info:
        entry["takeover_json"] = info
    return arrays, entry, xodr


def _xodr_name(text: str) -> str:
    import re

    m = re.search(r"<header[^>]*\bname=\"([^\"]*)\"", text[:4000])
    return m.group(1) if m else ""


def find_bags(paths: list[str]) -> list[Path]:
    """Bag folders named, or found (takeover_*, seg_*) under the folders named."""
    out = []
    for p in map(Path, paths):
        if not p.exists():
            raise BagError(f"{p}: no such bag or folder")
        if p.is_dir() and not any(p.glob("*.mcap")) and not (p / "metadata.yaml").exists():
            found = sorted(d for d in p.rglob("*") if d.is_dir() and any(d.glob("*.mcap")))
            if not found:
                raise BagError(f"{p}: no bag folders (with a .mcap file) under it")
            out += found
        else:
            out.append(p)
    return out


def ingest(bags: list[str], out: str, max_agents: int = 64, log=print) -> dict:
    """Every bag (or the bags under each folder) into a dataset at `out` (index.json + episodes/). A bag that
    cannot be used is reported and left out; the others still land. Returns the index."""
    t0 = time.perf_counter()
    root = Path(out)
    found = find_bags(bags)
    idx_path = root / "index.json"
    idx = json.loads(idx_path.read_text()) if idx_path.exists() else {
        "format_version": FORMAT_VERSION, "frame_dt": FRAME_EVERY * DT, "config": {"source": "takeover ingest"},
        "models": {}, "episodes": [], "failed": [], "skipped_towns": []}
    have = {e["episode"] for e in idx["episodes"]}
    for i, bag in enumerate(found, 1):
        try:
            arrays, entry, xodr = episode_from_bag(bag, max_agents, warn=lambda m: log(f"warning: {m}"))
        except (IngestError, BagError, wire.InvalidMessage) as e:
            idx["failed"].append({"bag": str(bag), "error": str(e)})
            log(f"[{i}/{len(found)}] {bag}: skipped: {e}")
            continue
        name = entry["episode"]
        k = 1
        while name in have:  # bags of different runs may share a folder name: never overwrite
            name = f"{entry['episode']}_{k}"
            k += 1
        entry["episode"] = name
        ep = root / "episodes" / name
        ep.mkdir(parents=True, exist_ok=True)
        tmp = ep / "arrays.tmp.npz"
        np.savez_compressed(tmp, **arrays)
        tmp.replace(ep / "arrays.npz")
        (ep / "map.xodr").write_text(xodr)
        (ep / "meta.json").write_text(json.dumps({**entry, "format_version": FORMAT_VERSION,
                                                  "frame_dt": FRAME_EVERY * DT}, indent=2))
        idx["episodes"].append(entry)
        have.add(name)
        tk = entry["takeovers"]
        log(f"[{i}/{len(found)}] {bag.name}: {entry['frames']} frames, {tk['count']} takeover(s) "
            f"{tk['causes']}, expert drove {tk['seconds']['expert']:.1f} s" + (" (cut short)" if entry["truncated"] else ""))
    idx["wall_s"] = round(time.perf_counter() - t0, 2)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / "index.tmp.json"
    tmp.write_text(json.dumps(idx, indent=2))
    tmp.replace(idx_path)
    n = len(idx["episodes"])
    log(f"{n} episode(s), {sum(e['frames'] for e in idx['episodes'])} frames, "
        f"{sum(e['takeovers']['count'] for e in idx['episodes'])} takeover(s), {len(idx['failed'])} bag(s) failed; "
        f"index: {idx_path}")
    return idx


__all__ = ["CONTROLLER_CODES", "IngestError", "episode_from_bag", "find_bags", "ingest", "read_messages"]
