#!/bin/bash
# A very short handshake_bench.sh run over every server and mode (nginx with the provider,
# with OpenSC's engine on SoftHSM2 and over p11-kit; haproxy), from the built binaries:
# every table must print, every measurement must make handshakes and account server CPU,
# and the CPU split must name the threads.
set -euo pipefail
root="$TEST_SRCDIR/offkey"
status=0
out=$("$root/tests/bench/handshake_bench.sh" --binaries "$root" --seconds 1 --rounds 1 \
  --clients 2 --no-bound 2>&1) || status=$?
echo "$out"
fail() { echo "FAIL: $*" >&2; exit 1; }
((status == 0)) || fail "handshake_bench.sh exited with status $status"
for header in "round +case +mode +hs/s +CPU ms/hs +server ms/hs" \
  "case +local hs/s +keyless hs/s +ratio +HSM bound +engine hs/s +eng-p11k hs/s" \
  "server CPU per handshake" "CPU split per handshake" \
  "offkeyd private-key operations during the run: [1-9]"; do
  echo "$out" | grep -qE "$header" || fail "no line matching '$header'"
done
! echo "$out" | grep -q FAILED || fail "a measurement failed"

# Measurement rows: round, case (two words), mode, then rate, CPU and server CPU.
rows=$(echo "$out" | awk '$1 == "1" && ($2 == "nginx" || $2 == "haproxy")')
for c in "nginx tls1.2-rsa local" "nginx tls1.2-rsa keyless" "nginx tls1.3-p256 local" \
  "nginx tls1.3-p256 keyless" "nginx tls1.3-p256 engine" "nginx tls1.3-p256 engine-p11kit" \
  "nginx tls1.2-rsa engine" "nginx tls1.2-rsa engine-p11kit" \
  "haproxy tls1.2-rsa local" "haproxy tls1.2-rsa keyless" "haproxy tls1.3-p256 local" \
  "haproxy tls1.3-p256 keyless"; do
  row=$(echo "$rows" | awk -v c="$c" '$2 " " $3 " " $4 == c')
  [[ -n "$row" ]] || fail "no row for $c"
  # Only the engine may be unsupported, and only for TLS 1.2 RSA key exchange.
  if [[ $c == "nginx tls1.2-rsa engine"* && $(echo "$row" | awk '{ print $5 }') == unsupported ]]; then
    continue
  fi
  echo "$row" | awk '{ exit !($5 > 0 && $6 > 0 && $7 > 0) }' ||
    fail "$c: no handshakes or no CPU accounted: $row"
done

# The split names offkeyd's workers and the terminators' threads.
split=$(echo "$out" | sed -n '/^CPU split per handshake/,$p')
# (Operations run on offkey-worker threads, or on offkey-rpc when a worker is idle.)
echo "$split" | grep -qE "^ +offkeyd +[0-9.]+ CPU ms/hs: .*offkey-(worker|rpc)" ||
  fail "offkeyd's split has neither offkey-worker nor offkey-rpc threads"
echo "$split" | grep -qE "^ +nginx +[0-9.]+ CPU ms/hs: .*nginx" || fail "no nginx split"
echo "$split" | grep -qE "^ +haproxy +[0-9.]+ CPU ms/hs: .*haproxy" || fail "no haproxy split"
echo "$split" | grep -qE "^ +p11-kit +[0-9.]+ CPU ms/hs" || fail "no p11-kit server split"
echo PASS
