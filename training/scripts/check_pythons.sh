#!/usr/bin/env bash
# Developer check (not part of `make test`): the drivesim library on Python 3.10 and 3.12, beside the 3.11 of
# `make setup`. 3.10 gets CARLA 0.9.15's client (Bench2Drive's CARLA; its PyPI wheel is cp310 only), 3.12 the carla
# pinned in pyproject.toml (0.9.16). Each Python gets a venv outside the checkout ($VENVS/py310, $VENVS/py312, made
# when missing, updated when pyproject's dependencies change) with the library's runtime dependencies except torch,
# plus pytest: so nothing that needs torch runs (drivesim.learn, and drive-stack's CLI, whose parser imports it).
# The library runs from the checkout (PYTHONPATH=training); nothing is installed into the checkout or written in it:
# bytecode, numba's and the lane-graph caches live in the venv (lane graphs per Python: each Python's carla builds
# its own). Per Python: a syntax check of all of training/drivesim, the torch-free and ROS-free test files one at a
# time; then the lane graphs of Proc0 and Town01 built with each Python's carla (and the .venv's) are compared.
#
# Usage: training/scripts/check_pythons.sh [3.10] [3.12]      (default both; about 4 min each on 2 cores)
#   PYTHON310 / PYTHON312: the interpreters (default: python3.10 / python3.12 on PATH, else pyenv's newest)
#   VENVS: where the venvs go (default: the checkout's parent folder); SHARED: the shared data (default ../shared)
# Exit status 0 when every step passed on every asked Python.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENVS=${VENVS:-$(dirname "$ROOT")}
SHARED=${SHARED:-$(dirname "$ROOT")/shared}
VERSIONS=("$@")
[ ${#VERSIONS[@]} -gt 0 ] || VERSIONS=(3.10 3.12)
# the files: no torch, no rclpy / drive_stack import; their shared-data tests run when $SHARED is there
TESTS=(test_maps_routes test_sim test_scoring test_scenarios test_eval test_dataset test_expert test_gym test_kernels
       test_loop test_visibility test_model_resolution test_new_user test_config test_takeover_gate test_stack_lib)
# the tests of those files that need what these venvs leave out
DESELECT=(
  # they run drivesim.cli, which builds its `train` parsers from drivesim.learn, which imports torch
  tests/test_maps_routes.py::test_routes_check_bench2drive
  tests/test_eval.py::test_unknown_policy_is_a_clear_error
  tests/test_model_resolution.py::test_eval_refuses_a_bad_model_before_the_first_route_and_records_the_one_it_used
  tests/test_new_user.py::test_eval_that_evaluates_no_route_fails_and_says_why
  tests/test_new_user.py::test_eval_prints_every_refused_route_and_still_passes_with_one_route
  tests/test_new_user.py::test_map_with_empty_planviews_is_an_error_route_not_a_segfault
  tests/test_new_user.py::test_bag_info_on_a_folder_that_is_not_a_bag
  # the ROS 2 package drive_stack (ros2_ws), rosbags (the `ros` extra)
  tests/test_config.py::test_each_node_section_has_exactly_its_typed_config
  tests/test_config.py::test_stack_run_set_options_are_typed_and_validated
  tests/test_stack_lib.py::test_takeover_bag_has_the_asked_window
  tests/test_stack_lib.py::test_segments_survive_a_killed_recorder
  tests/test_stack_lib.py::test_late_stamped_messages_and_latched_ones_reach_the_takeover_bag
)

find_python() {  # $1 = 3.10 | 3.12
  local var="PYTHON${1/./}" p
  if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
  if p=$(command -v "python$1"); then echo "$p"; return; fi
  p=$(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/"$1".*/bin/python 2>/dev/null | sort -V | tail -1)
  [ -n "$p" ] && echo "$p"
}

# pyproject's [project.dependencies] but torch and carla, pytest, pytest-timeout and pyyaml of its dev extra, and a
# last line "#carla <its carla requirement>"; read with a Python that has tomllib (3.11+)
requirements() {
  local py
  for py in "$ROOT/.venv/bin/python" python3 "$(find_python 3.12)"; do
    [ -n "$py" ] && "$py" -c "import tomllib" 2>/dev/null && break
    py=
  done
  [ -n "$py" ] || { echo "check_pythons: no Python with tomllib (3.11+) to read pyproject.toml" >&2; return 1; }
  "$py" - "$ROOT/pyproject.toml" <<'EOF'
import re, sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
name = lambda r: re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower()
deps = [r for r in p["dependencies"] if name(r) not in ("torch", "carla")]
deps += [r for r in p["optional-dependencies"]["dev"] if name(r) in ("pytest", "pytest-timeout", "pyyaml")]
carla = [r for r in p["dependencies"] if name(r) == "carla"]
print("\n".join(deps + ["#carla " + (carla[0] if carla else "carla")]))
EOF
}

setup_venv() {  # $1 = version, $2 = venv; installs when missing, or when the requirements or this script changed
  local v=$1 venv=$2 py reqs stamp carla
  py=$(find_python "$v") || true
  [ -n "$py" ] || { echo "check_pythons: no Python $v (set PYTHON${v/./})" >&2; return 1; }
  reqs=$(requirements) || return 1
  stamp="$venv/.check-pythons-$( (echo "$reqs"; cat "$0") | md5sum | cut -c1-12)"
  [ -f "$stamp" ] && return 0
  carla=$(echo "$reqs" | sed -n 's/^#carla //p')
  [ "$v" = 3.10 ] && carla="carla==0.9.15"  # Bench2Drive's CARLA
  echo "== Python $v: venv $venv ($py), $carla"
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv" || return 1
  # shellcheck disable=SC2046
  nice -n 10 "$venv/bin/python" -m pip install -q $(echo "$reqs" | grep -v '^#') "$carla" || return 1
  rm -f "$venv"/.check-pythons-*
  touch "$stamp"
}

run_py() {  # $1 = python, $2 = folder for its caches, then its arguments; the checkout's library, nothing written there
  local py=$1 cache=$2
  shift 2
  (cd "$ROOT" && PYTHONPATH="$ROOT/training" DRIVE_STACK_CACHE="$cache/.drive-stack-cache" \
     NUMBA_CACHE_DIR="$cache/.numba-cache" PYTHONPYCACHEPREFIX="$cache/.pycache" DRIVE_STACK_SHARED="$SHARED" \
     nice -n 10 "$py" "$@")
}

build_graphs() {  # $1 = python, $2 = cache folder, $3 = output folder: the lane graphs of Proc0 and Town01
  run_py "$1" "$2" - "$3" "$SHARED/carla_maps/Town01.xodr" <<'EOF'
import sys
from importlib.metadata import version
from pathlib import Path

from drivesim.maps.opendrive import build_lane_graph
from drivesim.maps.procedural import generate_town_xodr

out = Path(sys.argv[1])
out.mkdir(parents=True)
(out / "carla").write_text(version("carla"))
for name, text in (("Proc0", generate_town_xodr(0)), ("Town01", Path(sys.argv[2]).read_text())):
    build_lane_graph(name, text).save(out / f"{name}.npz")
EOF
}

GRAPHS=$(mktemp -d)
trap 'rm -rf "$GRAPHS"' EXIT
MAPS_OK=$([ -f "$SHARED/carla_maps/Town01.xodr" ] && echo 1)
status=0
summary=()
cmp_py=
deselect=()
for d in "${DESELECT[@]}"; do deselect+=(--deselect "$d"); done
for v in "${VERSIONS[@]}"; do
  venv="$VENVS/py${v/./}"
  if ! setup_venv "$v" "$venv"; then summary+=("Python $v: SETUP FAILED"); status=1; continue; fi
  py="$venv/bin/python"
  info=$(run_py "$py" "$venv" -c "import sys, numpy; from importlib.metadata import version as V
print(sys.version.split()[0], 'carla', V('carla'), 'numpy', numpy.__version__)")
  echo "== Python $v: $info"
  fails=()
  # 1. the whole package compiles (learn/ and stack/ included; bytecode into the venv)
  run_py "$py" "$venv" -m compileall -q training/drivesim >/dev/null || fails+=("compileall")
  # 2. the test files, one at a time
  counts=(0 0 0 0)
  kinds=(passed failed skipped deselected)
  for t in "${TESTS[@]}"; do
    out=$(run_py "$py" "$venv" -m pytest -p no:cacheprovider -q "tests/$t.py" "${deselect[@]}" 2>&1)
    rc=$?
    last=$(echo "$out" | tail -1)
    echo "   $t: ${last//=/}"
    for i in 0 1 2 3; do
      n=$(echo "$last" | grep -oE "[0-9]+ ${kinds[$i]}" | cut -d' ' -f1)
      counts[i]=$((counts[i] + ${n:-0}))
    done
    if [ $rc -ne 0 ]; then
      fails+=("$t")
      echo "$out" | grep -E "^(FAILED|ERROR) " | sed 's/^/      /'
    fi
  done
  # 3. the lane graphs with this Python's carla, compared below
  if [ -n "$MAPS_OK" ]; then
    build_graphs "$py" "$venv" "$GRAPHS/$v" || fails+=("lane graphs")
    cmp_py=$py
  fi
  summary+=("Python $v ($info): ${counts[0]} passed, ${counts[1]} failed, ${counts[2]} skipped, ${counts[3]} deselected${fails:+; FAILED: ${fails[*]}}")
  [ ${#fails[@]} -eq 0 ] || status=1
done

# The lane graphs of the checked Pythons, and of the checkout's .venv (3.11, the default) when it has carla, against
# each other: the same arrays, floats within 1e-6. Crosswalk polygons are known to differ between carla 0.9.15 and
# 0.9.16 (0.9.15's get_crosswalks lengthens each crosswalk by 1 m at both ends along the road and mirrors it across
# the road's reference line): reported, not failed.
if [ -n "$MAPS_OK" ] && [ -n "$cmp_py" ] && [ -x "$ROOT/.venv/bin/python" ] &&
   run_py "$ROOT/.venv/bin/python" "$GRAPHS/.venv-caches" -c "import carla" 2>/dev/null; then
  build_graphs "$ROOT/.venv/bin/python" "$GRAPHS/.venv-caches" "$GRAPHS/3.11" ||
    { summary+=("lane graphs of .venv (3.11): FAILED"); status=1; }
fi
# the reference first: 3.11 when there, else the first checked
graphs=$(cd "$GRAPHS" && ls -d 3.1* 2>/dev/null | sort -V | awk '$0 == "3.11" {print; next} {r = r " " $0} END {print r}')
if [ "$(echo "$graphs" | wc -w)" -ge 2 ]; then
  echo "== lane graphs of Proc0 and Town01:" $graphs
  # shellcheck disable=SC2086
  if "$cmp_py" - "$GRAPHS" $graphs <<'EOF'; then summary+=("lane graphs: match on $(echo $graphs) (but for crosswalks where carla differs, above)"); else status=1; summary+=("lane graphs: DIFFER"); fi
import sys
from pathlib import Path

import numpy as np

root, names = Path(sys.argv[1]), sys.argv[2:]
ref, ok = names[0], True
for other in names[1:]:
    ca, cb = ((root / n / "carla").read_text() for n in (ref, other))
    for town in ("Proc0", "Town01"):
        a, b = np.load(root / ref / f"{town}.npz"), np.load(root / other / f"{town}.npz")
        bad, known = [], []
        for k in sorted(set(a.files) | set(b.files)):
            if k not in a.files or k not in b.files:
                bad.append(f"{k} missing")
                continue
            x, y = a[k], b[k]
            if x.shape != y.shape or x.dtype != y.dtype:
                d = f"{k} {x.dtype}{x.shape} vs {y.dtype}{y.shape}"
            elif x.dtype.kind == "f" and x.size and np.abs(x - y).max() > 1e-6:
                d = f"{k} max |diff| {np.abs(x - y).max():.3g}"
            elif x.dtype.kind != "f" and not np.array_equal(x, y):
                d = f"{k}: {int(np.sum(x != y))} of {x.size} differ"
            else:
                continue
            (known if k == "cw_pts" and ca != cb else bad).append(d)
        print(f"   {town}: Python {ref} (carla {ca}) vs {other} (carla {cb}): "
              + ("same" if not bad + known else "; ".join(bad + [f"{d} (known: carla's crosswalks)" for d in known])))
        ok = ok and not bad
sys.exit(0 if ok else 1)
EOF
fi

echo "== summary"
printf '   %s\n' "${summary[@]}"
exit $status
