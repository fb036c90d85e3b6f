"""Training configs (no torch import: the CLI builds its options from these dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..typed import check


@dataclass
class TrainConfig:
    data: str = "results/dataset"  # a collected dataset (drive-stack collect --out)
    out: str = "results/train/il"  # run directory
    maps_dir: str | None = None  # OpenDRIVE folder of the dataset's towns (Proc<seed> towns need none)
    epochs: int = 8  # passes over the training samples
    batch_size: int = 256  # samples per gradient step
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    seed: int = 0  # torch and sampling seed
    val_fraction: float = 0.1  # of episodes, held out
    threads: int = 2  # torch CPU threads
    device: Literal["cpu", "cuda", "auto"] = "cpu"  # where il/wm train (under torchrun with cuda: one GPU per
    # process, cuda:LOCAL_RANK, NCCL; on cpu: gloo); rl and takead run on the CPU
    workers: int = 2  # feature-building processes
    max_episodes: int | None = None  # use at most this many episodes of the dataset
    resume: bool = False  # continue from the run directory's last checkpoint
    d_model: int = 64  # network width
    layers: int = 2  # transformer layers
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        check(self)  # types and Literal values, the field named in the error

    def net(self):
        from ..models.nets import NetConfig

        return NetConfig(d_model=self.d_model, layers=self.layers, ff=2 * self.d_model)


@dataclass
class ILConfig(TrainConfig):
    w_anchor: float = 1.0  # weight of the path-anchor classification loss
    w_path: float = 1.0  # weight of the path regression loss
    w_speed: float = 1.0  # weight of the target-speed classification loss
    w_speed_change: float = 2.0  # extra weight of speed labels that differ from the current speed by > 1 m/s
    init: str | None = None  # start from this planner (a train il|rl checkpoint or an exported planner.onnx): its
    # weights and path anchors, its width and depth (DAgger: fine-tune on the data aggregated with the expert's
    # labels at the states the planner drove itself into)


@dataclass
class WMConfig(TrainConfig):
    out: str = "results/train/wm"
    epochs: int = 10  # passes over the training samples
    w_mode: float = 0.5  # weight of the mode classification loss (multi-modal futures)
    w_react: float = 4.0  # extra regression weight of agents that react to the ego's plan in the branches


@dataclass
class RLConfig(TrainConfig):
    out: str = "results/train/perlad"
    init: str = "results/train/il/ckpt.pt"  # the imitation planner to start from
    world_model: str = "results/train/wm/ckpt.pt"  # the world model driving the other agents (agents=world_model)
    agents: Literal["world_model", "log_replay"] = "world_model"  # the other agents in rollouts: world-model
    # predictions reacting to the ego's plan, or the log replayed
    critical: float = 0.0  # fraction of each batch's start states drawn from the critical ones (rl.critical_states;
    # 0.25 scored 69.2 against 72.6 on the Proc3 validation suite)
    unseen_agents: bool = False  # replay the log's agents the policy could not see at the start (roll_unseen; on
    # Proc3: 72.2 against 72.6, no gain: the few states where it matters are too few to learn from)
    hazards: float = 0.0  # fraction of each batch's start states given a synthetic pedestrian ahead, crossing or
    # walking beside the route (rl.inject_pedestrians; on Proc3 0.25 scored 66.5 and 0.5 59.8 against 68.1 without)
    updates: int = 150  # policy updates
    states: int = 128  # start states per update
    group: int = 4  # speed samples per state
    horizon: int = 20  # steps of ROLL_DT (2 s; 3 s scored 71.4 against 74.0 on Proc3); at most data.py ROLL_STEPS
    algo: Literal["grpo", "ppo"] = "grpo"  # group-standardised REINFORCE or clipped PPO
    ppo_epochs: int = 4  # passes over each batch (algo=ppo)
    clip: float = 0.2  # PPO ratio clip (algo=ppo)
    entropy: float = 0.01  # entropy bonus weight
    kl_ref: float = 0.03  # weight of KL(pi || pi_imitation), GRPO's reference-policy term (0.03 chosen over 0.1 on
    # the Proc3 validation suite, training/scripts/perlad_rl_sweep.sh)
    lr: float = 1e-4  # AdamW learning rate of the longitudinal head
    curriculum: int = 50  # updates from logged paths/agents to predicted ones
    collision_vehicle: float = -30.0  # reward of a collision with a vehicle or cyclist
    collision_pedestrian: float = -50.0  # reward of a collision with a pedestrian
    collision_static: float = -10.0  # reward of a collision with a static prop
    off_route: float = -10.0  # reward of leaving the drivable lanes
    red_light: float = -30.0  # reward of running a red light
    ttc: float = -10.0  # reward when the rollout ends on course to hit an agent within ttc_horizon (0: off; -10
    # scored 74.0 against 72.6 without on the Proc3 validation suite)
    ttc_horizon: float = 1.5  # [s] constant-velocity projection from the rollout's last step (rl.ttc_conflict)
    replan: float = 0.0  # [s] re-plan the path once this far into each rollout (the lateral head, greedy, on the
    # scene re-expressed at the ego's pose then; the world model predicts again given the new plan), as the
    # deployed planner re-plans every tick; a multiple of the agents' history step (0.5 s). 0: one path throughout
    path_top_k: int = 0  # RL over paths too: each sample draws its path among the lateral head's path_top_k most
    # likely anchors (their probabilities renormalised) and the anchor head learns with the speed head, so the
    # policy can learn to steer around what blocks it; 0: the top-1 path, frozen (only the speed learns)
    path_search: bool = False  # with path_top_k K: every state's group is split evenly over its K anchors (group a
    # multiple of K) instead of sampling them, each anchor's value Q(s, a) is the mean return of its samples, and
    # the anchor head learns toward pi(a | s) x exp(Q(s, a) / path_eta) over the K (MPO's improved policy: where
    # the paths tie it stays as it is); the speeds learn against each anchor's own mean
    path_eta: float = 1.0  # temperature of path_search's target, in units of the batch's return spread
    w_progress: float = 10.0  # weight of the normalised progress reward
    w_imitation: float = 1.0  # weight of the negative L2 to the logged future
    eval_every: int = 10  # every N updates, the greedy policy on held-out start states (fixed; `heldout/*` in the
    # history and the curves): whether the policy itself gets better, not only its sampled rollouts (0: off)
    eval_states: int = 512  # held-out start states of that evaluation (the validation episodes')
    ray: str | None = None  # roll out on Ray actors: `local` (a Ray started here), `auto`, `HOST:PORT` or
    # `ray://HOST:PORT` (a running cluster); unset: in this process. The update is the same either way
    rollout_actors: int = 2  # Ray actors (one CPU each) an update's states are split over (with --ray)
