#!/bin/bash
# Runs key_store_bench briefly and checks that it reports every row with a ratio.
set -euo pipefail
out=$("${TEST_SRCDIR}/offkey/hsm/pkcs11/key_store_bench" --seconds=0.1 --rounds=1)
echo "$out"
for op in rsa2048-sign-pkcs1-sha256 rsa2048-decrypt-raw p256-sign-ecdsa-sha256; do
  for threads in 1 2; do
    echo "$out" | grep -Eq "^$op +$threads +[0-9]+ +[0-9]+ +[0-9.]+ " ||
      { echo "missing row: $op at $threads threads" >&2; exit 1; }
  done
done
