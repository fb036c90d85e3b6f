"""vla_reasoning: at `rate_hz` (default 2 Hz of sim time) turns the latest scene into reasoning text and an
advisory (speed cap) on /drive_stack/reasoning, each message naming the model that produced it (`model` field).

`model` picks the reasoner (drivesim.stack.reasoners): `rule` (default, the rule reasoner); `takevla` (TakeVLA's
exported ONNX graphs through the inference runtime, TensorRT on a GPU else ONNX Runtime; `model_file` and
`backend` override: features, raster, the action graph, greedy commentary); `hf` (a pretrained vision-language
model from the local folder `model_file`, Hugging Face transformers, on the GPU when there is one; with
`camera_topic` it sees that camera's latest image instead of the BEV raster, and waits for a first one). The learned
ones wait for the map on /carla/world_info (their features include the lanes); the node reports up only once its
reasoner is loaded and warm. Each call's wall time is logged at the end (p50 / p99 / max), the figure `bench
infer` measures for takevla.
"""

from __future__ import annotations

import struct
import time

import numpy as np
from carla_msgs.msg import CarlaWorldInfo
from drive_stack_msgs.msg import PerceivedScene, Reasoning
from drivesim.maps.opendrive import load_xodr_text
from drivesim.sim.perception import ROUTE_POINTS
from drivesim.stack.reasoners import REASONERS, make_reasoner
from drivesim.stack.wire import InvalidMessage, image_rgb
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image

from . import convert
from . import node_table as T
from .common import LATCHED, RELIABLE, StackNode, run
from .params import ReasoningParams


class VlaReasoning(StackNode):
    def __init__(self):
        super().__init__("vla_reasoning")
        p = self.declare_params(ReasoningParams)
        self.period, self.max_agents = 1.0 / p.rate_hz, p.max_agents
        self.kind, self.model_file, self.backend = p.model, p.model_file, p.backend
        if self.kind not in REASONERS:
            raise ValueError(f"vla_reasoning model {self.kind!r}: use one of {', '.join(REASONERS)}")
        self.camera_topic, self.camera = p.camera_topic, None
        if self.camera_topic and self.kind != "hf":
            raise ValueError(f"vla_reasoning camera_topic {self.camera_topic!r} is for model hf (a vision-language "
                             f"model that takes images); {self.kind!r} reasons on the perceived scene")
        if self.camera_topic:  # the bridge's cameras: default QoS (reliable, volatile)
            self.create_subscription(Image, self.camera_topic, self._on_camera, 2)
        self.reasoner = None
        self.light_ids = None
        self.last_slot = -1  # the sim-time slot (of `period` seconds) last reasoned in
        self.call_ms: list[float] = []
        self.pub = self.create_publisher(Reasoning, T.REASONING, RELIABLE)
        # raw: most ticks are skipped by the rate, so only the ones used are deserialized
        self.create_subscription(PerceivedScene, T.SCENE, self._on_raw, RELIABLE, raw=True)
        if self.kind == "rule":
            self.reasoner = make_reasoner("rule")
            self.announce_ready()
        else:
            self.create_subscription(CarlaWorldInfo, T.WORLD_INFO, self._on_map, LATCHED)
            self.get_logger().info(f"reasoner {self.kind!r} waits for the map")

    def _on_map(self, msg: CarlaWorldInfo) -> None:
        if self.reasoner is not None:
            return
        g = load_xodr_text(msg.map_name or "ros_map", msg.opendrive, source=T.WORLD_INFO)
        self.reasoner = make_reasoner(self.kind, g, self.model_file or None, self.backend)
        self.light_ids = g.light_id
        self.get_logger().info(f"reasoner loaded: {self.reasoner.name} ({self.reasoner.describe})")
        self.announce_ready()

    def _on_camera(self, msg: Image) -> None:
        try:
            self.camera = image_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data, self.camera_topic)
        except InvalidMessage as e:
            self.reject(str(e))

    def _on_raw(self, data: bytes) -> None:
        # the stamp is the first field: sec (int32) and nanosec (uint32) after the 4-byte CDR header
        sec, nsec = struct.unpack_from("<iI", data, 4)
        # the first scene of each slot of the sim-time grid (0, 0.5, 1.0 s, ... at 2 Hz): a scene that arrives late
        # or not at all moves no later message off the grid (counting from the last one used, each slip did)
        if int((sec + nsec * 1e-9) / self.period + 1e-6) <= self.last_slot:
            return
        self._on_scene(deserialize_message(data, PerceivedScene))

    def _on_scene(self, msg: PerceivedScene) -> None:
        t = convert.to_sec(msg.header.stamp)
        if self.reasoner is None:
            return  # no map yet (the stack is not up either)
        try:
            scene = convert.scene_from_message(msg, self.max_agents - 1, ROUTE_POINTS, light_ids=self.light_ids)
        except convert.InvalidMessage as e:
            self.reject(str(e))
            return
        if self.camera_topic and self.camera is None:
            self.get_logger().warning(f"no image on {self.camera_topic} yet: no reasoning at t={t:.2f}",
                                      throttle_duration_sec=5.0)
            return
        self.last_slot = int(t / self.period + 1e-6)
        t0 = time.perf_counter()
        adv = self.reasoner.reason(scene, self.camera) if self.camera_topic else self.reasoner.reason(scene)
        self.call_ms.append((time.perf_counter() - t0) * 1000)
        out = Reasoning(text=adv.text, advisory=adv.advisory, speed_cap=float(adv.speed_cap), model=self.reasoner.name)
        out.header.stamp, out.header.frame_id = msg.header.stamp, "hero"
        out.source_stamp = msg.header.stamp
        self.pub.publish(out)

    def close(self) -> None:
        if self.call_ms:
            ms = np.asarray(self.call_ms)
            name = self.reasoner.name if self.reasoner is not None else self.kind
            self.get_logger().info(f"{len(ms)} reasoning calls ({name}): p50 {np.percentile(ms, 50):.1f} ms, "
                                   f"p99 {np.percentile(ms, 99):.1f} ms, max {ms.max():.1f} ms")


def main(args=None) -> None:
    run(VlaReasoning, args)


if __name__ == "__main__":
    main()
