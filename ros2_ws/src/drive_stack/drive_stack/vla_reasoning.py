"""vla_reasoning: at `rate_hz` (default 2 Hz of sim time) turns the latest scene into reasoning text and an
advisory (speed cap) on /drive_stack/reasoning. The rule-based reasoner stands in for the VLA model behind
the same interface until the model lands."""

from __future__ import annotations

import struct

from drive_stack_msgs.msg import PerceivedScene, Reasoning
from drivesim.sim.perception import ROUTE_POINTS
from drivesim.stack.reasoner import rule_reasoning
from rclpy.serialization import deserialize_message

from . import convert
from . import node_table as T
from .common import RELIABLE, StackNode, run
from .params import ReasoningParams


class VlaReasoning(StackNode):
    def __init__(self):
        super().__init__("vla_reasoning")
        p = self.declare_params(ReasoningParams)
        self.period, self.max_agents = 1.0 / p.rate_hz, p.max_agents
        self.last_t = -1e9
        self.pub = self.create_publisher(Reasoning, T.REASONING, RELIABLE)
        # raw: most ticks are skipped by the rate, so only the ones used are deserialized
        self.create_subscription(PerceivedScene, T.SCENE, self._on_raw, RELIABLE, raw=True)
        self.tick = 0
        self.announce_ready()

    def _on_raw(self, data: bytes) -> None:
        # the stamp is the first field: sec (int32) and nanosec (uint32) after the 4-byte CDR header
        sec, nsec = struct.unpack_from("<iI", data, 4)
        if sec + nsec * 1e-9 - self.last_t < self.period - 1e-6:
            return
        self._on_scene(deserialize_message(data, PerceivedScene))

    def _on_scene(self, msg: PerceivedScene) -> None:
        t = convert.to_sec(msg.header.stamp)
        try:
            scene = convert.scene_from_message(msg, self.max_agents - 1, ROUTE_POINTS)
        except convert.InvalidMessage as e:
            self.reject(str(e))
            return
        self.last_t = t
        adv = rule_reasoning(scene)
        out = Reasoning(text=adv.text, advisory=adv.advisory, speed_cap=adv.speed_cap)
        out.header.stamp, out.header.frame_id = msg.header.stamp, "hero"
        out.source_stamp = msg.header.stamp
        self.pub.publish(out)


def main(args=None) -> None:
    run(VlaReasoning, args)


if __name__ == "__main__":
    main()
