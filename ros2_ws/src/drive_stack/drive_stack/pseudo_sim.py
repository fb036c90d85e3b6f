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
    CarlaTrafficLightInfoList,
    CarlaTrafficLightStatusList,
    CarlaWorldInfo,
)
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
from nav_msgs.msg import Odometry
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Bool, String

from . import convert
from . import node_table as T
from .common import (
    ANNOUNCE_PERIOD,
    EVENTS,
    LATCHED,
    LATCHED_MANY_READER,
    RELIABLE,
    WORLD_INFO_QOS,
    StackNode,
    make_executor,
    run,
)
from .params import PseudoSimParams

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
                                  expert_policy=p["expert_policy"] if p["offer_expert"] else None)
        self.pub_clock = self.create_publisher(Clock, T.CLOCK, 10)
        self.pub_odom = self.create_publisher(Odometry, T.ODOMETRY, RELIABLE)
        self.pub_objects = self.create_publisher(ObjectArray, T.OBJECTS, RELIABLE)
        # the bridge's traffic-light pseudo sensor: info and status TRANSIENT_LOCAL, each sent only when it changes
        self.pub_lights = self.create_publisher(CarlaTrafficLightStatusList, T.TRAFFIC_LIGHTS, WORLD_INFO_QOS)
        self.pub_lights_info = self.create_publisher(CarlaTrafficLightInfoList, T.TRAFFIC_LIGHTS_INFO, WORLD_INFO_QOS)
        self.actor_ids = ActorIds(int(p["max_agents"]))  # CARLA actor ids: objects get new ones as they appear
        self.light_actor_ids = light_actor_ids(self.g.num_lights, int(p["seed"]))
        self._lights_sent: np.ndarray | None = None
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
        self.create_subscription(StackStatus, T.STATUS, self._on_status, RELIABLE)
        self.create_subscription(String, T.NODE_READY, self._on_node, LATCHED_MANY_READER)
        self.pub_world.publish(convert.world_info(spec.town, self.xodr))  # the bridge's, before the stack is up
        self.pub_lights_info.publish(convert.lights_info_message(self.g.light_pos, self.light_actor_ids))
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
        self.pub_objects.publish(convert.objects_message(st, t, self._ids))
        states = np.asarray(self.core.lights[0])
        if self._lights_sent is None or not np.array_equal(states, self._lights_sent):  # on change only
            self.pub_lights.publish(convert.lights_message(self.light_actor_ids, states))
            self._lights_sent = states.copy()
        odom = convert.ego_odometry(st, t)
        self._published_at = time.perf_counter()
        self.pub_odom.publish(odom)
        # the privileged expert's command for this tick, computed while the stack works on its own
        expert = self.core.expert_command()
        if expert is not None:
            plan = self.core.expert_plan
            self.pub_expert_plan.publish(convert.plan_message(
                plan.path[0], float(plan.target_speed[0]), t, "expert",
                None if plan.speed_profile is None else plan.speed_profile[0]))
            self.pub_expert.publish(convert.control_message(t, expert.throttle, expert.steer, expert.brake))

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
                if now - last >= float(p["republish_period"]):  # a late joiner still gets this tick
                    self.publish_tick()
                    last = now
                self.executor_.spin_once(timeout_sec=0.005)
            self.core.tick()
            self.tick_wall.append(time.perf_counter())  # when each tick was stepped (a dead node's time window)
        wall = time.perf_counter() - wall0
        self.finish(wall)

    def finish(self, wall: float) -> None:
        out = Path(self.p["out_dir"])
        out.mkdir(parents=True, exist_ok=True)
        rec = self.core.record(index=int(self.p["index"]))
        lat = np.array(self.latency) * 1000 if self.latency else np.zeros(1)
        now = time.perf_counter()
        rec["meta"]["takeovers"] = takeover_record(
            sorted(self.takeovers, key=lambda e: e["t"]),
            [self.controller.get(round(t, 3), "planner") for t in self.core.tick_t], self.core.moved, DT)
        rec["meta"]["stack"] = {"ticks": self.core.ticks, "missed_ticks": self.core.missed_ticks,
                                "nodes_silent": {n: self._death_window(w, st) for n, (w, st) in
                                                 self.heard.items() if now - w > SILENT_AFTER},
                                "rejected_commands": self.core.rejected[:20], "wall_s": wall,
                                "latency_ms_p50": float(np.percentile(lat, 50)),
                                "latency_ms_p99": float(np.percentile(lat, 99))}
        note = scenario_note([self.spec.scenario_type])
        summary = write_results(out, [rec], total_routes=1, skipped=[], notes=[note] if note else [],
                                extra={"policy": self.p["policy_name"] or "stack", "routes_file": self.p["routes_file"],
                                       "seed": int(self.p["seed"]), "via": "ros"})
        (out / "latency.json").write_text(json.dumps({"latency_ms": lat.tolist()}))
        sc = rec["scores"]
        self.get_logger().info(f"route {self.spec.route_id}: {rec['status']}, DS {sc['score_composed']:.1f}, "
                               f"missed ticks {self.core.missed_ticks}; DS {summary['driving_score']:.2f}")


def main(args=None) -> None:
    run(PseudoSim, args)


if __name__ == "__main__":
    main()
