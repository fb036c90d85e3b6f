#!/usr/bin/env bash
# Build the CPU image (docker/Dockerfile.cpu) and run the embedded default in it, without a Docker daemon: a
# minimal Debian bookworm made with debootstrap is the BASE, buildah builds (chroot isolation, no daemon, no user
# namespaces needed), buildah runs `drive-stack-ros demo` in a container of the image. `make image-cpu` runs this.
# Needs root and the package registries (Debian's for debootstrap and apt, PyPI for pip inside the build).
#
# torch==2.13.0: its CPU build is copied into docker/wheels/ from this machine's wheel folder when it is there
# ($PIP_FIND_LINKS, /opt/wheels); pip inside the build takes it before the index (else the index's CUDA build).
#
# Environment: ROOTFS (debootstrap target, default /tmp/drive-stack-bookworm), IMAGE (localhost/drive-stack:cpu),
# STORAGE_DRIVER (vfs: works inside containers and without overlay support), DEMO_ARGS (default: --out results/demo).
set -euo pipefail
cd "$(dirname "$0")/.."

rootfs="${ROOTFS:-/tmp/drive-stack-bookworm}"
base="localhost/bookworm-min"
image="${IMAGE:-localhost/drive-stack:cpu}"
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"

missing=""
for tool in debootstrap buildah podman; do command -v "$tool" >/dev/null || missing+=" $tool"; done
if [ -n "$missing" ]; then
  echo "== installing$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi

if ! podman image exists "$base"; then
  if [ ! -x "$rootfs/usr/bin/apt-get" ]; then
    echo "== debootstrap --variant=minbase bookworm $rootfs"
    debootstrap --variant=minbase bookworm "$rootfs"
  fi
  echo "== podman import $rootfs as $base"
  tar -C "$rootfs" -c . | podman import - "$base"
fi

for dir in ${PIP_FIND_LINKS:-} /opt/wheels; do
  for w in "$dir"/torch-2.13.0+cpu-cp311-*.whl; do
    if [ -f "$w" ] && [ ! -f "docker/wheels/$(basename "$w")" ]; then
      echo "== torch CPU wheel: $w -> docker/wheels/"
      cp "$w" docker/wheels/
    fi
  done
done

# this machine's CA bundle (it trusts the network's TLS interception, a fresh Debian does not) for pip in the build
ca="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
ca_args=()
if [ -f "$ca" ]; then ca_args=(--volume "$ca:/run/host-ca.crt:ro" --build-arg PIP_CERT_FILE=/run/host-ca.crt); fi

echo "== buildah bud -f docker/Dockerfile.cpu (BASE=$base) -> $image"
# shellcheck disable=SC2046
buildah bud --isolation chroot --format docker --layers --build-arg "BASE=$base" "${ca_args[@]}" $(docker/models.sh args) \
  -f docker/Dockerfile.cpu -t "$image" .

echo "== labels and healthcheck"
buildah inspect --format '{{range $k, $v := .ImageAnnotations}}{{$k}}={{$v}}{{"\n"}}{{end}}{{range $k, $v := .OCIv1.Config.Labels}}{{$k}}={{$v}}{{"\n"}}{{end}}' "$image" \
  | grep -E 'model|opencontainers.image.(title|base.name)' || true
buildah inspect "$image" | python3 -c 'import json, sys; c = json.load(sys.stdin)["Docker"]["config"]
print("user", c.get("User"), "healthcheck", c.get("Healthcheck", {}).get("Test"))'

echo "== buildah run: drive-stack-ros demo ${DEMO_ARGS:---out results/demo}"
ctr="$(buildah from "$image")"
trap 'buildah rm "$ctr" >/dev/null' EXIT
# shellcheck disable=SC2086
buildah run --isolation chroot --user 10001:10001 --workingdir /var/lib/drive-stack "$ctr" -- \
  drive-stack-ros demo ${DEMO_ARGS:---out results/demo}
