#!/bin/bash
# The terminator image against the offkeyd image, both as the Kubernetes example runs
# them (deploy/k8s/examples/nginx-terminator): offkeyd --dev in localhost/offkeyd:dev;
# the host's offkeyctl makes a key, has the development CA sign its certificate and
# writes its key reference; the terminator image (non-root 65532, read-only root, no
# capabilities) runs with the example's nginx.conf and openssl.cnf (addresses changed to
# 127.0.0.1 and ports chosen here) mounted where the example mounts them, and serves the
# example's page over TLS 1.3 and 1.2 with no private key. Host network, 127.0.0.1.
#
# The images are built before the test (deploy/image/build-image.sh,
# deploy/terminator/build-image.sh). Runs outside the sandbox as root (rootful podman).
set -euo pipefail

offkeyd_image="${OFFKEY_IMAGE:-localhost/offkeyd:dev}"
terminator_image="${OFFKEY_TERMINATOR_IMAGE:-localhost/offkey-nginx-terminator:dev}"
runfiles="$TEST_SRCDIR/offkey"
example="$runfiles/deploy/k8s/examples/nginx-terminator"
offkeyctl="$runfiles/client/cli/offkeyctl"
export CONTAINERS_CONF="$runfiles/deploy/image/containers.conf"
logs="${TEST_UNDECLARED_OUTPUTS_DIR:-$TEST_TMPDIR}"
state="$TEST_TMPDIR/state"  # offkeyd's volume, /var/lib/offkey
dev="$state/dev"
mounts="$TEST_TMPDIR/mounts"  # what the example's ConfigMaps and Secret hold

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $* ($SECONDS s)"; }

[[ $(id -u) -eq 0 ]] || fail "needs root (rootful podman)"
command -v podman >/dev/null || fail "podman is missing: run deploy/image/build-image.sh"
podman image exists "$offkeyd_image" ||
  fail "image $offkeyd_image is missing: build it with deploy/image/build-image.sh"
podman image exists "$terminator_image" ||
  fail "image $terminator_image is missing: build it with deploy/terminator/build-image.sh"

offkeyd_cid="" nginx_cid=""
cleanup() {
  for c in "$nginx_cid" "$offkeyd_cid"; do
    [[ -n "$c" ]] || continue
    podman logs "$c" >"$logs/container-${c:0:12}.log" 2>&1 || true
    podman rm -f -t 0 "$c" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

# shellcheck source=base/testing/ports.sh
source "$runfiles/base/testing/ports.sh"
{ read -r data_port; read -r admin_port; read -r metrics_port; read -r https_port
  read -r health_port; } < <(free_ports 5)

step "offkeyd (image $offkeyd_image, development mode)"
mkdir -p "$state"
chown 65532:65532 "$state"
chmod 0700 "$state"
offkeyd_cid=$(podman run -d --pull=never --network=host --read-only \
  --cap-drop=all --security-opt=no-new-privileges -v "$state:/var/lib/offkey" \
  "$offkeyd_image" --dev --dev_state_dir=/var/lib/offkey/dev \
  --listen="127.0.0.1:$data_port" --admin_listen="127.0.0.1:$admin_port" \
  --metrics_address="127.0.0.1:$metrics_port")
deadline=$((SECONDS + 120))
until [[ -s "$dev/offkeyd.port" && -s "$dev/admin.port" ]]; do
  [[ "$(podman inspect --format '{{.State.Running}}' "$offkeyd_cid")" == true ]] ||
    { podman logs "$offkeyd_cid" >&2; fail "offkeyd exited"; }
  [[ $SECONDS -lt $deadline ]] || fail "offkeyd not serving after 120 s"
  sleep 0.2
done
[[ "$(cat "$dev/offkeyd.port")" == "$data_port" ]] || fail "offkeyd is not on port $data_port"
ctl() { "$offkeyctl" --dev-dir="$dev" --timeout=20 "$@"; }
ctl health
# The PINs and keys of the development state, for the suite's log scan.
# shellcheck source=base/testing/secret_ledger.sh
source "$runfiles/base/testing/secret_ledger.sh"
record_dev_state_secrets "$dev"

step "key, certificate and key reference for www.example.com"
mkdir -p "$mounts/terminator" "$mounts/keyref" "$mounts/openssl" "$mounts/tls"
ctl create www --algorithm ec-p256 --label tier=edge
ctl csr www --subject CN=www.example.com --dns www.example.com --out "$TEST_TMPDIR/www.csr"
openssl x509 -req -in "$TEST_TMPDIR/www.csr" -CA "$dev/ca.pem" -CAkey "$dev/ca.key" \
  -days 2 -copy_extensions copy -out "$TEST_TMPDIR/www.crt" 2>/dev/null
ctl attach-cert www --chain "$TEST_TMPDIR/www.crt"
ctl ref www --out "$mounts/keyref/server.ref" --chain-out "$mounts/keyref/server.crt"

step "the example's configuration, on 127.0.0.1 and ports chosen here"
sed -e "s|listen 8443 ssl;|listen 127.0.0.1:$https_port ssl;|" \
  -e "s|listen 8080;|listen 127.0.0.1:$health_port;|" \
  "$example/nginx.conf" >"$mounts/terminator/nginx.conf"
grep -q "listen 127.0.0.1:$https_port ssl;" "$mounts/terminator/nginx.conf" ||
  fail "the example's nginx.conf no longer has 'listen 8443 ssl;'"
# offkeyd's development certificate names localhost.
sed -e "s|^endpoint = .*|endpoint = 127.0.0.1:$data_port|" \
  -e "s|^server_name = .*|server_name = localhost|" \
  "$example/openssl.cnf" >"$mounts/openssl/openssl.cnf"
# The Secret offkey-client-tls: the terminator's identity from the development state.
cp "$dev/ca.pem" "$mounts/tls/ca.crt"
cp "$dev/terminator.pem" "$mounts/tls/tls.crt"
cp "$dev/terminator.key" "$mounts/tls/tls.key"
chown -R 65532:65532 "$mounts"
chmod 0440 "$mounts/tls"/*
if grep -rl "PRIVATE KEY" "$mounts/terminator" "$mounts/keyref" "$mounts/openssl"; then
  fail "a private key is in the terminator's configuration"
fi

step "the terminator (image $terminator_image)"
nginx_cid=$(podman run -d --pull=never --network=host --read-only \
  --user 65532:65532 --cap-drop=all --security-opt=no-new-privileges \
  -e OPENSSL_CONF=/etc/offkey/openssl/openssl.cnf --tmpfs /tmp:rw,size=64m \
  -v "$mounts/terminator:/etc/nginx/terminator:ro" \
  -v "$mounts/keyref:/etc/nginx/offkey:ro" \
  -v "$mounts/openssl:/etc/offkey/openssl:ro" \
  -v "$mounts/tls:/etc/offkey/tls:ro" \
  "$terminator_image")
deadline=$((SECONDS + 30))
until (exec 3<>"/dev/tcp/127.0.0.1/$https_port") 2>/dev/null; do
  [[ "$(podman inspect --format '{{.State.Running}}' "$nginx_cid")" == true ]] ||
    { podman logs "$nginx_cid" >&2; fail "the terminator exited"; }
  [[ $SECONDS -lt $deadline ]] || { podman logs "$nginx_cid" >&2; fail "not listening"; }
  sleep 0.1
done
host_pid=$(podman inspect --format '{{.State.Pid}}' "$nginx_cid")
read -r _ ruid euid _ < <(grep '^Uid:' "/proc/$host_pid/status")
[[ "$ruid $euid" == "65532 65532" ]] || fail "nginx runs as uid $ruid/$euid, not 65532"

for v in 1.3 1.2; do
  curl -sS -v "--tlsv$v" --tls-max "$v" --cacert "$dev/ca.pem" \
    --resolve "www.example.com:$https_port:127.0.0.1" "https://www.example.com:$https_port/" \
    >"$logs/tls$v.body" 2>"$logs/tls$v.err" || { cat "$logs/tls$v.err" >&2; fail "TLS $v"; }
  grep -q "SSL connection using TLSv$v " "$logs/tls$v.err" || fail "not TLS $v"
  [[ "$(cat "$logs/tls$v.body")" == "served by a terminator that holds no private key" ]] ||
    fail "TLS $v page: $(cat "$logs/tls$v.body")"
  echo "TLS $v: $(grep -o 'SSL connection using .*' "$logs/tls$v.err"): $(cat "$logs/tls$v.body")"
done
[[ "$(curl -sS "http://127.0.0.1:$health_port/healthz")" == ok ]] || fail "liveness endpoint"

step "without offkeyd there is no handshake"
podman stop -t 10 "$offkeyd_cid" >/dev/null
if curl -sS --tlsv1.3 --cacert "$dev/ca.pem" --max-time 20 \
  --resolve "www.example.com:$https_port:127.0.0.1" "https://www.example.com:$https_port/" \
  >/dev/null 2>"$logs/after-stop.err"; then
  fail "a handshake succeeded with offkeyd stopped"
fi
echo "handshake refused: $(cat "$logs/after-stop.err")"
echo "PASS ($SECONDS s)"
