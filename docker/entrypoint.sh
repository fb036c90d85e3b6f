#!/usr/bin/env bash
# Entrypoint of the GPU and Jetson images: source ROS 2 and the workspace, build or load the TensorRT engine of the
# planner the stack will run (engine cache: $DRIVE_STACK_CACHE/trt, a volume), then
#   exec ros2 launch drive_stack bench2drive.launch.py "$@"
#
# Which engines: DRIVE_STACK_ENGINES (space-separated ONNX files) if set, else the planner of the learned policy
# named by a `policy:=NAME` argument ($DRIVE_STACK_MODELS/NAME/planner.onnx); rule/expert need none. FP16, the
# precision the runtime (drivesim.models.runtime) loads. DRIVE_STACK_TRT:
#   auto      (default) where TensorRT cannot run (exit 3 of `drive-stack export`: no tensorrt, no GPU) say so and
#             start anyway: the runtime falls back to ONNX Runtime (CUDA, else CPU)
#   required  stop instead (a vehicle that must not run without its engines)
#   off       build nothing here (the runtime still builds on first use)
# A failed build (a corrupt ONNX file, a TensorRT error) always stops the start.
set -euo pipefail

ros_setup="${ROS_SETUP:-/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash}"
ws_setup="${DRIVE_STACK_WS:-/opt/drive_stack/ws}/install/setup.bash"
set +u  # ROS setup files read unset variables
# shellcheck disable=SC1090
[ -f "$ros_setup" ] && source "$ros_setup"
# shellcheck disable=SC1090
[ -f "$ws_setup" ] && source "$ws_setup"
set -u

export DRIVE_STACK_CACHE="${DRIVE_STACK_CACHE:-/var/cache/drive-stack}"
models="${DRIVE_STACK_MODELS:-/opt/drive_stack/models}"
mode="${DRIVE_STACK_TRT:-auto}"

engines="${DRIVE_STACK_ENGINES:-}"
if [ -z "$engines" ]; then
  for arg in "$@"; do
    case "$arg" in
      policy:=*)
        policy="${arg#policy:=}"
        if [ -f "$models/$policy/planner.onnx" ]; then engines="$models/$policy/planner.onnx"; fi
        ;;
    esac
  done
fi

if [ "$mode" != "off" ]; then
  for onnx in $engines; do
    rc=0
    drive-stack export --tensorrt "$onnx" --cache "$DRIVE_STACK_CACHE/trt" --fp16 || rc=$?
    if [ "$rc" -eq 3 ] && [ "$mode" = "auto" ]; then
      echo "entrypoint: TensorRT cannot run here (above); the stack runs on ONNX Runtime" >&2
      break
    elif [ "$rc" -ne 0 ]; then
      echo "entrypoint: engine for $onnx failed (exit $rc, DRIVE_STACK_TRT=$mode); not starting" >&2
      exit "$rc"
    fi
  done
fi

exec ros2 launch drive_stack bench2drive.launch.py "$@"
