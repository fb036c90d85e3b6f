# drive-stack: the two sacred commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-$(shell cat pyproject.toml ros2_ws/src/drive_stack/setup.py requirements.lock | md5sum | cut -c1-12)
SHARED ?= ../shared
export DRIVE_STACK_CACHE ?= $(CURDIR)/.cache

.PHONY: setup test demo bench lint clean image-cpu lock

setup: $(STAMP)
	@$(PY) ros2_ws/tools/build_interfaces.py

$(STAMP): pyproject.toml ros2_ws/src/drive_stack/setup.py requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# the versions the committed results were made with; the newest allowed where the index lacks one of them
	$(PY) -m pip install -q -c requirements.lock -e '.[dev,ros,ray,vla]' || { \
	  echo "make setup: a version pinned in requirements.lock is not on this machine's package index (pip's error above);" \
	  "installing the newest versions pyproject.toml allows: results may differ from the committed ones in the last digits"; \
	  $(PY) -m pip install -q -e '.[dev,ros,ray,vla]'; }
	$(PY) -m pip install -q --no-deps -e ros2_ws/src/drive_stack
	@rm -f $(VENV)/.setup-*
	@touch $(STAMP)

test: setup
	$(PY) -m pytest -q --durations=15 tests

# the ROS 2 stack's commands are drive-stack-ros's (the drive_stack package); drive-stack is the library's CLI.
# Without ../shared the demo says so and skips the Bench2Drive route (its defaults are these same paths).
demo: setup
	$(VENV)/bin/drive-stack-ros demo --out results/demo --b2d-routes $(SHARED)/bench2drive/bench2drive220.xml --maps-dir $(SHARED)/carla_maps

# Benchmarks write untracked JSON under results/bench/local/ (gitignored); the committed figures the README quotes,
# results/bench/{sim,stack,infer,scale}.json, change only when someone copies a run over them on purpose.
BENCH_OUT ?= results/bench/local
bench: setup
	$(VENV)/bin/drive-stack bench sim --json $(BENCH_OUT)/sim.json --routes $(SHARED)/bench2drive/bench2drive220.xml --maps-dir $(SHARED)/carla_maps
	$(VENV)/bin/drive-stack-ros bench stack --json $(BENCH_OUT)/stack.json --out $(BENCH_OUT)/stack_run
	$(VENV)/bin/drive-stack bench infer --json $(BENCH_OUT)/infer.json
	$(VENV)/bin/drive-stack bench scale --json $(BENCH_OUT)/scale.json --routes $(SHARED)/bench2drive/bench2drive220.xml --maps-dir $(SHARED)/carla_maps --route-ids 24211,24224,24252,24258,24294,24367,24757,24781 --workers 1,2

# ruff on the Python, hadolint on every Dockerfile (any finding, even info, fails the target; an inline `# hadolint ignore=DLxxxx`
# carries its reason in a comment beside it, tests/test_deploy.py checks that)
lint: setup
	$(VENV)/bin/ruff check training tests ros2_ws launch docker
	$(VENV)/bin/hadolint docker/Dockerfile.*

# The CPU image (the embedded default) built and run here without a Docker daemon: buildah + podman on a
# debootstrap'd Debian bookworm base (docker/build_cpu_local.sh; root, network to the package registries).
image-cpu:
	bash docker/build_cpu_local.sh

clean:
	rm -rf $(VENV) .cache results/demo

# requirements.lock from the current .venv (after changing dependencies; the interface packages built here are left out)
lock: setup
	@{ sed -n '1,3p' requirements.lock; $(PY) -m pip freeze --exclude-editable | grep -vE '^(drive_stack_msgs|carla_msgs|derived_object_msgs)=='; } > requirements.lock.new
	@mv requirements.lock.new requirements.lock && echo "requirements.lock: $$(grep -vc '^#' requirements.lock) pinned versions"
