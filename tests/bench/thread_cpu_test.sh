#!/bin/bash
# thread_cpu.py against a real process tree: a named busy thread, a named thread that
# spins and exits, an idle named thread and a busy child process must each show up with
# the CPU they burned between the snapshots (and the idle one with none).
set -euo pipefail
tool="$TEST_SRCDIR/offkey/tests/bench/thread_cpu.py"
work="$TEST_TMPDIR/thread_cpu"
rm -rf "$work"
mkdir -p "$work"

# Each busy part waits for "go", burns a set amount of its own CPU time, then reports.
cat >"$work/busy.py" <<'PY'
import os, sys, threading, time
work = sys.argv[1]
def name(comm):
    with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as f:
        f.write(comm)
def burn(seconds, done):
    while not os.path.exists(f"{work}/go"):
        time.sleep(0.01)
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass
    open(f"{work}/{done}", "w").close()
if os.fork() == 0:
    name("bench-child")
    burn(0.2, "child.done")
    time.sleep(600)
def spin():
    name("bench-spin")
    burn(0.4, "spin.done")
    time.sleep(600)
def gone():
    name("bench-gone")
    burn(0.2, "gone.done")
def idle():
    name("bench-idle")
    time.sleep(600)
for target in (spin, gone, idle):
    threading.Thread(target=target, daemon=True).start()
open(f"{work}/ready", "w").close()
time.sleep(600)
PY
/usr/bin/python3 "$work/busy.py" "$work" &
pid=$!
trap 'kill -- $(pgrep -P $pid) $pid 2>/dev/null || true' EXIT
wait_for() {
  for _ in $(seq 1 500); do [[ -e "$work/$1" ]] && return 0; sleep 0.02; done
  echo "busy.py did not write $1" >&2
  exit 1
}
wait_for ready
/usr/bin/python3 "$tool" snapshot "$work/before.json" "busy=$pid"
touch "$work/go"
wait_for spin.done
wait_for gone.done
wait_for child.done
/usr/bin/python3 "$tool" snapshot "$work/after.json" "busy=$pid"
report=$(/usr/bin/python3 "$tool" report "$work/before.json" "$work/after.json" --ops 2)
echo "$report"

# CPU ms per op of one thread name in the report ("name 123.456"), 0 if absent.
ms() { echo "$report" | grep -oE "(: |, )$1 [0-9.]+" | awk '{ print $NF }' | grep . || echo 0; }
check() {  # check WHAT VALUE LOW HIGH
  if ! awk -v v="$2" -v lo="$3" -v hi="$4" 'BEGIN { exit !(v >= lo && v <= hi) }'; then
    echo "FAIL: $1 is $2 ms/op, expected $3..$4" >&2
    exit 1
  fi
}
# Clock ticks are 10 ms; each burn is exact in thread CPU time, halved by --ops 2.
check bench-spin "$(ms bench-spin)" 185 225
check bench-child "$(ms bench-child)" 85 125
check "exited threads" "$(ms '\(exited\)')" 85 125
check bench-idle "$(ms bench-idle)" 0 0
total=$(/usr/bin/python3 "$tool" total "$work/before.json" "$work/after.json" --ops 2)
check total "$total" 370 460
# Two rounds of the same pair count twice the CPU over twice the operations.
twice=$(/usr/bin/python3 "$tool" total "$work/before.json" "$work/after.json" \
  "$work/before.json" "$work/after.json" --ops 4)
[[ "$twice" == "$total" ]] || { echo "FAIL: two rounds give $twice, not $total" >&2; exit 1; }
echo "$report" | grep -q "busy .* $total CPU ms/op" || {
  echo "FAIL: total $total is not the report's group total" >&2
  exit 1
}
# Only the child's main thread worked; the parent's only waited and is left out.
echo "$report" | grep -qE "main threads off-CPU [0-9.]+ ms/op over 1$" || {
  echo "FAIL: no off-CPU figure for the one main thread that worked" >&2
  exit 1
}
# The role line sums thread names by what they do: the exited threads' time is theirs.
echo "$report" | grep -qE "by role: .*exited $(ms '\(exited\)')" || {
  echo "FAIL: no role line with the exited threads' time" >&2
  exit 1
}
echo PASS
