#!/bin/bash
# Sets up a fresh Debian 12 machine, builds offkey and runs the demo: a SoftHSM2 token
# under .offkey/demo, keys generated inside it, signatures verified with OpenSSL.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
bazel build //tools/demo:keystore_demo
bazel-bin/tools/demo/keystore_demo --state_dir="$PWD/.offkey/demo" "$@"
