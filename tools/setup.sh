#!/bin/bash
# Installs every Debian 12 package offkey needs to build, test and run, skipping what is
# already installed. Idempotent; needs root (or sudo) only when something is missing.
set -euo pipefail

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
  # PKCS#11: the header (modules are dlopen()ed) and SoftHSM2 for development and tests.
  libp11-kit-dev softhsm2
  # Tests: a real DNS server for liboffkey's round-robin over a name's addresses, and
  # real TLS clients for the provider's handshakes.
  dnsmasq-base curl gnutls-bin
  # Unmodified TLS servers for the provider's end-to-end tests.
  nginx
)

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
