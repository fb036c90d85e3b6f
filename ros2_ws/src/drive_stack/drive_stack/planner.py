"""planner: the decoupled planner node. PerceivedScene -> Plan (path + speed) -> PID -> stamped control.

The policy is chosen by name (`policy`, the same names as `drive-stack eval --policy`). The learned ones
(il, perlad, perlad_logreplay, takead; takevla: TakeVLA's action graph) load their ONNX model through the inference runtime (TensorRT on a GPU, else
ONNX Runtime; `model` and `backend` parameters override the default file and backend) once the map has
arrived on /carla/world_info (their features include the lanes). The path and target speed go through the deployed
PIDController (drivesim.sim.control), and the command is stamped with the scene's tick time, as the
Leaderboard requires. With `honour_advisory:=true` the target speed is capped by the newest advisory of
/drive_stack/reasoning (vla_reasoning: the rule reasoner or TakeVLA) not older than `advisory_ttl`. Publishes /carla/hero/status = true (latched) once the policy is loaded and warmed up
(one `act` on a synthetic scene: compiled kernels and models loaded before the first tick).
A policy that raises is logged with its traceback and the tick goes unanswered: the node stays up and the
takeover monitor's deadline hands the tick to the expert.
"""

from __future__ import annotations

import traceback

import numpy as np
from carla_msgs.msg import CarlaEgoVehicleControl, CarlaWorldInfo
from drive_stack_msgs.msg import PerceivedScene, Plan, Reasoning
from drivesim.maps.opendrive import load_xodr_text
from drivesim.policies import LEARNED, POLICIES, make_policy, warmup
from drivesim.policies.learned import CandidateCheck
from drivesim.sim.perception import ROUTE_POINTS
from drivesim.stack.faults import FaultKind
from std_msgs.msg import Bool, String

from . import convert
from . import node_table as T
from .common import LATCHED, LATCHED_MANY_READER, RELIABLE, StackNode, run
from .params import PlannerParams


class Planner(StackNode):
    def __init__(self):
        super().__init__("planner")
        p = self.declare_params(PlannerParams)
        self.policy_name, self.max_agents, self.model, self.backend = p.policy, p.max_agents, p.model, p.backend
        # the learned planners' candidate check (validated here: a bad setting stops the node at start, named)
        self.check = (CandidateCheck(horizon=p.check, unstall=p.unstall, margin=p.check_margin)
                      if p.check > 0 or p.unstall > 0 or p.check_margin > 0 else None)
        self.policy = None
        self.light_ids = None
        self.failures = 0
        if not getattr(POLICIES.get(self.policy_name), "needs_map", False):
            kw = {"speed_profile": True} if self.policy_name == "rule" else {}  # the monitor checks the profile
            self.policy = make_policy(self.policy_name, 1, **kw)
            warmup(self.policy)
        else:
            self.create_subscription(CarlaWorldInfo, T.WORLD_INFO, self._on_map, LATCHED)
        self.pub_plan = self.create_publisher(Plan, T.PLAN, RELIABLE)
        self.pub_cmd = self.create_publisher(CarlaEgoVehicleControl, T.PLANNER_CMD, RELIABLE)
        self.pub_ready = self.create_publisher(Bool, T.HERO_STATUS, LATCHED)
        self.create_subscription(PerceivedScene, T.SCENE, self._on_scene, RELIABLE)
        self.honour, self.advisory_ttl = p.honour_advisory, p.advisory_ttl
        self.advice: tuple[float, float, str] | None = None  # (its scene's time, speed cap, model)
        if self.honour:
            self.create_subscription(Reasoning, T.REASONING, self._on_reasoning, RELIABLE)
        self.answered: dict[float, tuple[Plan, CarlaEgoVehicleControl]] = {}
        self.wait_for = set(p.wait_for) - {""}
        self.seen: set[str] = set()
        self.create_subscription(String, T.NODE_READY, self._on_node_ready, LATCHED_MANY_READER)
        self.get_logger().info(f"policy {self.policy_name!r} " + ("loaded" if self.policy else "waits for the map")
                               + f"; waiting for {sorted(self.wait_for) or 'nobody'}")
        self._maybe_ready()
        self.announce_ready()  # heard once a second by the simulator (a node that falls silent is recorded dead)

    def _on_map(self, msg: CarlaWorldInfo) -> None:
        if self.policy is not None:
            return
        g = load_xodr_text(msg.map_name or "ros_map", msg.opendrive, source=T.WORLD_INFO)
        kw = {"check": self.check} if self.check is not None and self.policy_name in LEARNED else {}
        self.policy = make_policy(self.policy_name, 1, g=g, model=self.model or None, backend=self.backend, **kw)
        warmup(self.policy)
        self.light_ids = g.light_id
        mid = self.policy.model_id
        self.get_logger().info(f"policy {self.policy_name!r} loaded: {mid['path']} (sha256 {mid['sha256'][:16]}), "
                               f"{self.policy.net.describe()}")
        self._maybe_ready()

    def _on_reasoning(self, msg: Reasoning) -> None:
        cap = float(msg.speed_cap)
        if cap != cap:  # NaN
            self.reject(f"{T.REASONING}: speed_cap is nan ({msg.model})")
            return
        self.advice = (convert.to_sec(msg.source_stamp), cap, msg.model)

    def _speed_cap(self, t: float) -> float:
        """The advisory's cap for tick t (negative: none): the newest advisory, if not older than advisory_ttl."""
        if not self.honour or self.advice is None or t - self.advice[0] > self.advisory_ttl:
            return -1.0
        return self.advice[1]

    def _on_node_ready(self, msg: String) -> None:
        if msg.data not in self.seen:
            self.seen.add(msg.data)
            self.get_logger().info(f"node up: {msg.data}")
            self._maybe_ready()

    def _maybe_ready(self) -> None:
        if self.policy is not None and self.wait_for <= self.seen:
            self.pub_ready.publish(Bool(data=True))
            self.get_logger().info("stack ready", once=True)

    def _on_scene(self, msg: PerceivedScene) -> None:
        t = round(convert.to_sec(msg.header.stamp), 3)
        if self.policy is None:
            self.get_logger().warning("scene before the policy is loaded (no map yet): skipped", throttle_duration_sec=1.0)
            return
        if t in self.answered:  # a re-published tick: answer again with the same plan and command
            plan, cmd = self.answered[t]
        else:
            try:
                scene = convert.scene_from_message(msg, self.max_agents - 1, ROUTE_POINTS, light_ids=self.light_ids)
            except convert.InvalidMessage as e:
                self.reject(str(e))
                return
            try:
                if self.fault is not None and self.fault.kind is FaultKind.RAISE and self.fault.active(t):
                    raise RuntimeError(f"injected fault at t={t:.2f}")  # a bug in the policy (raise@T)
                cap = self._speed_cap(t)
                self.policy.speed_cap = np.array([cap])
                if cap >= 0:
                    self.get_logger().info(f"honouring the advisory of {self.advice[2]}: speed cap {cap:.1f} m/s",
                                           throttle_duration_sec=2.0)
                controls, p = self.policy.act(scene)
            except Exception as e:  # noqa: BLE001 - the node stays up: no answer, so the monitor takes over
                self.get_logger().error(f"policy {self.policy_name!r} failed at t={t:.2f}: {type(e).__name__}: {e}\n"
                                        + traceback.format_exc(), throttle_duration_sec=1.0)
                self.failures += 1
                return
            target = float(p.target_speed[0])
            throttle, steer, brake = float(controls.throttle[0]), float(controls.steer[0]), float(controls.brake[0])
            path, profile = p.points(0)
            plan = convert.plan_message(path, target, t, self.policy_name, profile)
            cmd = convert.control_message(t, throttle, steer, brake)
            self.answered = {t: (plan, cmd)}
        self.pub_plan.publish(plan)
        self.pub_cmd.publish(cmd)


def main(args=None) -> None:
    run(Planner, args)


if __name__ == "__main__":
    main()
