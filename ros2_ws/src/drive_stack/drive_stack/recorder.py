"""recorder: keeps the stack's topics in a ring buffer and writes rosbag2 (MCAP) bags.

mode `takeover` (default): one bag per TakeoverEvent, `pre` seconds before it through `post` seconds after
(sim time), with `takeover.json` (cause, window). mode `continuous`: segment bags of `segment` seconds, each
closed as soon as its time has passed (a killed recorder loses at most the open segment). `both`: both.
"""

from __future__ import annotations

import importlib
import json
import signal
import sys
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from drive_stack_msgs.msg import TakeoverEvent
from drivesim.stack.bags import Recorded, SegmentedRecorder, Stamper, TakeoverBagger, make_typestore
from rosgraph_msgs.msg import Clock

from . import convert
from . import node_table as T
from .common import EVENTS, LATCHED, RELIABLE, StackNode, run
from .params import RecorderParams

MSG_PACKAGES = ("carla_msgs", "derived_object_msgs", "drive_stack_msgs")


def msg_class(msgtype: str):
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def share_dir(pkg: str) -> Path:
    """The package's share folder from the ament index, else this Python prefix's (a venv built by make setup)."""
    try:
        return Path(get_package_share_directory(pkg))
    except (LookupError, OSError):
        p = Path(sys.prefix) / "share" / pkg
        if not p.is_dir():
            raise LookupError(f"interface package {pkg} not found (ament index or {p}); run `make setup`") from None
        return p


def stack_typestore():
    return make_typestore([share_dir(p) / "msg" for p in MSG_PACKAGES])


class Recorder(StackNode):
    def __init__(self):
        super().__init__("recorder")
        p = self.declare_params(RecorderParams)  # an unknown mode is refused there, naming the field
        self.mode, out, pre, post, segment = p.mode, Path(p.out_dir), p.pre, p.post, p.segment
        ts = stack_typestore()
        self.stamp = Stamper(ts)  # header stamps: a tick's late messages stay in that tick
        lt = T.LATCHED_TOPICS
        self.bagger = TakeoverBagger(out, ts, pre, post, lt, p.grace) if self.mode in ("takeover", "both") else None
        self.segments = (SegmentedRecorder(out / "continuous", ts, segment, lt) if self.mode in ("continuous", "both")
                         else None)
        self.t_ns = 0
        self.create_subscription(Clock, T.CLOCK, self._on_clock, 10)
        for topic, msgtype in T.RECORDED.items():
            latched = topic in T.LATCHED_TOPICS  # published once: a volatile subscription would miss them
            self.create_subscription(msg_class(msgtype), topic, self._recorder_for(topic, msgtype, latched),
                                     LATCHED if latched else RELIABLE, raw=True)
        self.create_subscription(TakeoverEvent, T.TAKEOVER, self._on_takeover, EVENTS)
        signal.signal(signal.SIGTERM, _interrupt)  # a launcher's SIGTERM closes the bags like Ctrl-C
        self.get_logger().info(f"recording {len(T.RECORDED)} topics ({self.mode}) into {out}")
        self.announce_ready()

    def _on_clock(self, msg: Clock) -> None:
        self.t_ns = max(self.t_ns, msg.clock.sec * 1_000_000_000 + msg.clock.nanosec)
        if self.bagger is not None:
            for p in self.bagger.flush(self.t_ns):
                self.get_logger().info(f"takeover bag written: {p}")

    def _recorder_for(self, topic: str, msgtype: str, latched: bool = False):
        def cb(data: bytes) -> None:
            data = bytes(data)
            rec = Recorded(self.stamp(msgtype, data, self.t_ns), topic, msgtype, data)
            if self.bagger is not None:
                if latched:
                    self.bagger.latch(rec)
                else:
                    self.bagger.ring.add(rec)
            if self.segments is not None:
                self.segments.add(rec)
        return cb

    def _on_takeover(self, msg: TakeoverEvent) -> None:
        if self.bagger is not None:
            t_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            self.bagger.takeover(t_ns, {"cause": msg.cause_name, "detail": msg.detail, "controller": msg.controller,
                                        "t": convert.to_sec(msg.header.stamp)})

    def close(self) -> None:
        paths = []
        if self.bagger is not None:
            paths += self.bagger.flush(self.t_ns, force=True)
        if self.segments is not None:
            p = self.segments.close_segment()
            paths += [p] if p else []
        written = (self.bagger.written if self.bagger else []) + (self.segments.written if self.segments else [])
        print(json.dumps({"recorder_bags": [str(p) for p in written]}), flush=True)


def main(args=None) -> None:
    run(Recorder, args)


if __name__ == "__main__":
    main()
