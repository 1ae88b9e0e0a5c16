#!/bin/bash
# offkeyd against its peers on one SoftHSM2 token, for RSA-2048 (PSS) and P-256 (ECDSA)
# signatures and several thread counts, in one run:
#   bare     PKCS#11 called directly in the benchmark process;
#   p11kit   the same calls through `p11-kit server` over a Unix socket (the
#            do-it-yourself remote HSM);
#   unary    offkeyd (a separate process, --dev) over gRPC with mTLS, one call each;
#   stream   offkeyd's Pipeline stream (2 streams x 16 in flight).
#
#   tests/bench/peers.sh [--threads "1 2 4"] [--seconds 5]
#
# Each (key, threads) pair is one offkey-bench run (--offkeyd, --p11kit_client; see
# tests/bench/offkey_bench.cc). Prints ops/s of each path, the ratios offkeyd/p11kit,
# and the CPU microseconds each operation cost the serving process (p11-kit server or
# offkeyd) and the calling process (for bare, the caller's alone). Each run's full report is kept in the work directory
# named at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
threads="1 2 4" seconds=5
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    -h|--help) sed -n 2,16p "$0"; exit 0 ;;
    *) echo "peers: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

p11kit_client=$(compgen -G '/usr/lib/*/pkcs11/p11-kit-client.so' | head -1 || true)
if [[ -z "$p11kit_client" || ! -x /usr/bin/p11-kit ]]; then
  echo "peers: p11-kit-client.so or p11-kit missing (tools/setup.sh installs them)" >&2
  exit 1
fi
bazel build //service:offkeyd //tests/bench:offkey-bench 2>/dev/null
work=$(mktemp -d /tmp/offkey-peers.XXXXXX)

printf 'peers: closed loop, %s s per path, sign, offkeyd and p11-kit server as processes\n' \
  "$seconds"
printf '%-8s %3s %8s %8s %8s %8s %8s %8s | %-12s %-21s %-21s %-21s\n' key thr bare \
  p11kit unary stream "un/p11k" "st/p11k" "bare CPU us" "p11kit CPU us srv/cli" \
  "unary CPU us srv/cli" "stream CPU us srv/cli"
failed=0
for key in rsa2048 p256; do
  for t in $threads; do
    out="$work/$key-$t.txt"
    if ! bazel-bin/tests/bench/offkey-bench --offkeyd="$PWD/bazel-bin/service/offkeyd" \
      --p11kit_client="$p11kit_client" --op=sign --key="$key" --concurrency="$t" \
      --duration="$seconds" --half_load=false >"$out" 2>&1; then
      echo "peers: offkey-bench failed for $key with $t threads:" >&2
      cat "$out" >&2
      failed=1
      continue
    fi
    # The last two columns of a path's row: server and client CPU us/op.
    cpu() { awk -v p="$1" 'index($0, p) == 3 { printf "%s/%s", $(NF - 1), $NF; exit }' "$out"; }
    awk -v key="$key" -v t="$t" -v b="$(cpu 'bare PKCS#11')" -v p="$(cpu 'PKCS#11 via p11-kit')" \
      -v u="$(cpu 'offkeyd (gRPC, mTLS)')" -v s="$(cpu 'offkeyd stream')" '
      /^peers / { bare = $8; p11 = $10; un = $12; st = $14 }
      END {
        sub(/^-\//, "", b)  # The bare path has no server: its caller does the work.
        printf "%-8s %3d %8d %8d %8d %8d %8.3f %8.3f | %-12s %-21s %-21s %-21s\n", key, t,
          bare, p11, un, st, (p11 > 0 ? un / p11 : 0), (p11 > 0 ? st / p11 : 0), b, p, u, s
      }' "$out"
  done
done
echo "peers: full reports in $work"
exit "$failed"
