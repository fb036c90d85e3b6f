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

ANNOUNCE_PERIOD = 0.25  # [s wall] every node announces itself this often (a silent node is recorded dead)
LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)  # route, map, ready flag
WORLD_INFO_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)  # the bridge's /carla/world_info writer
LATCHED_MANY = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)  # one latched message per publisher
# the readers of many such publishers (the nodes' announcements on one keyless topic): a reader of depth 1 keeps
# one sample for all writers, so one node's announcements were overwritten by the others' before the executor
# took them and a live planner was recorded silent (died_by 1.95 s for a planner killed at 5.0 s)
LATCHED_MANY_READER = QoSProfile(depth=64, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
# the simulator's record of who drove each tick (the monitor's status per takeover tick): every message kept until
# read. Its loop serves the tick's command first, so during a long takeover these queue up; with KEEP_LAST 20 the
# first ticks' were overwritten and a 40 s takeover was recorded 0.1 s short (CI, test_planner_killed...)
RECORD_ALL = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
RELIABLE = QoSProfile(depth=20, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
# rare events that must reach a reader matched late (a takeover at the first tick can be published before the
# recorder's reader is matched to the monitor's writer; volatile, it was lost and no bag was written)
EVENTS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.TRANSIENT_LOCAL)


def quiet_events(publisher: bool):
    """Event callbacks without rclpy's defaults. By default rclpy gives every publisher and subscription handlers
    for incompatible-QoS and incompatible-type events (a logged warning each); each handler is a waitable that
    the executor puts in its wait set and polls on every spin, so a node's cost per message grew with its number
    of endpoints: the recorder's 23 subscriptions brought 46 handlers (a spin of its executor took ~2x as long,
    tests/test_ros_stack.py::test_endpoints_carry_no_default_event_handlers). The stack checks its wiring itself:
    the first tick waits until every endpoint is matched, and a QoS or type mismatch is never matched, so it is
    named there (`wired_nodes`, the pseudo-simulator's log) instead of in a warning."""
    try:
        from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
    except ImportError:  # Humble's name for the module
        from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks
    return (PublisherEventCallbacks if publisher else SubscriptionEventCallbacks)(use_default_callbacks=False)


class StackNode(Node):
    """A node with the `fault` parameter (KIND@T, see drivesim.stack.faults) and sim time on."""

    def __init__(self, name: str):
        super().__init__(name, parameter_overrides=[rclpy.parameter.Parameter("use_sim_time", value=True)])
        self.declare_parameter("fault", "")
        self.fault = Fault.parse(self.get_parameter("fault").value)
        self.rejected = 0
        self._ready_pub = None
        self._reads_pub = None
        self.sim_t = -1.0  # the latest /clock (watched only when a fault is set)
        if self.fault is not None:  # one mechanism for every node: exit here, stall / nan in every publisher
            from rosgraph_msgs.msg import Clock

            self.create_subscription(Clock, "/clock", self._fault_clock, 10)

    def _fault_clock(self, m) -> None:
        self.sim_t = max(self.sim_t, m.clock.sec + 1e-9 * m.clock.nanosec)
        self.fault_now(self.sim_t)

    def create_publisher(self, msg_type, topic, qos, **kw):
        """Every publisher of a node with a stall or nan fault is wrapped: from T on (the message's stamp, else the
        latest /clock) it publishes nothing (stall) or its messages with every float set to NaN (nan). Without
        rclpy's default QoS-event handlers (see `quiet_events`)."""
        kw.setdefault("event_callbacks", quiet_events(publisher=True))
        pub = super().create_publisher(msg_type, topic, qos, **kw)
        self.__dict__.setdefault("_writers", []).append(pub)  # (its matched readers go out in the announcements)
        fault = getattr(self, "fault", None)  # rclpy.Node.__init__ creates publishers before ours is set
        if fault is not None and fault.kind in (FaultKind.STALL, FaultKind.NAN):
            return FaultyPublisher(self, pub)
        return pub

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
        """Spin until shutdown (the pseudo-simulator overrides this with its stepping loop; either keeps its
        executor in `executor_`, which `run()` stops before the node's entities are destroyed)."""
        self.executor_ = make_executor()
        self.executor_.add_node(self)
        self.executor_.spin()

    def close(self) -> None:
        """Called once at shutdown, also after an error (the recorder closes its bags here)."""

    def create_subscription(self, msg_type, topic, callback, qos, **kw):
        """Every subscription is kept (`reads`: the topics, the hidden /clock reader of use_sim_time too) and, once
        the node is up, announced on /drive_stack/node_reads with the writers it has matched. Without rclpy's
        default QoS-event handlers (see `quiet_events`)."""
        kw.setdefault("event_callbacks", quiet_events(publisher=False))
        sub = super().create_subscription(msg_type, topic, callback, qos, **kw)
        self.__dict__.setdefault("reads", []).append(sub.topic_name)  # (rclpy.Node.__init__ subscribes before ours)
        self.__dict__.setdefault("_readers", []).append(sub)
        if self.__dict__.get("_reads_pub") is not None:
            self._announce_reads()
        return sub

    def destroy_publisher(self, publisher) -> bool:
        publisher = publisher.pub if isinstance(publisher, FaultyPublisher) else publisher
        writers = self.__dict__.get("_writers", [])
        if publisher in writers:
            writers.remove(publisher)
        return super().destroy_publisher(publisher)

    def destroy_subscription(self, subscription) -> bool:
        readers = self.__dict__.get("_readers", [])
        if subscription in readers:
            readers.remove(subscription)
            self.reads.remove(subscription.topic_name)
        return super().destroy_subscription(subscription)

    def endpoints(self) -> dict:
        """This node's wiring as DDS sees it now: every subscription (topic, writers matched) and every publisher
        (topic, readers matched), the announcement channel's own endpoints left out."""
        from .node_table import NODE_READS, NODE_READY

        skip = (NODE_READS, NODE_READY)
        return {"node": self.get_name(),
                "reads": [[s.topic_name, s.get_publisher_count()] for s in self.__dict__.get("_readers", [])
                          if s.topic_name not in skip],
                "writes": [[p.topic_name, p.get_subscription_count()] for p in self.__dict__.get("_writers", [])
                           if p.topic_name not in skip]}

    def _announce_reads(self) -> None:
        """Publish `endpoints()` (JSON) on /drive_stack/node_reads when it changed since the last time."""
        import json

        from std_msgs.msg import String

        text = json.dumps(self.endpoints(), separators=(",", ":"))
        if text != self.__dict__.get("_announced_wiring"):
            self._announced_wiring = text
            self._reads_pub.publish(String(data=text))

    def announce_ready(self) -> None:
        """Tell the planner this node is up (latched): the stack reports ready on /carla/hero/status only when
        every node it waits for has announced itself, so no node misses the start of a route. Before that, and
        whenever its matching changes (checked every 0.25 s), the node's endpoints with their matched counts go out
        on /drive_stack/node_reads (latched): the pseudo-simulator's first tick waits until every endpoint of the
        stack has matched every endpoint on the other side (`unwired`)."""
        from std_msgs.msg import String

        from .node_table import NODE_READS, NODE_READY

        if self._ready_pub is None:  # a liveness signal, not an output: never stalled by a fault
            self._reads_pub = Node.create_publisher(self, String, NODE_READS, LATCHED_MANY)
            self._announce_reads()
            self._ready_pub = Node.create_publisher(self, String, NODE_READY, LATCHED_MANY)

            def announce() -> None:  # latched, and repeated every 0.25 s (wall time): a late-matched reader still
                self._ready_pub.publish(String(data=self.get_name()))  # hears it, and the simulator records a node
                self._announce_reads()  # that falls silent (when it was last heard)

            self.create_timer(ANNOUNCE_PERIOD, announce, clock=RosClock(clock_type=ClockType.STEADY_TIME))
        self._ready_pub.publish(String(data=self.get_name()))

    def fault_now(self, t: float) -> FaultKind | None:
        """The active fault at sim time t, exiting the process for EXIT."""
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


def unwired(wiring: list[dict], at_least_one: dict[str, int] | None = None) -> list[str]:
    """The endpoints of the stack that DDS has not yet matched to every endpoint on the other side of their topic.

    `wiring`: each node's `StackNode.endpoints()` (the simulator's own included): per subscription the writers it
    matched, per publisher the readers it matched. On a topic with W writers and R readers in all, every reader must
    have matched W writers and every writer R readers (a node's own reader and writer of a topic match each other
    too). Both sides: discovery is asymmetric, and a reader that has not yet matched a writer drops that writer's
    samples although the writer counts the reader as matched (the stack then missed tick 0 and 0.05 with every
    writer of the simulator matched). Checked before the first tick: what is published before a volatile reader is
    matched is lost to it. `at_least_one`: writer topic -> the readers it wants even if no node announced one (the
    clock and the sensors: someone must hear them). Returns "node reads|writes topic (matched/wanted)" strings."""
    readers: dict[str, int] = {}
    writers: dict[str, int] = {}
    for w in wiring:
        for topic, _ in w["reads"]:
            readers[topic] = readers.get(topic, 0) + 1
        for topic, _ in w["writes"]:
            writers[topic] = writers.get(topic, 0) + 1
    want_readers = {t: max(readers.get(t, 0), n) for t, n in (at_least_one or {}).items()}
    out = []
    for w in wiring:
        for topic, n in w["reads"]:
            if n < writers.get(topic, 0):
                out.append(f"{w['node']} reads {topic} ({n}/{writers[topic]})")
        for topic, n in w["writes"]:
            want = want_readers.get(topic, readers.get(topic, 0))
            if n < want:
                out.append(f"{w['node']} writes {topic} ({n}/{want})")
    return out


def poison(msg) -> None:
    """Set every float field of a message (nested messages and float arrays included) to NaN, in place."""
    import math

    for name, kind in msg.get_fields_and_field_types().items():
        v = getattr(msg, name)
        base = kind.split("<")[-1].split("[")[0].rstrip(">")
        if base in ("float", "double"):
            if isinstance(v, float):
                setattr(msg, name, math.nan)
            elif len(v):
                setattr(msg, name, [math.nan] * len(v))
        elif hasattr(v, "get_fields_and_field_types"):
            poison(v)
        elif isinstance(v, list) and v and hasattr(v[0], "get_fields_and_field_types"):
            for item in v:
                poison(item)


class FaultyPublisher:
    """A publisher under an injected stall or nan fault (see StackNode.create_publisher)."""

    def __init__(self, node: StackNode, pub):
        self.node, self.pub = node, pub

    def publish(self, msg) -> None:
        stamp = getattr(getattr(msg, "header", None), "stamp", None)
        t = stamp.sec + 1e-9 * stamp.nanosec if stamp is not None else self.node.sim_t
        if not self.node.fault.active(t):
            self.pub.publish(msg)
        elif self.node.fault.kind is FaultKind.NAN and not isinstance(msg, bytes | bytearray):
            poison(msg)
            self.pub.publish(msg)

    def __getattr__(self, name):
        return getattr(self.pub, name)


def make_executor():
    """The single-threaded executor. (rclpy.experimental.EventsExecutor was tried: with these wheels its nodes
    received no messages at all, so it is not used.)"""
    from rclpy.executors import SingleThreadedExecutor

    return SingleThreadedExecutor()


_HUNG_UP: list[bool] = []  # set when SIGHUP arrived


def _hangup(*_) -> None:
    _HUNG_UP.append(True)
    raise KeyboardInterrupt


def run(node_cls, args=None) -> None:
    """Init, spin, shutdown, exit (never returns); an exception is logged with its traceback and the exit code is
    non-zero. SIGHUP (the
    Leaderboard stops the stack through pexpect, whose terminate() sends SIGHUP first, rba:98-104) stops a node as
    Ctrl-C does: it closes what it holds (the recorder its bags) and exits 0."""
    import signal

    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    signal.signal(signal.SIGHUP, _hangup)
    node = None
    code = 0
    try:
        node = node_cls()
        node.run()
    except (KeyboardInterrupt, ExternalShutdownException):  # SIGINT: before or during spin, a normal stop
        pass
    except Exception as e:  # never die silently; but two stops surface as errors of the call they interrupted:
        # SIGHUP's KeyboardInterrupt raised inside an rclpy C++ call (take_message converting its arguments) is that
        # call's RuntimeError; SIGINT's KeyboardInterrupt raised inside an object's __del__ is swallowed by Python
        # ("Exception ignored in"), while rclpy's handler has shut the context down, so the executor's next wait
        # raises RCLError (seen once in CI: the takeover monitor at the end of a route). Only a signal shuts the
        # context down while the node runs, so a shut-down context means a stop.
        stop = "SIGHUP" if _HUNG_UP else ("SIGINT: the context was shut down" if not rclpy.ok() else None)
        if stop is None:
            code = 1
            msg = f"{node_cls.__name__} failed: {type(e).__name__}: {e}\n{traceback.format_exc()}"
            (node.get_logger().fatal(msg) if node is not None else print(msg, file=sys.stderr, flush=True))
        else:
            print(f"{node_cls.__name__} stopped by {stop} (the interrupted call raised {type(e).__name__}: {e})",
                  file=sys.stderr, flush=True)
    finally:
        if node is not None:
            try:
                node.close()
            except Exception as e:  # noqa: BLE001
                print(f"close failed: {e}", file=sys.stderr, flush=True)
            executor = getattr(node, "executor_", None)
            if executor is not None:  # as rclpy.spin does: the executor lets go of the node before its entities go
                try:  # (perception_input once exited with SIGSEGV on SIGINT, 2 loaded cores; not proven the cause)
                    executor.remove_node(node)
                    executor.shutdown(timeout_sec=1.0)
                except Exception as e:  # noqa: BLE001
                    print(f"executor shutdown failed: {e}", file=sys.stderr, flush=True)
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    # Everything the node holds is closed (close(): the recorder's bags), its endpoints destroyed (DDS announces
    # their removal: the others' matched counts drop at once) and the context shut down: the process ends here,
    # without the interpreter's finalization of its modules (0.4-0.6 s of CPU for a node with numba, scipy and
    # ONNX Runtime loaded; 7 nodes end together on 2 cores and the launcher waits for the last).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
