"""TakeVLA's network (torch): a small vision-language-action model, SimLingo-style, sized for 2 CPU cores.

Inputs: `raster` (B, C, H, W), the bird's-eye-view image of the perceived scene (vla/raster.py: the "camera");
`ego` (B, EGO_DIM), the ego's speed, acceleration and the next light / stop sign (what SimLingo gives as text:
speed); `prompt` (B, PROMPT_LEN) int64, the route instruction's tokens (vla/language.py).
Encoder: a strided convolution and 4 x 4 patches turn the raster into (H/8 x W/8) vision tokens; with one ego token, the prompt's token
embeddings and P + 1 learned action queries they pass through pre-norm self-attention layers (pads masked).
Action: path points [m, ego frame] (SimLingo's path waypoints) as a mixture: an anchor query scores A path anchors
(k-means of the expert's paths, fixed at training start) and the P path queries regress each anchor's offsets;
`path` is the best-scored anchor's path (a regressed mean path averages the modes: around an obstacle on the left
or the right it drove straight into it). Speed points (SimLingo's temporal speed waypoints, as speeds): K speed
queries, one per time t_k = k x speed_dt (k = 0..K-1), each scoring S target speeds (0..max_speed): the speed the
ego should be driving at t_k, a categorical per point (a regressed speed averages "stop" and "go" as the mean path
averages left and right). The deployed PID follows the profile of the best-scored speeds (sim/control.profile_target:
its value `lookahead` seconds ahead, linear in time) along the path.
Language: a causal transformer decoder over the commentary tokens, cross-attending to the encoder's tokens
(static shapes: the tokens are padded to MAX_LEN; `greedy` is the torch reference of the runtime's decoding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..models.features import EGO_DIM
from ..models.nets import Attention, mlp
from .language import BOS, MAX_LEN, PAD, PROMPT_LEN, VOCAB
from .raster import CHANNELS, SIZE


@dataclass(frozen=True)
class VLANetConfig:
    d_model: int = 64
    heads: int = 4
    enc_layers: int = 2
    dec_layers: int = 2
    ff: int = 128
    path_points: int = 6  # P (2 m apart, as the planner's)
    num_anchors: int = 6  # A path anchors
    num_speeds: int = 13  # S, evenly 0..max_speed
    max_speed: float = 12.0  # [m/s]
    speed_points: int = 4  # K speed points, at t_k = k x speed_dt (k = 0: now)
    speed_dt: float = 0.5  # [s] between speed points
    vocab: int = len(VOCAB)
    max_len: int = MAX_LEN
    prompt_len: int = PROMPT_LEN
    channels: int = len(CHANNELS)
    size: int = SIZE

    def speeds(self) -> np.ndarray:
        return np.linspace(0.0, self.max_speed, self.num_speeds)

    def speed_times(self) -> np.ndarray:
        """[s] the speed points' times, (K,)."""
        return np.arange(self.speed_points) * self.speed_dt


class CrossDecoderBlock(nn.Module):
    """Pre-norm: causal self-attention over the tokens so far, cross-attention to the encoder's tokens (masked),
    feed-forward. Explicit ops (static shapes, ONNX-exportable)."""

    def __init__(self, d: int, heads: int, ff: int):
        super().__init__()
        self.h, self.dk = heads, d // heads
        self.n1, self.n2, self.n3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.o1 = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.q, self.kv, self.o2 = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)
        self.ff = mlp(d, ff, d)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.reshape(B, T, self.h, self.dk).transpose(1, 2)

    def forward(self, x: torch.Tensor, causal: torch.Tensor, mem: torch.Tensor, mem_mask: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.n1(x)).reshape(B, T, 3, self.h, self.dk).permute(2, 0, 3, 1, 4).unbind(0)
        att = (q @ k.transpose(-1, -2)) / float(np.sqrt(self.dk)) + causal
        x = x + self.o1((att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D))
        q = self._heads(self.q(self.n2(x)))
        k, v = self.kv(mem).chunk(2, -1)
        k, v = self._heads(k), self._heads(v)
        att = (q @ k.transpose(-1, -2)) / float(np.sqrt(self.dk)) + (mem_mask[:, None, None, :] - 1.0) * 1e4
        x = x + self.o2((att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D))
        return x + self.ff(self.n3(x))


class TakeVLA(nn.Module):
    def __init__(self, cfg: VLANetConfig | None = None, anchors: np.ndarray | None = None):
        super().__init__()
        self.cfg = c = cfg or VLANetConfig()
        d = c.d_model
        a = np.zeros((c.num_anchors, c.path_points, 2), np.float32) if anchors is None else anchors
        self.register_buffer("anchors", torch.as_tensor(np.asarray(a, np.float32)))
        # a light stem, then 4 x 4 patches (ViT-style): 8 x 8 vision tokens of a 64 x 64 raster
        self.vision = nn.Sequential(nn.Conv2d(c.channels, 16, 3, 2, 1), nn.GELU(), nn.Conv2d(16, d, 4, 4))
        n_vis = (c.size // 8) ** 2
        self.vis_pos = nn.Parameter(torch.randn(n_vis, d) * 0.02)
        self.ego = mlp(EGO_DIM, d, d)
        self.tok = nn.Embedding(c.vocab, d)
        self.prompt_pos = nn.Parameter(torch.randn(c.prompt_len, d) * 0.02)
        self.queries = nn.Parameter(torch.randn(c.path_points + 1 + c.speed_points, d) * 0.02)  # P path, anchor, K speed
        self.enc = nn.ModuleList([Attention(d, c.heads, c.ff) for _ in range(c.enc_layers)])
        self.enc_norm = nn.LayerNorm(d)
        self.path_head = mlp(d, d, 2 * c.num_anchors)  # each path point's offset for every anchor
        self.anchor_head = mlp(d, d, c.num_anchors)
        self.speed_head = mlp(d, d, c.num_speeds)
        self.text_pos = nn.Parameter(torch.randn(c.max_len, d) * 0.02)
        self.dec = nn.ModuleList([CrossDecoderBlock(d, c.heads, c.ff) for _ in range(c.dec_layers)])
        self.dec_norm = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, c.vocab)

    def heads(self, raster: torch.Tensor, ego: torch.Tensor, prompt: torch.Tensor) -> dict[str, torch.Tensor]:
        """anchor_logits (B, A), paths (B, A, P, 2) [m], path (B, P, 2) (the best anchor's), speed_logits (B, K, S)
        (K speed points), memory (B, T, d), memory_mask (B, T) float."""
        c = self.cfg
        B = raster.shape[0]
        prompt = prompt.long()  # (the ONNX graphs take every input as float32)
        vis = self.vision(raster).flatten(2).transpose(1, 2) + self.vis_pos
        e = self.ego(ego)[:, None]
        p = self.tok(prompt) + self.prompt_pos
        q = self.queries.expand(B, -1, -1)
        x = torch.cat([vis, e, p, q], 1)
        ones = torch.ones(B, vis.shape[1] + 1, dtype=raster.dtype, device=raster.device)
        qmask = torch.ones(B, q.shape[1], dtype=raster.dtype, device=raster.device)
        mask = torch.cat([ones, (prompt != PAD).to(raster.dtype), qmask], 1)
        for blk in self.enc:
            x = blk(x, mask)
        x = self.enc_norm(x)
        P, A, K = c.path_points, c.num_anchors, c.speed_points
        off = self.path_head(x[:, -(P + 1 + K):-(1 + K)]).reshape(B, P, A, 2).transpose(1, 2) * 2.0
        paths = self.anchors + off
        logits = self.anchor_head(x[:, -(1 + K)])
        best = logits.argmax(-1)
        path = paths[torch.arange(B, device=raster.device), best]
        return {"anchor_logits": logits, "paths": paths, "path": path, "speed_logits": self.speed_head(x[:, -K:]),
                "memory": x, "memory_mask": mask}

    def encode(self, raster: torch.Tensor, ego: torch.Tensor, prompt: torch.Tensor):
        """-> path (B, P, 2) [m], speed_logits (B, K, S), memory (B, T, d), memory_mask (B, T) float."""
        h = self.heads(raster, ego, prompt)
        return h["path"], h["speed_logits"], h["memory"], h["memory_mask"]

    def text_logits(self, memory: torch.Tensor, memory_mask: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L, vocab): the next-token logits after each of the (B, L) tokens (teacher forcing)."""
        L = tokens.shape[1]
        x = self.tok(tokens.long()) + self.text_pos[:L]
        causal = torch.triu(torch.full((L, L), -1e4, dtype=memory.dtype, device=memory.device), 1)
        for blk in self.dec:
            x = blk(x, causal, memory, memory_mask)
        return self.lm_head(self.dec_norm(x))

    def greedy(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """(B, max_len) int64: <bos> then greedy tokens (static shapes: every step reruns the whole prefix, padded)."""
        B, L = memory.shape[0], self.cfg.max_len
        tokens = torch.full((B, L), PAD, dtype=torch.long, device=memory.device)
        tokens[:, 0] = BOS
        for i in range(L - 1):
            nxt = self.text_logits(memory, memory_mask, tokens)[:, i].argmax(-1)
            tokens = torch.cat([tokens[:, :i + 1], nxt[:, None], tokens[:, i + 2:]], 1)
        return tokens

    def forward(self, raster, ego, prompt, tokens):
        """Training: the heads (see `heads`) and `text_logits` after each of `tokens` (teacher forcing)."""
        h = self.heads(raster, ego, prompt)
        h["text_logits"] = self.text_logits(h["memory"], h["memory_mask"], tokens)
        return h


class ActionGraph(nn.Module):
    """The exported action graph: (raster, ego, prompt) -> path, speed_logits, memory, memory_mask."""

    def __init__(self, m: TakeVLA):
        super().__init__()
        self.m = m

    def forward(self, raster, ego, prompt):
        return self.m.encode(raster, ego, prompt)


class TextGraph(nn.Module):
    """The exported text graph: (memory, memory_mask, tokens (B, max_len) float) -> next-token logits (B, max_len,
    vocab). The runtime decodes greedily, one call per token, and stops at <eos> (vla/runtime.py)."""

    def __init__(self, m: TakeVLA):
        super().__init__()
        self.m = m

    def forward(self, memory, memory_mask, tokens):
        return self.m.text_logits(memory, memory_mask, tokens)
