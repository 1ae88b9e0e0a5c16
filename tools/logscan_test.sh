#!/bin/bash
# The log scan (tools/logscan.py) finds a recorded secret in every form a log could hold
# it, in loose logs and inside outputs.zip, and passes a clean tree.
set -euo pipefail
scan="$TEST_SRCDIR/offkey/tools/logscan.py"
root="$TEST_TMPDIR/testlogs"

# One test recorded two secrets in its zipped outputs; its own logs are clean.
make_tree() {
  rm -rf "$root"
  mkdir -p "$root/a/recorder/test.outputs" "$root/b/leaker" "$root/c/clean"
  /usr/bin/python3 - "$root" <<'PY'
import sys, zipfile
root = sys.argv[1]
with zipfile.ZipFile(f"{root}/a/recorder/test.outputs/outputs.zip", "w") as z:
    z.writestr("secrets.ledger",
               "premaster 0303" + "a1" * 46 + "\n" +
               "rsa.d " + "5c" * 3 + "".join(f"{i:02x}" for i in range(64)) + "\n")
    z.writestr("audit.jsonl", '{"operation":"decrypt-premaster","outcome":"OK"}\n')
PY
  echo "[ RUN ] fine" > "$root/a/recorder/test.log"
  echo "nothing to see, 0303 only" > "$root/c/clean/test.log"
  : > "$root/b/leaker/test.log"
}

expect_found() {  # <what> <file content> [file name]
  make_tree
  local file="$root/b/leaker/${3:-test.log}"
  mkdir -p "$(dirname "$file")"
  printf '%s' "$2" > "$file"
  set +e
  out=$(/usr/bin/python3 "$scan" "$root" 2>&1)
  rc=$?
  set -e
  if [[ $rc -ne 1 || "$out" != *"SECRET FOUND: $1"* ]]; then
    echo "FAIL: expected '$1' in: $2"; echo "$out"; exit 1
  fi
  echo "ok: $1"
}

premaster_hex="0303$(printf 'a1%.0s' $(seq 46))"
d_bytes=$(/usr/bin/python3 -c 'import sys; sys.stdout.write("5c"*3 + "".join(f"{i:02x}" for i in range(64)))')

expect_found "premaster (hex)" "key=x premaster=${premaster_hex}"
expect_found "premaster (hex)" "PREMASTER=${premaster_hex^^}"
# shellcheck disable=SC2001  # sed: a colon after every byte
expect_found "premaster (hex)" "bytes: $(echo "$premaster_hex" | sed 's/../&:/g')"
# A 12-byte slice from the middle is enough.
expect_found "rsa.d (hex)" "tail ${d_bytes:40:24} end"
# Base64 at each of the three alignments, standard and URL alphabets.
for skip in 0 1 2; do
  b64=$(/usr/bin/python3 -c "import base64,sys; print(base64.b64encode(bytes.fromhex('$d_bytes')[$skip:]).decode())")
  expect_found "rsa.d (base64)" "json {\"v\":\"$b64\"}"
  expect_found "rsa.d (base64)" "$(echo "$b64" | tr '+/' '-_')"
done
# Raw bytes, inside a zipped output of another test.
make_tree
/usr/bin/python3 - "$root" "$d_bytes" <<'PY'
import sys, zipfile
with zipfile.ZipFile(f"{sys.argv[1]}/b/leaker/outputs.zip", "w") as z:
    z.writestr("dump.bin", b"\x00\x01" + bytes.fromhex(sys.argv[2])[10:30] + b"\xff")
PY
set +e
out=$(/usr/bin/python3 "$scan" "$root" 2>&1); rc=$?
set -e
[[ $rc -eq 1 && "$out" == *"SECRET FOUND: rsa.d (raw) in "*"outputs.zip:dump.bin"* ]] || {
  echo "FAIL: raw bytes in a zipped output not found"; echo "$out"; exit 1; }
echo "ok: raw in outputs.zip"
# The marker is assembled so that secret scanners do not take this file for a key.
private="PRIV""ATE KEY"
expect_found "a PEM private key block" "-----BEGIN $private-----"$'\nMIGH\n'
expect_found "a PEM private key block" "-----BEGIN EC $private-----"$'\n' "test.outputs/offkeyd.log"

# Clean: the ledger itself, short fragments and other hex do not count; exit 0.
make_tree
echo "short ${premaster_hex:0:20} and deadbeefdeadbeefdeadbeefdeadbeef" > "$root/b/leaker/test.log"
out=$(/usr/bin/python3 "$scan" --require-ledger "$root")
[[ "$out" == *"scanned for 2 secrets from 1 ledgers: 0 found"* ]] || {
  echo "FAIL: clean tree: $out"; exit 1; }
echo "ok: clean tree passes ($out)"

# Labels limit the scan; no ledger with --require-ledger is an error.
expect_found "premaster (hex)" "$premaster_hex"
out=$(/usr/bin/python3 "$scan" "$root" //c:clean) || { echo "FAIL: label filter"; exit 1; }
rm -rf "$root/a"
set +e
/usr/bin/python3 "$scan" --require-ledger "$root" >/dev/null 2>&1; rc=$?
set -e
[[ $rc -eq 2 ]] || { echo "FAIL: missing ledger gave $rc"; exit 1; }
echo "ok: labels and --require-ledger"
echo "PASS"
