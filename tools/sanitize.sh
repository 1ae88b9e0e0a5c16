#!/bin/bash
# Runs the suite under the sanitizers (.bazelrc: --config=asan, --config=tsan).
#
#   tools/sanitize.sh [--asan] [--tsan] [--tsan-grpc] [--asan-targets "LABELS"]
#
# --asan   AddressSanitizer + UndefinedBehaviorSanitizer (with LeakSanitizer) over the
#          whole suite, or over --asan-targets.
# --tsan   ThreadSanitizer over the code whose concurrency is offkey's own and does not
#          pass through gRPC (the first list below): locks, worker pool, token and
#          session pool with recovery under load and faults. Zero reports expected.
# --tsan-grpc  The same over code that runs on gRPC's threads (the second list: server
#          streams, liboffkey, the provider's ASYNC path, offkeyd's data plane). Debian's
#          gRPC, Abseil and protobuf are not instrumented, so TSan cannot see their
#          locks and reports hundreds of races inside them per test; read it for reports
#          whose both accesses are in offkey's files. Not part of CI.
# Neither flag: both. Exit status: non-zero if any test failed or a sanitizer reported.
set -euo pipefail
cd "$(dirname "$0")/.."

tsan_targets=(
  //base:mutex_test
  //service:worker_pool_test
  //hsm/pkcs11:pkcs11_key_store_test
  //hsm/pkcs11:recovery_under_load_test
  //hsm/pkcs11:token_removal_test
  //hsm/pkcs11:fault_injection_test
)
tsan_grpc_targets=(
  //service:pipeline_reactor_test
  //client:pipeline_stream_test
  //tests:offkey_client_test
  //tests:pipeline_test
  //tests:provider_async_test
)
asan_targets="//..."
asan=0
tsan=0
tsan_grpc=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --asan) asan=1; shift ;;
    --tsan) tsan=1; shift ;;
    --tsan-grpc) tsan_grpc=1; shift ;;
    --asan-targets) asan_targets="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "sanitize: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ $asan -eq 0 && $tsan -eq 0 && $tsan_grpc -eq 0 ]]; then asan=1; tsan=1; fi

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
if [[ $tsan_grpc -eq 1 ]]; then
  echo "sanitize: tsan over ${#tsan_grpc_targets[@]} targets on gRPC's threads (reports expected)"
  bazel test --config=tsan --keep_going "${tsan_grpc_targets[@]}" || rc=1
fi
exit $rc
