#!/bin/bash
# Sets up a fresh Debian 12 machine, builds offkey, starts offkeyd in development mode
# (SoftHSM2 token, development CA and certificates, policy, demo keys under .offkey/dev)
# and runs the demo client against it over mutual TLS.
#
#   ./tools/quickstart.sh              demo, then offkeyd keeps serving until Ctrl-C
#   ./tools/quickstart.sh --demo-only  demo, then offkeyd stops
set -euo pipefail
cd "$(dirname "$0")/.."
keep_serving=1
[[ "${1:-}" == "--demo-only" || ! -t 0 ]] && keep_serving=0

./tools/setup.sh
bazel build //service:offkeyd //tools/demo:offkey_demo //client/cli:offkeyctl
state="$PWD/.offkey/dev"
mkdir -p "$state"
port_file="$state/offkeyd.port"
rm -f "$port_file" "$state/admin.port"

bazel-bin/service/offkeyd --dev --dev_state_dir="$state" --port_file="$port_file" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 1 300); do
  [[ -s "$port_file" ]] && break
  kill -0 $pid 2>/dev/null || { echo "quickstart: offkeyd exited; see above" >&2; exit 1; }
  sleep 0.2
done
[[ -s "$port_file" ]] || { echo "quickstart: offkeyd did not start within 60 s" >&2; exit 1; }
port=$(cat "$port_file")

echo
bazel-bin/tools/demo/offkey_demo --target="127.0.0.1:$port" --ca="$state/ca.pem" \
  --cert="$state/terminator.pem" --key="$state/terminator.key"

echo
if [[ -s "$state/admin.port" ]]; then
  echo "The keys as an operator sees them on the admin plane (offkeyctl --dev list):"
  bazel-bin/client/cli/offkeyctl --dev-dir="$state" list
else
  echo "This development state predates the admin plane; rm -rf .offkey to remake it."
fi

if [[ $keep_serving -eq 1 ]]; then
  echo
  echo "offkeyd keeps serving on 127.0.0.1:$port (credentials in $state); Ctrl-C stops it."
  wait $pid
fi
