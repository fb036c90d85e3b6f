"""Library side of the ROS 2 stack: everything the nodes do that is not message plumbing (no rclpy here).

- `core.PseudoSimCore`: the pseudo-simulator at the CARLA/Leaderboard boundary (one route, tick by tick, the
  Leaderboard's command-stamp rule, missed ticks, Bench2Drive scoring).
- `takeover.TakeoverLogic`: when the monitor takes control (TTC, predicted collision, missed deadline,
  invalid message) and what it commands (privileged expert or a safe stop).
- `reasoner.rule_reasoning`: scene -> reasoning text + advisory (the VLA node's rule-based stand-in).
- `bags`: ring buffer of serialized messages, takeover windows, rosbag2/MCAP writing and crash recovery.
- `faults.Fault`: `NODE:KIND@T` fault injection (stall, nan, exit) for tests and demos.
"""
