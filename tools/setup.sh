#!/bin/bash
# Installs every Debian 12 package offkey needs to build, test and run, skipping what is
# already installed, then the npm packages of the Kubernetes manifest checks. Idempotent;
# needs root (or sudo) only when a Debian package is missing.
#   --build-only  only what building the binaries needs (the container image's build
#                 stage, deploy/image/Containerfile): no test tools, node or kubectl
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
  # PKCS#11: the header (modules are dlopen()ed).
  libp11-kit-dev
)
test_packages=(
  # SoftHSM2 for development mode and tests.
  softhsm2
  # Two more PKCS#11 modules the store is tested on (hsm/README.md): opencryptoki's soft
  # token (pkcsslotd), and tpm2-pkcs11 on a software TPM (swtpm) behind tpm2-abrmd on a
  # private D-Bus; tctildr loads the TCTI libraries by name, so they are listed.
  opencryptoki
  libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-tools swtpm tpm2-abrmd dbus-daemon
  libtss2-tcti-tabrmd0 libtss2-tcti-swtpm0
  # A real DNS server for liboffkey's round-robin over a name's addresses, and real TLS
  # clients for the provider's handshakes.
  dnsmasq-base curl gnutls-bin
  # Unmodified TLS servers for the provider's end-to-end tests and benchmark.
  nginx haproxy
  # The benchmarks' peers (tests/bench): `p11-kit server` with p11-kit-client.so puts
  # bare PKCS#11 on the other side of a Unix socket (offkey-bench --p11kit_client), and
  # OpenSC's PKCS#11 engine gives nginx the HSM without offkey (handshake_bench.sh).
  p11-kit p11-kit-modules libengine-pkcs11-openssl
  # libFuzzer with ASan and UBSan: `--config=fuzz` and tools/fuzz.sh (the corpus
  # replay tests build with g++ and need neither).
  clang-14 libclang-rt-14-dev
  # promtool (rule checks and unit tests, deploy/monitoring) and the Prometheus server
  # tests/monitoring_test starts on loopback. Where systemd runs, installing it also
  # starts Debian's prometheus.service on port 9090; tests do not need that one
  # (`systemctl disable --now prometheus`).
  prometheus
  # Debian packages (tools/package.sh, //packaging:package_test): debhelper builds them,
  # lintian checks them, nm and readelf (binutils) check the provider's exports.
  debhelper dpkg-dev lintian binutils
  # //deploy/k8s:kube_play_test: YAML for Debian's /usr/bin/python3 (the manifests'
  # translation for podman, deploy/k8s/test/kube_play_translate.py), and catatonit, from
  # which podman builds the pause image of each pod `podman kube play` makes.
  python3-yaml catatonit
)
[[ $build_only -eq 1 ]] || packages+=("${test_packages[@]}")

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
# The Kubernetes manifest checks (deploy/k8s/test) run on node's test runner. A node
# and npm already on PATH are used as they are (node 20 or newer); Debian's only when
# either is missing.
if [[ $build_only -eq 0 ]] && { ! command -v node >/dev/null || ! command -v npm >/dev/null; }; then
  missing+=(nodejs npm)
fi

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all ${#packages[@]} packages present"
else
  echo "setup: installing ${missing[*]}"
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "setup: done"
fi
[[ $build_only -eq 1 ]] && exit 0

# kubectl renders the manifests (`kubectl kustomize`). Not installed from Debian: its
# kubernetes-client is far older than the clusters offkey targets and clashes with a
# kubectl installed otherwise.
if ! command -v kubectl >/dev/null; then
  echo "setup: kubectl is missing: install kubectl 1.27 or newer (it must have" \
       "'kubectl kustomize') and put it on PATH; deploy/k8s's test needs it" >&2
  exit 1
fi

# The manifest checks' npm packages (kubernetes-models, js-yaml), exactly as the
# committed lockfile says, into deploy/k8s/test/node_modules (git- and Bazel-ignored).
# Reinstalled only when the lockfile changes.
k8s_test=deploy/k8s/test
cd "$(dirname "$0")/.."
lock_hash=$(sha256sum "$k8s_test/package-lock.json" | cut -d' ' -f1)
stamp="$k8s_test/node_modules/.offkey-lock-sha256"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$lock_hash" ]]; then
  echo "setup: npm ci in $k8s_test"
  (cd "$k8s_test" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_hash" > "$stamp"
fi
