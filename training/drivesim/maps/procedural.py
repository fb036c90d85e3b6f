"""Procedural towns from a seed, written as OpenDRIVE with the PyPI ``scenariogeneration`` package and then
loaded through the same CARLA-client loader as CARLA's towns. Same seed, same town (byte-identical xodr).

Layout: a grid of NX x NY junction nodes SPACING apart, joined by straight roads. Interior nodes are 4-way
junctions, border nodes T junctions, corners curves, so the network has no dead ends. Each junction is
signalised (traffic lights on every approach), stop-controlled (stop signs) or uncontrolled, by the seed;
roads of one grid row are multi-lane arterials (2 lanes each way), the others 1 lane each way. Signalised
approaches have zebra crossings (OpenDRIVE crosswalk objects). Some streets
(by the seed) have parking lanes (OpenDRIVE lane type ``parking``) on both sides.

South of the grid runs a 3+3-lane highway (motorway, 90 km/h) of three segments joined by two junctions built
the way CARLA's highway towns are: the eastbound carriageway opens an exit lane that leaves through the first
junction onto an off-ramp; the westbound carriageway takes an on-ramp through the second junction onto an
acceleration lane that merges away. Highway ends and ramp ends are map edges (agents leave there).
"""

from __future__ import annotations

import numpy as np

SPACING = 110.0  # [m] between junction centres
JUNCTION_RADIUS = 14.0  # [m] from a junction centre to where its roads start
LANE_WIDTH = 3.5  # [m]
SPEED_LIMIT_KMH = 40
PARKING_WIDTH = 2.5  # [m]
CROSSWALK_WIDTH = 4.0  # [m] along the road
CROSSWALK_SETBACK = 3.0  # [m] from the road's end at a signalised junction to the crosswalk's centre
HIGHWAY_Y = -70.0  # [m] OpenDRIVE y of the highway's centre line (the grid spans y in [0, (ny - 1) * SPACING])
HIGHWAY_KMH = 90
RAMP_KMH = 60


def _sequential_sums() -> None:
    """Python 3.12's ``sum`` of floats is compensated (exact-ish) where 3.10/3.11 add in order. scenariogeneration's
    junction creator sizes a connecting road's lanes with ``sum`` of its geometries' lengths while ``create_road``
    sizes the road with ``+=``: on 3.12 the two differ in the last bit, every connecting road gets a trailing lane
    section ~1e-14 m long, and CARLA's parser refuses the map (``s <= road->GetLength()``). Adding in order there,
    as before 3.12, keeps the xodr byte-identical on every Python version."""
    import sys

    if sys.version_info < (3, 12):
        return
    from functools import reduce
    from operator import add

    from scenariogeneration.xodr import junction_creator

    if "sum" not in vars(junction_creator):
        junction_creator.sum = lambda it, start=0: reduce(add, it, start)


def generate_town_xodr(seed: int, nx: int = 3, ny: int = 3) -> str:
    """OpenDRIVE text of procedural town ``Proc<seed>``."""
    from scenariogeneration import xodr

    _sequential_sums()
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
                road.add_type(xodr.RoadType.town, speed=SPEED_LIMIT_KMH / 3.6)
                roads.append((road, a, b, lanes))
                rid += 1
    parking = rng.random(len(roads)) < 0.35  # which streets get parking lanes (single-lane ones only)
    rid_index = {road.id: k for k, (road, _, _, _) in enumerate(roads)}
    roads[0][0].planview.set_start_point(0.0, 0.0, 0.0)  # the grid and the highway are separate networks
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
            if kind == "signal":  # a zebra crossing across the whole road where it meets a signalised junction
                half = lanes * LANE_WIDTH + (PARKING_WIDTH if lanes == 1 and parking[rid_index[road.id]] else 0.0)
                sc = CROSSWALK_SETBACK if end == "predecessor" else length - CROSSWALK_SETBACK
                cw = xodr.Object(s=sc, t=0.0, Type=xodr.ObjectType.crosswalk, name="crosswalk", zOffset=0.0,
                                 length=CROSSWALK_WIDTH, width=2 * half, height=0.0)
                outline = xodr.Outline(closed=True)
                for u, v in ((-CROSSWALK_WIDTH / 2, -half), (CROSSWALK_WIDTH / 2, -half), (CROSSWALK_WIDTH / 2, half),
                             (-CROSSWALK_WIDTH / 2, half), (-CROSSWALK_WIDTH / 2, -half)):
                    outline.add_corner(xodr.CornerLocal(u, v, 0.0, 0.0))
                cw.add_outline(outline)
                road.add_object(cw)
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
    # parking lanes on single-lane streets, added after the junctions so that no connecting road carries them
    for (road, _, _, lanes), park in zip(roads, parking, strict=True):
        if park and lanes == 1:
            sec = road.lanes.lanesections[0]
            sec.add_right_lane(xodr.Lane(xodr.LaneType.parking, a=PARKING_WIDTH))
            sec.add_left_lane(xodr.Lane(xodr.LaneType.parking, a=PARKING_WIDTH))
    _add_highway(odr, x0=-2 * JUNCTION_RADIUS - 60.0, width=(nx - 1) * SPACING + 120.0)
    odr.adjust_roads_and_lanes()
    return _to_text(odr)


def _add_highway(odr, x0: float, width: float) -> None:
    """The highway: H0 -(exit junction)- H1 -(entry junction)- H2, eastbound = right lanes (+s)."""
    from scenariogeneration import xodr

    seg = width / 3.0
    junction_len = 20.0
    # H0: the eastbound side opens a 4th (exit) lane over the last 80 m
    h0 = xodr.create_road(xodr.Line(seg), 500, left_lanes=3, right_lanes=[xodr.LaneDef(seg - 80, seg - 30, 3, 4, -4)],
                          lane_width=LANE_WIDTH)
    # H1: the westbound side (left lanes, driving -s) starts with the acceleration lane, which merges away
    h1 = xodr.create_road(xodr.Line(seg), 501, left_lanes=[xodr.LaneDef(seg - 110, seg - 30, 3, 4, 4)], right_lanes=3,
                          lane_width=LANE_WIDTH)
    h2 = xodr.create_road(xodr.Line(seg), 502, left_lanes=3, right_lanes=3, lane_width=LANE_WIDTH)
    off_ramp = xodr.create_road(xodr.Line(60), 503, left_lanes=0, right_lanes=1, lane_width=LANE_WIDTH)
    on_ramp = xodr.create_road(xodr.Line(60), 504, left_lanes=1, right_lanes=0, lane_width=LANE_WIDTH)
    # junction roads: straight through, and the ramps' curves (right turn off, from the left side on)
    j_exit, j_entry = 2000, 2001
    c_exit_through = xodr.create_road(xodr.Line(junction_len), 510, left_lanes=3, right_lanes=3, road_type=j_exit,
                                      lane_width=LANE_WIDTH)
    c_exit_ramp = xodr.create_road(xodr.Arc(-1 / 60.0, 35.0), 511, left_lanes=0, right_lanes=1, road_type=j_exit,
                                   lane_width=LANE_WIDTH)
    c_entry_through = xodr.create_road(xodr.Line(junction_len), 512, left_lanes=3, right_lanes=3, road_type=j_entry,
                                       lane_width=LANE_WIDTH)
    c_entry_ramp = xodr.create_road(xodr.Arc(1 / 60.0, 35.0), 513, left_lanes=1, right_lanes=0, road_type=j_entry,
                                    lane_width=LANE_WIDTH)
    h0.planview.set_start_point(x0, HIGHWAY_Y, 0.0)
    h0.add_successor(xodr.ElementType.junction, j_exit)
    h1.add_predecessor(xodr.ElementType.junction, j_exit)
    h1.add_successor(xodr.ElementType.junction, j_entry)
    h2.add_predecessor(xodr.ElementType.junction, j_entry)
    off_ramp.add_predecessor(xodr.ElementType.junction, j_exit)
    on_ramp.add_predecessor(xodr.ElementType.junction, j_entry)
    c_exit_through.add_predecessor(xodr.ElementType.road, h0.id, xodr.ContactPoint.end)
    c_exit_through.add_successor(xodr.ElementType.road, h1.id, xodr.ContactPoint.start)
    c_exit_ramp.add_predecessor(xodr.ElementType.road, h0.id, xodr.ContactPoint.end, lane_offset=-3)
    c_exit_ramp.add_successor(xodr.ElementType.road, off_ramp.id, xodr.ContactPoint.start)
    c_entry_through.add_predecessor(xodr.ElementType.road, h1.id, xodr.ContactPoint.end)
    c_entry_through.add_successor(xodr.ElementType.road, h2.id, xodr.ContactPoint.start)
    c_entry_ramp.add_predecessor(xodr.ElementType.road, h1.id, xodr.ContactPoint.end, lane_offset=3)
    c_entry_ramp.add_successor(xodr.ElementType.road, on_ramp.id, xodr.ContactPoint.start)
    for r in (h0, h1, h2, c_exit_through, c_entry_through):
        r.add_type(xodr.RoadType.motorway, speed=HIGHWAY_KMH / 3.6)
    for r in (off_ramp, on_ramp, c_exit_ramp, c_entry_ramp):
        r.add_type(xodr.RoadType.motorway, speed=RAMP_KMH / 3.6)
    for r in (h0, h1, h2, off_ramp, on_ramp, c_exit_through, c_exit_ramp, c_entry_through, c_entry_ramp):
        odr.add_road(r)
    odr.add_junction(xodr.create_junction([c_exit_through, c_exit_ramp], j_exit, [h0, h1, off_ramp], name="highway_exit"))
    odr.add_junction(xodr.create_junction([c_entry_through, c_entry_ramp], j_entry, [h1, h2, on_ramp],
                                          name="highway_entry"))


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
    for k, obj in enumerate(root.iter("object")):
        obj.set("id", str(k + 1))
        # CARLA reads an object's <outline> directly under <object> (OpenDRIVE 1.4), not inside <outlines>
        for outlines in obj.findall("outlines"):
            for outline in outlines.findall("outline"):
                obj.append(outline)
            obj.remove(outlines)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")
