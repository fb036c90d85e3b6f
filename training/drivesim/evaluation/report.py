"""After an evaluation: renders of the failing routes (re-driven, deterministic) and an HTML report
(``report.html``: the summary table, one row per route with its infractions, the failures' animations)."""

from __future__ import annotations

import html
import json
from pathlib import Path

from ..maps import TownLoader
from ..routes import parse_routes

IGNORED = {"min_speed_infractions"}  # Bench2Drive does not score them


def failing(records: list[dict], limit: int) -> list[dict]:
    """The worst `limit` routes with a Driving Score below 100 (lowest first)."""
    bad = [r for r in records if r["scores"]["score_composed"] < 99.995]
    return sorted(bad, key=lambda r: r["scores"]["score_composed"])[:limit]


def render_failures(routes_file: str, maps_dir: str | None, policy: str, seed: int, records: list[dict], out: Path,
                    limit: int, log=print) -> dict[str, str]:
    """Re-drive and render the failing routes; returns route record id -> GIF path (relative to out)."""
    from ..render import BevRenderer, record_route_frames, render_frames

    specs = {f"RouteScenario_{s.route_id}_rep0": s for s in parse_routes(routes_file).routes}
    loader = TownLoader(maps_dir)
    done = {}
    for rec in failing(records, limit):
        spec = specs.get(rec["route_id"])
        if spec is None or not loader.available(spec.town):
            continue
        g = loader.load(spec.town)
        model = (rec.get("meta", {}).get("model") or {}).get("path")  # the very file the route was driven with
        frames, again, dense = record_route_frames(g, spec, policy, int(rec.get("meta", {}).get("seed", seed)),
                                                   model=model)
        d = out / "renders" / rec["route_id"]
        w = render_frames(frames, BevRenderer(g, dense.xy), d, gif=True, png=False, every=2, fps=5.0)
        done[rec["route_id"]] = str(Path(w["gif"]).relative_to(out))
        log(f"rendered {rec['route_id']} (DS {again['scores']['score_composed']:.1f}): {d / 'episode.gif'}")
    return done


def write_report(out: Path, summary: dict, records: list[dict], renders: dict[str, str]) -> Path:
    esc = html.escape
    rows = []
    for r in sorted(records, key=lambda r: r["route_id"]):
        sc = r["scores"]
        inf = {k: v for k, v in r["infractions"].items() if v and k not in IGNORED}
        cell = "<br>".join(f"<b>{esc(k)}</b> ({len(v)}): {esc(v[0])}" for k, v in inf.items()) or "-"
        gif = renders.get(r["route_id"])
        pic = f'<img src="{esc(gif)}" width="320">' if gif else ""
        rows.append(f"<tr><td>{esc(r['route_id'])}</td><td>{esc(str(r['meta'].get('town', '')))}</td>"
                    f"<td>{esc(str(r['meta'].get('scenario_type', '')))}</td><td>{esc(r['status'])}</td>"
                    f"<td>{sc['score_route']:.1f}</td><td>{sc['score_penalty']:.2f}</td>"
                    f"<td>{sc['score_composed']:.1f}</td><td>{cell}</td><td>{pic}</td></tr>")
    head = ["Driving Score", "Success Rate", "Efficiency", "Comfortness"]
    keys = ["driving_score", "success_rate", "efficiency", "comfortness"]
    summ = "".join(f"<tr><th>{h}</th><td>{summary.get(k, float('nan')):.2f}</td></tr>" for h, k in zip(head, keys,
                                                                                                         strict=True))
    multi = summary.get("multi_ability", {})
    for k, v in multi.items():
        rate = v.get("success_rate")
        summ += f"<tr><th>{esc(k)} success</th><td>{'n/a' if rate is None else f'{rate:.1f}'} ({v.get('routes')} routes)</td></tr>"
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>drive-stack evaluation</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;vertical-align:top;font-size:13px}}</style></head><body>
<h1>Evaluation: policy {esc(str(summary.get('policy')))}</h1>
<p>routes file {esc(str(summary.get('routes_file')))}, seed {esc(str(summary.get('seed')))},
routes evaluated {summary.get('routes_evaluated')}, skipped {summary.get('routes_skipped')}</p>
<table>{summ}</table>
<h2>Routes</h2><table><tr><th>route</th><th>town</th><th>scenario</th><th>status</th><th>RC</th><th>penalty</th>
<th>DS</th><th>infractions (first message)</th><th>render</th></tr>{''.join(rows)}</table>
<p>summary.json: <pre>{esc(json.dumps(summary, indent=1)[:4000])}</pre></p></body></html>"""
    p = out / "report.html"
    p.write_text(doc)
    return p


def _summaries(spec: str | Path) -> tuple[list[dict], Path | None]:
    """The summaries of a table label's runs ('dir' or 'dir1+dir2+...', each an eval out dir or a summary.json),
    or ([], the first missing file)."""
    files = [(Path(p) if Path(p).suffix == ".json" else Path(p) / "summary.json") for p in str(spec).split("+")]
    gone = next((f for f in files if not f.exists()), None)
    return ([] if gone else [json.loads(f.read_text()) for f in files]), gone


def summary_table(runs: dict[str, str | Path], title: str = "") -> str:
    """A Markdown table of evaluation summaries: {label: eval out dir (or summary.json)} -> DS, SR, Efficiency,
    Comfortness, average TTC [s] (metrics/monitor.py; n/a in summaries older than it), the five multi-ability
    success rates, routes. Missing runs are listed as such.

    A label may name several runs joined by '+' (the same policy under several seeds): its row holds their
    means, DS and SR as mean +- standard deviation, and the routes column says how many runs."""
    cols = ["Overtaking", "Merging", "Emergency_Brake", "Give_Way", "Traffic_Signs"]
    head = "| policy | DS | SR % | Efficiency | Comfortness | avg TTC s | " + " | ".join(cols) + " | ability mean | routes |"
    lines = [f"**{title}**", "", head, "|" + "---|" * (head.count("|") - 1)] if title else [head, "|" + "---|" * (head.count("|") - 1)]

    def fmt(vals: list, spread: bool = False, digits: int = 1) -> str:
        vals = [v for v in vals if v is not None]
        if not vals:
            return "n/a"
        m = sum(vals) / len(vals)
        if spread and len(vals) > 1:
            sd = (sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5
            return f"{m:.{digits}f} ± {sd:.{digits}f}"
        return f"{m:.{digits}f}"

    for label, spec in runs.items():
        ss, gone = _summaries(spec)
        if gone:
            lines.append(f"| {label} | (no {gone}) |")
            continue
        ab = [s.get("multi_ability", {}) for s in ss]
        routes = f"{ss[0]['routes_evaluated']}" + (f" x {len(ss)} seeds" if len(ss) > 1 else "")
        lines.append(f"| {label} | {fmt([s['driving_score'] for s in ss], True)} | "
                     f"{fmt([s['success_rate'] for s in ss], True)} | {fmt([s.get('efficiency') for s in ss])} | "
                     f"{fmt([s.get('comfortness') for s in ss])} | {fmt([s.get('average_ttc') for s in ss], True, 2)} | "
                     + " | ".join(fmt([a.get(c, {}).get("success_rate") for a in ab]) for c in cols)
                     + f" | {fmt([s.get('multi_ability_mean') for s in ss])} | {routes} |")
    return "\n".join(lines) + "\n"


INFRACTION_COLUMNS = ("collisions_pedestrian", "collisions_vehicle", "collisions_layout", "red_light",
                      "stop_infraction", "outside_route_lanes", "vehicle_blocked")


def infraction_table(runs: dict[str, str | Path], title: str = "") -> str:
    """A Markdown table of infraction counts per evaluation (collisions by kind, red lights, stop signs, lane
    departures, blocked): {label: eval out dir or dir1+dir2+...} -> the counts, averaged over a label's runs."""
    head = "| policy | " + " | ".join(INFRACTION_COLUMNS) + " | routes |"
    lines = ([f"**{title}**", ""] if title else []) + [head, "|" + "---|" * (head.count("|") - 1)]
    for label, spec in runs.items():
        ss, gone = _summaries(spec)
        if gone:
            lines.append(f"| {label} | (no {gone}) |")
            continue
        cells = [sum(s.get("infractions", {}).get(c, 0) for s in ss) / len(ss) for c in INFRACTION_COLUMNS]
        routes = f"{ss[0]['routes_evaluated']}" + (f" x {len(ss)} seeds" if len(ss) > 1 else "")
        lines.append(f"| {label} | " + " | ".join(f"{v:.1f}" for v in cells) + f" | {routes} |")
    return "\n".join(lines) + "\n"

