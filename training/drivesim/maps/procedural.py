"""Procedural towns from a seed, written as OpenDRIVE with the PyPI ``scenariogeneration`` package and then
loaded through the same CARLA-client loader as CARLA's towns. Same seed, same town (byte-identical xodr).

Layout: a grid of NX x NY junction nodes SPACING apart, joined by straight roads. Interior nodes are 4-way
junctions, border nodes T junctions, corners curves, so the network has no dead ends. Each junction is
signalised (traffic lights on every approach), stop-controlled (stop signs) or uncontrolled, by the seed;
roads of one grid row are multi-lane arterials (2 lanes each way), the others 1 lane each way.
Not yet generated (see the foundation issue's notes): the highway with on-ramp/exit and parking lanes.
"""

from __future__ import annotations

import numpy as np

SPACING = 110.0  # [m] between junction centres
JUNCTION_RADIUS = 14.0  # [m] from a junction centre to where its roads start
LANE_WIDTH = 3.5  # [m]
SPEED_LIMIT_KMH = 40


def generate_town_xodr(seed: int, nx: int = 3, ny: int = 3) -> str:
    """OpenDRIVE text of procedural town ``Proc<seed>``."""
    from scenariogeneration import xodr

    rng = np.random.default_rng(seed)
    arterial_row = int(rng.integers(0, ny))
    control = rng.choice(["signal", "stop", "none"], size=(nx, ny), p=[0.5, 0.3, 0.2])
    jid = {(i, j): 1000 + i * ny + j for i in range(nx) for j in range(ny)}
    creators = {k: xodr.CommonJunctionCreator(id=v, name=f"junction_{k[0]}_{k[1]}", startnum=10000 + 100 * (v - 1000))
                for k, v in jid.items()}
    odr = xodr.OpenDrive(f"Proc{seed}")
    length = SPACING - 2 * JUNCTION_RADIUS
    roads = []  # (road, node_start, node_end, lanes)
    rid = 1
    for i in range(nx):
        for j in range(ny):
            for di, dj in ((1, 0), (0, 1)):
                a, b = (i, j), (i + di, j + dj)
                if b[0] >= nx or b[1] >= ny:
                    continue
                lanes = 2 if (dj == 0 and j == arterial_row) else 1
                road = xodr.create_road(xodr.Line(length), rid, left_lanes=lanes, right_lanes=lanes,
                                        lane_width=LANE_WIDTH)
                roads.append((road, a, b, lanes))
                rid += 1
    for road, a, b, lanes in roads:
        odr.add_road(road)
        # angle of the road seen from each junction: from a towards b, and from b towards a
        ang_a = 0.0 if b[0] > a[0] else np.pi / 2
        creators[a].add_incoming_road_circular_geometry(road, JUNCTION_RADIUS, ang_a, "predecessor")
        creators[b].add_incoming_road_circular_geometry(road, JUNCTION_RADIUS, ang_a + np.pi, "successor")
        for node, end in ((a, "predecessor"), (b, "successor")):
            kind = control[node]
            if kind == "none":
                continue
            sig_type = "1000001" if kind == "signal" else "206"
            if end == "successor":  # right lanes (negative ids) drive +s and enter at s = length; CARLA maps "-" to them
                s, t, orient = length - 0.5, -lanes * LANE_WIDTH - 0.5, xodr.Orientation.negative
            else:  # left lanes drive -s and enter at s = 0
                s, t, orient = 0.5, lanes * LANE_WIDTH + 0.5, xodr.Orientation.positive
            road.add_signal(xodr.Signal(s=s, t=t, country="OpenDRIVE", Type=sig_type, subtype="-1",
                                        orientation=orient, zOffset=2.0, height=1.0, width=0.5))
    # connect every incoming road to every other one at each junction (all lanes, right-hand traffic)
    for node, cr in creators.items():
        incident = [(r, lanes) for r, a, b, lanes in roads if node in (a, b)]
        for x in range(len(incident)):
            for y in range(x + 1, len(incident)):
                cr.add_connection(incident[x][0].id, incident[y][0].id)
        odr.add_junction_creator(cr)
    odr.adjust_roads_and_lanes()
    return _to_text(odr)


def _to_text(odr) -> str:
    import xml.etree.ElementTree as ET

    root = odr.get_element()
    # scenariogeneration stamps the header with the current date: fix it so the same seed gives the same text
    header = root.find("header")
    if header is not None:
        header.set("date", "2026-01-01T00:00:00")
        if header.find("geoReference") is None:
            ET.SubElement(header, "geoReference").text = "+proj=tmerc +lat_0=0 +lon_0=0"
    # CARLA's spiral evaluation returns NaN for a spiral of constant curvature: write those as arcs / lines
    for geo in root.iter("geometry"):
        sp = geo.find("spiral")
        if sp is not None:
            c0, c1 = float(sp.get("curvStart")), float(sp.get("curvEnd"))
            if abs(c1 - c0) < 1e-9:
                geo.remove(sp)
                if abs(c0) < 1e-8:
                    ET.SubElement(geo, "line")
                else:
                    ET.SubElement(geo, "arc", curvature=repr(c0))
    # signal ids come from a process-wide counter in scenariogeneration: renumber them
    for k, sig in enumerate(root.iter("signal")):
        sig.set("id", str(k + 1))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")
