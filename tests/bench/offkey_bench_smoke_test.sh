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

# offkeyd as its own process and the p11-kit peer: both sides' CPU per operation, the
# p11-kit row and the peers summary.
p11kit_client=$(compgen -G '/usr/lib/*/pkcs11/p11-kit-client.so' | head -1)
status=0
out=$("$bench" --op=sign --key=p256 --duration=0.3 --concurrency=2 --half_load=false \
  --offkeyd="$TEST_SRCDIR/offkey/service/offkeyd" --p11kit_client="$p11kit_client") ||
  status=$?
echo "$out"
if ((status != 0)); then
  echo "offkey-bench --offkeyd --p11kit_client exited with status $status" >&2
  exit 1
fi
echo "$out" | grep -q "offkeyd as a separate process"
echo "$out" | grep -q "server CPU us/op *client CPU us/op"
# A row's last two columns: server and client CPU us/op.
cpu() { echo "$out" | awk -v p="$1" 'index($0, p) == 3 { print $(NF - 1), $NF; exit }'; }
[[ $(cpu "bare PKCS#11" | awk '{ print $1 }') == "-" ]]  # No server process.
cpu "bare PKCS#11" | awk '{ exit !($2 > 0) }'
for path in "PKCS#11 via p11-kit server" "offkeyd (gRPC, mTLS)" "offkeyd stream" \
  "RPC alone (GetCertificate)"; do
  cpu "$path" | awk '{ exit !($1 > 0 && $2 > 0) }' || {
    echo "no server or client CPU for '$path'" >&2
    exit 1
  }
done
echo "$out" | grep -qE "^peers \(closed loop, 2 threads, ops/s\): bare [1-9][0-9]* p11kit [1-9][0-9]* offkeyd-unary [1-9][0-9]* offkeyd-stream [1-9]"
echo "$out" | grep -qE "ratio offkeyd/p11kit: unary [0-9.]+ stream [0-9.]+"
! echo "$out" | grep -q "half load"
