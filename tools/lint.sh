#!/bin/bash
# clang-format and clang-tidy over the project's C++ sources, and the house rules no
# tool knows (absl::Mutex is refused: base/mutex.h says why). Exit 1 on any finding.
# clang-tidy needs the generated protobuf headers: run after `bazel build //...`.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
mapfile -t files < <(git ls-files '*.cc' '*.h')
rc=0
if ! clang-format --dry-run -Werror "${files[@]}" 2>/dev/null; then
  echo "lint: clang-format wants changes (run: clang-format -i <file>)"
  rc=1
fi
if grep -nE 'absl::(Mutex|MutexLock|CondVar|ReaderMutexLock|WriterMutexLock)\b' \
    "${files[@]}" | grep -v '^base/mutex\.' | grep -vE '^[^:]+:[0-9]+: *//'; then
  echo "lint: use offkey::Mutex (base/mutex.h), not absl::Mutex, so --config=tsan sees the lock"
  rc=1
fi
flags=(-std=c++17 -I. -Ibazel-bin -Ibazel-bin/proto -Ibazel-bin/third_party/grpc_proto
       -I/usr/include/p11-kit-1)
for f in "${files[@]}"; do
  [[ "$f" == *.cc ]] || continue
  out=$(clang-tidy --quiet "$f" -- "${flags[@]}" 2>/dev/null | grep -E 'warning:|error:')
  if [[ -n "$out" ]]; then
    echo "$out"
    rc=1
  fi
done
[[ $rc -eq 0 ]] && echo "lint: clean (${#files[@]} files)"
exit $rc
