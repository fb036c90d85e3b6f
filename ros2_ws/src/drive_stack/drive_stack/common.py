"""Helpers shared by the nodes: QoS choices, sim time, fault injection, never-silent main()."""

from __future__ import annotations

import os
import sys
import traceback

import rclpy
from drivesim.stack.faults import INJECTED_EXIT, Fault, FaultKind
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)  # route, map, ready flag
LATCHED_MANY = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)  # one latched message per publisher
RELIABLE = QoSProfile(depth=20, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
# rare events that must reach a reader matched late (a takeover at the first tick can be published before the
# recorder's reader is matched to the monitor's writer; volatile, it was lost and no bag was written)
EVENTS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.TRANSIENT_LOCAL)


class StackNode(Node):
    """A node with the `fault` parameter (KIND@T, see drivesim.stack.faults) and sim time on."""

    def __init__(self, name: str):
        super().__init__(name, parameter_overrides=[rclpy.parameter.Parameter("use_sim_time", value=True)])
        self.declare_parameter("fault", "")
        self.fault = Fault.parse(self.get_parameter("fault").value)
        self.rejected = 0
        self._ready_pub = None
        if self.fault is not None and self.fault.kind is FaultKind.EXIT:  # one mechanism for every node
            from rosgraph_msgs.msg import Clock

            self.create_subscription(Clock, "/clock", lambda m: self.fault_now(m.clock.sec + 1e-9 * m.clock.nanosec), 10)

    def declare_params(self, cls):
        """Declare every field of the node's typed config (drive_stack.params) with its ROS type and description,
        read the values (params file, overrides) and return the validated config (`fault` is declared already)."""
        import dataclasses
        import typing

        from drivesim.typed import field_docs
        from rcl_interfaces.msg import ParameterDescriptor, ParameterType

        kinds = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
                 float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
        hints, docs, defaults = typing.get_type_hints(cls), field_docs(cls), cls()
        values = {}
        for f in dataclasses.fields(cls):
            default = getattr(defaults, f.name)
            if f.name != "fault":
                t = hints[f.name]
                kind = (ParameterType.PARAMETER_STRING_ARRAY if typing.get_origin(t) is list
                        else kinds.get(t, ParameterType.PARAMETER_STRING))
                self.declare_parameter(f.name, default, ParameterDescriptor(description=docs.get(f.name, ""),
                                                                            type=kind))
            values[f.name] = self.get_parameter(f.name).value
        return cls(**values)

    def run(self) -> None:
        """Spin until shutdown (the pseudo-simulator overrides this with its stepping loop)."""
        executor = make_executor()
        executor.add_node(self)
        executor.spin()

    def close(self) -> None:
        """Called once at shutdown, also after an error (the recorder closes its bags here)."""

    def announce_ready(self) -> None:
        """Tell the planner this node is up (latched): the stack reports ready on /carla/hero/status only when
        every node it waits for has announced itself, so no node misses the start of a route."""
        from std_msgs.msg import String

        from .node_table import NODE_READY

        if self._ready_pub is None:
            self._ready_pub = self.create_publisher(String, NODE_READY, LATCHED_MANY)
            # latched, and repeated every 0.25 s (wall time): a late-matched reader still hears it, and the
            # simulator records a node that falls silent (when it was last heard)
            self.create_timer(0.25, lambda: self._ready_pub.publish(String(data=self.get_name())),
                              clock=RosClock(clock_type=ClockType.STEADY_TIME))
        self._ready_pub.publish(String(data=self.get_name()))

    def fault_now(self, t: float) -> FaultKind | None:
        """The active fault at sim time t (STALL or NAN), exiting the process for EXIT."""
        if self.fault is None or not self.fault.active(t):
            return None
        if self.fault.kind is FaultKind.EXIT:
            self.get_logger().error(f"injected fault: exiting at t={t:.2f}")
            sys.stdout.flush()
            os._exit(INJECTED_EXIT)
        return self.fault.kind

    def reject(self, what: str) -> None:
        """Log a rejected message (rate-limited) and count it; the node keeps running."""
        self.rejected += 1
        self.get_logger().warning(f"rejected {what}", throttle_duration_sec=1.0)


def make_executor():
    """The single-threaded executor. (rclpy.experimental.EventsExecutor was tried: with these wheels its nodes
    received no messages at all, so it is not used.)"""
    from rclpy.executors import SingleThreadedExecutor

    return SingleThreadedExecutor()


def run(node_cls, args=None) -> None:
    """Init, spin, shutdown; an exception is logged with its traceback and the exit code is non-zero."""
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = node_cls()
        node.run()
    except (KeyboardInterrupt, ExternalShutdownException):  # SIGINT: before or during spin, a normal stop
        pass
    except Exception as e:  # never die silently
        code = 1
        msg = f"{node_cls.__name__} failed: {type(e).__name__}: {e}\n{traceback.format_exc()}"
        (node.get_logger().fatal(msg) if node is not None else print(msg, file=sys.stderr, flush=True))
    finally:
        if node is not None:
            try:
                node.close()
            except Exception as e:  # noqa: BLE001
                print(f"close failed: {e}", file=sys.stderr, flush=True)
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    sys.exit(code)
