#!/usr/bin/env bash
# The committed models' sha256, for the images' OCI labels, and the check that an image holds those very files.
#
#   docker/models.sh args [REPO]      prints --build-arg MODEL_SHA256_<NAME>=<sha256> for every models/*/*.onnx
#                                     (docker build $(docker/models.sh args) -f docker/Dockerfile.gpu .)
#   docker/models.sh env [REPO]       prints MODEL_SHA256_<NAME>=<sha256> lines, for Compose's .env file
#                                     (docker/models.sh env > docker/.env; the compose files pass them on)
#   docker/models.sh verify DIR       in a build: every MODEL_SHA256_<NAME> variable must be set and equal the
#                                     sha256 of DIR/<name>/<kind>.onnx; exits 1 naming the first mismatch
#
# <NAME> is the model folder upper-cased (perlad_logreplay -> PERLAD_LOGREPLAY); a folder with several graphs names
# its first (sorted) by the folder and the others <FOLDER>_<STEM> (takevla/vla.onnx -> TAKEVLA, takevla/vla_text.onnx
# -> TAKEVLA_VLA_TEXT).
set -euo pipefail

name_of() {
  local f="$1" d first n
  d="$(dirname "$f")"
  n="$(basename "$d" | tr '[:lower:]' '[:upper:]')"
  first="$(find "$d" -maxdepth 1 -name '*.onnx' | sort | head -n 1)"
  [ "$f" = "$first" ] || n="${n}_$(basename "$f" .onnx | tr '[:lower:]' '[:upper:]')"
  echo "$n"
}

cmd="${1:-}"
case "$cmd" in
  args|env)
    repo="${2:-$(cd "$(dirname "$0")/.." && pwd)}"
    for f in "$repo"/models/*/*.onnx; do
      name="$(name_of "$f")"
      sha="$(sha256sum "$f" | cut -d' ' -f1)"
      if [ "$cmd" = args ]; then printf -- '--build-arg MODEL_SHA256_%s=%s ' "$name" "$sha"; else echo "MODEL_SHA256_$name=$sha"; fi
    done
    [ "$cmd" = env ] || echo
    ;;
  verify)
    dir="${2:?usage: models.sh verify DIR}"
    n=0
    for f in "$dir"/*/*.onnx; do
      name="$(name_of "$f")"
      var="MODEL_SHA256_$name"
      want="${!var:-}"
      got="$(sha256sum "$f" | cut -d' ' -f1)"
      if [ -z "$want" ]; then
        echo "models.sh: $var is not set: build with \$(docker/models.sh args) so the label names the model" >&2
        exit 1
      fi
      if [ "$want" != "$got" ]; then
        echo "models.sh: $f has sha256 $got, the build argument $var says $want" >&2
        exit 1
      fi
      n=$((n + 1))
    done
    [ "$n" -gt 0 ] || { echo "models.sh: no models under $dir" >&2; exit 1; }
    echo "models.sh: $n model files match their build arguments"
    ;;
  *)
    echo "usage: models.sh args|env [REPO] | verify DIR" >&2
    exit 2
    ;;
esac
