#!/bin/bash
# Runs key_store_bench briefly and checks that it reports every row with a ratio.
set -euo pipefail
out=$("${TEST_SRCDIR}/offkey/hsm/pkcs11/key_store_bench" --seconds=0.1 --rounds=1)
echo "$out"
for op in rsa2048-sign-pkcs1-sha256 rsa2048-decrypt-raw p256-sign-ecdsa-sha256 \
  store-secret-hmac-sha256; do
  for threads in 1 2; do
    echo "$out" | grep -Eq "^$op +$threads +[0-9]+ +[0-9]+ +[0-9.]+ " ||
      { echo "missing row: $op at $threads threads" >&2; exit 1; }
  done
done
# One row alone, as handshake_bench asks for it; an unknown operation is refused.
one=$("${TEST_SRCDIR}/offkey/hsm/pkcs11/key_store_bench" --seconds=0.1 --rounds=1 \
  --only=rsa2048-decrypt-raw --threads=1)
[[ $(echo "$one" | grep -Ec '^(rsa|p256|store)') -eq 1 ]] ||
  { echo "--only/--threads printed other rows: $one" >&2; exit 1; }
if "${TEST_SRCDIR}/offkey/hsm/pkcs11/key_store_bench" --only=nope 2>/dev/null; then
  echo "an unknown --only was accepted" >&2
  exit 1
fi
echo "key_store_bench smoke test passed"
