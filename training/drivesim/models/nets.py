"""PerlAD's networks (torch): a scene encoder, the decoupled planner and the prediction world model.

Scale is a config (`NetConfig`): the defaults train on 2 CPU cores in minutes; the same code trains wider and
deeper models on GPUs. Every network takes the feature tensors of `models/features.py` by name, with masks as
float32 (1 = present), and has static shapes, so it exports to ONNX as is (models/export.py).

Planner (decoupled): the lateral head scores A path anchors (k-means of the expert's paths, P points 2 m apart)
and regresses an offset for each; the longitudinal head scores S target speeds (0..max_speed) *for each
anchor's path*, so the speed is conditioned on the chosen path: the path's embedding queries the scene tokens
(cross-attention), so what lies along that path (a lead, a pedestrian, a stop line) drives its speed. Outputs: anchor_logits (B, A), paths
(B, A, P, 2) [m], speed_logits (B, A, S).

World model: for each of the N agents and K modes, a GRU rolls out T steps (2 Hz); at every step its input
holds the ego's planned pose at that step (relative to the agent's current predicted position too), so the
agents react to the ego's plan; each mode's probability is scored from its GRU state after the rollout, so it
depends on the plan too. Each step outputs a velocity change: an untrained model is a constant-velocity
predictor, and training learns the departures from it (braking, yielding, turning). Outputs: traj (B, N, K, T, 2) [m, ego frame], mode_logits (B, N, K).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .features import EGO_DIM, LANE_DIM, POS_SCALE, SPEED_SCALE, STEP_DIM, FeatureConfig

INPUT_NAMES = ("ego", "route", "route_mask", "agents", "agents_mask", "lanes", "lanes_mask")


@dataclass(frozen=True)
class NetConfig:
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    ff: int = 128
    num_anchors: int = 6  # A
    path_points: int = 6  # P (2 m apart)
    num_speeds: int = 13  # S target speeds, evenly 0..max_speed
    max_speed: float = 12.0  # [m/s]
    wm_modes: int = 3  # K
    wm_steps: int = 6  # T (2 Hz: 3 s)

    def speeds(self) -> np.ndarray:
        return np.linspace(0.0, self.max_speed, self.num_speeds)


def mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o))


class Attention(nn.Module):
    """Pre-norm self-attention block with a key mask (explicit ops: exports to ONNX without fast paths)."""

    def __init__(self, d: int, heads: int, ff: int):
        super().__init__()
        self.h, self.dk = heads, d // heads
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff = mlp(d, ff, d)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.n1(x)).reshape(B, T, 3, self.h, self.dk).permute(2, 0, 3, 1, 4).unbind(0)
        att = (q @ k.transpose(-1, -2)) / float(np.sqrt(self.dk))
        att = att + (key_mask[:, None, None, :] - 1.0) * 1e4
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.out(y)
        return x + self.ff(self.n2(x))


class SceneEncoder(nn.Module):
    """Tokens [ego, route, agents (N), lanes (L)] -> attention layers. Returns (tokens (B, 2+N+L, d), mask)."""

    def __init__(self, fcfg: FeatureConfig, ncfg: NetConfig):
        super().__init__()
        d = ncfg.d_model
        self.fcfg = fcfg
        self.ego = mlp(EGO_DIM, d, d)
        self.route = mlp(fcfg.route_points * 4, d, d)
        self.agent = mlp(fcfg.agent_dim, d, d)
        self.lane_pt = mlp(LANE_DIM, d, d)
        self.lane = mlp(d, d, d)
        self.token_type = nn.Parameter(torch.zeros(4, d))
        self.blocks = nn.ModuleList([Attention(d, ncfg.heads, ncfg.ff) for _ in range(ncfg.layers)])
        self.norm = nn.LayerNorm(d)

    def forward(self, ego, route, route_mask, agents, agents_mask, lanes, lanes_mask):
        B = ego.shape[0]
        r = (route * route_mask[..., None]).reshape(B, -1)
        lane = self.lane(self.lane_pt(lanes).max(dim=2).values)
        tok = torch.cat([(self.ego(ego) + self.token_type[0])[:, None], (self.route(r) + self.token_type[1])[:, None],
                         self.agent(agents) + self.token_type[2], lane + self.token_type[3]], 1)
        mask = torch.cat([torch.ones(B, 2, dtype=ego.dtype, device=ego.device), agents_mask, lanes_mask], 1)
        for b in self.blocks:
            tok = b(tok, mask)
        return self.norm(tok), mask


class Planner(nn.Module):
    def __init__(self, fcfg: FeatureConfig | None = None, ncfg: NetConfig | None = None,
                 anchors: np.ndarray | None = None):
        super().__init__()
        fcfg, ncfg = fcfg or FeatureConfig(), ncfg or NetConfig()
        self.fcfg, self.ncfg = fcfg, ncfg
        A, P, S, d = ncfg.num_anchors, ncfg.path_points, ncfg.num_speeds, ncfg.d_model
        if anchors is None:  # straight, gentle and sharp bends to both sides (replaced by k-means of the data)
            s = np.arange(1, P + 1) * 2.0
            curv = np.linspace(-0.08, 0.08, A)
            anchors = np.stack([np.stack([s, 0.5 * c * s**2], -1) for c in curv])
        self.register_buffer("anchors", torch.as_tensor(np.asarray(anchors, np.float32)))
        self.encoder = SceneEncoder(fcfg, ncfg)
        self.anchor_head = mlp(d, d, A)
        self.offset_head = mlp(d, d, A * P * 2)
        self.path_enc = mlp(P * 2, d, d)
        self.speed_q = nn.Linear(2 * d, d)
        self.speed_kv = nn.Linear(d, 2 * d)
        self.speed_head = mlp(2 * d, d, S)

    def scene(self, ego, route, route_mask, agents, agents_mask, lanes, lanes_mask):
        """The scene tokens after attention (B, T, d) and their mask (B, T); token 0 is the ego's."""
        return self.encoder(ego, route, route_mask, agents, agents_mask, lanes, lanes_mask)

    def lateral(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = z.shape[0]
        A, P = self.ncfg.num_anchors, self.ncfg.path_points
        return self.anchor_head(z), self.anchors[None] + self.offset_head(z).reshape(B, A, P, 2)

    def speed_logits(self, tok: torch.Tensor, mask: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
        """Speed logits for given paths (B, A', P, 2) -> (B, A', S). Each path queries the scene tokens (one
        attention head): the speed looks at the agents, lights and lanes along *that* path."""
        B, A = paths.shape[:2]
        z = tok[:, 0]
        pe = self.path_enc(paths.reshape(B, A, -1) / POS_SCALE)
        q = self.speed_q(torch.cat([z[:, None].expand(B, A, z.shape[-1]), pe], -1))  # (B, A, d)
        k, v = self.speed_kv(tok).chunk(2, -1)  # (B, T, d)
        att = (q @ k.transpose(1, 2)) / float(np.sqrt(q.shape[-1])) + (mask[:, None, :] - 1.0) * 1e4
        ctx = att.softmax(-1) @ v  # (B, A, d)
        return self.speed_head(torch.cat([q, ctx], -1))

    def forward(self, ego, route, route_mask, agents, agents_mask, lanes, lanes_mask):
        tok, mask = self.scene(ego, route, route_mask, agents, agents_mask, lanes, lanes_mask)
        logits, paths = self.lateral(tok[:, 0])
        return logits, paths, self.speed_logits(tok, mask, paths)


class WorldModel(nn.Module):
    def __init__(self, fcfg: FeatureConfig | None = None, ncfg: NetConfig | None = None):
        super().__init__()
        fcfg, ncfg = fcfg or FeatureConfig(), ncfg or NetConfig()
        self.fcfg, self.ncfg = fcfg, ncfg
        self.dt = 3.0 / ncfg.wm_steps  # [s] per step (the world model predicts 3 s)
        d, K = ncfg.d_model, ncfg.wm_modes
        self.encoder = SceneEncoder(fcfg, ncfg)
        self.mode = nn.Parameter(torch.randn(K, d) * 0.1)
        self.init = nn.Linear(d, d)
        self.mode_head = mlp(d, d, 1)
        self.step_in = mlp(14, d, d)  # the step's plan features -> GRU input (an MLP: "the ego is in my lane,
        # ahead, slower than me" is a conjunction a linear layer cannot form)
        self.gru = nn.GRUCell(d, d)
        self.step_out = mlp(d, d, 2)
        nn.init.zeros_(self.step_out[2].weight)  # starts as constant velocity
        nn.init.zeros_(self.step_out[2].bias)
        self.now = (fcfg.history - 1) * STEP_DIM  # columns of the newest history step

    def forward(self, ego, route, route_mask, agents, agents_mask, lanes, lanes_mask, ego_plan):
        """ego_plan (B, T, 3): the ego's planned pose (x, y [m], yaw [rad]) at each step, current ego frame."""
        tok, _ = self.encoder(ego, route, route_mask, agents, agents_mask, lanes, lanes_mask)
        N = self.fcfg.num_agents
        K, T = self.ncfg.wm_modes, self.ncfg.wm_steps
        a = tok[:, 2:2 + N]  # (B, N, d)
        B, d = a.shape[0], a.shape[-1]
        am = a[:, :, None] + self.mode[None, None]  # (B, N, K, d)
        h = torch.tanh(self.init(am)).reshape(B * N * K, d)
        cur = agents[:, :, self.now:self.now + STEP_DIM]
        pos = cur[..., 0:2] * POS_SCALE  # (B, N, 2) [m]
        vel = cur[..., 2:4] * cur[..., 4:5] * SPEED_SCALE  # (B, N, 2) [m/s] along the heading
        head = cur[..., 2:4]  # (B, N, 2) cos, sin of the agent's heading (ego frame)
        pos = pos[:, :, None].expand(B, N, K, 2).reshape(B * N * K, 2)
        vel = vel[:, :, None].expand(B, N, K, 2).reshape(B * N * K, 2)
        head = head[:, :, None].expand(B, N, K, 2).reshape(B * N * K, 2)
        plan = ego_plan[:, None, None].expand(B, N, K, T, 3).reshape(B * N * K, T, 3)
        out = []
        prev = torch.zeros_like(plan[:, 0, :2])  # the ego now (origin of the ego frame)
        for t in range(T):
            e = plan[:, t]
            rel = e[:, :2] - pos  # the ego's planned position from the agent, also in the agent's heading frame:
            lon = rel[:, :1] * head[:, :1] + rel[:, 1:] * head[:, 1:]  # ahead of it (+) or behind (-)
            lat = -rel[:, :1] * head[:, 1:] + rel[:, 1:] * head[:, :1]
            ev = (e[:, :2] - prev) / self.dt  # the ego's planned velocity over the step, along the agent's heading
            prev = e[:, :2]
            ev_lon = ev[:, :1] * head[:, :1] + ev[:, 1:] * head[:, 1:]
            ev_lat = -ev[:, :1] * head[:, 1:] + ev[:, 1:] * head[:, :1]
            v_own = vel[:, :1] * head[:, :1] + vel[:, 1:] * head[:, 1:]
            x = torch.cat([pos / POS_SCALE, e[:, :2] / POS_SCALE, torch.sin(e[:, 2:3]), torch.cos(e[:, 2:3]),
                           rel / POS_SCALE, lon / POS_SCALE, lat / POS_SCALE,
                           torch.exp(-rel.norm(dim=-1, keepdim=True) / 5.0),
                           ev_lon / SPEED_SCALE, ev_lat / SPEED_SCALE, (ev_lon - v_own) / SPEED_SCALE], -1)
            h = self.gru(self.step_in(x), h)
            vel = vel + self.step_out(h) * 2.0  # velocity change [m/s] over the step: residual to constant velocity
            pos = pos + vel * self.dt
            out.append(pos)
        traj = torch.stack(out, 1).reshape(B, N, K, T, 2)
        # each mode's probability is scored after its rollout, from a state that has seen the whole ego plan:
        # scored from the agent alone, a multi-modal model explains "it yields" and "it goes on" as two
        # plan-blind modes and its top-1 ignores the plan (measured: 0.27 m apart where the simulator's agents
        # end 4.75 m apart, issue 5 notes)
        mode_logits = self.mode_head(h.reshape(B, N, K, d)).squeeze(-1)
        return traj, mode_logits


def kmeans_anchors(paths: np.ndarray, k: int, iters: int = 30, seed: int = 0) -> np.ndarray:
    """k-means of (S, P, 2) paths (L2 over all points); returns (k, P, 2), sorted left to right by the last
    point's lateral offset."""
    rng = np.random.default_rng(seed)
    X = paths.reshape(len(paths), -1).astype(np.float64)
    # spread the initial centres over the lateral range (k-means++ style)
    c = [X[rng.integers(len(X))]]
    for _ in range(1, k):
        d = np.min(((X[:, None] - np.array(c)[None]) ** 2).sum(-1), 1)
        c.append(X[rng.choice(len(X), p=d / d.sum())] if d.sum() > 0 else X[rng.integers(len(X))])
    C = np.array(c)
    for _ in range(iters):
        lab = np.argmin(((X[:, None] - C[None]) ** 2).sum(-1), 1)
        for j in range(k):
            if (lab == j).any():
                C[j] = X[lab == j].mean(0)
    C = C.reshape(k, -1, 2)
    return C[np.argsort(C[:, -1, 1])].astype(np.float32)
