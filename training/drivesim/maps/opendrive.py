"""OpenDRIVE -> LaneGraph, through the PyPI CARLA client offline (``carla.Map(name, xodr_text)``, no server).

Traffic lights and stop signs: CARLA towns reference their signals on the junction's connecting lanes,
so a signal governs *entry* into a junction lane; its stop line is the start of that lane. CARLA's
trigger volumes live in the Unreal assets, not in OpenDRIVE: a stop sign's trigger volume is modelled
here as a box on the approach lane, STOP_TRIGGER_LENGTH long, ending at the junction entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from ..geometry import polyline_headings, resample_polyline
from .lanegraph import MAX_LINKS, LaneGraph

LOADER_VERSION = "7"
DEFAULT_SPEED_LIMIT = 30.0 / 3.6  # [m/s] CARLA's town default
STOP_TRIGGER_LENGTH = 5.0  # [m]
TRAFFIC_LIGHT_TYPE = "1000001"
STOP_SIGN_TYPE = "206"
SPEED_SIGN_TYPE = "274"
_UNIT_TO_MS = {"mph": 0.44704, "km/h": 1 / 3.6, "kmh": 1 / 3.6, "m/s": 1.0, "": 1 / 3.6}


class MapError(ValueError):
    """A map that cannot be loaded; the message names the file and the fix."""


def cache_dir() -> Path:
    root = os.environ.get("DRIVE_STACK_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "drive-stack")
    return Path(root) / "maps"


def carla_version() -> str:
    """The installed carla client's version: the lane graph it builds differs between 0.9.15 and 0.9.16 (crosswalk
    outlines, Town04's painted stop markings), so cache entries are kept per version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("carla")
    except PackageNotFoundError:
        return "none"


def xodr_hash(text: str) -> str:
    return hashlib.sha256((LOADER_VERSION + text).encode()).hexdigest()[:20]


GEOMETRY_SHAPES = ("line", "arc", "spiral", "poly3", "paramPoly3")


def _parse_xodr(xodr_text: str, source: str) -> ET.Element:
    """The OpenDRIVE root element, checked for what crashes libcarla's parser (a segmentation fault, not an
    exception): a road without <planView>, a <planView> without <geometry>, a <geometry> without a shape."""
    try:
        root = ET.fromstring(xodr_text)
    except ET.ParseError as e:
        raise MapError(f"{source}: not valid OpenDRIVE XML ({e}); re-export the map or check the file is complete") from e
    if root.tag != "OpenDRIVE":
        raise MapError(f"{source}: root element is <{root.tag}>, expected <OpenDRIVE>")
    bad: list[str] = []
    for road in root.iter("road"):
        pv = road.find("planView")
        geoms = [] if pv is None else pv.findall("geometry")
        if pv is None:
            bad.append(f"road {road.get('id')}: no <planView>")
        elif not geoms:
            bad.append(f"road {road.get('id')}: empty <planView> (no <geometry>)")
        elif any(not any(g.find(k) is not None for k in GEOMETRY_SHAPES) for g in geoms):
            bad.append(f"road {road.get('id')}: a <geometry> without a shape ({', '.join(GEOMETRY_SHAPES)})")
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise MapError(f"{source}: roads without reference-line geometry, which crash CARLA's OpenDRIVE parser: "
                       f"{'; '.join(bad[:5])}{more}; re-export the map with every road's <planView> geometry")
    return root


def _road_speeds(xodr_text: str, source: str) -> dict[int, float]:
    """Per-road speed limit from <road><type><speed max unit/> elements. [m/s]"""
    root = _parse_xodr(xodr_text, source)
    speeds: dict[int, float] = {}
    for road in root.iter("road"):
        for typ in road.findall("type"):
            sp = typ.find("speed")
            if sp is not None and sp.get("max") not in (None, "no limit", "undefined"):
                try:
                    speeds[int(road.get("id"))] = float(sp.get("max")) * _UNIT_TO_MS.get(sp.get("unit", ""), 1 / 3.6)
                except (TypeError, ValueError):
                    pass
                break
    return speeds


def _lane_key(wp) -> tuple[int, int, int]:
    return (wp.road_id, wp.section_id, wp.lane_id)


def _walk_lane(entry, key: tuple[int, int, int], step: float = 0.5, max_points: int = 100_000) -> list:
    """Waypoints every `step` m from `entry` while they stay on lane `key`. (libcarla's next_until_lane_end
    crashes the process on a lane that ends at a map edge, so the walk is done here.)"""
    wps = [entry]
    while len(wps) < max_points:
        nxt = [w for w in wps[-1].next(step) if _lane_key(w) == key]
        if not nxt:
            break
        wps.append(nxt[0])
    return wps


def build_lane_graph(name: str, xodr_text: str, source: str | None = None, check: bool = True) -> LaneGraph:
    """Build the lane graph of an OpenDRIVE text (no cache), in this process. Raises MapError on a map that
    does not parse. libcarla can crash the process on a malformed map: what is known to crash it is refused
    first (`check`; off only to test the isolation); `load_xodr_text` builds in a child process."""
    import carla  # the PyPI client; only the offline map API is used

    source = source or name
    road_speed = _road_speeds(xodr_text, source) if check else {}
    try:
        cmap = carla.Map(name, xodr_text)
        topology = cmap.get_topology()
    except RuntimeError as e:  # pragma: no cover - depends on libcarla's error
        raise MapError(f"{source}: CARLA could not parse this OpenDRIVE ({e})") from e
    if not topology:
        raise MapError(f"{source}: OpenDRIVE has no drivable lanes (empty topology); is the file truncated?")

    # ---- 1. lanes from topology segments (entry, exit) of the same (road, section, lane)
    keys: dict[tuple[int, int, int], int] = {}
    seg_pts, seg_marks, seg_width, seg_junction, seg_entry, seg_exit = [], [], [], [], [], []
    park: list[tuple] = []  # (x, y, yaw, driving lane, width) of parking-lane points
    # lanes that end at a map edge appear in the topology only as some segment's exit: walk them to their end
    dead_end = [(x, None) for _, x in topology]
    for entry, exit_ in list(topology) + dead_end:
        key = _lane_key(entry)
        if key in keys:
            continue
        wps = _walk_lane(entry, key)
        exit_ = wps[-1] if exit_ is None else exit_
        xy = [(w.transform.location.x, w.transform.location.y) for w in wps]
        ex = (exit_.transform.location.x, exit_.transform.location.y)
        # the exit is where successors start (it may carry another lane id inside junctions): end there
        if np.hypot(ex[0] - xy[-1][0], ex[1] - xy[-1][1]) > 0.01:
            xy.append(ex)
            wps.append(wps[-1])
        if len(xy) < 2:
            continue
        keys[key] = len(seg_pts)
        seg_pts.append(np.array(xy))
        seg_marks.append(
            np.array([(int(w.left_lane_marking.type), int(w.right_lane_marking.type)) for w in wps], dtype=np.int8)
        )
        seg_width.append(float(np.median([w.lane_width for w in wps])))
        if not entry.is_junction:  # parking spaces beside this lane, about every metre
            for w in wps[::2]:
                r = w.get_right_lane()
                if r is not None and r.lane_type == carla.LaneType.Parking:
                    park.append((r.transform.location.x, r.transform.location.y,
                                 np.deg2rad(r.transform.rotation.yaw), len(seg_pts) - 1, r.lane_width))
        seg_junction.append(entry.junction_id if entry.is_junction else -1)
        seg_entry.append(xy[0])
        seg_exit.append(xy[-1])
    L = len(seg_pts)
    if L == 0:
        raise MapError(f"{source}: no lane segments could be walked")

    # ---- 2. resample every lane at <= 1 m and concatenate
    pts, yaws, lanes, ss, lm, rm = [], [], [], [], [], []
    lane_start = np.zeros(L, np.int64)
    lane_npts = np.zeros(L, np.int64)
    lane_length = np.zeros(L)
    lane_ds = np.zeros(L)
    off = 0
    for i, xy in enumerate(seg_pts):
        r, s_new = resample_polyline(xy, 1.0)
        src_s = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
        nearest = np.clip(np.searchsorted(src_s, s_new), 0, len(xy) - 1)
        lane_start[i], lane_npts[i] = off, len(r)
        lane_length[i] = s_new[-1]
        lane_ds[i] = s_new[1] - s_new[0] if len(s_new) > 1 else 1.0
        pts.append(r)
        yaws.append(polyline_headings(r))
        lanes.append(np.full(len(r), i, np.int32))
        ss.append(s_new)
        lm.append(seg_marks[i][nearest, 0])
        rm.append(seg_marks[i][nearest, 1])
        off += len(r)
    pt_xy = np.concatenate(pts)

    # ---- 3. connectivity: a lane's exit coincides with its successors' entry (as GlobalRoutePlanner)
    entry_tree = cKDTree(np.array(seg_entry))
    succ = [[] for _ in range(L)]
    pred = [[] for _ in range(L)]
    for i, ex in enumerate(seg_exit):
        for j in entry_tree.query_ball_point(ex, r=0.05):
            if j != i and len(succ[i]) < MAX_LINKS and len(pred[j]) < MAX_LINKS:
                succ[i].append(j)
                pred[j].append(i)
    lane_succ = np.full((L, MAX_LINKS), -1, np.int32)
    lane_pred = np.full((L, MAX_LINKS), -1, np.int32)
    for i in range(L):
        lane_succ[i, : len(succ[i])] = succ[i]
        lane_pred[i, : len(pred[i])] = pred[i]

    # ---- 4. neighbours (same direction driving lanes), from the lane's middle waypoint
    lane_left = np.full(L, -1, np.int32)
    lane_right = np.full(L, -1, np.int32)
    key_list = list(keys.keys())
    for i, key in enumerate(key_list):
        mid = pt_xy[lane_start[i] + lane_npts[i] // 2]
        wp = cmap.get_waypoint(carla.Location(x=float(mid[0]), y=float(mid[1]), z=0.0), project_to_road=True)
        if wp is None or _lane_key(wp) != key:
            continue
        for getter, out in ((wp.get_left_lane, lane_left), (wp.get_right_lane, lane_right)):
            nb = getter()
            if nb is not None and nb.lane_type == carla.LaneType.Driving and nb.lane_id * key[2] > 0:
                j = keys.get(_lane_key(nb))
                if j is not None:
                    out[i] = j

    # ---- 5. speed limits: speed signs (km/h, whatever unit they claim) on the road, else the road's type speed, else the town default;
    # junction lanes inherit from their predecessor
    sign_speed: dict[int, float] = {}
    landmarks = cmap.get_all_landmarks()
    for lmk in landmarks:
        if lmk.type == SPEED_SIGN_TYPE and lmk.value > 0:
            sign_speed.setdefault(lmk.road_id, lmk.value / 3.6)  # CARLA reads sign values as km/h
    lane_road = np.array([k[0] for k in key_list], np.int32)
    lane_speed = np.array([sign_speed.get(r, road_speed.get(r, DEFAULT_SPEED_LIMIT)) for r in lane_road])
    lane_junction = np.array(seg_junction, np.int32)
    for i in np.flatnonzero(lane_junction >= 0):
        p = [x for x in pred[i] if lane_junction[x] < 0]
        if p:
            lane_speed[i] = lane_speed[p[0]]

    # ---- 6. traffic lights and stop signs: which junction lanes they govern
    by_road_lane: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, k in enumerate(key_list):
        by_road_lane[(k[0], k[2])].append(i)
    lane_light = np.full(L, -1, np.int32)
    lane_stop = np.full(L, -1, np.int32)
    light_index: dict[int, int] = {}
    light_ids, stop_ids = [], []
    for lmk in landmarks:
        if lmk.type not in (TRAFFIC_LIGHT_TYPE, STOP_SIGN_TYPE):
            continue
        for lo, hi in lmk.get_lane_validities():
            for lane_id in range(lo, hi + 1):
                # a signal on a junction lane governs it; one on an approach lane governs its junction successors
                on = by_road_lane.get((lmk.road_id, lane_id), [])
                governed = [i for i in on if lane_junction[i] >= 0] + [
                    int(j) for i in on if lane_junction[i] < 0 for j in lane_succ[i] if j >= 0 and lane_junction[j] >= 0]
                for i in governed:
                    if lmk.type == TRAFFIC_LIGHT_TYPE:
                        t = light_index.setdefault(int(lmk.id), len(light_ids))
                        if t == len(light_ids):
                            light_ids.append(int(lmk.id))
                        lane_light[i] = t
                    else:
                        if lane_stop[i] < 0:
                            lane_stop[i] = len(stop_ids)
                            stop_ids.append(int(lmk.id))

    lane_width = np.array(seg_width)
    pt_yaw = np.concatenate(yaws)
    # stop lines: across the start of each governed lane; merge identical (light, place) pairs
    sl_light, sl_lane, sl_p0, sl_p1 = [], [], [], []
    seen = set()
    for i in np.flatnonzero(lane_light >= 0):
        a = lane_start[i]
        c, yaw, hw = pt_xy[a], pt_yaw[a], lane_width[i] / 2
        key = (int(lane_light[i]), round(c[0], 0), round(c[1], 0))
        if key in seen:
            continue
        seen.add(key)
        left = np.array([np.sin(yaw), -np.cos(yaw)])
        sl_light.append(lane_light[i])
        sl_lane.append(i)
        sl_p0.append(c + left * hw)
        sl_p1.append(c - left * hw)
    # light cycle: slots per junction, ordered by approach heading so opposite approaches alternate
    T = len(light_ids)
    light_junction = np.full(T, -1, np.int32)
    light_pos = np.zeros((T, 2))
    light_heading = np.zeros(T)
    for t in range(T):
        gl = np.flatnonzero(lane_light == t)
        light_junction[t] = lane_junction[gl[0]] if len(gl) else -1
        light_pos[t] = pt_xy[lane_start[gl]].mean(axis=0) if len(gl) else 0
        light_heading[t] = pt_yaw[lane_start[gl[0]]] if len(gl) else 0
    light_slot = np.zeros(T, np.int32)
    light_nslots = np.ones(T, np.int32)
    for j in np.unique(light_junction):
        members = np.flatnonzero(light_junction == j)
        order = members[np.argsort(np.mod(light_heading[members], np.pi))]  # opposite approaches share a slot
        headings = np.mod(light_heading[order], np.pi)
        slot, prev = 0, None
        for t, h in zip(order, headings, strict=True):
            if prev is not None and abs(h - prev) > 0.5:
                slot += 1
            light_slot[t], prev = slot, h
        light_nslots[members] = slot + 1
    # stop signs: trigger box on the approach (the predecessor lane), ending at the governed lane's start
    G = len(stop_ids)
    stop_lane = np.full(G, -1, np.int32)
    stop_box = np.zeros((G, 5))
    for i in np.flatnonzero(lane_stop >= 0):
        g = lane_stop[i]
        if stop_lane[g] >= 0:
            continue
        stop_lane[g] = i
        a = lane_start[i]
        yaw = pt_yaw[a]
        c = pt_xy[a] - np.array([np.cos(yaw), np.sin(yaw)]) * STOP_TRIGGER_LENGTH / 2
        stop_box[g] = (c[0], c[1], yaw, STOP_TRIGGER_LENGTH, lane_width[i])

    cws = cmap.get_crosswalks()
    cw_pts = np.array([(p.x, p.y) for p in cws], dtype=np.float64).reshape(-1, 2)
    # crosswalk polygons are closed (first point repeated): split on the repeat
    starts, i = [0], 0
    while i < len(cw_pts):
        j = i + 1
        while j < len(cw_pts) and np.linalg.norm(cw_pts[j] - cw_pts[i]) > 1e-3:
            j += 1
        i = j + 1
        starts.append(min(i, len(cw_pts)))
    cw_start = np.array(starts if len(cw_pts) else [0], np.int64)

    g = LaneGraph(
        name=name,
        source_hash=xodr_hash(xodr_text),
        pt_xy=pt_xy,
        pt_yaw=pt_yaw,
        pt_lane=np.concatenate(lanes),
        pt_s=np.concatenate(ss),
        pt_left_mark=np.concatenate(lm).astype(np.int8),
        pt_right_mark=np.concatenate(rm).astype(np.int8),
        lane_start=lane_start,
        lane_npts=lane_npts,
        lane_length=lane_length,
        lane_ds=lane_ds,
        lane_width=lane_width,
        lane_speed_limit=lane_speed,
        lane_junction=lane_junction,
        lane_road=lane_road,
        lane_section=np.array([k[1] for k in key_list], np.int32),
        lane_id=np.array([k[2] for k in key_list], np.int32),
        lane_succ=lane_succ,
        lane_pred=lane_pred,
        lane_left=lane_left,
        lane_right=lane_right,
        lane_light=lane_light,
        lane_stop=lane_stop,
        light_id=np.array(light_ids, np.int64),
        light_junction=light_junction,
        light_slot=light_slot,
        light_nslots=light_nslots,
        light_pos=light_pos,
        stopline_light=np.array(sl_light, np.int32),
        stopline_lane=np.array(sl_lane, np.int32),
        stopline_p0=np.array(sl_p0).reshape(-1, 2),
        stopline_p1=np.array(sl_p1).reshape(-1, 2),
        stop_id=np.array(stop_ids, np.int64),
        stop_lane=stop_lane,
        stop_box=stop_box,
        cw_pts=cw_pts,
        cw_start=cw_start,
        park_xy=np.array([p[:2] for p in park], np.float64).reshape(-1, 2),
        park_yaw=np.array([p[2] for p in park], np.float64),
        park_lane=np.array([p[3] for p in park], np.int32),
        park_width=np.array([p[4] for p in park], np.float64),
    )
    g.validate()
    return g


def load_xodr(path: str | Path, name: str | None = None, use_cache: bool = True) -> LaneGraph:
    """Load an OpenDRIVE file into a LaneGraph, cached per file hash under DRIVE_STACK_CACHE."""
    path = Path(path)
    name = name or path.stem
    try:
        text = path.read_text()
    except FileNotFoundError as e:
        raise MapError(f"{path}: map file not found; set --maps-dir to the folder holding {name}.xodr") from e
    except UnicodeDecodeError as e:
        raise MapError(f"{path}: not a text OpenDRIVE file ({e})") from e
    return load_xodr_text(name, text, source=str(path), use_cache=use_cache)


def map_timeout_s() -> float:
    """[s] a map build may take before it counts as hung ($DRIVE_STACK_MAP_TIMEOUT, default 900)."""
    try:
        return float(os.environ.get("DRIVE_STACK_MAP_TIMEOUT", "900"))
    except ValueError:
        return 900.0


def _verdict_path(h: str) -> Path:
    return cache_dir() / f"failed-{h}-carla{carla_version()}.json"


class MapTimeout(MapError):
    """Building a map's lane graph took longer than its limit (the parser hung, or the machine is very busy)."""


def build_lane_graph_isolated(name: str, text: str, source: str | None = None, cache_to: str | Path | None = None,
                              timeout: float | None = None, check: bool = True) -> LaneGraph:
    """`build_lane_graph` in a child interpreter, so that a crash (segmentation fault, abort) or a hang of
    libcarla's OpenDRIVE parser cannot take the caller down: it becomes a MapError (MapTimeout for a hang)
    naming the map and what happened. The child saves the graph to a temporary file, the caller loads it (and
    copies it to `cache_to` when given)."""
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile

    source = source or name
    timeout = map_timeout_s() if timeout is None else timeout
    pkg_root = str(Path(__file__).resolve().parents[2])  # the folder holding the drivesim package
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([pkg_root, *filter(None, [os.environ.get("PYTHONPATH")])]))
    with tempfile.TemporaryDirectory(prefix="drive-stack-map-") as tmp:
        xodr, err = Path(tmp) / "map.xodr", Path(tmp) / "error.txt"
        xodr.write_text(text, encoding="utf-8")
        dest = Path(tmp) / "graph.npz"
        code = ("import sys; from drivesim.maps.opendrive import _child_build; "
                "sys.exit(_child_build(*sys.argv[1:]))")
        args = [sys.executable, "-c", code, name, str(xodr), str(dest), source, str(err), "1" if check else "0"]
        try:
            p = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise MapTimeout(f"{source}: CARLA's OpenDRIVE parser did not finish within {timeout:g} s (hung; "
                             f"$DRIVE_STACK_MAP_TIMEOUT raises the limit for a very large map)") from e
        if p.returncode == 0 and dest.exists():
            g = LaneGraph.load(dest)
            if cache_to is not None:
                try:
                    Path(cache_to).parent.mkdir(parents=True, exist_ok=True)
                    part = Path(f"{cache_to}.{os.getpid()}.part")
                    shutil.copyfile(dest, part)
                    part.replace(cache_to)
                except OSError:  # an unwritable cache only costs a rebuild next time
                    pass
            return g
        if p.returncode == _CHILD_MAP_ERROR and err.exists():
            raise MapError(err.read_text(encoding="utf-8"))
        tail = p.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        if p.returncode < 0:
            try:
                how = f"killed by {signal.Signals(-p.returncode).name}"
            except ValueError:
                how = f"killed by signal {-p.returncode}"
        else:
            how = f"exited with code {p.returncode}"
        raise MapError(f"{source}: CARLA's OpenDRIVE parser crashed on this map ({how}); check the file is valid "
                       f"OpenDRIVE (every road needs <planView> geometry and lanes)"
                       + (f"; its last output: {' | '.join(tail)}" if tail else ""))


_CHILD_MAP_ERROR = 3


def _child_build(name: str, xodr: str, out: str, source: str, err: str, check: str = "1") -> int:
    """Entry point of the child process of build_lane_graph_isolated."""
    try:
        g = build_lane_graph(name, Path(xodr).read_text(encoding="utf-8"), source, check=check == "1")
    except MapError as e:
        Path(err).write_text(str(e), encoding="utf-8")
        return _CHILD_MAP_ERROR
    g.save(Path(out))
    return 0


def load_xodr_text(name: str, text: str, source: str | None = None, use_cache: bool = True) -> LaneGraph:
    """The lane graph of an OpenDRIVE text, cached per text hash under DRIVE_STACK_CACHE. A cache miss builds it
    in a child process (build_lane_graph_isolated); a map that crashes or refuses to build is remembered by its
    hash (`failed-<hash>-carla<version>.json`), so later loads raise the same MapError at once."""
    source = source or name
    h = xodr_hash(text)
    cached = cache_dir() / f"{name}-{h}-carla{carla_version()}.npz"
    if use_cache and cached.exists():
        try:
            return LaneGraph.load(cached)
        except Exception:  # a corrupt cache entry is rebuilt, never trusted
            cached.unlink(missing_ok=True)
    verdict = _verdict_path(h)
    if use_cache and verdict.exists():
        try:
            reason = json.loads(verdict.read_text())["reason"]
        except (OSError, ValueError, KeyError):
            reason = None
        if reason:
            raise MapError(f"{source}: {reason} (verdict cached in {verdict}; fix the map or delete that file)")
    _parse_xodr(text, source)  # malformed XML and the known crashers fail fast, in this process
    try:
        return build_lane_graph_isolated(name, text, source, cache_to=cached if use_cache else None)
    except MapTimeout:  # a hang may be the machine's load: not remembered
        raise
    except MapError as e:
        msg = str(e)
        if use_cache:
            reason = msg[len(source) + 2:] if msg.startswith(f"{source}: ") else msg
            try:
                verdict.parent.mkdir(parents=True, exist_ok=True)
                verdict.write_text(json.dumps({"map": name, "source": source, "reason": reason}))
            except OSError:
                pass
        raise

