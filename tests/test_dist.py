"""Data-parallel training under torchrun (learn/dist.py): 2 CPU processes (gloo) follow the loss trajectory of one
process with the same global batch, for imitation and for the world model; only process 0 logs and writes.

Calibration (this dataset, il, batch 100, 2 epochs): with global means the epoch losses agree to ~1e-7 and the
weights to 8e-8 mean absolute difference; averaging each process's own means instead (what plain DDP over a
weighted loss does) moves the epoch losses by up to 2e-3 and the weights by 1.8e-4 on average."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

TORCHRUN = Path(sys.executable).with_name("torchrun")
TINY = ["--workers", "1", "--d-model", "32", "--layers", "1", "--lr", "3e-3", "--threads", "1"]


def run(cmd: list[str]) -> str:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "ckpt.pt", weights_only=False)["model"]


def train_both(stage: str, data: Path, tmp: Path, extra: list[str]) -> tuple[dict, dict, str]:
    args = ["-m", "drivesim.cli", "train", stage, "--data", str(data), *TINY, *extra]
    run([sys.executable, *args, "--out", str(tmp / "one")])
    two = run([str(TORCHRUN), "--standalone", "--nproc-per-node", "2", *args, "--out", str(tmp / "two")])
    m1, m2 = (json.loads((tmp / d / "metrics.json").read_text()) for d in ("one", "two"))
    for a, b in zip(m1["history"], m2["history"], strict=True):
        for part in ("train", "val"):
            assert a[part].keys() == b[part].keys()
            for k in a[part]:
                assert b[part][k] == pytest.approx(a[part][k], rel=1e-5, abs=1e-6), (stage, part, k)
    w1, w2 = weights(tmp / "one"), weights(tmp / "two")
    diff = torch.cat([(w1[k] - w2[k]).abs().flatten() for k in w1 if w1[k].is_floating_point()])
    assert float(diff.mean()) < 1e-5 and float(diff.quantile(0.99)) < 1e-4, (float(diff.mean()), float(diff.max()))
    return m1, m2, two


def test_two_processes_follow_one_in_imitation(learn_dataset, tmp_path):
    from drivesim.learn.data import DataConfig, build_samples
    from drivesim.learn.train import split

    data = learn_dataset / "ds"
    tr, _ = split(build_samples(DataConfig(str(data), None, 1), log=lambda *_: None), 0.1, 0)
    # a batch size that leaves a last batch of one row: it goes whole to both processes (dist.shard)
    m1, m2, out = train_both("il", data, tmp_path, ["--batch-size", str(len(tr) - 1), "--epochs", "3"])
    assert len(m1["history"]) == 3 and m1["history"][-1]["train"]["loss"] < m1["history"][0]["train"]["loss"]
    # process 0 alone speaks and writes: one announcement, one line per epoch, one result
    assert out.count("data-parallel over 2 processes (cpu)") == 1 and out.count("il epoch 3:") == 1
    assert out.count('"speed_acc"') == 1
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["ckpt.pt", "config.json", "metrics.json", "tb"]


def test_two_processes_follow_one_in_the_world_model(learn_dataset, tmp_path):
    m1, m2, out = train_both("wm", learn_dataset / "ds", tmp_path, ["--batch-size", "100", "--epochs", "2"])
    assert "cf_minADE_m" in m2["history"][0]["val"]  # the branch rows were trained and validated too
    r1, r2 = m1["reactivity"], m2["reactivity"]  # process 0's report on its (the same) model
    assert r2["scenes"] == r1["scenes"] and r2["follower_moved_m"]["brake"] == pytest.approx(
        r1["follower_moved_m"]["brake"], abs=1e-2)
    assert out.count("world-model reactivity") == 1


def test_shard_and_global_mean_outside_torchrun():
    from drivesim.learn import dist

    d = dist.Dist(rank=1, world=2)
    assert dist.shard(np.arange(5), d).tolist() == [1, 3] and dist.shard(np.arange(1), d).tolist() == [0]
    assert dist.shard(np.arange(5)).tolist() == [0, 1, 2, 3, 4]  # one process: every row
    assert float(dist.mean(torch.tensor(6.0), 4)) == 1.5 and float(dist.mean(torch.tensor(0.0), 0)) == 0.0
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            dist.resolve_device("cuda")


def test_two_processes_follow_one_in_takevla(learn_dataset, tmp_path):
    """TakeVLA on the same loop: path (anchor + offsets), weighted speed bins and commentary tokens are global means
    (every token of the global batch counts once), so 2 processes follow 1; process 0 alone exports."""
    m1, m2, out = train_both("takevla", learn_dataset / "ds", tmp_path,
                             ["--batch-size", "100", "--epochs", "2", "--supervision", "none"])
    assert m1["history"][-1]["train"]["loss"] < m1["history"][0]["train"]["loss"]
    assert out.count("takevla epoch 2:") == 1 and out.count("exported") == 1
    assert (tmp_path / "two" / "model" / "vla.onnx").exists()
