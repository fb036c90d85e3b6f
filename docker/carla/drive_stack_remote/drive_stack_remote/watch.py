"""watch_stack: exits 1 when a node of the drive-stack container falls silent, so the Leaderboard (which asserts
at every step that the agent's launch process is alive) stops the route instead of driving a dead stack.

Every stack node repeats its name on /drive_stack/node_ready (std_msgs/String) every 0.25 s. Until all EXPECTED
nodes were heard once, the watcher waits (the stack may still be building TensorRT engines); afterwards a node
unheard for more than --silent-s seconds (wall time) ends it."""

from __future__ import annotations

import argparse
import sys
import time

TOPIC = "/drive_stack/node_ready"
EXPECTED = ("perception_input", "planner", "vla_reasoning", "takeover_monitor", "recorder")


def silent_nodes(last_heard: dict[str, float], now: float, expected=EXPECTED, silent_s: float = 5.0) -> list[str]:
    """The expected nodes unheard for more than silent_s, once every one of them was heard; [] before that."""
    if any(n not in last_heard for n in expected):
        return []
    return [n for n in expected if now - last_heard[n] > silent_s]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--silent-s", type=float, default=5.0, help="seconds a node may be unheard (default: 5.0)")
    args, _ = ap.parse_known_args(argv)  # ros2 launch adds --ros-args ...
    import rclpy
    from std_msgs.msg import String

    rclpy.init()
    node = rclpy.create_node("watch_stack")
    last: dict[str, float] = {}
    node.create_subscription(String, TOPIC, lambda m: last.__setitem__(m.data, time.monotonic()), 10)
    try:
        while rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.5)
            dead = silent_nodes(last, time.monotonic(), silent_s=args.silent_s)
            if dead:
                node.get_logger().error(f"drive-stack nodes silent for more than {args.silent_s} s: {', '.join(dead)}")
                return 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
