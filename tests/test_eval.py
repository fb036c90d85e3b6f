"""Evaluation orchestration: results JSON shape, crash/hang isolation, resume; the rule policy on shared routes."""

import json

import pytest
from conftest import B2D, MAPS, need_shared
from drivesim.cli import main
from drivesim.evaluation.evaluate import EvalConfig, evaluate
from drivesim.metrics.bench2drive import INFRACTION_KEYS
from drivesim.routes import write_routes
from drivesim.routes.generate import random_routes


@pytest.fixture(scope="module")
def proc_routes(tmp_path_factory, proc_town):
    p = tmp_path_factory.mktemp("routes") / "proc.xml"
    write_routes(random_routes(proc_town, 3, seed=4, min_length=120.0), p)
    return p


def test_eval_results_shape_crash_isolation_and_resume(proc_routes, tmp_path):
    out = tmp_path / "ev"
    s = evaluate(EvalConfig(routes=str(proc_routes), out=str(out), workers=2, fault="crash:1"), log=lambda *_: None)
    res = json.loads((out / "results.json").read_text())
    recs = res["_checkpoint"]["records"]
    assert res["entry_status"] == "Finished" and res["_checkpoint"]["progress"] == [3, 3]
    assert [r["route_id"] for r in recs] == ["RouteScenario_0_rep0", "RouteScenario_1_rep0", "RouteScenario_2_rep0"]
    crashed = recs[1]
    assert crashed["status"] == "Failed - Agent crashed" and "injected fault" in crashed["meta"]["error"]
    for r in recs:
        assert set(r["infractions"]) == set(INFRACTION_KEYS)
        assert {"score_route", "score_penalty", "score_composed"} == set(r["scores"])
    assert recs[0]["scores"]["score_route"] > 50
    assert s["routes_evaluated"] == 3 and s["failed_routes"] == ["RouteScenario_1_rep0"]
    assert json.loads((out / "summary.json").read_text())["routes_total"] == 3
    # resume: nothing left to do, the records stay as they were
    s2 = evaluate(EvalConfig(routes=str(proc_routes), out=str(out), resume=True), log=lambda *_: None)
    assert s2["routes_evaluated"] == 3
    assert json.loads((out / "results.json").read_text())["_checkpoint"]["records"] == recs


def test_eval_resume_runs_only_missing_routes(proc_routes, tmp_path):
    out = tmp_path / "ev"
    evaluate(EvalConfig(routes=str(proc_routes), out=str(out), route_ids=["0"]), log=lambda *_: None)
    logs = []
    s = evaluate(EvalConfig(routes=str(proc_routes), out=str(out), resume=True), log=logs.append)
    assert any("1 routes already recorded, 2 to go" in m for m in logs)
    assert s["routes_evaluated"] == 3


def test_hung_and_dead_workers_are_recorded(proc_routes, tmp_path):
    out = tmp_path / "ev"
    s = evaluate(EvalConfig(routes=str(proc_routes), out=str(out), workers=2, route_ids=["0", "2"],
                            fault="hang:2", route_timeout_s=5.0), log=lambda *_: None)
    recs = json.loads((out / "results.json").read_text())["_checkpoint"]["records"]
    assert recs[1]["status"] == "Failed - Simulation crashed" and "hung" in recs[1]["meta"]["error"]
    assert recs[0]["status"] != "Failed - Simulation crashed"
    out2 = tmp_path / "ev2"
    evaluate(EvalConfig(routes=str(proc_routes), out=str(out2), route_ids=["0"], fault="exit:0"), log=lambda *_: None)
    rec = json.loads((out2 / "results.json").read_text())["_checkpoint"]["records"][0]
    assert rec["status"] == "Failed - Simulation crashed" and "exited with code 3" in rec["meta"]["error"]
    assert s["routes_evaluated"] == 2


def test_unknown_policy_is_a_clear_error(proc_routes, tmp_path, capsys):
    assert main(["eval", "--routes", str(proc_routes), "--policy", "nosuch", "--out", str(tmp_path)]) == 2
    assert "unknown policy 'nosuch'" in capsys.readouterr().err


@pytest.mark.shared
def test_rule_policy_on_shared_routes_skips_missing_maps(tmp_path):
    need_shared()
    out = tmp_path / "b2d"
    ids = "24211,28035,1711"
    s = evaluate(EvalConfig(routes=str(B2D), out=str(out), maps_dir=str(MAPS), route_ids=ids.split(","), workers=2),
                 log=lambda *_: None)
    assert s["routes_evaluated"] == 2 and s["routes_skipped"] == 1
    assert s["skipped"][0]["status"] == "missing_map" and s["skipped"][0]["route_id"] == "1711"
    recs = {r["route_id"]: r for r in json.loads((out / "results.json").read_text())["_checkpoint"]["records"]}
    # T_Junction is background traffic only: the rule policy completes it
    assert recs["RouteScenario_28035_rep0"]["scores"]["score_composed"] > 80


def test_efficiency_and_comfort_come_out_of_a_closed_loop_route(proc_town):
    """Regression: the per-route Bench2Drive signals are real numbers (a shadowed ego-speed variable once made
    every route's efficiency 0)."""
    from drivesim.evaluation.runner import run_route
    from drivesim.routes.generate import random_routes

    rec = run_route(proc_town, random_routes(proc_town, 1, seed=0)[0], "rule").record
    assert 30.0 < rec["meta"]["efficiency"] < 400.0
    assert 0.0 < rec["meta"]["comfort"] <= 1.0


def test_eval_table_rows_and_seed_means(tmp_path):
    """`eval-table`: one row per label; a label with runs joined by '+' shows their mean +- sample std."""
    from drivesim.evaluation.report import summary_table

    def run(name, ds, sr):
        d = tmp_path / name
        d.mkdir()
        (d / "summary.json").write_text(json.dumps({"driving_score": ds, "success_rate": sr, "efficiency": 100.0,
                                                    "comfortness": 50.0, "routes_evaluated": 3,
                                                    "average_ttc": ds / 20.0,
                                                    "multi_ability": {"Merging": {"success_rate": sr}},
                                                    "multi_ability_mean": sr}))
        return str(d)

    md = summary_table({"a": run("a", 60.0, 30.0), "b": "+".join([run("b0", 60.0, 20.0), run("b1", 70.0, 40.0)]),
                        "c": str(tmp_path / "none")}, "t")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in md.splitlines()
            if line.startswith("| ") and not line.startswith("| policy")}
    assert rows["a"][:2] == ["60.0", "30.0"] and rows["a"][-1] == "3"
    assert rows["b"][:2] == ["65.0 ± 7.1", "30.0 ± 14.1"] and rows["b"][6] == "30.0" and rows["b"][-1] == "3 x 2 seeds"
    assert rows["a"][4] == "3.00" and rows["b"][4] == "3.25 ± 0.35"  # average TTC [s], two decimals
    assert rows["c"][0].startswith("(no ")


def test_infraction_table_averages_counts_over_a_labels_runs(tmp_path):
    from drivesim.evaluation.report import INFRACTION_COLUMNS, infraction_table

    for name, ped, veh in (("a", 1, 4), ("b", 3, 0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(
            {"routes_evaluated": 10, "infractions": {"collisions_pedestrian": ped, "collisions_vehicle": veh}}))
    md = infraction_table({"p": f"{tmp_path / 'a'}+{tmp_path / 'b'}", "q": str(tmp_path / "nope")}, "t")
    row = next(line for line in md.splitlines() if line.startswith("| p |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["2.0", "2.0"] and cells[3:1 + len(INFRACTION_COLUMNS)] == ["0.0"] * (len(INFRACTION_COLUMNS) - 2)
    assert cells[-1] == "10 x 2 seeds" and "| q | (no" in md and md.startswith("**t**")
