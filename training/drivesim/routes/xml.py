"""Leaderboard 2.0 / Bench2Drive route XML: parse and write.

A route file is ``<routes><route id town>`` with ``<waypoints><position x y z/>``, ``<scenarios><scenario
name type>`` (a ``<trigger_point x y z yaw/>`` and typed parameters) and ``<weathers><weather .../>``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# The 44 Bench2Drive scenario types, with their abilities (shared/DESIGN.md).
ABILITIES: dict[str, tuple[str, ...]] = {}
_ABILITY_MEMBERS = {
    "Overtaking": "Accident AccidentTwoWays ConstructionObstacle ConstructionObstacleTwoWays ParkedObstacle "
    "ParkedObstacleTwoWays HazardAtSideLane HazardAtSideLaneTwoWays VehicleOpensDoorTwoWays",
    "Merging": "CrossingBicycleFlow EnterActorFlow HighwayExit InterurbanActorFlow InterurbanAdvancedActorFlow "
    "HighwayCutIn MergerIntoSlowTraffic MergerIntoSlowTrafficV2 NonSignalizedJunctionLeftTurn "
    "NonSignalizedJunctionRightTurn NonSignalizedJunctionLeftTurnEnterFlow SignalizedJunctionLeftTurn "
    "SignalizedJunctionRightTurn SignalizedJunctionLeftTurnEnterFlow ParkingExit SequentialLaneChange "
    "DOSOccludedLeftTurn",
    "Emergency_Brake": "BlockedIntersection OppositeVehicleTakingPriority OppositeVehicleRunningRedLight "
    "PedestrianCrossing VehicleTurningRoute VehicleTurningRoutePedestrian DynamicObjectCrossing HardBreakRoute "
    "ParkingCutIn StaticCutIn ParkingCrossingPedestrian ControlLoss "
    "DOSPedestrianBetweenParked DOSLeadBrakesForHiddenPedestrian DOSHiddenRedLightRunner",
    "Give_Way": "InvadingTurn YieldToEmergencyVehicle",
    "Traffic_Signs": "CrossingBicycleFlow EnterActorFlow NonSignalizedJunctionLeftTurn NonSignalizedJunctionRightTurn "
    "NonSignalizedJunctionLeftTurnEnterFlow SignalizedJunctionLeftTurn SignalizedJunctionRightTurn "
    "SignalizedJunctionLeftTurnEnterFlow BlockedIntersection OppositeVehicleTakingPriority "
    "OppositeVehicleRunningRedLight PedestrianCrossing VehicleTurningRoute VehicleTurningRoutePedestrian "
    "T_Junction VanillaNonSignalizedTurn VanillaNonSignalizedTurnEncounterStopsign "
    "VanillaSignalizedTurnEncounterGreenLight VanillaSignalizedTurnEncounterRedLight DOSHiddenRedLightRunner "
    "DOSOccludedLeftTurn",
}
for _ability, _members in _ABILITY_MEMBERS.items():
    for _t in _members.split():
        ABILITIES[_t] = ABILITIES.get(_t, ()) + (_ability,)
# Occlusion-critical variants in the style of the DOS benchmark (our own types, not Bench2Drive's): what makes
# them hard is hidden from a policy by the visibility model (sim/perception.py).
DOS_TYPES: frozenset[str] = frozenset({"DOSPedestrianBetweenParked", "DOSLeadBrakesForHiddenPedestrian",
                                       "DOSHiddenRedLightRunner", "DOSOccludedLeftTurn"})
SCENARIO_TYPES: frozenset[str] = frozenset(ABILITIES) - DOS_TYPES  # the 44 Bench2Drive types
KNOWN_TYPES: frozenset[str] = SCENARIO_TYPES | DOS_TYPES
ABILITY_NAMES = tuple(_ABILITY_MEMBERS)


class RouteError(ValueError):
    """A route file or route that cannot be used; the message names the file, the route and the problem."""


@dataclass
class ScenarioSpec:
    name: str
    type: str
    trigger: np.ndarray  # (4,) x, y, z [m], yaw [deg] as in the XML
    params: dict[str, object] = field(default_factory=dict)  # float, str, (from, to) or (x, y, z)

    @property
    def abilities(self) -> tuple[str, ...]:
        return ABILITIES.get(self.type, ())


@dataclass
class RouteSpec:
    route_id: str
    town: str
    keypoints: np.ndarray  # (N, 3) [m], CARLA frame
    scenarios: list[ScenarioSpec] = field(default_factory=list)
    weathers: list[dict[str, float]] = field(default_factory=list)
    source: str = ""

    @property
    def scenario_type(self) -> str | None:
        return self.scenarios[0].type if self.scenarios else None

    def keypoint_length(self) -> float:
        return float(np.sum(np.linalg.norm(np.diff(self.keypoints[:, :2], axis=0), axis=1)))


def _num(v: str | None, what: str) -> float:
    """A finite number from an XML attribute; inf and nan are refused (they would poison the geometry)."""
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: expected a number, got {v!r}") from e
    if not np.isfinite(x):
        raise ValueError(f"{what}: non-finite number {v!r}; every coordinate and parameter must be a finite number")
    return x


def _param(el: ET.Element, where: str) -> object:
    a = el.attrib
    if "value" in a:
        try:
            float(a["value"])
        except ValueError:
            return a["value"]
        return _num(a["value"], f"{where}.value")
    if "from" in a and "to" in a:
        return (_num(a["from"], f"{where}.from"), _num(a["to"], f"{where}.to"))
    if {"x", "y", "z"} <= set(a):
        return tuple(_num(a[k], f"{where}.{k}") for k in ("x", "y", "z"))
    return dict(a)


def _parse_route(el: ET.Element, source: str) -> RouteSpec:
    rid = el.get("id")
    town = el.get("town")
    where = f"{source}: route {rid}"
    if rid is None or town is None:
        raise RouteError(f"{where}: <route> needs both id and town attributes")
    wps = el.find("waypoints")
    if wps is None:
        raise RouteError(f"{where}: no <waypoints> element")
    try:
        pts = np.array([[_num(p.get(k), f"waypoint {i} position.{k}") for k in ("x", "y", "z")]
                        for i, p in enumerate(wps.iter("position"))])
    except ValueError as e:
        raise RouteError(f"{where}: {e}") from e
    if len(pts) < 2:
        raise RouteError(f"{where}: needs at least 2 waypoints, found {len(pts)}")
    scenarios = []
    for sc in el.iter("scenario"):
        stype, sname = sc.get("type"), sc.get("name", "")
        if stype not in KNOWN_TYPES:
            raise RouteError(
                f"{where}: unknown scenario type {stype!r} in scenario {sname!r}; known types: "
                + ", ".join(sorted(KNOWN_TYPES))
            )
        trig = sc.find("trigger_point")
        if trig is None:
            raise RouteError(f"{where}: scenario {sname!r} has no <trigger_point>")
        try:
            trigger = np.array([_num(trig.get(k, "0" if k == "z" else None), f"trigger_point.{k}") for k in "xyz"]
                               + [_num(trig.get("yaw", "0"), "trigger_point.yaw")])
            params = {c.tag: _param(c, f"{sname}.{c.tag}") for c in sc if c.tag != "trigger_point"}
        except ValueError as e:
            raise RouteError(f"{where}: scenario {sname!r}: {e}") from e
        scenarios.append(ScenarioSpec(sname, stype, trigger, params))
    weathers = []
    for w in el.iter("weather"):
        try:
            weathers.append({k: _num(v, f"weather.{k}") for k, v in w.attrib.items()})
        except ValueError as e:
            raise RouteError(f"{where}: {e}") from e
    return RouteSpec(str(rid), town, pts, scenarios, weathers, source)


@dataclass
class RouteFile:
    """The routes of one file; routes that failed to parse are kept as errors, never dropped silently."""

    path: str
    routes: list[RouteSpec]
    errors: dict[str, str]  # route id -> message
    order: list[str]  # ids in file order, parsed or not


def parse_routes(path: str | Path) -> RouteFile:
    """Parse a route file. A malformed file raises RouteError; a malformed route is recorded in ``errors``."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError as e:
        raise RouteError(f"{path}: route file not found") from e
    except ET.ParseError as e:
        raise RouteError(f"{path}: malformed or truncated route XML ({e}); fix or regenerate the file") from e
    if root.tag != "routes":
        raise RouteError(f"{path}: root element is <{root.tag}>, expected <routes>")
    routes, errors, order = [], {}, []
    for i, el in enumerate(root.findall("route")):
        rid = el.get("id", f"#{i}")
        order.append(rid)
        try:
            routes.append(_parse_route(el, str(path)))
        except RouteError as e:
            errors[rid] = str(e)
    if not order:
        raise RouteError(f"{path}: no <route> elements")
    return RouteFile(str(path), routes, errors, order)


def write_routes(routes: list[RouteSpec], path: str | Path) -> None:
    """Write routes in the same schema (our own generated suites)."""
    root = ET.Element("routes")
    for r in routes:
        el = ET.SubElement(root, "route", id=str(r.route_id), town=r.town)
        wps = ET.SubElement(el, "waypoints")
        for x, y, z in r.keypoints:
            ET.SubElement(wps, "position", x=f"{x:.1f}", y=f"{y:.1f}", z=f"{z:.1f}")
        scs = ET.SubElement(el, "scenarios")
        for sc in r.scenarios:
            s = ET.SubElement(scs, "scenario", name=sc.name, type=sc.type)
            x, y, z, yaw = sc.trigger
            ET.SubElement(s, "trigger_point", x=f"{x:.1f}", y=f"{y:.1f}", z=f"{z:.1f}", yaw=f"{yaw:.1f}")
            for k, v in sc.params.items():
                if isinstance(v, tuple) and len(v) == 2:
                    ET.SubElement(s, k, {"from": f"{v[0]:g}", "to": f"{v[1]:g}"})
                elif isinstance(v, tuple) and len(v) == 3:
                    ET.SubElement(s, k, x=f"{v[0]:.1f}", y=f"{v[1]:.1f}", z=f"{v[2]:.1f}")
                else:
                    ET.SubElement(s, k, value=f"{v:g}" if isinstance(v, float) else str(v))
        ws = ET.SubElement(el, "weathers")
        for w in r.weathers:
            ET.SubElement(ws, "weather", {k: f"{v:g}" for k, v in w.items()})
    ET.indent(root)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="unicode", xml_declaration=False)
