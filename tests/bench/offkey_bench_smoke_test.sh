#!/bin/bash
# Runs offkey-bench briefly for each operation and checks it reports both phases.
set -euo pipefail
bench="$TEST_SRCDIR/offkey/tests/bench/offkey-bench"
for args in "--op=sign --key=p256" "--op=decrypt --key=rsa2048"; do
  # shellcheck disable=SC2086
  status=0
  out=$("$bench" $args --duration=0.3 --concurrency=2) || status=$?
  echo "$out"
  if ((status != 0)); then
    echo "offkey-bench $args exited with status $status" >&2
    exit 1
  fi
  echo "$out" | grep -q "throughput ratio offkeyd/bare: [0-9]"
  echo "$out" | grep -q "p99 offkeyd - bare:"
  echo "$out" | grep -q "ceiling on offkeyd/bare from the RPC cost: [0-9]"
  echo "$out" | grep -q "ceiling from gRPC and mTLS alone: [0-9]"
  echo "$out" | grep -q "throughput ratio stream/bare: [0-9]"
  [[ $(echo "$out" | grep -c "offkeyd (gRPC, mTLS)") -eq 2 ]]
done
