"""TakeVLA's language: a word-level tokenizer over a closed vocabulary, the route instruction (language in) and
the commentary labels (language out).

Commentary says what the ego does and why, in three parts (`commentary`):
  action: from the privileged expert's plan at that frame (its planned speed SPEED_AT m ahead against the ego's
      speed: "i stop", "i stay stopped", "i slow down", "i speed up", "i keep my speed"; its path against the
      route: "and steer around to the left|right" when its 12 m point leaves the route by more than LATERAL m);
  reason: from the scene facts the features carry and the logged futures (what the expert knew): the red / yellow
      light or the stop sign it stops for, the agent whose logged future crosses the ego's logged future within
      CONFLICT m ("to yield to the crossing pedestrian"), the agent ahead in the ego's corridor ("behind the vehicle
      ahead"), or "the road is clear";
  hazard: a pedestrian or cyclist the features did not show (hidden behind something or not there yet) that
      comes near the ego within the horizon: "watch for a hidden pedestrian|cyclist" (the expert's privileged
      knowledge; the policy has to learn where such hazards hide).
Pre-takeover language supervision (`precaution`) prefixes the frames in the seconds before a takeover with what
the expert did when it took over and why: "careful : i must brake early for the pedestrian ahead ." for a
predicted collision or a low TTC, "careful : i must steer left ." for a steering disagreement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..maps.lanegraph import Command
from ..models.features import COMMANDS, DIST_CAP, POS_SCALE, SPEED_SCALE, STEP_DIM

SPECIAL = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(4)
WORDS = sorted(set("""
i stop stay stopped slow down speed up keep my and steer around to the left right for red yellow light sign behind
vehicle pedestrian cyclist obstacle emergency ahead yield crossing road is clear watch a hidden careful must brake
early turn at junction go straight follow lane change . :
""".split()))
VOCAB = SPECIAL + tuple(WORDS)
INDEX = {w: i for i, w in enumerate(VOCAB)}
MAX_LEN = 40  # commentary tokens, <bos> and <eos> included
PROMPT_LEN = 8  # instruction tokens (no <bos>/<eos>)
KIND_WORDS = ("vehicle", "pedestrian", "cyclist", "obstacle", "emergency vehicle")  # AgentKind order
INSTRUCTIONS = {Command.LEFT: "turn left at the junction", Command.RIGHT: "turn right at the junction",
                Command.STRAIGHT: "go straight at the junction", Command.LANEFOLLOW: "follow the lane",
                Command.CHANGELANELEFT: "change lane to the left", Command.CHANGELANERIGHT: "change lane to the right"}
LATERAL = 1.2  # [m] the expert's path leaves the route by more than this at 12 m: it steers around
CORRIDOR = 2.2  # [m] half width of the ego's corridor ahead
LEAD_RANGE = 25.0  # [m]
LIGHT_RANGE = 30.0  # [m]
STOP_SIGN_RANGE = 20.0  # [m]
CONFLICT = 3.0  # [m] an agent's logged future this close to the ego's logged future at the same step: a conflict


class TokenError(ValueError):
    pass


@dataclass
class Advice:
    """What a reasoner says about a scene (the Reasoning message's fields)."""

    text: str
    advisory: str  # proceed | slow_down | stop
    speed_cap: float  # [m/s], negative = none


def encode(text: str, length: int = MAX_LEN, bos: bool = True) -> np.ndarray:
    """Words -> ids, with <bos> ... <eos> (bos=True) and <pad> to `length`. Unknown words are <unk>; too long
    raises TokenError naming the text."""
    ids = [INDEX.get(w, UNK) for w in text.split()]
    if bos:
        ids = [BOS, *ids, EOS]
    if len(ids) > length:
        raise TokenError(f"{len(ids)} tokens > {length}: {text!r}")
    return np.asarray(ids + [PAD] * (length - len(ids)), np.int64)


def decode(ids) -> str:
    """Ids -> text, from after <bos> up to <eos> (pads and specials dropped)."""
    words = []
    for i in np.asarray(ids).tolist():
        if i == EOS:
            break
        if i >= len(SPECIAL):
            words.append(VOCAB[i])
        elif i == UNK:
            words.append("<unk>")
    return " ".join(words)


def instruction(ego: np.ndarray) -> str:
    """The route instruction (language in) from the ego features' near-command one-hot."""
    k = int(np.argmax(ego[9:9 + len(COMMANDS)])) if ego[9:9 + len(COMMANDS)].any() else COMMANDS.index(Command.LANEFOLLOW)
    return INSTRUCTIONS[COMMANDS[k]]


def prompts(ego: np.ndarray) -> np.ndarray:
    """(S, PROMPT_LEN) int64 instruction ids for a batch of ego feature rows (S, EGO_DIM)."""
    ego = np.asarray(ego)
    k = np.where(ego[:, 9:9 + len(COMMANDS)].any(1), np.argmax(ego[:, 9:9 + len(COMMANDS)], 1),
                 COMMANDS.index(Command.LANEFOLLOW))
    table = np.stack([encode(INSTRUCTIONS[c], PROMPT_LEN, bos=False) for c in COMMANDS])
    return table[k]


def _current_agents(agents: np.ndarray, history: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y [m] (S, N) and kind (S, N) of the agents' newest history step."""
    col = (history - 1) * STEP_DIM
    x, y = agents[..., col] * POS_SCALE, agents[..., col + 1] * POS_SCALE
    kind = np.argmax(agents[..., history * STEP_DIM + 2: history * STEP_DIM + 2 + len(KIND_WORDS)], -1)
    return x, y, kind


def commentary(s: dict, history: int = 4) -> list[str]:
    """The commentary of every sample of a training table `s` (learn/data.py keys: ego, agents, agents_mask, route,
    route_mask, path, speed, ego_future(_mask), agents_future(_mask), roll_unseen_mask, unseen_kind); see the
    module doc."""
    ego = s["ego"]
    S = len(ego)
    v, vt = ego[:, 0] * SPEED_SCALE, s["speed"]
    hold = (vt < 0.5) & (v < 0.5)
    stop = (vt < 0.5) & ~hold
    slow = ~hold & ~stop & (vt < v - 1.0)
    faster = ~hold & ~stop & ~slow & (vt > v + 1.0)
    braking = hold | stop | slow
    # the expert's path against the route at 12 m (the path's last point; the route's points are 2 m apart)
    route = s["route"][..., :2] * POS_SCALE
    r12 = route[:, min(6, route.shape[1] - 1)]
    lat = s["path"][:, -1, 1] - r12[:, 1]
    lane_change = ego[:, 9 + COMMANDS.index(Command.CHANGELANELEFT)] + ego[:, 9 + COMMANDS.index(Command.CHANGELANERIGHT)] > 0
    around = (np.abs(lat) > LATERAL) & ~lane_change
    # facts
    ld = ego[:, 3] * DIST_CAP
    red = (ego[:, 4] > 0) & (ld < LIGHT_RANGE)
    yellow = (ego[:, 5] > 0) & (ld < LIGHT_RANGE)
    sign = (ego[:, 8] > 0) & (ego[:, 7] * DIST_CAP < STOP_SIGN_RANGE)
    x, y, kind = _current_agents(s["agents"], history)
    am = s["agents_mask"].astype(bool)
    in_lane = am & (x > 0) & (x < LEAD_RANGE) & (np.abs(y) < CORRIDOR)
    lead_j = np.argmin(np.where(in_lane, x, np.inf), 1)
    has_lead = in_lane.any(1)
    # conflicts: an agent's logged future within CONFLICT m of the ego's logged future at the same step
    ef, efm = s["ego_future"][..., :2], s["ego_future_mask"].astype(bool)
    af, afm = s["agents_future"], s["agents_future_mask"].astype(bool)
    d = np.linalg.norm(af - ef[:, None], axis=-1)  # (S, N, T)
    close = (d < CONFLICT) & afm & efm[:, None] & am[..., None]
    conflict = close.any(-1) & ~in_lane
    conf_j = np.argmax(conflict, 1)
    has_conf = conflict.any(1)
    # hidden hazards: agents the features did not show that come near over the horizon
    um = s["roll_unseen_mask"].astype(bool).any(-1)  # (S, U)
    uk = s["unseen_kind"].astype(int)
    hidden_kind = np.where(um, uk, -1)
    hidden = np.array([next((int(k) for k in row if k in (1, 2)), -1) for row in hidden_kind]) if S else np.zeros(0, int)
    out = []
    for i in range(S):
        if hold[i]:
            act = "i stay stopped"
        elif stop[i]:
            act = "i stop"
        elif slow[i]:
            act = "i slow down"
        elif faster[i]:
            act = "i speed up"
        else:
            act = "i keep my speed"
        if around[i]:
            act += " and steer around to the " + ("right" if lat[i] > 0 else "left")
        why = ""
        if braking[i] and red[i]:
            why = "for the red light"
        elif braking[i] and yellow[i]:
            why = "for the yellow light"
        elif braking[i] and sign[i]:
            why = "for the stop sign"
        elif braking[i] and has_conf[i]:
            why = "to yield to the crossing " + KIND_WORDS[int(kind[i, conf_j[i]])]
        elif has_lead[i] and (braking[i] or not faster[i]):
            why = "behind the " + KIND_WORDS[int(kind[i, lead_j[i]])] + " ahead"
        elif not braking[i]:
            why = ": the road is clear"
        text = act + (" " + why if why else "") + " ."
        if hidden[i] >= 0:
            text += " watch for a hidden " + KIND_WORDS[hidden[i]].split()[0] + " ."
        out.append(text)
    return out


STALL_PRECAUTION = "careful : i must go : the road is clear ."  # before a STALLED takeover: the ego stood


def precaution(cause: str, s: dict, i: int, history: int = 4) -> str:
    """The pre-takeover prefix for sample i of table `s` before a takeover of `cause` (its name): what the expert
    did when it took over and why (see the module doc)."""
    if cause == "STEER_DISAGREEMENT":
        side = "right" if float(s["path"][i, 2, 1]) > 0 else "left"
        return f"careful : i must steer {side} ."
    if cause in ("PREDICTED_COLLISION", "LOW_TTC"):
        x, y, kind = _current_agents(s["agents"][i:i + 1], history)
        am = s["agents_mask"][i:i + 1].astype(bool) & (x > 0)
        if am.any():
            j = int(np.argmin(np.where(am, np.hypot(x, y), np.inf)[0]))
            return f"careful : i must brake early for the {KIND_WORDS[int(kind[0, j])]} ahead ."
        return "careful : i must brake early ."
    if cause == "STALLED":
        return STALL_PRECAUTION
    return "careful : i must slow down ."


def advisory(text: str, speed: float) -> tuple[str, float]:
    """(advisory, speed cap [m/s], negative = none) from a commentary and the speed the model chose."""
    if text.startswith(("i stop", "i stay stopped")):
        return "stop", 0.0
    if text.startswith(STALL_PRECAUTION.removesuffix(" .")):  # the stall takeover's precaution: drive off
        return "proceed", -1.0
    if text.startswith(("i slow down", "careful")):
        return "slow_down", max(float(speed), 0.0)
    return "proceed", -1.0


_ACTIONS = ("i stay stopped", "i stop", "i slow down", "i speed up", "i keep my speed")


def parse_commentary(text: str) -> dict[str, str]:
    """A commentary's parts (the grammar of `commentary` / `precaution`): precaution ('' or its clause), decision
    (the action, with the lateral part), reason ('' if none), hazard ('' or the hidden agent's kind). Text outside
    the grammar parses to what it can: an unknown decision is ''."""
    t = " ".join(text.split())
    out = {"precaution": "", "decision": "", "reason": "", "hazard": ""}
    if t.startswith("careful :"):
        head, _, t = t.partition(" . ")
        out["precaution"] = head
    first, _, rest = t.partition(" . ")
    first = first.removesuffix(" .")
    act = next((a for a in _ACTIONS if first.startswith(a)), "")
    if act:
        tail = first[len(act):].strip()
        lateral = ""
        for side in ("left", "right"):
            s = f"and steer around to the {side}"
            if tail.startswith(s):
                lateral, tail = " " + s, tail[len(s):].strip()
        out["decision"] = act + lateral
        out["reason"] = tail.removeprefix(": ").strip()
    if "watch for a hidden" in rest:
        out["hazard"] = rest.split("watch for a hidden", 1)[1].split(".")[0].strip()
    return out


def language_metrics(predicted: list[str], labels: list[str]) -> dict[str, float]:
    """Agreement of predicted commentaries with their labels: decision (the action and lateral part), reason
    (what it stops / slows / yields for), hazard (the hidden agent named, on the frames whose label names one:
    recall; and on the frames whose prediction names one: precision), precaution (on the frames whose label has
    one), exact match. Fractions in [0, 1]; None where no frame counts."""
    P = [parse_commentary(p) for p in predicted]
    L = [parse_commentary(x) for x in labels]

    def frac(pairs):
        pairs = list(pairs)
        return round(sum(pairs) / len(pairs), 4) if pairs else None

    return {"frames": len(L),
            "decision_acc": frac(p["decision"] == q["decision"] for p, q in zip(P, L, strict=True)),
            "reason_acc": frac(p["reason"] == q["reason"] for p, q in zip(P, L, strict=True)),
            "hazard_recall": frac(p["hazard"] == q["hazard"] for p, q in zip(P, L, strict=True) if q["hazard"]),
            "hazard_precision": frac(p["hazard"] == q["hazard"] for p, q in zip(P, L, strict=True) if p["hazard"]),
            "precaution_acc": frac(p["precaution"] == q["precaution"] for p, q in zip(P, L, strict=True)
                                   if q["precaution"]),
            "exact": frac(" ".join(p.split()) == " ".join(q.split()) for p, q in zip(predicted, labels, strict=True))}
