"""pseudo_sim: the pseudo-simulator standing in for CARLA + carla-ros-bridge + the Leaderboard 2.0 ROS agent.

In the Leaderboard 2.0 ROS agent's order (../shared/carla_lb2/CONTRACT.md section 2; stack/leaderboard.py): the
bridge's /carla/world_info (map name + OpenDRIVE, latched) first; then it waits for the stack's
/carla/hero/status (TRANSIENT_LOCAL) and only then publishes the route, once, latched: /carla/hero/global_plan
(carla_msgs/CarlaRoute, downsampled, upstream's quirks kept) and /carla/hero/global_plan_gnss. Then it steps
synchronously: the tick's messages go out (/clock, /carla/hero/odometry, objects,
/carla/traffic_lights/status), the command stamped with the tick's time is applied (the Leaderboard's rule),
and the next tick follows when it arrived, or after `tick_timeout` seconds (wall, 1.0 as upstream), a missed
tick, which gets the Leaderboard's all-zero control. The route is scored as `drive-stack eval` scores it, into
the same files.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from carla_msgs.msg import (
    CarlaEgoVehicleControl,
    CarlaGnssRoute,
    CarlaRoute,
    CarlaSpeedometer,
    CarlaTrafficLightInfoList,
    CarlaTrafficLightStatusList,
    CarlaWorldInfo,
)
from carla_msgs.srv import DestroyObject, SpawnObject
from derived_object_msgs.msg import ObjectArray
from drive_stack_msgs.msg import Plan, StackStatus, TakeoverEvent
from drivesim.evaluation.evaluate import write_results
from drivesim.evaluation.runner import scenario_note
from drivesim.maps import TownLoader
from drivesim.metrics.bench2drive import takeover_record
from drivesim.routes.xml import parse_routes
from drivesim.sim.state import DT
from drivesim.stack.actors import ActorIds, light_actor_ids
from drivesim.stack.core import PseudoSimCore
from drivesim.stack.leaderboard import geo_reference
from nav_msgs.msg import Odometry
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Imu, NavSatFix
from std_msgs.msg import Bool, String

from . import convert
from . import node_table as T
from .common import (
    ANNOUNCE_PERIOD,
    EVENTS,
    LATCHED,
    LATCHED_MANY_READER,
    RECORD_ALL,
    RELIABLE,
    WORLD_INFO_QOS,
    StackNode,
    make_executor,
    run,
    unwired,
)
from .params import PseudoSimParams

SPAWN_SERVICE, DESTROY_SERVICE = "/carla/spawn_object", "/carla/destroy_object"  # the bridge's services
PSEUDO_FIRST_ID = 10000  # the bridge numbers pseudo actors from here (actor_factory.py:80, 158-178)
PSEUDO_TYPES = ("sensor.pseudo.odom", "sensor.pseudo.objects", "sensor.pseudo.traffic_lights",
                "sensor.pseudo.speedometer", "sensor.pseudo.opendrive_map")
REAL_TYPES = ("sensor.other.gnss", "sensor.other.imu")  # real CARLA sensors: actor ids like any actor's
# the Leaderboard's wrapper spawns these two as the bridge's pseudo sensors (aw:279-290)
LB_TO_BRIDGE = {"sensor.speedometer": "sensor.pseudo.speedometer", "sensor.opendrive_map": "sensor.pseudo.opendrive_map"}
# what the drive-stack Leaderboard agent spawns for perception=privileged (launch/drive_stack_agent.py PRIVILEGED;
# tests/test_lb_emulation.py checks the two agree): type, id, on the hero
PRIVILEGED = (("sensor.pseudo.odom", "odometry", True), ("sensor.pseudo.objects", "objects", True),
              ("sensor.pseudo.traffic_lights", "traffic_lights", False))
# the sensors the agent declares (launch/drive_stack_agent.py SENSORS), as the Leaderboard spawns them on the hero
DECLARED = {"privileged": (("sensor.opendrive_map", "map"), ("sensor.speedometer", "speed")),
            "sensors": (("sensor.other.gnss", "gnss"), ("sensor.other.imu", "imu"), ("sensor.speedometer", "speed"),
                        ("sensor.opendrive_map", "map"))}
IDEAL_DETECTOR = (("sensor.pseudo.objects", T.DETECTED_OBJECTS), ("sensor.pseudo.traffic_lights",
                                                                   T.DETECTED_LIGHTS.rsplit("/", 1)[0]))
SILENT_AFTER = 2.0  # [s wall] a node whose announcement (every 0.25 s) stops this long is recorded as dead


class PseudoSim(StackNode):
    def __init__(self):
        super().__init__("pseudo_sim")
        p = dataclasses.asdict(self.declare_params(PseudoSimParams))
        self.p = p
        rf = parse_routes(p["routes_file"])
        spec = next((r for r in rf.routes if r.route_id == str(p["route_id"])), None)
        if spec is None:
            raise ValueError(f"{p['routes_file']}: route {p['route_id']!r} not found "
                             f"({rf.errors.get(str(p['route_id']), 'not in the file')})")
        loader = TownLoader(p["maps_dir"] or None)
        self.g = loader.load(spec.town)
        self.xodr = loader.xodr_text(spec.town)
        self.spec = spec
        self.core = PseudoSimCore(self.g, spec, seed=int(p["seed"]), max_agents=int(p["max_agents"]),
                                  expert_policy=p["expert_policy"] if p["offer_expert"] else None,
                                  geo_ref=geo_reference(self.xodr), gnss_noise=float(p["gnss_noise"]))
        self.pub_clock = self.create_publisher(Clock, T.CLOCK, 10)
        self.actor_ids = ActorIds(int(p["max_agents"]))  # CARLA actor ids: objects get new ones as they appear
        self._ids = self.actor_ids.update(self.core.state.valid[0])
        self.hero_id = int(self._ids[0])
        self.light_actor_ids = light_actor_ids(self.g.num_lights, int(p["seed"]))
        # the bridge's pseudo sensors, spawned through /carla/spawn_object (as the bridge serves it): actor id ->
        # (type, publishers); the drive-stack agent's privileged ones are spawned here unless spawn_privileged is off
        self.sensors: dict[int, tuple[str, dict]] = {}
        self._next_pseudo = PSEUDO_FIRST_ID
        self.create_service(SpawnObject, SPAWN_SERVICE, self._on_spawn)
        self.create_service(DestroyObject, DESTROY_SERVICE, self._on_destroy)
        mode = p["perception"]
        if mode not in ("privileged", "sensors", "none"):
            raise ValueError(f"perception {mode!r}: expected privileged, sensors or none")
        if mode != "none":  # the Leaderboard spawns the agent's declared sensors; the agent (privileged) its own
            for kind, name in DECLARED[mode]:
                self.spawn(LB_TO_BRIDGE.get(kind, kind), name, self.hero_id)
        if mode == "privileged":
            for ptype, pid, on_hero in PRIVILEGED:
                self.spawn(ptype, pid, self.hero_id if on_hero else 0)
        elif mode == "sensors":  # objects and lights from a detector the user provides: here an ideal one
            for kind, topic in IDEAL_DETECTOR:
                self.add_sensor(kind, topic, -1)
        self.pub_expert = self.create_publisher(CarlaEgoVehicleControl, T.EXPERT_CMD, RELIABLE)
        self.pub_expert_plan = self.create_publisher(Plan, T.EXPERT_PLAN, RELIABLE)
        self.pub_world = self.create_publisher(CarlaWorldInfo, T.WORLD_INFO, WORLD_INFO_QOS)
        self.pub_plan = self.create_publisher(CarlaRoute, T.GLOBAL_PLAN, LATCHED)
        self.pub_plan_gnss = self.create_publisher(CarlaGnssRoute, T.GLOBAL_PLAN_GNSS, LATCHED)
        self.ready = False
        self.create_subscription(Bool, T.HERO_STATUS, self._on_ready, LATCHED)
        self.create_subscription(CarlaEgoVehicleControl, T.CONTROL_CMD, self._on_cmd, RELIABLE)
        # for the record: the takeovers, who drove each tick, and which nodes stopped announcing themselves
        self.takeovers: list[dict] = []
        self.controller: dict[float, str] = {}
        self.heard: dict[str, tuple[float, float]] = {}  # node -> (wall time, sim time) it was last heard
        self.tick_wall: list[float] = []
        self.create_subscription(TakeoverEvent, T.TAKEOVER, self._on_takeover, EVENTS)
        self.create_subscription(StackStatus, T.STATUS, self._on_status, RECORD_ALL)
        self.create_subscription(String, T.NODE_READY, self._on_node, LATCHED_MANY_READER)
        self.wiring: dict[str, dict] = {}  # node -> its endpoints and their matched counts (/drive_stack/node_reads)
        self.create_subscription(String, T.NODE_READS, self._on_reads, LATCHED_MANY_READER)
        self.pub_world.publish(convert.world_info(spec.town, self.xodr))  # the bridge's, before the stack is up
        self.latency: list[float] = []
        self._published_at = 0.0
        self._published_t: float | None = None
        self.get_logger().info(f"route {spec.route_id} on {spec.town}: {self.core.route.length:.0f} m")

    def _on_takeover(self, msg: TakeoverEvent) -> None:
        self.takeovers.append({"t": round(convert.to_sec(msg.header.stamp), 3), "cause": msg.cause_name,
                               "detail": msg.detail, "ttc": float(msg.ttc) if np.isfinite(msg.ttc) else None})

    def _on_status(self, msg: StackStatus) -> None:
        if msg.node == "takeover_monitor" and msg.detail.startswith("controller="):
            self.controller[round(convert.to_sec(msg.header.stamp), 3)] = msg.detail.partition("=")[2]

    def _on_node(self, msg: String) -> None:
        self.heard[msg.data] = (time.perf_counter(), self.core.t)

    def _on_reads(self, msg: String) -> None:
        w = json.loads(msg.data)
        self.wiring[w["node"]] = w

    def _death_window(self, wall: float, sim_t: float) -> dict:
        """When a silent node died, in sim time: after it was last heard, and before the first tick stepped two
        announcement periods (0.25 s wall each) later, when its next announcement was overdue."""
        k = int(np.searchsorted(np.asarray(self.tick_wall), wall + 2 * ANNOUNCE_PERIOD))
        upper = self.core.tick_t[k] if k < len(self.core.tick_t) else self.core.t
        return {"last_heard_sim_t": round(sim_t, 2), "died_by_sim_t": round(upper + DT, 2)}

    def _on_ready(self, msg: Bool) -> None:
        self.ready = self.ready or bool(msg.data)

    def _on_cmd(self, msg: CarlaEgoVehicleControl) -> None:
        verdict = self.core.offer_command(convert.control_command(msg))
        if verdict == "accepted":
            self.latency.append(time.perf_counter() - self._published_at)
        elif verdict.startswith("invalid"):
            self.reject(f"{T.CONTROL_CMD}: {verdict}")

    def publish_tick(self) -> None:
        t = self.core.t
        st = self.core.state
        self.pub_clock.publish(Clock(clock=convert.ros_time(t)))
        if self._published_t != t:  # a new tick (not a re-send): the actors that appeared get their ids
            self._ids = self.actor_ids.update(st.valid[0])
            self._published_t = t
        states = np.asarray(self.core.lights[0])
        for kind, pubs in list(self.sensors.values()):
            if kind == "sensor.pseudo.objects":
                pubs["data"].publish(convert.objects_message(st, t, self._ids))
            elif kind == "sensor.pseudo.traffic_lights":
                if pubs.get("sent") is None or not np.array_equal(states, pubs["sent"]):  # on change only
                    pubs["status"].publish(convert.lights_message(self.light_actor_ids, states))
                    pubs["sent"] = states.copy()
        self._published_at = time.perf_counter()
        for kind, pubs in list(self.sensors.values()):  # the ego's state last: the stack perceives on it
            if kind == "sensor.pseudo.odom":
                pubs["data"].publish(convert.ego_odometry(st, t))
            elif kind == "sensor.pseudo.speedometer":
                pubs["data"].publish(convert.speedometer_message(st, t, pubs["frame"]))
            elif kind == "sensor.other.gnss":
                gnss = self.core.loop.gnss  # this tick's fix, with CARLA's noise (drawn once per tick)
                pubs["data"].publish(convert.gnss_message(float(gnss.lat[0]), float(gnss.lon[0]), t, pubs["frame"]))
            elif kind == "sensor.other.imu":
                pubs["data"].publish(convert.imu_message(st, t, pubs["frame"]))
        # the privileged expert's command for this tick, computed while the stack works on its own
        expert = self.core.expert_command()
        if expert is not None:
            plan = self.core.expert_plan
            self.pub_expert_plan.publish(convert.plan_message(
                plan.path[0], float(plan.target_speed[0]), t, "expert",
                None if plan.speed_profile is None else plan.speed_profile[0]))
            self.pub_expert.publish(convert.control_message(t, expert.throttle, expert.steer, expert.brake))

    # ---------------------------------------------------------------- the bridge's /carla/spawn_object
    def spawn(self, kind: str, name: str, attach_to: int) -> tuple[int, str]:
        """Spawn a sensor as the bridge does (actor_factory.py: ids from 10000 for pseudo actors, CARLA actor ids for
        real sensors; topic /carla/hero/<name> on the hero, /carla/<name> on the world). Returns (id, '') or
        (-1, why)."""
        kind = LB_TO_BRIDGE.get(kind, kind)
        if kind not in PSEUDO_TYPES + REAL_TYPES:
            return -1, (f"{kind}: the pseudo-simulator spawns the bridge's pseudo sensors and GNSS / IMU only "
                        f"({', '.join(PSEUDO_TYPES + REAL_TYPES)})")
        if attach_to not in (0, self.hero_id):
            return -1, f"attach_to {attach_to}: no such actor (the hero is {self.hero_id}, 0 is the world)"
        if kind not in ("sensor.pseudo.traffic_lights", "sensor.pseudo.opendrive_map") and attach_to != self.hero_id:
            return -1, f"{kind} needs a parent vehicle (attach_to the hero, {self.hero_id})"
        if kind in REAL_TYPES:
            uid = int(self.actor_ids.next)
            self.actor_ids.next += 1
        else:
            uid = self._next_pseudo
            self._next_pseudo += 1
        self.add_sensor(kind, f"/carla/hero/{name}" if attach_to else f"/carla/{name}", uid)
        return uid, ""

    def add_sensor(self, kind: str, base: str, uid: int) -> None:
        """A sensor publishing on `base` (the pseudo sensors' and the ideal detector's topics and types)."""
        frame = base.removeprefix("/carla/")
        if kind == "sensor.pseudo.odom":
            pubs = {"data": self.create_publisher(Odometry, base, RELIABLE)}
        elif kind == "sensor.pseudo.objects":
            pubs = {"data": self.create_publisher(ObjectArray, base, RELIABLE)}
        elif kind == "sensor.pseudo.traffic_lights":  # info and status TRANSIENT_LOCAL, each sent only on change
            pubs = {"status": self.create_publisher(CarlaTrafficLightStatusList, f"{base}/status", WORLD_INFO_QOS),
                    "info": self.create_publisher(CarlaTrafficLightInfoList, f"{base}/info", WORLD_INFO_QOS)}
            pubs["info"].publish(convert.lights_info_message(self.g, self.light_actor_ids))
        elif kind == "sensor.pseudo.opendrive_map":  # once, latched (opendrive_sensor.py)
            pubs = {"map": self.create_publisher(String, base, WORLD_INFO_QOS)}
            pubs["map"].publish(String(data=self.xodr))
        elif kind == "sensor.pseudo.speedometer":
            pubs = {"data": self.create_publisher(CarlaSpeedometer, base, 10)}
        elif kind == "sensor.other.gnss":
            pubs = {"data": self.create_publisher(NavSatFix, base, 10)}
        else:  # sensor.other.imu
            pubs = {"data": self.create_publisher(Imu, base, 10)}
        pubs["frame"] = frame
        if uid < 0:
            uid = -1 - len([k for k in self.sensors if k < 0])  # the ideal detector: not an actor
        self.sensors[uid] = (kind, pubs)
        self.get_logger().info(f"sensor {kind} (id {uid}): {base}")

    def _on_spawn(self, req, res):
        res.id, res.error_string = self.spawn(req.type, req.id, int(req.attach_to))
        return res

    def _on_destroy(self, req, res):
        entry = self.sensors.pop(int(req.id), None)
        if entry is not None:
            for pub in (v for v in entry[1].values() if hasattr(v, "publish")):
                self.destroy_publisher(pub)
        res.success = entry is not None
        return res

    def run(self) -> None:
        p = self.p
        self.executor_ = make_executor()
        self.executor_.add_node(self)
        t_end = time.perf_counter() + float(p["start_timeout"])
        while not self.ready:
            self.executor_.spin_once(timeout_sec=0.05)
            if time.perf_counter() > t_end:
                raise TimeoutError(f"no stack reported ready on {T.HERO_STATUS} within {p['start_timeout']} s")
        route, gnss = convert.global_plan_messages(self.core.route)  # only now, as the Leaderboard does
        self.pub_plan.publish(route)
        self.pub_plan_gnss.publish(gnss)
        self.get_logger().info(f"stack ready: route published ({len(route.poses)} poses), starting")
        t_setup = time.perf_counter() + float(p["setup_time"])  # the Leaderboard's setup() and sensor spawning
        while time.perf_counter() < t_setup:
            self.executor_.spin_once(timeout_sec=0.01)
        self.wait_for_readers(t_setup + float(p["setup_time"]) + 5.0)
        wall0 = time.perf_counter()
        limit = float(p["tick_timeout"])  # every tick, the first too (upstream has no grace)
        while not self.core.done:
            self.publish_tick()
            start = last = time.perf_counter()
            while self.core.pending is None:
                now = time.perf_counter()
                if now - start >= limit:
                    self.get_logger().warning(f"missed tick at t={self.core.t:.2f}: no command in {limit} s")
                    break
                if 0 < float(p["republish_period"]) <= now - last:  # (debugging) a late joiner still gets this tick
                    self.publish_tick()
                    last = now
                self.executor_.spin_once(timeout_sec=0.005)
            self.core.tick()
            self.tick_wall.append(time.perf_counter())  # when each tick was stepped (a dead node's time window)
        wall = time.perf_counter() - wall0
        self.finish(wall)

    def wait_for_readers(self, deadline: float) -> None:
        """Until `deadline` (wall), wait for the stack to be wired: every endpoint of every node (`wired_nodes` and
        any other it heard of, as each announces them, with their matched counts, on /drive_stack/node_reads; a
        node not yet heard counts as unwired) and of the simulator itself matched to every
        endpoint on the other side of its topic (`unwired`; the clock and each spawned sensor's data want a reader
        at least). A reader that DDS discovery matches after the first tick loses that tick's message (volatile QoS)
        and the stack misses tick 0. Endpoint discovery runs on its own channel and, under load, seconds behind a
        node's announcement. What is still unmatched at the deadline is named in a warning and the route starts
        anyway."""
        def missing() -> list[str]:
            expected = set(self.heard) | (set(self.p["wired_nodes"]) - {""})
            unheard = [f"{n} (its endpoints)" for n in sorted(expected) if n not in self.wiring]
            sensed = [ps["data"].topic_name for _, ps in self.sensors.values() if "data" in ps]
            return unheard + unwired([*self.wiring.values(), self.endpoints()],
                                     at_least_one={t: 1 for t in (T.CLOCK, *sensed)})

        waiting = missing()
        while waiting and time.perf_counter() < deadline:
            self.executor_.spin_once(timeout_sec=0.01)
            waiting = missing()
        if waiting:
            self.get_logger().warning(f"starting with endpoints unmatched: {', '.join(waiting)}")
        else:
            self.get_logger().info(f"stack wired: /clock {self.pub_clock.get_subscription_count()} readers "
                                   f"({len(self.wiring)} nodes' endpoints heard, every one matched)")

    def finish(self, wall: float) -> None:
        t_end = time.perf_counter() + 0.5  # the record's messages still queued (who drove the last ticks, takeovers)
        while time.perf_counter() < t_end:
            self.executor_.spin_once(timeout_sec=0.01)
        out = Path(self.p["out_dir"])
        out.mkdir(parents=True, exist_ok=True)
        rec = self.core.record(index=int(self.p["index"]))
        lat = np.array(self.latency) * 1000 if self.latency else np.zeros(1)
        now = time.perf_counter()
        rec["meta"]["takeovers"] = takeover_record(
            sorted(self.takeovers, key=lambda e: e["t"]),
            [self.controller.get(round(t, 3), "planner") for t in self.core.tick_t], self.core.moved, DT)
        rec["meta"]["perception"] = self.p["perception"]  # what the stack perceived from (privileged | sensors)
        rec["meta"]["stack"] = {"ticks": self.core.ticks, "missed_ticks": self.core.missed_ticks,
                                "nodes_silent": {n: self._death_window(w, st) for n, (w, st) in
                                                 self.heard.items() if now - w > SILENT_AFTER},
                                "rejected_commands": self.core.rejected[:20], "wall_s": wall,
                                "latency_ms_p50": float(np.percentile(lat, 50)),
                                "latency_ms_p99": float(np.percentile(lat, 99))}
        note = scenario_note([self.spec.scenario_type])
        summary = write_results(out, [rec], total_routes=1, skipped=[], notes=[note] if note else [],
                                extra={"policy": self.p["policy_name"] or "stack", "routes_file": self.p["routes_file"],
                                       "seed": int(self.p["seed"]), "via": "ros", "perception": self.p["perception"]})
        (out / "latency.json").write_text(json.dumps({"latency_ms": lat.tolist()}))
        sc = rec["scores"]
        self.get_logger().info(f"route {self.spec.route_id}: {rec['status']}, DS {sc['score_composed']:.1f}, "
                               f"missed ticks {self.core.missed_ticks}; DS {summary['driving_score']:.2f}")


def main(args=None) -> None:
    run(PseudoSim, args)


if __name__ == "__main__":
    main()
