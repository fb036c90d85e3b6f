#!/usr/bin/env bash
# Container HEALTHCHECK.
#   healthcheck.sh nodes     (GPU/Jetson images) healthy while every node of the stack runs as a process: the
#                            nodes of sim:=carla (CARLA + the bridge stand in for pseudo_sim), or the list in
#                            $DRIVE_STACK_HEALTH_NODES. Before `ros2 launch` has started them (engine builds at
#                            start) the image's start period covers it.
#   healthcheck.sh imports   (CPU image, whose demo runs to completion) the library and rclpy import: the venv,
#                            its ROS wheels and the interface packages built into it are intact.
# Reads /proc only (no procps, no ROS graph query that would itself start a daemon); $HEALTH_PROC for tests.
set -uo pipefail

mode="${1:-nodes}"
case "$mode" in
  nodes)
    proc="${HEALTH_PROC:-/proc}"
    nodes="${DRIVE_STACK_HEALTH_NODES:-perception_input planner vla_reasoning takeover_monitor recorder}"
    cmdlines=""
    for f in "$proc"/[0-9]*/cmdline; do
      [ -r "$f" ] || continue
      cmdlines+="$(tr '\0' ' ' < "$f" 2>/dev/null) "$'\n'
    done
    for n in $nodes; do
      # installed executables (ros2 launch) or python -m drive_stack.<node> (drive-stack-ros)
      if ! grep -qE "(lib/drive_stack/${n}|-m drive_stack\.${n})( |\$)" <<<"$cmdlines"; then
        echo "unhealthy: node $n is not running"
        exit 1
      fi
    done
    echo "healthy: $nodes"
    ;;
  imports)
    python3 -c "import drivesim, rclpy, drive_stack_msgs.msg, carla_msgs.msg" || { echo "unhealthy: imports fail"; exit 1; }
    echo "healthy: imports"
    ;;
  *)
    echo "usage: healthcheck.sh nodes|imports" >&2
    exit 2
    ;;
esac
