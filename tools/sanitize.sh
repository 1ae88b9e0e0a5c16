#!/bin/bash
# Runs the suite under the sanitizers (.bazelrc: --config=asan, --config=tsan).
#
#   tools/sanitize.sh [--asan] [--tsan] [--asan-targets "LABELS"]
#
# --asan   AddressSanitizer + UndefinedBehaviorSanitizer (with LeakSanitizer) over the
#          whole suite, or over --asan-targets.
# --tsan   ThreadSanitizer over the code whose concurrency is offkey's own (the list
#          below): worker pool, locks, token and session pool with recovery under load,
#          server streams, liboffkey and its stream, the provider's ASYNC path, offkeyd's
#          data plane. Debian's gRPC, Abseil and OpenSSL are not instrumented, so what
#          happens inside them is unseen; offkey's own locks are offkey::Mutex
#          (base/mutex.h), which TSan does see.
# Neither flag: both. Exit status: non-zero if any test failed or a sanitizer reported.
set -euo pipefail
cd "$(dirname "$0")/.."

tsan_targets=(
  //base:mutex_test
  //service:worker_pool_test
  //service:pipeline_reactor_test
  //hsm/pkcs11:pkcs11_key_store_test
  //hsm/pkcs11:recovery_under_load_test
  //hsm/pkcs11:token_removal_test
  //hsm/pkcs11:fault_injection_test
  //client:pipeline_stream_test
  //tests:offkey_client_test
  //tests:pipeline_test
  //tests:provider_async_test
)
asan_targets="//..."
asan=0
tsan=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --asan) asan=1; shift ;;
    --tsan) tsan=1; shift ;;
    --asan-targets) asan_targets="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "sanitize: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ $asan -eq 0 && $tsan -eq 0 ]]; then asan=1; tsan=1; fi

rc=0
if [[ $asan -eq 1 ]]; then
  echo "sanitize: asan over $asan_targets"
  # shellcheck disable=SC2086  # A list of labels.
  bazel test --config=asan --keep_going $asan_targets || rc=1
fi
if [[ $tsan -eq 1 ]]; then
  echo "sanitize: tsan over ${#tsan_targets[@]} targets"
  bazel test --config=tsan --keep_going "${tsan_targets[@]}" || rc=1
fi
exit $rc
