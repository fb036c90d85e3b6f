"""`drive-stack bench scale`: routes per second against worker count for `--workers` and `--ray`, and the per-route
overhead Ray adds (bench.bench_scale). Run as the CLI in a subprocess: Ray never starts in the test process."""

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

CLI = [sys.executable, "-m", "drivesim.cli"]
SHORT = ["--routes-n", "3", "--route-length", "80"]  # three short procedural routes on Proc0


@pytest.fixture()
def ray_env():
    """A local Ray keeps its session files in a short temporary folder (RAY_TMPDIR: Ray's socket paths live under
    it), removed afterwards; no usage statistics."""
    tmp = tempfile.mkdtemp(prefix="dsbs", dir="/tmp")
    yield {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": tmp}
    shutil.rmtree(tmp, ignore_errors=True)


def test_bench_scale_times_both_backends_and_ray_overhead(ray_env, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "scale.json"
    r = subprocess.run([*CLI, "bench", "scale", "--json", str(out), *SHORT, "--workers", "1,2"],
                       capture_output=True, text=True, timeout=240, env=ray_env)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert json.loads(r.stdout) == res
    assert res["what"] and res["machine"]["cpus"] == os.cpu_count() and res["machine"]["ray"]
    assert res["routes"]["count"] == 3 and [x["route_id"] for x in res["routes"]["ids"]] == ["0", "1", "2"]
    assert res["workers"] == [1, 2] and res["ray"] == "local" and res["ray_skipped"] is None
    assert [(x["backend"], x["workers"]) for x in res["runs"]] == [("workers", 1), ("ray", 1), ("workers", 2),
                                                                   ("ray", 2)]
    for run in res["runs"]:
        assert run["routes_per_s"] > 0 and run["routes_ok"] == 3
        for row in run["routes"]:
            assert row["outcome"] == "ok" and row["wall_s"] >= row["worker_s"] >= row["route_s"] > 0
            assert math.isfinite(row["dispatch_fraction"])
        if run["backend"] == "ray":
            assert run["ray_init_s"] > 0 and run["ray_cluster_cpus"] == run["workers"]
            assert 0 < run["routes_per_s_with_init"] < run["routes_per_s"]
    for backend in ("workers", "ray"):
        assert set(res["scaling"][backend]["routes_per_s"]) == {"1", "2"}
        assert res["scaling"][backend]["speedup_vs_1"]["1"] == 1.0
    ov = res["ray_overhead"]
    for k in ("fraction_median", "fraction_max", "dispatch_ms_median", "route_s_median", "fraction_median_all_routes",
              "added_vs_workers_fraction_median", "workers_dispatch_fraction_median"):
        assert math.isfinite(ov[k]), k
    assert ov["basis"] == "warm_workers"  # Ray reused a worker process: three routes on one or two workers
    assert ov["target_fraction"] == 0.05 and ov["meets_target"] == (ov["fraction_median"] < 0.05)
    assert set(ov["ray_init_s"]) == {"1", "2"}
    assert res["results_identical"] is True
    assert "results identical across runs: True" in r.stderr


def test_bench_scale_without_the_ray_extra_skips_the_ray_rows(tmp_path):
    """No ray package (hidden from the import system): the local rows only, and the JSON and stderr say why."""
    out = tmp_path / "scale.json"
    code = ("import sys; sys.modules['ray'] = None; from drivesim.cli import main; "
            f"sys.exit(main(['bench', 'scale', '--json', {str(out)!r}, '--routes-n', '2', '--route-length', '60', "
            "'--workers', '1']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert "ray rows skipped" in res["ray_skipped"] and "pip install" in res["ray_skipped"]
    assert "ray rows skipped" in r.stderr
    assert res["ray"] is None and res["ray_overhead"] is None and res["machine"]["ray"] is None
    assert [(x["backend"], x["workers"]) for x in res["runs"]] == [("workers", 1)]
    assert res["runs"][0]["routes_per_s"] > 0 and res["results_identical"] is True
    assert set(res["scaling"]) == {"workers"}
