#!/usr/bin/env bash
# $CARLA_ROOT/CarlaUE4.sh of the evaluator image. Bench2Drive's leaderboard_evaluator starts the CARLA server itself
# (`$CARLA_ROOT/CarlaUE4.sh -RenderOffScreen ... -carla-rpc-port=PORT`); in docker/compose.carla.yaml the server is
# the `carla` service, so this stands in for it: it waits until $CARLA_HOST:PORT accepts connections (the
# evaluator then connects to --host), and returns. Arguments are CarlaUE4's; only -carla-rpc-port is read.
set -u
host="${CARLA_HOST:-carla}"
port=2000
for a in "$@"; do
  case "$a" in -carla-rpc-port=*) port="${a#-carla-rpc-port=}" ;; esac
done
for _ in $(seq 1 "${CARLA_WAIT_S:-300}"); do
  if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
    echo "CarlaUE4.sh (stub): CARLA answers at $host:$port"
    exit 0
  fi
  sleep 1
done
echo "CarlaUE4.sh (stub): no CARLA server at $host:$port after ${CARLA_WAIT_S:-300} s" >&2
exit 1
