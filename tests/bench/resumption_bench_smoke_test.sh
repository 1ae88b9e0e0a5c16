#!/bin/bash
# A very short resumption_bench.sh run from the built binaries: a row for every server,
# case, rate and mode, each with handshakes and the share of resumed handshakes near its
# rate (so tickets work in every server, keyless or not), and the ratio and speed-up
# tables.
set -euo pipefail
root="$TEST_SRCDIR/offkey"
status=0
out=$("$root/tests/bench/resumption_bench.sh" --binaries "$root" --seconds 1 --rounds 1 \
  --clients 2 2>&1) || status=$?
echo "$out"
fail() { echo "FAIL: $*" >&2; exit 1; }
((status == 0)) || fail "resumption_bench.sh exited with status $status"
for header in "round +case +mode +hs/s +CPU ms/hs +server ms/hs +resumed %" \
  "case +local hs/s +keyless hs/s +ratio" "speed-up over 0 % resumption" \
  "offkeyd private-key operations during the run: [1-9]"; do
  echo "$out" | grep -qE "$header" || fail "no line matching '$header'"
done
! echo "$out" | grep -q FAILED || fail "a measurement failed"

# Rows: round, case (two words), mode, rate, CPU, server CPU, resumed %.
rows=$(echo "$out" | awk '$1 == "1" && ($2 == "nginx" || $2 == "haproxy")')
ratios=$(echo "$out" | sed -n '/^case  *local hs\/s/,/^$/p')
for server in nginx haproxy; do
  for c in tls1.2-rsa tls1.3-p256; do
    for rate in 0 50 90; do
      for mode in local keyless; do
        name="$server $c-r$rate $mode"
        row=$(echo "$rows" | awk -v c="$name" '$2 " " $3 " " $4 == c')
        [[ -n "$row" ]] || fail "no row for $name"
        # At most one handshake per client thread more than the rate is full (the
        # first has no session to offer).
        echo "$row" | awk -v r="$rate" '{ exit !($5 > 0 && $6 > 0 && $7 > 0 &&
          $8 >= r - 15 && $8 <= r) }' ||
          fail "$name: no handshakes, no CPU or resumed share off $rate %: $row"
      done
      echo "$ratios" | awk -v c="$server $c-r$rate" '$1 " " $2 == c && $5 > 0 { f = 1 }
        END { exit !f }' || fail "no keyless/local ratio for $server $c-r$rate"
    done
  done
done
echo PASS
