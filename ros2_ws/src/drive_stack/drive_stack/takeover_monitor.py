"""takeover_monitor: the safety gate between the planner and the vehicle.

The planner's commands (/drive_stack/planner/vehicle_control_cmd) reach /carla/hero/vehicle_control_cmd only
through this node: one command per tick. The rule is the library's `TakeoverGate` (drivesim.stack.takeover:
TTC, predicted collision, invalid values, the planner's deadline counted once the stack reports ready on
/carla/hero/status, hand-back); this node only converts messages, feeds the gate and publishes what it decides:
the command, and on a takeover a TakeoverEvent (the recorder cuts a bag around it). The expert's commands
(/drive_stack/expert/vehicle_control_cmd, when the simulator offers them) drive during a takeover, else a safe
stop, for at least `duration` seconds of sim time. The safe stop is the gate's minimal-risk manoeuvre
(jerk-limited braking along the last plan, an emergency stop when the time-to-collision needs it): every scene
and plan is offered to the gate, also under a takeover, so it brakes and steers by the newest. Its state goes
out on /diagnostics (diagnostic_msgs/DiagnosticArray) at every tick of a takeover and once when it ends.
"""

from __future__ import annotations

import math
import time

from carla_msgs.msg import CarlaEgoVehicleControl
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from drive_stack_msgs.msg import PerceivedScene, Plan, StackStatus, TakeoverEvent
from drivesim.sim.perception import ROUTE_POINTS
from drivesim.stack.takeover import PLANNER, Decision, MrmState, TakeoverGate, command_problems
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Bool

from . import convert
from . import node_table as T
from .common import EVENTS, LATCHED, RELIABLE, StackNode, run
from .params import TakeoverMonitorParams

MRM_DIAGNOSTIC = "drive_stack/takeover_monitor: minimal-risk manoeuvre"
MRM_LEVEL = {MrmState.NONE: DiagnosticStatus.OK, MrmState.COMFORT: DiagnosticStatus.WARN,
             MrmState.STOPPED: DiagnosticStatus.WARN, MrmState.EMERGENCY: DiagnosticStatus.ERROR}


class TakeoverMonitor(StackNode):
    """Messages in, `TakeoverGate` calls, decisions out: the node holds no takeover state of its own."""

    def __init__(self):
        super().__init__("takeover_monitor")
        p = self.declare_params(TakeoverMonitorParams)
        self.max_agents = p.max_agents
        self.gate = TakeoverGate(p.gate())
        self.plan_msgs: dict[float, Plan] = {}
        self.scene_msgs: dict[float, PerceivedScene] = {}
        self.scene_invalid: dict[float, str] = {}  # why a tick's scene message could not be converted
        self.inert_logged = False  # `TakeoverGate.inert_triggers` logged
        self.diagnosing = False  # a takeover's /diagnostics are going out (one more when it ends)
        self.pub_cmd = self.create_publisher(CarlaEgoVehicleControl, T.CONTROL_CMD, RELIABLE)
        self.pub_event = self.create_publisher(TakeoverEvent, T.TAKEOVER, EVENTS)
        self.pub_status = self.create_publisher(StackStatus, T.STATUS, RELIABLE)
        self.pub_diag = self.create_publisher(DiagnosticArray, T.DIAGNOSTICS, RELIABLE)
        self.create_subscription(Clock, T.CLOCK, self._on_clock, 10)
        self.create_subscription(PerceivedScene, T.SCENE, self._on_scene, RELIABLE)
        self.create_subscription(Plan, T.PLAN, self._on_plan, RELIABLE)
        self.create_subscription(CarlaEgoVehicleControl, T.PLANNER_CMD, self._on_planner_cmd, RELIABLE)
        self.create_subscription(CarlaEgoVehicleControl, T.EXPERT_CMD, self._on_expert, RELIABLE)
        self.create_subscription(Plan, T.EXPERT_PLAN, self._on_expert_plan, RELIABLE)
        self.create_subscription(Bool, T.HERO_STATUS, self._on_ready, LATCHED)
        # the deadline is wall time: a sim-time timer would not fire while the simulator waits for us
        self.create_timer(0.01, lambda: self._emit(self.gate.poll(time.perf_counter())),
                          clock=RosClock(clock_type=ClockType.STEADY_TIME))
        self.announce_ready()

    # --------------------------------------------------------------------------- inputs
    def _on_clock(self, msg: Clock) -> None:
        t = round(convert.to_sec(msg.clock), 3)
        for store in (self.plan_msgs, self.scene_msgs, self.scene_invalid):
            for k in [k for k in store if k < t - 0.5]:
                del store[k]
        self._emit(self.gate.new_tick(t, time.perf_counter()))
        if not self.inert_logged:
            for problem in self.gate.inert_triggers():  # once: a configured trigger that cannot fire here
                self.get_logger().warning(f"shadow trigger inert: {problem}")
                self.inert_logged = True

    def _on_ready(self, msg: Bool) -> None:
        if msg.data:  # the planner is loaded and warm (and every node it waits for is up)
            self.gate.set_ready()

    def _on_scene(self, msg: PerceivedScene) -> None:
        t = round(convert.to_sec(msg.header.stamp), 3)
        self.scene_msgs[t] = msg
        try:  # every scene: the takeover checks read it, and a safe stop brakes and steers by the newest
            # (a planner command that came before this tick's scene is decided now)
            self._emit(self.gate.offer_scene(t, convert.scene_from_message(msg, self.max_agents - 1, ROUTE_POINTS)))
        except convert.InvalidMessage as e:
            self.scene_invalid[t] = str(e)  # rejected when the planner's command of its tick is checked

    def _on_plan(self, msg: Plan) -> None:
        t = round(convert.to_sec(msg.header.stamp), 3)
        self.plan_msgs[t] = msg
        self._emit(self.gate.offer_plan(t, convert.plan_path(msg), convert.plan_profile(msg)))  # (NaN: the gate's check)

    def _on_expert_plan(self, msg: Plan) -> None:
        self._emit(self.gate.offer_expert_plan(convert.to_sec(msg.header.stamp), convert.plan_profile(msg)))

    def _on_expert(self, msg: CarlaEgoVehicleControl) -> None:
        self._emit(self.gate.offer_expert(convert.to_sec(msg.header.stamp), msg.throttle, msg.steer, msg.brake))

    def _on_planner_cmd(self, msg: CarlaEgoVehicleControl) -> None:
        t = round(convert.to_sec(msg.header.stamp), 3)
        bad = command_problems(msg.throttle, msg.steer, msg.brake)
        if bad and t == self.gate.tick_t:
            self.reject(f"{T.PLANNER_CMD} at t={t:.2f}: {', '.join(bad)}")
        invalid = None
        plan, scene = self.plan_msgs.get(t), self.scene_msgs.get(t)
        if not bad and t == self.gate.tick_t and plan is not None and scene is not None and self.gate.active is None:
            invalid = self.scene_invalid.get(t)  # the gate checks this tick's scene and plan (offered on arrival)
            if invalid is not None:
                self.reject(invalid)
        self._emit(self.gate.offer_planner(t, msg.throttle, msg.steer, msg.brake, invalid=invalid))

    # --------------------------------------------------------------------------- outputs
    def _emit(self, d: Decision | None) -> None:
        if d is None:
            return
        if d.event is not None:
            self._announce(d.event)
        if d.command is not None:
            self.pub_cmd.publish(convert.control_message(d.t, *d.command))
            if d.controller != PLANNER:  # who drove this tick, for the simulator's record (a takeover tick)
                st = StackStatus(node="takeover_monitor", state=StackStatus.TAKEOVER, detail=f"controller={d.controller}")
                st.header.stamp = convert.ros_time(d.t)
                self.pub_status.publish(st)
            if d.controller != PLANNER or self.diagnosing:  # every takeover tick, and the first one after
                self.pub_diag.publish(self._diagnostics(d))
                self.diagnosing = d.controller != PLANNER

    @staticmethod
    def _diagnostics(d: Decision) -> DiagnosticArray:
        """The minimal-risk manoeuvre's state at the decided tick, as one DiagnosticStatus."""
        m = d.mrm
        st = DiagnosticStatus(level=MRM_LEVEL[m.state], name=MRM_DIAGNOSTIC, message=m.state.value, hardware_id="hero",
                              values=[KeyValue(key="state", value=m.state.value),
                                      KeyValue(key="wanted_deceleration", value=f"{m.decel:.3f}"),
                                      KeyValue(key="controller", value=d.controller),
                                      KeyValue(key="steering_along", value=m.path or "-")])
        arr = DiagnosticArray(status=[st])
        arr.header.stamp, arr.header.frame_id = convert.ros_time(d.t), "hero"
        return arr

    def _announce(self, tk) -> None:
        ev = TakeoverEvent(cause=int(tk.cause), cause_name=tk.cause.name, detail=tk.detail,
                           ttc=float(tk.ttc) if math.isfinite(tk.ttc) else float("inf"),
                           controller="expert" if self.gate.expert_offered else "safe_stop",
                           duration=self.gate.cfg.duration)
        ev.header.stamp, ev.header.frame_id = convert.ros_time(tk.t), "hero"
        self.pub_event.publish(ev)
        self.get_logger().warning(f"TAKEOVER at t={tk.t:.2f}: {tk.cause.name} ({tk.detail}); "
                                  f"{ev.controller} drives for {self.gate.cfg.duration:.1f} s")
        st = StackStatus(node="takeover_monitor", state=StackStatus.TAKEOVER, detail=f"{tk.cause.name}: {tk.detail}",
                         rejected_messages=self.rejected)
        st.header.stamp = ev.header.stamp
        self.pub_status.publish(st)


def main(args=None) -> None:
    run(TakeoverMonitor, args)


if __name__ == "__main__":
    main()
