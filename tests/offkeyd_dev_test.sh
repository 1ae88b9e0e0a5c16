#!/bin/bash
# The offkeyd binary in development mode: first start makes the token, PKI, policy and
# demo keys; the demo client succeeds over mutual TLS; a second start reuses everything;
# SIGTERM stops it with exit status 0.
set -euo pipefail
offkeyd="$TEST_SRCDIR/offkey/service/offkeyd"
demo="$TEST_SRCDIR/offkey/tools/demo/offkey_demo"
state="$TEST_TMPDIR/dev"
logs="${TEST_UNDECLARED_OUTPUTS_DIR:-$TEST_TMPDIR}"  # kept for the suite's log scan

# Under --config=asan: ASan's slow unwinder, so that SoftHSM2's leaks through libcrypto
# show its frames and are suppressed (hsm/pkcs11/testing/module_leaks.cc); too slow for
# tests under load, right for this one. Other builds ignore ASAN_OPTIONS.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"

# shellcheck source=base/testing/secret_ledger.sh
source "$TEST_SRCDIR/offkey/base/testing/secret_ledger.sh"

start() {  # start LOG: runs offkeyd on a free loopback port, waits until it serves
  rm -f "$state.port"
  "$offkeyd" --dev --dev_state_dir="$state" --listen=127.0.0.1:0 \
    --metrics_address=127.0.0.1:0 --admin_listen=127.0.0.1:0 --port_file="$state.port" 2>"$1" &
  pid=$!
  for _ in $(seq 1 300); do
    [[ -s "$state.port" ]] && return 0
    kill -0 $pid 2>/dev/null || { cat "$1"; echo "offkeyd exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "offkeyd did not start" >&2
  exit 1
}

stop() {  # stop: SIGTERM, expect exit status 0
  kill -TERM $pid
  local rc=0
  wait $pid || rc=$?
  [[ $rc -eq 0 ]] || { echo "offkeyd exited with $rc after SIGTERM" >&2; exit 1; }
}

demo() {
  "$demo" --target="127.0.0.1:$(cat "$state.port")" --ca="$state/ca.pem" \
    --cert="$state/terminator.pem" --key="$state/terminator.key"
}

start "$logs/first.log"
grep -q "made 3 development keys" "$logs/first.log"
grep -q "spiffe://offkey.dev/terminator" "$logs/first.log"  # how to connect
record_dev_state_secrets "$state"
demo | tee "$logs/demo1.txt"
grep -q "demo passed" "$logs/demo1.txt"
stop

start "$logs/second.log"
if grep -q "made .* development keys" "$logs/second.log"; then
  echo "second start did not reuse the development state" >&2
  exit 1
fi
demo | grep -q "demo passed"
# Key ids survive the restart: the same keys are listed.
diff <(grep '^key ' "$logs/demo1.txt") <(demo | grep '^key ')
stop
# No secret lands in offkeyd's output (tools/logscan.py checks every form of every
# recorded secret across the suite; this is the quick local check).
for pin in "$state/user.pin" "$state/so.pin"; do
  if grep -qF "$(cat "$pin")" "$logs/first.log" "$logs/second.log"; then
    echo "a PIN appears in offkeyd's log" >&2
    exit 1
  fi
done
echo "PASS"
