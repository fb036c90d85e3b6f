"""Bird's-eye-view pictures of episodes (`drive-stack render`, and eval's renders of failing routes).

Each frame is drawn centred on the ego, heading up: the road surface of every lane in view with its
boundaries coloured by marking type (white solid, grey broken, yellow double, none for curbs/grass),
crosswalks, the route (blue), traffic lights at their stop lines in their state's colour, agents as oriented
boxes with a heading tick (vehicles grey, pedestrians magenta, cyclists cyan, props brown, emergency red, the
ego green), the ego's plan (orange), the visibility region (the perception range, a circle) and events
(infractions: red crosses with their name). Frames go to PNG files and an animated GIF (Pillow).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .maps.lanegraph import LaneGraph, MarkingType
from .sim.perception import PERCEPTION_RANGE
from .sim.state import AgentKind, LightState

KIND_COLOUR = {AgentKind.VEHICLE: (150, 150, 160), AgentKind.PEDESTRIAN: (230, 60, 200),
               AgentKind.CYCLIST: (40, 200, 220), AgentKind.STATIC: (170, 110, 50), AgentKind.EMERGENCY: (235, 40, 40)}
LIGHT_COLOUR = {LightState.RED: (240, 40, 40), LightState.YELLOW: (240, 200, 40), LightState.GREEN: (40, 220, 80),
                LightState.OFF: (90, 90, 90)}
MARK_COLOUR = {MarkingType.Solid: (235, 235, 235), MarkingType.SolidSolid: (240, 210, 60),
               MarkingType.Broken: (160, 160, 160), MarkingType.BrokenBroken: (200, 180, 60),
               MarkingType.SolidBroken: (240, 210, 60), MarkingType.BrokenSolid: (240, 210, 60)}
BACKGROUND, ROAD = (25, 28, 32), (62, 64, 70)


@dataclass
class RenderFrame:
    """What one picture shows (CARLA world frame)."""

    t: float
    ego: np.ndarray  # (4,) x, y, yaw, speed
    agents: np.ndarray  # (A, 7) x, y, yaw, speed, length, width, kind
    valid: np.ndarray  # (A,) bool
    lights: np.ndarray | None = None  # (T,) LightState of the map's lights
    plan: np.ndarray | None = None  # (P, 2) the ego's planned path, ego frame (x forward, y right)
    status: str = ""
    events: list = field(default_factory=list)  # (x, y, label) in the world frame


def frames_from_arrays(arr: dict, status: list[str] | None = None) -> list[RenderFrame]:
    """Frames of a collected episode (dataset/collect.py arrays)."""
    out = []
    for k in range(len(arr["t"])):
        out.append(RenderFrame(float(arr["t"][k]), arr["ego"][k, :4].astype(np.float64), arr["agents"][k],
                               arr["agents_valid"][k], arr["lights"][k] if "lights" in arr else None,
                               arr["plan"][k] if "plan" in arr else None, status[k] if status else ""))
    return out


class BevRenderer:
    def __init__(self, g: LaneGraph, route_xy: np.ndarray | None = None, size: int = 480, metres: float = 80.0):
        self.g, self.route, self.size, self.res = g, route_xy, size, size / metres  # px per metre
        self.view = metres

    def _to_px(self, xy: np.ndarray, ego: np.ndarray) -> np.ndarray:
        """World (N, 2) -> pixel (N, 2), ego at the centre, its heading up, its right to the right."""
        d = np.asarray(xy, np.float64) - ego[:2]
        c, s = np.cos(ego[2]), np.sin(ego[2])
        fwd = d[:, 0] * c + d[:, 1] * s
        right = -d[:, 0] * s + d[:, 1] * c
        return np.stack([self.size / 2 + right * self.res, self.size / 2 - fwd * self.res], 1)

    def _box(self, draw, ego, x, y, yaw, length, width, colour, outline=None):
        c, s = np.cos(yaw), np.sin(yaw)
        hl, hw = length / 2, width / 2
        corners = np.array([[x + c * dx - s * dy, y + s * dx + c * dy]
                            for dx, dy in ((hl, hw), (hl, -hw), (-hl, -hw), (-hl, hw))])
        px = self._to_px(corners, ego)
        draw.polygon([tuple(p) for p in px], fill=colour, outline=outline)
        nose = self._to_px(np.array([[x, y], [x + c * hl * 1.3, y + s * hl * 1.3]]), ego)
        draw.line([tuple(nose[0]), tuple(nose[1])], fill=(255, 255, 255), width=1)

    def draw(self, f: RenderFrame) -> Image.Image:
        g, ego, res = self.g, f.ego, self.res
        img = Image.new("RGB", (self.size, self.size), BACKGROUND)
        draw = ImageDraw.Draw(img, "RGBA")
        r = self.view * 0.75
        pts = np.asarray(g.tree.query_ball_point(ego[:2], r=r), np.int64)
        pts.sort()
        if len(pts):
            lanes = g.pt_lane[pts]
            # road surface: each lane's points in view as a thick line
            for lane in np.unique(lanes):
                sel = pts[lanes == lane]
                px = self._to_px(g.pt_xy[sel], ego)
                w = max(int(g.lane_width[lane] * res), 1)
                if len(px) > 1:
                    draw.line([tuple(p) for p in px], fill=ROAD, width=w)
            # boundaries by marking type
            yaw = g.pt_yaw[pts]
            half = g.lane_width[lanes] / 2
            nrm = np.stack([np.sin(yaw), -np.cos(yaw)], 1)  # left unit vector
            for side, marks in ((1.0, g.pt_left_mark[pts]), (-1.0, g.pt_right_mark[pts])):
                b = self._to_px(g.pt_xy[pts] + side * half[:, None] * nrm, ego)
                for m in np.unique(marks):
                    colour = MARK_COLOUR.get(MarkingType(int(m)))
                    if colour is None:
                        continue
                    sel = np.flatnonzero(marks == m)
                    if m in (MarkingType.Broken, MarkingType.BrokenBroken):
                        sel = sel[(g.pt_s[pts[sel]] % 6.0) < 3.0]
                    for p in b[sel]:
                        draw.point(tuple(p), fill=colour)
        for poly in g.crosswalks():
            if np.hypot(*(poly.mean(0) - ego[:2])) < r:
                draw.polygon([tuple(p) for p in self._to_px(poly, ego)], fill=(200, 200, 200, 60))
        if self.route is not None:
            near = np.hypot(self.route[:, 0] - ego[0], self.route[:, 1] - ego[1]) < r
            if near.sum() > 1:
                draw.line([tuple(p) for p in self._to_px(self.route[near], ego)], fill=(60, 120, 255, 150), width=3)
        # visibility region
        c = self.size / 2
        rr = PERCEPTION_RANGE * res
        draw.ellipse([c - rr, c - rr, c + rr, c + rr], outline=(255, 255, 255, 70), width=1)
        # lights
        if f.lights is not None and len(f.lights) == g.num_lights:
            for t in np.flatnonzero(np.hypot(g.light_pos[:, 0] - ego[0], g.light_pos[:, 1] - ego[1]) < r):
                p = self._to_px(g.light_pos[t:t + 1], ego)[0]
                col = LIGHT_COLOUR.get(LightState(int(f.lights[t])), (90, 90, 90))
                draw.ellipse([p[0] - 4, p[1] - 4, p[0] + 4, p[1] + 4], fill=col, outline=(0, 0, 0))
        # agents
        for a in np.flatnonzero(f.valid):
            x, y, yaw, _, length, width, kind = f.agents[a]
            if np.hypot(x - ego[0], y - ego[1]) > r:
                continue
            self._box(draw, ego, x, y, yaw, length, width, KIND_COLOUR.get(AgentKind(int(kind)), (150, 150, 150)))
        self._box(draw, ego, ego[0], ego[1], ego[2], 4.89, 2.12, (60, 220, 90), outline=(255, 255, 255))
        # plan (ego frame -> world)
        if f.plan is not None and len(f.plan) > 1:
            cy, sy = np.cos(ego[2]), np.sin(ego[2])
            w = np.stack([ego[0] + f.plan[:, 0] * cy - f.plan[:, 1] * sy, ego[1] + f.plan[:, 0] * sy + f.plan[:, 1] * cy], 1)
            draw.line([tuple(p) for p in self._to_px(w, ego)], fill=(255, 150, 30), width=2)
        for x, y, label in f.events:
            p = self._to_px(np.array([[x, y]]), ego)[0]
            draw.line([p[0] - 6, p[1] - 6, p[0] + 6, p[1] + 6], fill=(255, 40, 40), width=3)
            draw.line([p[0] - 6, p[1] + 6, p[0] + 6, p[1] - 6], fill=(255, 40, 40), width=3)
            draw.text((p[0] + 8, p[1] - 8), label, fill=(255, 90, 90))
        draw.rectangle([0, 0, self.size, 16], fill=(0, 0, 0, 160))
        draw.text((4, 2), f"t={f.t:6.2f}s  v={ego[3]:5.2f}m/s  {f.status}"[:90], fill=(255, 255, 255))
        return img


def render_frames(frames: list[RenderFrame], renderer: BevRenderer, out_dir: str | Path, gif: bool = True,
                  png: bool = True, every: int = 1, fps: float = 10.0) -> dict:
    """Write frames (every `every`-th) as PNGs and/or one animated GIF; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images, pngs = [], []
    for k, f in enumerate(frames[::every]):
        img = renderer.draw(f)
        if png:
            p = out / f"{k:05d}.png"
            img.save(p)
            pngs.append(str(p))
        if gif:
            images.append(img.convert("P", palette=Image.ADAPTIVE, colors=64))
    written = {"png": pngs, "frames": len(frames[::every])}
    if gif and images:
        p = out / "episode.gif"
        images[0].save(p, save_all=True, append_images=images[1:], duration=int(1000 * every / fps), loop=0,
                       optimize=False)
        written["gif"] = str(p)
    return written


def event_points(record: dict) -> list[tuple[float, float, str]]:
    """(x, y, kind) of every event of a route record (its monitor's event table, ``meta.events``)."""
    return [(float(ev["x"]), float(ev["y"]), ev["kind"]) for ev in record.get("meta", {}).get("events", [])
            if ev["kind"] != "route_timeout"]


def record_route_frames(g: LaneGraph, spec, policy: str, seed: int, every: int = 2, model: str | None = None):
    """Re-drive a route (deterministic) and return (frames at 20/every Hz, the route record, the dense route)."""
    from .loop import ClosedLoop, drive, is_privileged
    from .metrics.bench2drive import leaderboard_route_id
    from .policies import make_policy

    frames: list[RenderFrame] = []
    steps = [0]

    def observer(st):
        state, lights = st.state, st.lights
        if steps[0] % every == 0:
            frames.append(RenderFrame(float(state.t[0]), np.array([state.x[0, 0], state.y[0, 0], state.yaw[0, 0],
                                                                   state.speed[0, 0]], np.float64),
                                      np.stack([state.x[0], state.y[0], state.yaw[0], state.speed[0], state.length[0],
                                                state.width[0], state.kind[0].astype(np.float32)], -1)[1:],
                                      state.valid[0, 1:].copy(), lights[0].copy() if lights.size else None,
                                      st.plan.path[0].copy(), st.policy.status[0] if is_privileged(st.policy) else ""))
        steps[0] += 1

    loop = ClosedLoop.for_route(g, spec, seed=seed)
    drive(loop, make_policy(policy, 1, g=g, **({"model": model} if model else {})), observer=observer)
    record = loop.record(0, leaderboard_route_id(spec.route_id), town=spec.town)
    events = event_points(record)
    for f in frames:  # an event stays on the picture from where it happened on
        f.events = [ev for ev in events if np.hypot(ev[0] - f.ego[0], ev[1] - f.ego[1]) < 60.0]
    return frames, record, loop.routes[0]
