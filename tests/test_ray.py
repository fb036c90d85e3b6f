"""Routes as Ray tasks (`eval --ray`, `collect --ray`; evaluation/dispatch.py): the per-route results equal
`--workers`' on the same routes and seeds, a route that raises, dies or hangs is recorded as failed while the others
go on, `--resume` continues a checkpoint, and a two-node cluster on loopback that loses a node mid-run loses no
route. Every Ray runs in a subprocess (the CLI), never in the test process."""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("ray")

from drivesim.dataset import CollectConfig, collect  # noqa: E402
from drivesim.dataset.b2d import read_frame  # noqa: E402
from drivesim.evaluation.evaluate import EvalConfig, evaluate  # noqa: E402
from drivesim.routes import write_routes  # noqa: E402
from drivesim.routes.generate import random_route  # noqa: E402

CLI = [sys.executable, "-m", "drivesim.cli"]
RAY = str(Path(sys.executable).with_name("ray"))
QUIET = {"RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def routes(tmp_path_factory, proc_town):
    """Four short procedural routes, route 1 longer (in the two-node test, one node is still driving when the other
    has checkpointed its first route)."""
    rng = np.random.default_rng(7)
    p = tmp_path_factory.mktemp("ray_routes") / "routes.xml"
    write_routes([random_route(proc_town, rng, str(i), 300.0 if i == 1 else 80.0) for i in range(4)], p)
    return p


@pytest.fixture(scope="module")
def reference(routes, tmp_path_factory):
    """The undisturbed local evaluation (`--workers 2`): its records (by route id) and summary."""
    out = tmp_path_factory.mktemp("ray_ref") / "ev"
    summary = evaluate(EvalConfig(routes=str(routes), out=str(out), workers=2), log=lambda *_: None)
    return records(out), summary


def records(out: Path) -> dict[str, dict]:
    """results.json's records by route id, without the wall-clock field (meta.duration_system)."""
    res = json.loads((Path(out) / "results.json").read_text())
    recs = {}
    for r in res["_checkpoint"]["records"]:
        r["meta"].pop("duration_system", None)
        recs[r["route_id"]] = r
    return recs


@pytest.fixture(scope="module")
def ray_head():
    """One Ray head on loopback (127.0.0.4: the two-node test's cluster is on .2 and .3; 2 CPUs, its own auth
    token) for the tests that join a running cluster (`--ray HOST:PORT`): a local Ray costs its start (4-17 s on 2
    cores) in every run that makes one, so only test_eval_on_a_local_ray_matches_workers_and_resumes starts its own
    (`--ray` alone). Yields (address, env)."""
    tmp = Path(tempfile.mkdtemp(prefix="dsray", dir="/tmp"))  # short: Ray's socket paths live under its temp dir
    port = _free_port()
    env = {**os.environ, **QUIET, "RAY_TMPDIR": str(tmp), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    log = open(tmp / "head.log", "w")
    head = subprocess.Popen([RAY, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.4",
                             "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats", "--block",
                             "--ray-client-server-port", str(_free_port()), "--dashboard-agent-listen-port",
                             str(_free_port()), "--temp-dir", str(tmp / "h")],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: "Ray runtime started" in (tmp / "head.log").read_text(), "the Ray head", 90,
                  [tmp / "head.log"])
        yield f"127.0.0.4:{port}", env
    finally:
        _kill_node(head.pid)
        head.wait(timeout=30)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def run_cli(ray_head):
    """`drive-stack ARGS` in a subprocess, with the shared head's token in its environment; `local=True`: in a
    temporary folder of its own (RAY_TMPDIR, short: Ray's socket paths live under it), where `--ray` starts a
    local Ray (ray.init joins a cluster it finds in its temp folder: the head's is elsewhere), removed afterwards."""
    _, head_env = ray_head
    tmp = tempfile.mkdtemp(prefix="dsray", dir="/tmp")
    local_env = {**os.environ, **QUIET, "RAY_TMPDIR": tmp}

    def run(*args: str, timeout: float = 180, local: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                              env=local_env if local else head_env)

    yield run
    shutil.rmtree(tmp, ignore_errors=True)


def test_eval_on_a_local_ray_matches_workers_and_resumes(routes, reference, run_cli, tmp_path):
    """`--ray` (a local Ray of --workers CPUs): the same records and summary as `--workers 2`. The first route
    comes from a local run, `--ray --resume` runs only the other three."""
    out = tmp_path / "ev"
    evaluate(EvalConfig(routes=str(routes), out=str(out), route_ids=["0"]), log=lambda *_: None)
    r = run_cli("eval", "--routes", str(routes), "--out", str(out), "--workers", "2", "--ray", "--resume", local=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 routes already recorded, 3 to go" in r.stdout
    assert "Started a local Ray instance" in r.stderr
    ref_recs, ref_summary = reference
    assert records(out) == ref_recs
    assert json.loads((out / "summary.json").read_text()) == ref_summary
    assert json.loads((out / "results.json").read_text())["_checkpoint"]["progress"] == [4, 4]


def test_collect_on_a_ray_cluster_matches_workers(routes, ray_head, run_cli, tmp_path):
    """`collect --ray HOST:PORT`: every episode's arrays.npz and anno frames equal `--workers 2`'s (episodes come back from
    the tasks as files and are written under the driver's --out)."""
    ids = ["0", "2", "3"]  # the short routes
    cfg = CollectConfig(routes=str(routes), out=str(tmp_path / "local"), workers=2, branches=0, route_ids=ids)
    local = collect(cfg, log=lambda *_: None)
    r = run_cli("collect", "--routes", str(routes), "--out", str(tmp_path / "ray"), "--workers", "2",
                "--branches", "0", "--route-ids", ",".join(ids), "--ray", ray_head[0])
    assert r.returncode == 0, r.stdout + r.stderr
    ray_idx = json.loads((tmp_path / "ray" / "index.json").read_text())

    def entries(idx):
        return [{k: v for k, v in e.items() if k != "wall_s"} for e in idx["episodes"]]

    assert len(local["episodes"]) == 3 and not ray_idx["failed"]
    assert entries(ray_idx) == entries(local)
    assert ray_idx["config"]["ray"] == ray_head[0] and ray_idx["config"]["max_retries"] == 1
    for e in local["episodes"]:
        a, b = tmp_path / "local" / "episodes" / e["episode"], tmp_path / "ray" / "episodes" / e["episode"]
        with np.load(a / "arrays.npz") as za, np.load(b / "arrays.npz") as zb:
            assert sorted(za.files) == sorted(zb.files)
            for k in za.files:
                assert np.array_equal(za[k], zb[k]), (e["episode"], k)
        frames = sorted(p.name for p in (a / "anno").iterdir())
        assert frames and frames == sorted(p.name for p in (b / "anno").iterdir())
        for f in (frames[0], frames[-1]):  # gzip stamps its own mtime: compare the frames' content
            assert read_frame(a / "anno" / f) == read_frame(b / "anno" / f)


def test_a_route_that_raises_dies_or_hangs_on_ray_is_recorded(routes, reference, ray_head, run_cli, tmp_path):
    """On Ray as locally: a route that raises is `Failed - Agent crashed`; one whose worker exits (twice: Ray's one
    retry) or hangs past --route-timeout (ray.cancel) `Failed - Simulation crashed`; the other route goes on. (Two
    runs: the hang's timeout counts from the hand-over to Ray, retries included, so it must not cut the retry short.)"""
    out = tmp_path / "ev"
    r = run_cli("eval", "--routes", str(routes), "--out", str(out), "--workers", "2", "--ray", ray_head[0],
                "--route-ids", "0,2,3", "--fault", "crash:0,exit:2")
    assert r.returncode == 0, r.stdout + r.stderr
    recs = records(out)
    crashed, died = recs["RouteScenario_0_rep0"], recs["RouteScenario_2_rep0"]
    assert crashed["status"] == "Failed - Agent crashed" and "injected fault: crash" in crashed["meta"]["error"]
    assert died["status"] == "Failed - Simulation crashed"
    assert "worker died on Ray after 2 attempt(s)" in died["meta"]["error"]
    fine, ref = dict(recs["RouteScenario_3_rep0"]), dict(reference[0]["RouteScenario_3_rep0"])
    assert fine.pop("index") == 2 and ref.pop("index") == 3  # a --route-ids run numbers its routes 0.. (as locally)
    assert fine == ref
    summary = json.loads((out / "summary.json").read_text())
    assert summary["routes_evaluated"] == 3 and len(summary["failed_routes"]) == 2
    out = tmp_path / "hang"
    r = run_cli("eval", "--routes", str(routes), "--out", str(out), "--ray", ray_head[0], "--route-ids", "3",
                "--fault", "hang:3", "--route-timeout", "4")
    assert r.returncode == 0, r.stdout + r.stderr
    hung = records(out)["RouteScenario_3_rep0"]
    assert hung["status"] == "Failed - Simulation crashed" and "worker hung: no result after" in hung["meta"]["error"]


def test_missing_ray_is_a_clear_error(routes, tmp_path):
    probe = ("import sys; sys.modules['ray'] = None; from drivesim.cli import main; "
             f"sys.exit(main(['eval', '--routes', {str(routes)!r}, '--out', {str(tmp_path / 'ev')!r}, '--ray']))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "--ray needs the ray extra: pip install -e '.[ray]'" in r.stderr
    assert not (tmp_path / "ev" / "results.json").exists()


def test_rl_rollouts_on_ray_actors_give_the_in_process_update(ray_head, learn_dataset, run_cli, tmp_path):
    """`train rl --ray HOST:PORT --rollout-actors 2` (`--ray local` as well: the same code path after
    ray.init): the learner samples the actions, two Ray actors roll out the
    halves of every update's states with the world model: the same rewards, losses and weights as the
    in-process rollouts with the same seeds (measured: bit-identical)."""
    from drivesim.learn.configs import ILConfig, WMConfig
    from drivesim.learn.train import ILStage, WMStage

    tiny = dict(data=str(learn_dataset / "ds"), workers=1, d_model=32, layers=1, epochs=1, threads=1)
    ILStage(ILConfig(out=str(tmp_path / "il"), **tiny), log=lambda *_: None).run()
    WMStage(WMConfig(out=str(tmp_path / "wm"), **tiny), log=lambda *_: None).run()
    args = ["train", "rl", "--data", str(learn_dataset / "ds"), "--workers", "1", "--threads", "1", "--init",
            str(tmp_path / "il" / "ckpt.pt"), "--world-model", str(tmp_path / "wm" / "ckpt.pt"), "--updates", "3",
            "--states", "32", "--curriculum", "2"]
    here = run_cli(*args, "--out", str(tmp_path / "here"))
    assert here.returncode == 0, here.stderr[-3000:]
    ray = run_cli(*args, "--out", str(tmp_path / "ray"), "--ray", ray_head[0], "--rollout-actors", "2")
    assert ray.returncode == 0, ray.stderr[-3000:]
    assert f"rl rollouts on 2 Ray actors ({ray_head[0]}" in ray.stdout + ray.stderr
    m1, m2 = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("here", "ray"))
    assert len(m1["history"]) == len(m2["history"]) == 3
    for a, b in zip(m1["history"], m2["history"]):
        for k in a:
            if k.startswith("reward/") or k in ("loss", "entropy", "approx_kl", "kl_ref", "speed_mean_m_s"):
                assert b[k] == pytest.approx(a[k], rel=1e-6, abs=1e-7), k
    assert m2["val"] == pytest.approx(m1["val"], rel=1e-6, abs=1e-7)
    w1, w2 = (torch.load(tmp_path / d / "ckpt.pt", weights_only=False)["model"] for d in ("here", "ray"))
    assert all(torch.allclose(w1[k], w2[k], rtol=0, atol=1e-7) for k in w1)
    # without the ray extra: the error names the fix, before any update
    probe = ("import sys; sys.modules['ray'] = None; from drivesim.cli import main; "
             f"sys.exit(main({[*args, '--out', str(tmp_path / 'noray'), '--ray', 'local']!r}))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--ray needs the ray extra" in r.stderr, r.stderr[-2000:]


def test_dreaming_rollouts_on_ray_actors_give_the_in_process_update(ray_head, learn_dataset, shadow_data, run_cli, tmp_path):
    """`train dreaming --ray HOST:PORT --rollout-actors 2`: the learner samples each group's actions, two Ray actors
    roll out halves of the scenarios (learn/dream_rollout.rollout): the same rewards, KLs, held-out curve and
    weights as the in-process rollouts with the same seeds."""
    from drivesim.learn.vla import VLAConfig, make_stage

    make_stage(VLAConfig(data=str(learn_dataset / "ds"), out=str(tmp_path / "vla"), workers=1, d_model=32, layers=1,
                         epochs=1, batch_size=64, threads=1, supervision="none"), log=lambda *_: None).run()
    args = ["train", "dreaming", "--init", str(tmp_path / "vla" / "ckpt.pt"), "--takeover-data",
            str(shadow_data / "shadow"), "--updates", "3", "--states", "16", "--group", "4", "--eval-every", "3",
            "--workers", "1", "--threads", "1", "--lr", "1e-3"]
    here = run_cli(*args, "--out", str(tmp_path / "here"))
    assert here.returncode == 0, here.stderr[-3000:]
    ray = run_cli(*args, "--out", str(tmp_path / "ray"), "--ray", ray_head[0], "--rollout-actors", "2")
    assert ray.returncode == 0, ray.stderr[-3000:]
    assert f"dreaming rollouts on 2 Ray actors ({ray_head[0]}" in ray.stdout + ray.stderr
    h1, h2 = (json.loads((tmp_path / d / "dreaming.json").read_text())["history"] for d in ("here", "ray"))
    assert [h["update"] for h in h1] == [h["update"] for h in h2] == [0, 1, 2, 3]
    for a, b in zip(h1, h2):
        for part in ("train", "heldout"):
            assert (part in a) == (part in b)
            for k, v in a.get(part, {}).items():
                assert b[part][k] == pytest.approx(v, rel=1e-6, abs=1e-7), (a["update"], part, k)
    assert any(h.get("train", {}).get("kl_speed", 0) > 0 for h in h1)  # the update moved the policy
    w1, w2 = (torch.load(tmp_path / d / "ckpt.pt", weights_only=False)["model"] for d in ("here", "ray"))
    assert all(torch.allclose(w1[k], w2[k], rtol=0, atol=1e-7) for k in w1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_workers(pgid: int) -> dict[int, bytes]:
    """The worker processes of a node this test started (pid -> title): the children of the raylet in the node's
    process group (Ray gives each worker a process group of its own). A worker is titled by the task it runs,
    ray::_ray_call (dispatch.py's task) while it drives a route, ray::IDLE between routes."""
    procs = {}
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit():
                ppid, pgrp = (int(x) for x in (d / "stat").read_text().rsplit(")", 1)[1].split()[1:3])
                procs[int(d.name)] = (ppid, pgrp, (d / "cmdline").read_bytes().split(b"\0")[0])
        except (OSError, ValueError):
            continue
    raylets = {pid for pid, (_, pgrp, cmd) in procs.items() if pgrp == pgid and cmd.endswith(b"raylet/raylet")}
    return {pid: cmd for pid, (ppid, _, cmd) in procs.items() if ppid in raylets}


def _kill_node(pgid: int) -> None:
    """SIGKILL a node this test started: its process group (`ray start`, raylet, agents) and its workers."""
    workers = _node_workers(pgid)
    for pid in [-pgid, *workers]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_for(cond, what: str, timeout: float, logs=()) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}\n" + "\n".join(
                f"--- {p}:\n{Path(p).read_text()[-3000:]}" for p in logs if Path(p).exists()))
        time.sleep(0.1)


@pytest.mark.slow
def test_two_node_cluster_loses_a_node_mid_run_without_losing_a_route(routes, reference):
    """`ray start --head` and a second `ray start --address` on loopback (127.0.0.2 and 127.0.0.3: Ray replaces
    127.0.0.1 with the machine's routable address), one CPU each; `eval --ray HEAD:PORT` spreads the routes over
    both, and the second node is killed (SIGKILL to its process group and its workers) once the first result is
    checkpointed and while it drives a route. Ray re-runs that route on the head: every route has its record, and the records and the
    summary equal the undisturbed local run's."""
    tmp = Path(tempfile.mkdtemp(prefix="dsray", dir="/tmp"))  # short: Ray's socket paths live under its temp dir
    port = _free_port()
    head_addr = f"127.0.0.2:{port}"
    env = {**os.environ, **QUIET, "RAY_TMPDIR": str(tmp),
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),  # this cluster's own token
           # node death noticed in about a second (the default is several)
           "RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "500",
           "RAY_health_check_timeout_ms": "500", "RAY_health_check_failure_threshold": "3"}
    procs: list[subprocess.Popen] = []
    logs = []

    def start(name: str, *args: str) -> subprocess.Popen:
        logs.append(open(tmp / f"{name}.log", "w"))
        p = subprocess.Popen([*args], env=env, stdout=logs[-1], stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        return p

    common = ["--num-cpus", "1", "--disable-usage-stats", "--block",
              "--dashboard-agent-listen-port", str(_free_port())]
    out = tmp / "ev"
    try:
        start("head", RAY, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.2",
              "--include-dashboard", "false", "--ray-client-server-port", str(_free_port()),
              "--temp-dir", str(tmp / "h"), *common)
        _wait_for(lambda: "Ray runtime started" in (tmp / "head.log").read_text(), "the head node", 90,
                  [tmp / "head.log"])
        node = start("node", RAY, "start", "--address", head_addr, "--node-ip-address", "127.0.0.3",
                     "--temp-dir", str(tmp / "w"), *common)
        _wait_for(lambda: "Ray runtime started" in (tmp / "node.log").read_text(), "the second node", 90,
                  [tmp / "node.log"])
        t0 = time.monotonic()
        driver = start("driver", *CLI, "eval", "--routes", str(routes), "--out", str(out), "--ray", head_addr)

        def recorded() -> int:
            try:
                return len(json.loads((out / "results.json").read_text())["_checkpoint"]["records"])
            except (OSError, ValueError, KeyError):
                return 0

        def node_drives() -> bool:
            return any(t == b"ray::_ray_call" for t in _node_workers(node.pid).values())

        _wait_for(lambda: (recorded() >= 1 and node_drives()) or driver.poll() is not None,
                  "a checkpointed route while the second node drives another", 120, [tmp / "driver.log"])
        assert driver.poll() is None, "the evaluation finished before the node could be killed"
        n_before = recorded()
        _kill_node(node.pid)
        t_kill = time.monotonic() - t0
        assert driver.wait(timeout=180) == 0, (tmp / "driver.log").read_text()[-4000:]
        log = (tmp / "driver.log").read_text()
        print(f"two-node eval: node killed at {t_kill:.1f} s with {n_before} of 4 routes recorded, finished at "
              f"{time.monotonic() - t0:.1f} s")
        recs = records(out)
        ref_recs, ref_summary = reference
        assert sorted(recs) == sorted(ref_recs), log[-4000:]
        assert recs == ref_recs, log[-4000:]
        assert json.loads((out / "summary.json").read_text()) == ref_summary
        assert "Simulation crashed" not in log  # the interrupted route was run again, not recorded as crashed
    finally:
        for p in reversed(procs):  # only what this test started, by process id
            _kill_node(p.pid)
            p.wait(timeout=30)
        for f in logs:
            f.close()
        shutil.rmtree(tmp, ignore_errors=True)
