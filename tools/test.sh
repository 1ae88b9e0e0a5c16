#!/bin/bash
# Runs the whole test suite: installs what is missing, then `bazel test //...`.
# Then scans every test log and output for the secrets the tests recorded
# (tools/logscan.py) and, on a whole-suite run, fuzzes each libFuzzer target briefly
# (tools/fuzz.sh, OFFKEY_CI_FUZZ_SECONDS each, default 20; 0 skips) and soaks offkeyd
# (tools/soak.sh for OFFKEY_CI_SOAK_MINUTES, default 3; 0 skips) and runs ThreadSanitizer
# over the concurrent code (tools/sanitize.sh --tsan; OFFKEY_CI_TSAN=0 skips). Ends with
# "N passed, N failed", counting test cases from Bazel's test.xml reports plus the scan,
# the fuzzing, the soak and the TSan run.
# Extra arguments go to `bazel test` (e.g. a target pattern instead of //...).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

./tools/setup.sh || exit 1

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(//...)

# The container images: //deploy/image:image_test, //deploy/terminator:terminator_test
# and //deploy/k8s:kube_play_test run them but do not build them, so build them here
# (cached layers make an unchanged tree quick) when such a test is selected. They need
# root (rootful podman). If a build fails, the old tag goes, so the tests fail rather
# than pass on a stale image.
selected=$(bazel query "tests(set(${targets[*]}))" 2>/dev/null)
selects() {  # selects LABEL...: is any of them among the selected tests?
  local label
  for label in "$@"; do grep -qx -- "$label" <<<"$selected" && return 0; done
  return 1
}

# offkeyd's image (deploy/image/build-image.sh), which also makes the Debian base image
# the terminator image builds on.
if selects //deploy/image:image_test //deploy/terminator:terminator_test \
   //deploy/k8s:kube_play_test; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "test: not root: the container image is not built; //deploy/image:image_test," \
         "terminator_test and kube_play_test will fail (run deploy/image/build-image.sh" \
         "as root first)" >&2
  elif ! ./deploy/image/build-image.sh; then
    echo "test: building the container image failed; the tests that run it will fail" >&2
    podman rmi --ignore localhost/offkeyd:dev >/dev/null 2>&1 || true
  fi
fi

# The nginx terminator image (deploy/terminator/build-image.sh: the packages, then the
# image on the base image made above).
if selects //deploy/terminator:terminator_test //deploy/k8s:kube_play_test; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "test: not root: the terminator image is not built;" \
         "//deploy/terminator:terminator_test and //deploy/k8s:kube_play_test will fail" >&2
  elif ! ./deploy/terminator/build-image.sh; then
    echo "test: building the terminator image failed; terminator_test and" \
         "kube_play_test will fail" >&2
    podman rmi --ignore localhost/offkey-nginx-terminator:dev >/dev/null 2>&1 || true
  fi
fi

bazel test --keep_going "${targets[@]}"
rc=$?

# Scan every log and output of the tests just run for the secrets they recorded
# (tools/logscan.py); the scan counts as one more test case.
testlogs=$(bazel info bazel-testlogs 2>/dev/null)
labels=$(bazel query "tests(set(${targets[*]}))" 2>/dev/null)
require=()
[[ $# -eq 0 ]] && require=(--require-ledger)
# shellcheck disable=SC2086  # labels are one per word
/usr/bin/python3 tools/logscan.py "${require[@]}" "$testlogs" $labels
scan_rc=$?
[[ $scan_rc -eq 0 ]] || rc=1

# Every fuzz target for a short while on a copy of its seeds (the corpus replays already
# ran as ordinary tests): a crash fails the run and its input is kept for the report.
checks=("$scan_rc")  # Exit codes of the checks beyond the test cases, one case each.
fuzz_seconds=${OFFKEY_CI_FUZZ_SECONDS:-20}
if [[ $# -eq 0 && $fuzz_seconds -gt 0 ]]; then
  ./tools/fuzz.sh --seconds "$fuzz_seconds"
  fuzz_rc=$?
  checks+=("$fuzz_rc")
  [[ $fuzz_rc -eq 0 ]] || rc=1
fi

# offkeyd under a mixed load with admin changes and certificate reloads for a few
# minutes (the 30-minute run is for the record): errors, RSS growth after warm-up, or
# descriptors or threads that grow fail it. It runs here, after the tests, rather than as
# a Bazel test: it measures a process over wall-clock minutes, so it must not share the
# cores with other tests running in parallel, and a cached pass would skip it.
soak_minutes=${OFFKEY_CI_SOAK_MINUTES:-3}
if [[ $# -eq 0 && $soak_minutes -gt 0 ]]; then
  ./tools/soak.sh --minutes "$soak_minutes"
  soak_rc=$?
  checks+=("$soak_rc")
  [[ $soak_rc -eq 0 ]] || rc=1
fi

# ThreadSanitizer over offkey's own concurrent code (the list in tools/sanitize.sh). The
# AddressSanitizer run over the whole suite (tools/sanitize.sh --asan) is a second full
# build and a slower suite, which does not fit CI's time beside the rest; the fuzzing
# above runs ASan and UBSan over every parser.
if [[ $# -eq 0 && ${OFFKEY_CI_TSAN:-1} -eq 1 ]]; then
  ./tools/sanitize.sh --tsan
  tsan_rc=$?
  checks+=("$tsan_rc")
  [[ $tsan_rc -eq 0 ]] || rc=1
fi

# Count test cases (not just targets) from the JUnit reports of the tests just run; a
# test target without a report (it did not build or did not run) counts as one failure.
echo "$labels" |
/usr/bin/python3 -c '
import sys, pathlib, xml.etree.ElementTree as ET
logs = pathlib.Path(sys.argv[1])
passed = failed = 0
for label in sys.stdin.read().split():
    package, _, name = label.lstrip("/").partition(":")
    report = logs / package / name / "test.xml"
    try:
        root = ET.parse(report).getroot()
    except (OSError, ET.ParseError):
        print(f"no test report for {label}", file=sys.stderr)
        failed += 1
        continue
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.get("status", "run") == "run" and case.find("skipped") is None:
            passed += 1
for check_rc in sys.argv[2:]:
    if check_rc == "0":
        passed += 1
    else:
        failed += 1
print(f"{passed} passed, {failed} failed")
' "$testlogs" "${checks[@]}"
exit $rc
