#!/bin/bash
# The Kubernetes manifests themselves, played by podman: the dev overlay (offkeyd on a
# SoftHSM2 token on its PersistentVolumeClaim) and the nginx-terminator example, rendered
# with `kubectl kustomize`, translated by kube_play_translate.py (what podman 4.3 cannot
# express: Services, Secrets, probes, replicas; its docstring and ../README.md say how)
# and run with `podman kube play` in the images localhost/offkeyd:dev and
# localhost/offkey-nginx-terminator:dev. As deploy/README.md installs dev: a CA,
# certificates and PINs made with openssl become the Secrets; offkeyctl, as the operator,
# creates the key www in the token and writes the example's server.ref and server.crt.
# Then curl fetches the example's page through the terminator pod over TLS 1.3 and 1.2,
# whose private key is only in offkeyd's token; with offkeyd's pod stopped there is no
# handshake, and a new offkeyd pod on the same claim serves the same key again.
#
# The images are built before the test (deploy/image/build-image.sh,
# deploy/terminator/build-image.sh; tools/test.sh does). Runs outside the sandbox as root
# (rootful podman), pods in the host network on 127.0.0.1 and ports chosen here.
set -euo pipefail

offkeyd_image="${OFFKEY_IMAGE:-localhost/offkeyd:dev}"
terminator_image="${OFFKEY_TERMINATOR_IMAGE:-localhost/offkey-nginx-terminator:dev}"
runfiles="$TEST_SRCDIR/offkey"
# kustomize refuses files reached through runfiles symlinks: follow one home.
k8s=$(dirname "$(readlink -f "$runfiles/deploy/k8s/dev/kustomization.yaml")")/..
k8s=$(cd "$k8s" && pwd)
translate=(/usr/bin/python3 "$runfiles/deploy/k8s/test/kube_play_translate.py")
offkeyctl="$runfiles/client/cli/offkeyctl"
export CONTAINERS_CONF="$runfiles/deploy/image/containers.conf"
logs="${TEST_UNDECLARED_OUTPUTS_DIR:-$TEST_TMPDIR}"
work="$TEST_TMPDIR/kube"
pki="$work/pki"          # the operator's CA, certificates and PINs
secrets="$work/secrets"  # SECRET/KEY: what `kubectl create secret` would hold
# What kube play creates: a pod per Deployment (NAME-pod-0) and per init container
# (NAME-init-CONTAINER), and the claim's volume.
pods=(nginx-terminator-pod-0 offkeyd-pod-0 offkeyd-init-softhsm-init)
claim=softhsm-tokens
init_runs=0

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $* ($SECONDS s)"; }

[[ $(id -u) -eq 0 ]] || fail "needs root (rootful podman)"
for tool in podman kubectl curl openssl; do
  command -v "$tool" >/dev/null ||
    fail "$tool is missing (tools/setup.sh, deploy/image/build-image.sh)"
done
/usr/bin/python3 -c 'import yaml' || fail "python3-yaml is missing: run tools/setup.sh"
podman image exists "$offkeyd_image" ||
  fail "image $offkeyd_image is missing: build it with deploy/image/build-image.sh"
podman image exists "$terminator_image" ||
  fail "image $terminator_image is missing: build it with deploy/terminator/build-image.sh"

# remove_pod POD [LOG_SUFFIX]: saves each container's log, then removes the pod and the
# volumes its containers used (ConfigMaps, emptyDir, the image's VOLUME) but the claim's,
# by name.
remove_pod() {
  local c v volumes=()
  podman pod exists "$1" || return 0
  for c in $(podman ps -a --filter "pod=$1" --format '{{.Names}}'); do
    [[ "$c" == *-infra ]] || podman logs "$c" >"$logs/$c${2:-}.log" 2>&1 || true
    for v in $(podman inspect --format \
      '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}' "$c"); do
      [[ "$v" == "$claim" ]] || volumes+=("$v")
    done
  done
  podman pod rm -f -t 0 "$1" >/dev/null || true
  # Those podman did not remove with the pod. Not -f: that would also remove any other
  # container that uses the volume.
  for v in "${volumes[@]}"; do
    if podman volume exists "$v"; then podman volume rm "$v" >/dev/null || true; fi
  done
}
remove_played() {  # everything kube play made: the pods, then the claim's volume
  local pod
  for pod in "${pods[@]}"; do remove_pod "$pod" "${1:-}"; done
  if podman volume exists "$claim"; then podman volume rm "$claim" >/dev/null || true; fi
}
trap remove_played EXIT
remove_played .leftover  # of an interrupted run

# shellcheck source=base/testing/ports.sh
source "$runfiles/base/testing/ports.sh"
{ read -r grpc; read -r admin; read -r metrics; read -r https; read -r health; } \
  < <(free_ports 5)
offkeyd_ports=(--port "offkeyd:grpc=$grpc" --port "offkeyd:admin=$admin"
  --port "offkeyd:metrics=$metrics")

# wait_checks DIR POD: polls the startup and readiness probes that the translation took
# out of POD (DIR/checks.tsv) until each answers 200, while their containers run.
wait_checks() {
  local kind where url state deadline=$((SECONDS + 120))
  while IFS=$'\t' read -r kind where url; do
    [[ "$where" == "$2/"* && "$kind" != livenessProbe ]] || continue
    # -k: the kubelet does not verify a probe's certificate either.
    until curl -fsS -k --max-time 5 -o /dev/null "$url" 2>/dev/null; do
      state=$(podman inspect --format '{{.State.Status}}' "${where/\//-}")
      if [[ "$state" == exited || "$state" == stopped ]]; then
        podman pod logs "$2" >&2 || true
        fail "$where: $state"
      fi
      [[ $SECONDS -lt $deadline ]] || { podman pod logs "$2" >&2; fail "$where: $kind $url"; }
      sleep 0.2
    done
    echo "$where: $kind $url answers"
  done <"$1/checks.tsv"
}

# play DIR: podman kube play DIR/play.yaml with each ConfigMap in DIR/configmaps, after
# DIR/claims.yaml (if its volume does not exist yet) and after running each init
# container's pod in DIR/init to completion. The init pods' logs are in init_log.
play() {
  local cm init pod c status args=()
  if grep -q '^kind:' "$1/claims.yaml" && ! podman volume exists "$claim"; then
    podman kube play "$1/claims.yaml"
  fi
  for cm in "$1"/configmaps/*.yaml; do
    # podman keeps a ConfigMap as a volume of its name: drop a stale one.
    if podman volume exists "$(basename "$cm" .yaml)"; then
      podman volume rm "$(basename "$cm" .yaml)" >/dev/null
    fi
    args+=(--configmap "$cm")
  done
  init_log=""
  for init in "$1"/init/*.yaml; do
    [[ -e "$init" ]] || continue
    pod=$(basename "$init" .yaml)
    pod=${pod#*-}
    podman kube play "${args[@]}" "$init"
    c=$(podman ps -a --filter "pod=$pod" --format '{{.Names}}' | grep -v -- '-infra$')
    local deadline=$((SECONDS + 60))
    until [[ "$(podman inspect --format '{{.State.Status}}' "$c")" == exited ]]; do
      [[ $SECONDS -lt $deadline ]] || { podman logs "$c" >&2; fail "$c did not finish"; }
      sleep 0.2
    done
    init_log+=$(podman logs "$c" 2>&1)
    status=$(podman inspect --format '{{.State.ExitCode}}' "$c")
    init_runs=$((init_runs + 1))
    remove_pod "$pod" ".$init_runs"
    [[ "$status" -eq 0 ]] || { echo "$init_log" >&2; fail "$c exited with $status"; }
    echo "$c: $init_log"
  done
  podman kube play "${args[@]}" "$1/play.yaml"
}

# fetch VERSION: the example's page over TLS VERSION, verified against the CA.
fetch() {
  curl -sS -v "--tlsv$1" --tls-max "$1" --max-time 20 --cacert "$pki/ca.crt" \
    --resolve "www.example.com:$https:127.0.0.1" "https://www.example.com:$https/" \
    >"$logs/tls$1.body" 2>"$logs/tls$1.err"
}

step "the Secrets, as deploy/README.md makes them for dev"
# The terminator's identity: what the example's Certificate asks cert-manager for.
uri=$(kubectl kustomize "$k8s/examples/nginx-terminator" | /usr/bin/python3 -c '
import sys, yaml
print(*[u for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] == "Certificate"
        for u in d["spec"]["uris"]])')
[[ "$uri" == spiffe://* ]] || fail "no SPIFFE URI in the example's Certificate: '$uri'"
mkdir -p "$pki"
(
  cd "$pki" && umask 077
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=offkey test CA" -keyout ca.key -out ca.crt 2>/dev/null
  issue() {  # NAME COMMON-NAME EXTENSIONS
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
    printf '%s\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  }
  issue offkeyd offkeyd.offkey.svc "subjectAltName=DNS:offkeyd.offkey.svc,DNS:offkeyd.offkey.svc.cluster.local,DNS:offkeyd-headless.offkey.svc,DNS:offkeyd-headless.offkey.svc.cluster.local
extendedKeyUsage=serverAuth"
  issue offkeyctl offkeyctl "subjectAltName=URI:spiffe://cluster.local/ns/offkey-operator/sa/offkeyctl
extendedKeyUsage=clientAuth"
  issue nginx nginx-terminator.edge "subjectAltName=URI:$uri
extendedKeyUsage=clientAuth"
  openssl rand -hex 16 >pin
  openssl rand -hex 16 >so-pin
)
# shellcheck source=base/testing/secret_ledger.sh
source "$runfiles/base/testing/secret_ledger.sh"
tr -d '\n' <"$pki/pin" | record_secret "user PIN"
tr -d '\n' <"$pki/so-pin" | record_secret "so PIN"
for key in ca offkeyd offkeyctl nginx; do record_key_secret "$key" "$pki/$key.key"; done
mkdir -p "$secrets"/{offkeyd-tls,offkeyd-hsm-pin,offkey-client-tls}
cp "$pki/offkeyd.crt" "$secrets/offkeyd-tls/tls.crt"
cp "$pki/offkeyd.key" "$secrets/offkeyd-tls/tls.key"
cp "$pki/ca.crt" "$secrets/offkeyd-tls/ca.crt"
cp "$pki/pin" "$pki/so-pin" "$secrets/offkeyd-hsm-pin/"
cp "$pki/nginx.crt" "$secrets/offkey-client-tls/tls.crt"
cp "$pki/nginx.key" "$secrets/offkey-client-tls/tls.key"
cp "$pki/ca.crt" "$secrets/offkey-client-tls/ca.crt"

step "the dev overlay: render, translate, play"
kubectl kustomize "$k8s/dev" >"$work/dev.yaml"
"${translate[@]}" --out "$work/dev" --secrets "$secrets" --image "offkeyd=$offkeyd_image" \
  "${offkeyd_ports[@]}" "$work/dev.yaml"
cat "$work/dev/translation.txt"
play_dev() {
  play "$work/dev"
  wait_checks "$work/dev" offkeyd-pod-0
}
play_dev
[[ "$(podman inspect --format '{{.Config.User}}' offkeyd-pod-0-offkeyd)" == 65532* ]] ||
  fail "offkeyd does not run as 65532"
grep -q "token offkey created" <<<"$init_log" || fail "the init container made no token"

step "the operator (offkeyctl) creates www and its certificate"
ctl() {
  "$offkeyctl" --admin-endpoint "127.0.0.1:$admin" --endpoint "127.0.0.1:$grpc" \
    --tls-ca "$pki/ca.crt" --tls-cert "$pki/offkeyctl.crt" --tls-key "$pki/offkeyctl.key" \
    --server-name offkeyd.offkey.svc --timeout 20 "$@"
}
example="$work/example-src"  # the example with the operator's server.ref and server.crt
cp -r "$k8s/examples/nginx-terminator" "$example"
ctl create www --algorithm ec-p256 --label tier=edge
ctl csr www --subject CN=www.example.com --dns www.example.com --out "$work/www.csr"
openssl x509 -req -in "$work/www.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
  -days 2 -copy_extensions copy -out "$work/www.crt" 2>/dev/null
ctl attach-cert www --chain "$work/www.crt"
ctl ref www --out "$example/server.ref" --chain-out "$example/server.crt" --overwrite

step "the nginx-terminator example: render, translate, play"
kubectl kustomize "$example" >"$work/example.yaml"
"${translate[@]}" --out "$work/example" --secrets "$secrets" \
  --image "offkey-nginx-terminator=$terminator_image" --services "$work/dev.yaml" \
  --port "nginx:https=$https" --port "nginx:health=$health" "${offkeyd_ports[@]}" \
  "$work/example.yaml"
cat "$work/example/translation.txt"
if grep -rl "PRIVATE KEY" "$work/example/configmaps" "$work/example/play.yaml"; then
  fail "a private key is in the terminator's manifests"
fi
play "$work/example"
wait_checks "$work/example" nginx-terminator-pod-0
host_pid=$(podman inspect --format '{{.State.Pid}}' nginx-terminator-pod-0-nginx)
read -r _ ruid euid _ < <(grep '^Uid:' "/proc/$host_pid/status")
[[ "$ruid $euid" == "65532 65532" ]] || fail "nginx runs as uid $ruid/$euid, not 65532"

step "the page through the terminator pod"
page="served by a terminator that holds no private key"
for v in 1.3 1.2; do
  fetch "$v" || { cat "$logs/tls$v.err" >&2; fail "TLS $v"; }
  grep -q "SSL connection using TLSv$v " "$logs/tls$v.err" || fail "not TLS $v"
  grep -q "subject: CN=www.example.com" "$logs/tls$v.err" || fail "not www's certificate"
  [[ "$(cat "$logs/tls$v.body")" == "$page" ]] || fail "TLS $v page: $(cat "$logs/tls$v.body")"
  echo "TLS $v: $(grep -o 'SSL connection using .*' "$logs/tls$v.err"): $(cat "$logs/tls$v.body")"
done
[[ "$(curl -sS "http://127.0.0.1:$health/healthz")" == ok ]] || fail "liveness endpoint"
# offkeyd's audit log (its container log) has the terminator's handshake signatures,
# with the identity of the client certificate from the Secret offkey-client-tls.
for tls in TLS_1_3 TLS_1_2; do
  podman logs offkeyd-pod-0-offkeyd 2>/dev/null | grep -F "\"identity\":\"$uri\"" |
    grep -F '"operation":"sign"' | grep -F "\"tls\":\"$tls\"" |
    grep -qF '"outcome":"OK"' || fail "no $tls signature by $uri in offkeyd's audit log"
done

step "offkeyd's pod stopped: no handshake"
podman pod stop -t 15 offkeyd-pod-0 >/dev/null
if fetch 1.3; then fail "a handshake succeeded with offkeyd stopped"; fi
echo "handshake refused: $(tail -1 "$logs/tls1.3.err")"

step "a new offkeyd pod on the same claim: the same key serves again"
remove_pod offkeyd-pod-0 .first
podman volume exists "$claim" || fail "the claim's volume went with the pod"
play_dev
grep -q "token offkey present" <<<"$init_log" ||
  fail "the init container did not find the token on the claim"
# The provider reconnects after gRPC's backoff, which grows while offkeyd was away.
deadline=$((SECONDS + 120))
until fetch 1.3; do
  [[ $SECONDS -lt $deadline ]] || { cat "$logs/tls1.3.err" >&2; fail "no handshake again"; }
  sleep 0.5
done
[[ "$(cat "$logs/tls1.3.body")" == "$page" ]] || fail "page: $(cat "$logs/tls1.3.body")"
echo "TLS 1.3 again: $(grep -o 'SSL connection using .*' "$logs/tls1.3.err")"
echo "PASS ($SECONDS s)"
