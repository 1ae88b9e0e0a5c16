#!/bin/bash
# Installs every Debian 12 package offkey needs to build, test and run, skipping what is
# already installed. Idempotent; needs root (or sudo) only when something is missing.
#   --build-only  only what building the binaries needs (the container image's build
#                 stage, deploy/image/Containerfile)
set -euo pipefail

build_only=0
case "${1:-}" in
  "") ;;
  --build-only) build_only=1 ;;
  *) echo "setup: unknown argument '$1' (--build-only or nothing)" >&2; exit 2 ;;
esac

packages=(
  # Build: Bazel (Debian's offline bootstrap) and the C++ toolchain.
  bazel-bootstrap bazel-platforms g++ pkg-config
  # Libraries, all from Debian: gRPC, protobuf, Abseil, OpenSSL 3, GoogleTest.
  protobuf-compiler protobuf-compiler-grpc libgrpc++-dev libprotobuf-dev libabsl-dev
  libssl-dev openssl libgtest-dev libgmock-dev
  # Observability: Prometheus client (metrics), cpp-httplib (the metrics/health HTTP
  # port), and grpc-proto (health.proto, so reflection can describe grpc.health.v1).
  prometheus-cpp-dev libcpp-httplib-dev grpc-proto
  # offkeyctl's command line (CLI11, header-only).
  libcli11-dev
  # The rest of WORKSPACE's @sys: its repository rule asks pkg-config for every library
  # it wraps, so a build fails without them even where no target links them.
  libbenchmark-dev libfmt-dev libspdlog-dev libyaml-cpp-dev
  # PKCS#11: the header (modules are dlopen()ed).
  libp11-kit-dev
)
test_packages=(
  # SoftHSM2 for development mode and tests.
  softhsm2
)
[[ $build_only -eq 1 ]] || packages+=("${test_packages[@]}")

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
