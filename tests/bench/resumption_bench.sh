#!/bin/bash
# TLS handshakes per second with session resumption: nginx and haproxy, each keyless
# (offkey) and with the same key as a local file, at 0 %, 50 % and 90 % of handshakes
# resuming a session by ticket, in one run. A resumed handshake makes no private-key
# operation, so the keyless/local ratio should approach 1 as resumption grows.
#
#   tests/bench/resumption_bench.sh [--rates "0 50 90"] [handshake_bench.sh options]
#
# A mode of tests/bench/handshake_bench.sh (its --resumption; see there for the other
# options, SERVERS and KEYS): prints each measurement with the share the servers
# actually resumed, the keyless/local ratio per case and rate, and each mode's speed-up
# over the first rate. MODES defaults to "local keyless" here.
set -euo pipefail
rates="0 50 90"
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rates) rates="$2"; shift 2 ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
MODES="${MODES:-local keyless}" exec "$(dirname "$0")/handshake_bench.sh" \
  --resumption "$rates" "${args[@]}"
