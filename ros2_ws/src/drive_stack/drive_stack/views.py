"""views: what the stack sees and decides, as visualization_msgs/MarkerArray on /drive_stack/markers (frame `map`),
for RViz and Foxglove, live and from bags (the recorder keeps the topic; config/foxglove_layout.json shows it).
Every `every`-th scene: the ego, the perceived agents (boxes by kind, their track ids and speeds as text), the route
ahead, the planner's plan (green) and, while the expert drives, the expert's (orange), and the last takeover's
cause. The markers are built by the library (drivesim.stack.views); this node only converts them."""

from __future__ import annotations

from drive_stack_msgs.msg import PerceivedScene, Plan, StackStatus, TakeoverEvent
from drivesim.stack.views import plan_markers, scene_markers, takeover_marker
from geometry_msgs.msg import Point
from rclpy.serialization import deserialize_message
from visualization_msgs.msg import Marker, MarkerArray

from . import convert
from . import node_table as T
from .common import EVENTS, RELIABLE, StackNode, run
from .params import ViewsParams

KINDS = {"cube": Marker.CUBE, "line_strip": Marker.LINE_STRIP, "text": Marker.TEXT_VIEW_FACING}


def to_msg(spec, stamp, frame: str = "map") -> Marker:
    m = Marker(ns=spec.ns, id=spec.id, type=KINDS[spec.kind], action=Marker.ADD)
    m.header.stamp, m.header.frame_id = stamp, frame
    m.pose.position.x, m.pose.position.y, m.pose.position.z = float(spec.x), float(spec.y), float(spec.z)
    m.pose.orientation = convert.yaw_quat(float(spec.yaw))
    m.scale.x, m.scale.y, m.scale.z = (float(v) for v in spec.scale)
    m.color.r, m.color.g, m.color.b, m.color.a = (float(v) for v in spec.color)
    m.points = [Point(x=float(x), y=float(y), z=0.2) for x, y in spec.points]
    m.text = spec.text
    return m


class Views(StackNode):
    def __init__(self):
        super().__init__("views")
        p = self.declare_params(ViewsParams)
        self.every = max(int(p.every), 1)
        self.pub = self.create_publisher(MarkerArray, T.MARKERS, RELIABLE)
        self.scenes: dict[float, PerceivedScene] = {}
        self.expert: dict[float, Plan] = {}
        self.controller: dict[float, str] = {}
        self.takeover: tuple[float, str, str] | None = None
        self.count = 0
        # raw: only every `every`-th scene is deserialized (the others cost the node nothing)
        self.create_subscription(PerceivedScene, T.SCENE, self._on_scene_raw, RELIABLE, raw=True)
        self.create_subscription(Plan, T.PLAN, self._on_plan, RELIABLE)
        self.create_subscription(Plan, T.EXPERT_PLAN, self._on_expert, RELIABLE)
        self.create_subscription(StackStatus, T.STATUS, self._on_status, RELIABLE)
        self.create_subscription(TakeoverEvent, T.TAKEOVER, self._on_takeover, EVENTS)
        self.announce_ready()

    @staticmethod
    def _t(stamp) -> float:
        return round(convert.to_sec(stamp), 3)

    def _on_scene_raw(self, data: bytes) -> None:
        for t, old in list(self.scenes.items()):  # a scene no plan answered (the planner is silent): drawn without
            self.draw(old, None)
            del self.scenes[t]
        self.count += 1
        if self.count % self.every == 0:
            msg = deserialize_message(data, PerceivedScene)
            self.scenes = {self._t(msg.header.stamp): msg}  # drawn when the tick's plan comes

    def _on_expert(self, msg: Plan) -> None:
        self.expert = {self._t(msg.header.stamp): msg}

    def _on_status(self, msg: StackStatus) -> None:
        if msg.node == "takeover_monitor" and msg.detail.startswith("controller="):
            self.controller = {self._t(msg.header.stamp): msg.detail.partition("=")[2]}

    def _on_takeover(self, msg: TakeoverEvent) -> None:
        self.takeover = (convert.to_sec(msg.header.stamp), msg.cause_name, msg.controller)

    def _on_plan(self, msg: Plan) -> None:
        scene = self.scenes.pop(self._t(msg.header.stamp), None)
        if scene is not None:
            self.draw(scene, msg)

    def draw(self, scene: PerceivedScene, plan: Plan | None) -> None:
        t = self._t(scene.header.stamp)
        ego = (scene.ego_x, scene.ego_y, scene.ego_yaw)
        agents = [(a.id, a.kind, a.x, a.y, a.yaw, a.speed, a.length, a.width) for a in scene.agents]
        specs = scene_markers(ego, agents, [(p.x, p.y) for p in scene.route])
        if plan is not None:
            specs += plan_markers(ego, [(p.x, p.y) for p in plan.path], plan.target_speed, "planner")
        ctl = next(iter(self.controller.values()), "planner")
        if ctl == "expert" and self.expert:
            e = next(iter(self.expert.values()))
            for s in plan_markers(ego, [(p.x, p.y) for p in e.path], e.target_speed, "expert"):
                s.ns = "expert_plan"
                specs.append(s)
        if self.takeover is not None:
            specs += takeover_marker(ego, self.takeover[1], self.takeover[2], self.takeover[0], t)
        clear = Marker(action=Marker.DELETEALL)
        clear.header.stamp, clear.header.frame_id = scene.header.stamp, "map"
        self.pub.publish(MarkerArray(markers=[clear] + [to_msg(s, scene.header.stamp) for s in specs]))


def main(args=None) -> None:
    run(Views, args)


if __name__ == "__main__":
    main()
