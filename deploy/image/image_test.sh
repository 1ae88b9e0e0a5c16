#!/bin/bash
# The container image, run as operators run it: read-only root filesystem, non-root
# (uid 65532), all state on a mounted volume, host networking on 127.0.0.1. offkeyd --dev
# starts inside; the host's offkeyctl talks to it over mutual TLS with the certificates
# offkeyd wrote to the volume (health, list, create, sign, the signature checked with
# OpenSSL); a second container reuses the volume; `podman stop` (SIGTERM) makes offkeyd,
# PID 1, exit 0 within seconds after a clean shutdown.
#
# The image is built before the test, not by it (deploy/image/build-image.sh; tools/test.sh
# runs it before `bazel test`). Runs outside the sandbox as root (rootful podman).
set -euo pipefail

image="${OFFKEY_IMAGE:-localhost/offkeyd:dev}"
offkeyctl="$TEST_SRCDIR/offkey/client/cli/offkeyctl"
export CONTAINERS_CONF="$TEST_SRCDIR/offkey/deploy/image/containers.conf"
logs="${TEST_UNDECLARED_OUTPUTS_DIR:-$TEST_TMPDIR}"  # kept for the suite's log scan
state="$TEST_TMPDIR/state"  # mounted at /var/lib/offkey
dev="$state/dev"            # offkeyd --dev's state directory, as the host sees it
stop_limit=5                # seconds from `podman stop` to exit

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }

# --- Preconditions: say exactly what is missing.
command -v podman >/dev/null ||
  fail "podman is not installed: run deploy/image/build-image.sh (it installs podman and" \
       "builds the image; tools/test.sh runs it before bazel test)"
[[ $(id -u) -eq 0 ]] || fail "needs root (rootful podman); the image is in root's storage"
podman image exists "$image" ||
  fail "image $image is missing: build it with deploy/image/build-image.sh" \
       "(tools/test.sh does so before bazel test)"
echo "image: $image $(podman image inspect --format \
  '{{index .Labels "org.opencontainers.image.version"}} {{.Id}}' "$image")"

mkdir -p "$state"
chown 65532:65532 "$state"
chmod 0700 "$state"

cid=""
save_logs() {  # save_logs NAME: the container's output, for the record and the log scan
  [[ -n "$cid" ]] && podman logs "$cid" >"$logs/$1" 2>&1
}
cleanup() {  # by container id, always
  if [[ -n "$cid" ]]; then
    save_logs container-at-exit.log || true
    podman rm -f -t 0 "$cid" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

start() {  # start: runs the image on the volume; waits until offkeyd serves
  rm -f "$dev/offkeyd.port" "$dev/admin.port"
  cid=$(podman run -d --pull=never --network=host \
    --read-only --read-only-tmpfs=false \
    --cap-drop=all --security-opt=no-new-privileges \
    -v "$state:/var/lib/offkey" \
    "$image" --dev --dev_state_dir=/var/lib/offkey/dev \
    --listen=127.0.0.1:0 --admin_listen=127.0.0.1:0 --metrics_address=127.0.0.1:0)
  echo "container $cid"
  # Ready once offkeyd wrote both port files (it does so only once serving); poll them
  # and the container, give up after 120 s.
  local deadline=$((SECONDS + 120))
  until [[ -s "$dev/offkeyd.port" && -s "$dev/admin.port" ]]; do
    if [[ "$(podman inspect --format '{{.State.Running}}' "$cid")" != true ]]; then
      podman logs "$cid" >&2 || true
      fail "the container exited before serving (status" \
           "$(podman inspect --format '{{.State.ExitCode}}' "$cid"))"
    fi
    [[ $SECONDS -lt $deadline ]] || { podman logs "$cid" >&2; fail "not serving after 120 s"; }
    sleep 0.2
  done
  echo "serving: data plane 127.0.0.1:$(cat "$dev/offkeyd.port")," \
       "admin plane 127.0.0.1:$(cat "$dev/admin.port")"
}

stop() {  # stop LOG: podman stop (SIGTERM); exit status 0 within $stop_limit seconds
  local t0 t1 ms rc
  t0=$(date +%s%N)
  podman stop -t 30 "$cid" >/dev/null
  t1=$(date +%s%N)
  ms=$(((t1 - t0) / 1000000))
  rc=$(podman inspect --format '{{.State.ExitCode}}' "$cid")
  save_logs "$1"
  echo "podman stop: exit status $rc after $ms ms"
  [[ "$rc" -eq 0 ]] || { cat "$logs/$1" >&2; fail "offkeyd exited with $rc on SIGTERM"; }
  [[ $ms -lt $((stop_limit * 1000)) ]] || fail "offkeyd took $ms ms to stop (limit ${stop_limit} s)"
  grep -q "offkeyd: SIGTERM received" "$logs/$1" || fail "no 'SIGTERM received' in the log"
  grep -q "offkeyd: stopped" "$logs/$1" || fail "no 'offkeyd: stopped' in the log"
  # A clean shutdown removes the port files it wrote.
  [[ ! -e "$dev/offkeyd.port" && ! -e "$dev/admin.port" ]] || fail "port files left behind"
  podman rm "$cid" >/dev/null
  cid=""
}

unhex() { /usr/bin/python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read()))'; }

ctl() { "$offkeyctl" --dev-dir="$dev" --timeout=20 "$@"; }

# shellcheck source=base/testing/secret_ledger.sh
source "$TEST_SRCDIR/offkey/base/testing/secret_ledger.sh"

# --- First start: offkeyd makes the token, CA, certificates and keys on the volume.
step "first start"
start
record_dev_state_secrets "$dev"

step "how it runs: non-root PID 1, read-only root filesystem"
host_pid=$(podman inspect --format '{{.State.Pid}}' "$cid")
[[ "$(cat "/proc/$host_pid/comm")" == offkeyd ]] || fail "the container's process is not offkeyd"
nspid=$(awk '/^NSpid:/ {print $NF}' "/proc/$host_pid/status")
[[ "$nspid" == 1 ]] || fail "offkeyd is PID $nspid in the container, not 1"
read -r _ ruid euid _ _ < <(grep '^Uid:' "/proc/$host_pid/status")
read -r _ rgid egid _ _ < <(grep '^Gid:' "/proc/$host_pid/status")
[[ "$ruid $euid $rgid $egid" == "65532 65532 65532 65532" ]] ||
  fail "offkeyd runs as uid $ruid/$euid gid $rgid/$egid, not 65532"
[[ "$(podman image inspect --format '{{.Config.User}}' "$image")" == 65532:65532 ]] ||
  fail "the image's USER is not 65532:65532"
[[ "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$cid")" == true ]] ||
  fail "the root filesystem is not read-only"
# Even root in the container cannot write to the image's filesystem.
if out=$(podman exec --user 0 "$cid" /usr/bin/touch /etc/offkey-probe 2>&1); then
  fail "root in the container wrote /etc/offkey-probe"
fi
[[ "$out" == *"Read-only file system"* ]] || fail "unexpected error writing /etc: $out"
echo "pid 1 = offkeyd, uid/gid 65532, read-only root: $out"

step "offkeyctl from the host over mutual TLS"
ctl health | tee "$logs/health.txt"
[[ $(grep -c SERVING "$logs/health.txt") -eq 2 ]] || fail "both planes should be SERVING"
ctl list
ctl list -o name >"$logs/list1.txt"
for key in dev-rsa2048 dev-p256 dev-ed25519; do
  grep -qx "$key" "$logs/list1.txt" || fail "development key $key not listed"
done
ctl create image-test --algorithm ec-p256 --label suite=image | tee "$logs/create.txt"
[[ "$(ctl list -o name)" == *image-test* ]] || fail "created key not listed"
# A TLS 1.3 server CertificateVerify signature, as a terminator asks for it, checked
# with OpenSSL against the key's public key.
hash=$(openssl rand -hex 32)
ctl sign image-test --tls13-transcript-hash "$hash" >"$TEST_TMPDIR/sig.hex"
unhex <"$TEST_TMPDIR/sig.hex" >"$TEST_TMPDIR/sig.der"
ctl show image-test -o json | /usr/bin/python3 -c \
  'import json, sys; print(json.load(sys.stdin)["key"]["public_key_pem"], end="")' \
  >"$TEST_TMPDIR/image-test.pub.pem"
{
  printf '%64s' ''
  printf 'TLS 1.3, server CertificateVerify\0'
  unhex <<<"$hash"
} >"$TEST_TMPDIR/cv.bin"
openssl dgst -sha256 -verify "$TEST_TMPDIR/image-test.pub.pem" \
  -signature "$TEST_TMPDIR/sig.der" "$TEST_TMPDIR/cv.bin" || fail "signature does not verify"

step "nothing written outside the volume"
# Podman itself makes /etc/hosts, /etc/hostname and /etc/resolv.conf mount points before
# the process starts (a container running only `sleep` shows the same "C /etc"); anything
# else would be offkeyd's.
diff_out=$(podman diff "$cid" |
  grep -vxE 'C /etc|A /etc/(hosts|hostname|resolv\.conf)|C /run|A /run/\.containerenv' || true)
[[ -z "$diff_out" ]] || fail "the container changed its filesystem: $diff_out"
for f in config.textproto softhsm2.conf user.pin ca.pem server.pem terminator.pem admin.pem; do
  [[ -s "$dev/$f" ]] || fail "$f is not on the volume"
done
[[ -n "$(ls -A "$dev/tokens")" ]] || fail "the SoftHSM2 token is not on the volume"

step "SIGTERM"
stop first.log
grep -q "made 3 development keys" "$logs/first.log" || fail "first start made no keys"

# --- Second start on the same volume: everything is reused, the new key is still there.
step "second start on the same volume"
start
ctl list -o name | tee "$logs/list2.txt"
grep -qx image-test "$logs/list2.txt" || fail "the key did not survive on the volume"
ctl sign image-test --tls13-transcript-hash "$hash" >/dev/null
stop second.log
if grep -q "made .* development keys" "$logs/second.log"; then
  fail "the second start did not reuse the development state"
fi

# No PIN in offkeyd's output (tools/logscan.py checks every form of every recorded secret
# across the suite; this is the quick local check).
for pin in user so; do
  if grep -qF "$(cat "$dev/$pin.pin")" "$logs/first.log" "$logs/second.log"; then
    fail "the $pin PIN appears in offkeyd's log"
  fi
done
echo "PASS"
