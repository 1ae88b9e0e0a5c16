#!/bin/bash
# Builds the libFuzzer targets with --config=fuzz (clang-14, ASan, UBSan; .bazelrc) and
# runs each for a while on a scratch copy of its seed corpus, so the tree is not modified.
#   tools/fuzz.sh [--seconds N] [--out DIR] [target...]
# A target is a label (//client:key_reference_fuzz) or a bare name (key_reference_fuzz);
# none means every offkey_fuzz_test in the tree (tools/build/fuzz.bzl). Each run prints
# its executions per second and new corpus size; a crash's input is kept in DIR
# (default a fresh directory under /tmp) and the script exits 1 after the other targets
# have run. To keep a crash as a regression input, add it to the target's seed corpus:
# the ordinary test (bazel test //client:key_reference_fuzz) then replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
out=""
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || { echo "fuzz: --seconds wants a positive integer" >&2; exit 2; }

all=$(bazel query --noshow_progress 'attr(tags, "\bfuzz_target\b", kind(cc_binary, //...))' 2>/dev/null)
labels=()
if [[ ${#targets[@]} -eq 0 ]]; then
  for l in $all; do labels+=("${l%_bin}"); done
else
  for t in "${targets[@]}"; do
    match=""
    for l in $all; do
      base="${l%_bin}"
      if [[ "$t" == "$base" || "$t" == "${base##*:}" ]]; then match="$base"; fi
    done
    [[ -n "$match" ]] || { echo "fuzz: no fuzz target '$t' (have: $(echo $all | sed 's/_bin\b//g'))" >&2; exit 2; }
    labels+=("$match")
  done
fi

bins=()
for l in "${labels[@]}"; do bins+=("${l}_bin"); done
bazel build --config=fuzz "${bins[@]}"

[[ -n "$out" ]] || out=$(mktemp -d /tmp/offkey-fuzz.XXXXXX)
mkdir -p "$out/bin"
# Copies, so that another build (which moves bazel-bin) cannot change them mid-run.
for l in "${labels[@]}"; do
  pkg="${l#//}"; pkg="${pkg%%:*}"
  cp -f "bazel-bin/$pkg/${l##*:}_bin" "$out/bin/"
done
failed=0
for l in "${labels[@]}"; do
  pkg="${l#//}"; pkg="${pkg%%:*}"; name="${l##*:}"
  corpus="$out/$name/corpus"; crashes="$out/$name/crashes"
  rm -rf "$corpus"; mkdir -p "$corpus" "$crashes"
  for f in $(bazel query --noshow_progress "labels(srcs, ${l}_corpus)" 2>/dev/null); do
    f="${f#//}"; cp "${f%%:*}/${f#*:}" "$corpus/"
  done
  seeds=$(ls "$corpus" | wc -l)
  log="$out/$name/fuzz.log"
  echo "fuzz: $l for ${seconds}s ($seeds seeds), log $log"
  rc=0
  "$out/bin/${name}_bin" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix="$crashes/" "$corpus" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 \2/p' "$log")
  stats=$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9/a-zA-Z]*' "$log" | tail -1 || true)
  if [[ -n "$runs" ]]; then
    set -- $runs
    echo "fuzz: $name: $1 runs in $2 s, $(( $1 / ($2 > 0 ? $2 : 1) )) execs/s; $stats"
  fi
  if [[ $rc -ne 0 ]]; then
    failed=1
    echo "fuzz: $name FAILED (exit $rc); inputs in $crashes:" >&2
    ls "$crashes" >&2
    grep -m1 -A12 'ERROR: \|runtime error:\|deadly signal' "$log" >&2 || tail -20 "$log" >&2
  fi
done
exit $failed
