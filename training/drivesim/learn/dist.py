"""Data-parallel training under torchrun (torch.distributed + DistributedDataParallel) for the supervised stages
(`train il`, `train wm`): ``torchrun --nproc-per-node N -m drivesim.cli train il ...``.

Every process reads the same shuffled order (the seed), takes its share of each global batch (rows rank,
rank + N, ...; a batch with fewer rows than processes goes whole to every process) and DDP averages the gradients.
So that the average is the gradient of the *global* batch's loss, every mean in a loss is a global one
(`mean`): the process's own sum divided by the denominator summed over the processes (one all-reduce), times N.
A run on N processes then follows the loss trajectory of one process with the same `batch_size` (within float
summation order; tests/test_dist.py). Backend: gloo on CPU, NCCL with ``--device cuda`` (a GPU per process,
cuda:LOCAL_RANK). Process 0 alone logs, writes TensorBoard, checkpoints and metrics.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def on(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


_CURRENT = Dist()


def current() -> Dist:
    """The process group this process trains in (a single-process Dist outside torchrun)."""
    return _CURRENT


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device (this torch is a CPU build, or no GPU is "
                         "visible); use --device cpu")
    return torch.device(name)


def setup(device: str = "cpu") -> Dist:
    """Join torchrun's process group when WORLD_SIZE > 1 (gloo on CPU, NCCL on CUDA); else one process."""
    global _CURRENT
    dev = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        _CURRENT = Dist(device=dev)
        return _CURRENT
    import torch.distributed as td

    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if not td.is_initialized():
        td.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    _CURRENT = Dist(rank=td.get_rank(), world=td.get_world_size(), device=dev)
    return _CURRENT


def teardown(sync: bool = True) -> None:
    """Leave the process group. sync: wait for every process first (process 0 still writing its report while
    another destroyed the group made gloo abort that one: "terminate called without an active exception");
    after an error, leave at once."""
    global _CURRENT
    if _CURRENT.on:
        import torch.distributed as td

        if td.is_initialized():
            if sync:
                td.barrier()
            td.destroy_process_group()
    _CURRENT = Dist()


def shard(idx: np.ndarray, d: Dist | None = None) -> np.ndarray:
    """This process's rows of a global batch: every N-th from its rank; all of them when there are fewer rows
    than processes (each process then computes the whole batch, which `mean` accounts for)."""
    d = d or _CURRENT
    return idx if not d.on or len(idx) < d.world else idx[d.rank::d.world]


def mean(num: torch.Tensor, den) -> torch.Tensor:
    """num / den over the global batch: num is this process's sum, den its count (or weight); the counts are
    summed over the processes and the result scaled by N, so that DDP's gradient average is the gradient of the
    global mean. Outside torchrun: num / den. A denominator of 0 (nothing selected) gives 0."""
    d = _CURRENT
    den = torch.as_tensor(den, dtype=num.dtype, device=num.device).detach()
    if d.on:
        import torch.distributed as td

        den = den.clone()
        td.all_reduce(den)
        return num / den.clamp(min=torch.finfo(num.dtype).tiny) * d.world
    return num / den.clamp(min=torch.finfo(num.dtype).tiny)


def reduce_values(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Loss terms made with `mean` -> their global values (the sum over processes divided by N), as floats."""
    d = _CURRENT
    keys = list(values)
    if not d.on:
        return {k: float(values[k].detach()) for k in keys}
    import torch.distributed as td

    v = torch.stack([values[k].detach().float().reshape(()) for k in keys]).to(d.device)
    td.all_reduce(v)
    return {k: float(x) / d.world for k, x in zip(keys, v.cpu())}


@contextmanager
def main_first():
    """Process 0 runs the block first (e.g. builds the sample cache), the others after it, reading what it made."""
    d = _CURRENT
    if d.on and not d.main:
        _barrier()
    yield
    if d.on and d.main:
        _barrier()


def _barrier() -> None:
    import torch.distributed as td

    td.barrier()


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model as the training step calls it: DDP-wrapped under torchrun, else itself."""
    d = _CURRENT
    if not d.on:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)


__all__ = ["Dist", "current", "main_first", "mean", "reduce_values", "setup", "shard", "teardown", "wrap"]
