"""takeover_monitor: the safety gate between the planner and the vehicle.

The planner's commands (/drive_stack/planner/vehicle_control_cmd) reach /carla/hero/vehicle_control_cmd only
through this node: one command per tick. It checks every plan against the scene (TTC, predicted collision,
invalid values) and the planner's deadline (`deadline` seconds of wall time after the tick's /clock, armed once
the stack reports ready on /carla/hero/status or the planner has answered a tick); on a
takeover it publishes a TakeoverEvent (the recorder cuts a bag around it) and drives with the privileged
expert when the simulator offers one (/drive_stack/expert/vehicle_control_cmd), else with a safe stop, for at
least `duration` seconds of sim time (drivesim.stack.takeover).
"""

from __future__ import annotations

import math
import time

from carla_msgs.msg import CarlaEgoVehicleControl
from drive_stack_msgs.msg import PerceivedScene, Plan, StackStatus, TakeoverEvent
from drivesim.sim.perception import ROUTE_POINTS
from drivesim.stack.core import ControlCommand
from drivesim.stack.takeover import Cause, TakeoverConfig, TakeoverLogic
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Bool

from . import convert
from . import node_table as T
from .common import EVENTS, LATCHED, RELIABLE, StackNode, run

PLANNER_OK_WINDOW = 0.151  # [s sim] the planner counts as healthy if it answered one of the last 3 ticks validly


class TakeoverMonitor(StackNode):
    def __init__(self):
        super().__init__("takeover_monitor")
        d = TakeoverConfig()
        cfg = TakeoverConfig(
            ttc_threshold=float(self.declare_parameter("ttc_threshold", d.ttc_threshold).value),
            horizon=float(self.declare_parameter("horizon", d.horizon).value),
            duration=float(self.declare_parameter("duration", d.duration).value))
        self.deadline = float(self.declare_parameter("deadline", 0.3).value)
        self.expert_wait = float(self.declare_parameter("expert_wait", 0.1).value)
        self.max_agents = int(self.declare_parameter("max_agents", 64).value)
        self.logic = TakeoverLogic(cfg)
        self.tick_t: float | None = None
        self.tick_wall = 0.0
        self.sent_for: float | None = None
        self.scene: dict[float, PerceivedScene] = {}
        self.plan: dict[float, Plan] = {}
        self.expert: dict[float, CarlaEgoVehicleControl] = {}
        self.expert_seen = False
        self.last_ok_t = -1.0  # stamp of the planner's last valid, on-time command
        self.armed = False  # the deadline counts once the planner said it is ready (or answered a tick)
        self.pub_cmd = self.create_publisher(CarlaEgoVehicleControl, T.CONTROL_CMD, RELIABLE)
        self.pub_event = self.create_publisher(TakeoverEvent, T.TAKEOVER, EVENTS)
        self.pub_status = self.create_publisher(StackStatus, T.STATUS, RELIABLE)
        self.create_subscription(Clock, T.CLOCK, self._on_clock, 10)
        self.create_subscription(PerceivedScene, T.SCENE, self._on_scene, RELIABLE)
        self.create_subscription(Plan, T.PLAN, self._on_plan, RELIABLE)
        self.create_subscription(CarlaEgoVehicleControl, T.PLANNER_CMD, self._on_planner_cmd, RELIABLE)
        self.create_subscription(CarlaEgoVehicleControl, T.EXPERT_CMD, self._on_expert, RELIABLE)
        self.create_subscription(Bool, T.HERO_STATUS, self._on_ready, LATCHED)
        # the deadline is wall time: a sim-time timer would not fire while the simulator waits for us
        self.create_timer(0.01, self._watchdog, clock=RosClock(clock_type=ClockType.STEADY_TIME))
        self.announce_ready()

    # --------------------------------------------------------------------------- inputs
    def _on_clock(self, msg: Clock) -> None:
        t = round(convert.to_sec(msg.clock), 3)
        if self.tick_t is not None and t <= self.tick_t:
            return  # a re-published tick
        self.tick_t, self.tick_wall = t, time.perf_counter()
        for store in (self.scene, self.plan, self.expert):
            for k in [k for k in store if k < t - 0.5]:
                del store[k]
        planner_ok = self.last_ok_t >= t - PLANNER_OK_WINDOW
        if self.logic.in_control(t, planner_ok) and (not self.expert_seen or t in self.expert):
            self._send_takeover_command(t)

    def _on_ready(self, msg: Bool) -> None:
        self.armed = self.armed or bool(msg.data)

    def _on_scene(self, msg: PerceivedScene) -> None:
        self.scene[round(convert.to_sec(msg.header.stamp), 3)] = msg

    def _on_plan(self, msg: Plan) -> None:
        self.plan[round(convert.to_sec(msg.header.stamp), 3)] = msg

    def _on_expert(self, msg: CarlaEgoVehicleControl) -> None:
        t = round(convert.to_sec(msg.header.stamp), 3)
        self.expert_seen = True
        self.expert[t] = msg
        if t == self.tick_t and self.logic.active is not None and self.sent_for != t:
            self._send_takeover_command(t)

    def _on_planner_cmd(self, msg: CarlaEgoVehicleControl) -> None:
        t = round(convert.to_sec(msg.header.stamp), 3)
        bad = ControlCommand(t, msg.throttle, msg.steer, msg.brake).problems()
        if t != self.tick_t:  # stale (under a takeover the expert's loop runs ahead of the planner's): alive, though
            if not bad and self.tick_t is not None and t < self.tick_t:
                self.last_ok_t = max(self.last_ok_t, t)
            return
        if bad:
            self.reject(f"{T.PLANNER_CMD} at t={t:.2f}: {', '.join(bad)}")
            self._takeover(t, Cause.INVALID_MESSAGE, "planner command: " + ", ".join(bad))
            return
        if self.sent_for == t:  # answered already (takeover): the planner is alive and valid, nothing to send
            self.last_ok_t = t
            return
        plan, scene_msg = self.plan.get(t), self.scene.get(t)
        if plan is not None and scene_msg is not None and self.logic.active is None:
            try:
                scene = convert.scene_from_message(scene_msg, self.max_agents - 1, ROUTE_POINTS)
                new = self.logic.check_plan(t, scene, convert.plan_path(plan), convert.plan_profile(plan))
            except convert.InvalidMessage as e:
                self.reject(str(e))
                new = self.logic.declare(t, Cause.INVALID_MESSAGE, str(e), float("nan"))
            if new is not None:
                self._announce(new)
                self._send_takeover_command(t)
                return
        self.last_ok_t = t
        if self.logic.in_control(t, planner_ok=True):
            self._send_takeover_command(t)
        else:
            self.sent_for = t
            self.pub_cmd.publish(msg)

    def _watchdog(self) -> None:
        t = self.tick_t
        if t is None or self.sent_for == t or not (self.armed or self.last_ok_t >= 0):
            return  # not armed: the planner has neither reported ready nor answered a tick
        waited = time.perf_counter() - self.tick_wall
        if self.logic.active is not None and self.expert_seen and waited > self.expert_wait:
            self._send_takeover_command(t)  # the expert is late: safe stop for this tick
        elif waited > self.deadline:
            self._takeover(t, Cause.MISSED_DEADLINE, f"no planner command {self.deadline:.2f} s after the tick")

    # --------------------------------------------------------------------------- outputs
    def _takeover(self, t: float, cause: Cause, detail: str) -> None:
        new = self.logic.declare(t, cause, detail, float("inf"))
        if new is not None:
            self._announce(new)
        self._send_takeover_command(t)

    def _announce(self, tk) -> None:
        ev = TakeoverEvent(cause=int(tk.cause), cause_name=tk.cause.name, detail=tk.detail,
                           ttc=float(tk.ttc) if math.isfinite(tk.ttc) else float("inf"),
                           controller="expert" if self.expert_seen else "safe_stop", duration=self.logic.cfg.duration)
        ev.header.stamp, ev.header.frame_id = convert.ros_time(tk.t), "hero"
        self.pub_event.publish(ev)
        self.get_logger().warning(f"TAKEOVER at t={tk.t:.2f}: {tk.cause.name} ({tk.detail}); "
                                  f"{ev.controller} drives for {self.logic.cfg.duration:.1f} s")
        st = StackStatus(node="takeover_monitor", state=StackStatus.TAKEOVER, detail=f"{tk.cause.name}: {tk.detail}",
                         rejected_messages=self.rejected)
        st.header.stamp = ev.header.stamp
        self.pub_status.publish(st)

    def _send_takeover_command(self, t: float) -> None:
        if self.sent_for == t:
            return
        ex = self.expert.get(t)
        if ex is not None:
            cmd = convert.control_message(t, ex.throttle, ex.steer, ex.brake)
        else:
            cmd = convert.control_message(t, *self.logic.safe_stop())
        self.sent_for = t
        self.pub_cmd.publish(cmd)


def main(args=None) -> None:
    run(TakeoverMonitor, args)


if __name__ == "__main__":
    main()
