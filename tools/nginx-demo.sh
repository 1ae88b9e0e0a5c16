#!/bin/bash
# Puts Debian's nginx in front of offkey with no private key on disk: nginx gets the
# development keys' certificates and key references (offkeyctl ref), the offkey OpenSSL
# provider does each handshake's private-key step through offkeyd, and curl fetches a
# page over TLS 1.3 and TLS 1.2.
#
#   ./tools/nginx-demo.sh          demo, then nginx keeps serving until Ctrl-C
#   ./tools/nginx-demo.sh --once   demo, then everything it started stops
#
# Uses a running `offkeyd --dev` (./tools/quickstart.sh) or starts one. NGINX_PORT
# (default 8446) is where nginx listens, on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
once=0
[[ "${1:-}" == "--once" || ! -t 0 ]] && once=1
nginx_port="${NGINX_PORT:-8446}"

./tools/setup.sh
bazel build //service:offkeyd //client/cli:offkeyctl //client/openssl:offkey.so
state="$PWD/.offkey/dev"
demo="$PWD/.offkey/nginx-demo"
offkeyctl="$PWD/bazel-bin/client/cli/offkeyctl"
mkdir -p "$state" "$demo"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

if ! "$offkeyctl" --dev-dir="$state" health >/dev/null 2>&1; then
  echo "nginx-demo: starting offkeyd --dev"
  rm -f "$state/offkeyd.port" "$state/admin.port"
  bazel-bin/service/offkeyd --dev --dev_state_dir="$state" \
    --port_file="$state/offkeyd.port" >"$demo/offkeyd.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    [[ -s "$state/admin.port" ]] && "$offkeyctl" --dev-dir="$state" health >/dev/null 2>&1 &&
      break
    sleep 0.2
  done
fi
"$offkeyctl" --dev-dir="$state" health
port=$(cat "$state/offkeyd.port")

# What nginx gets: certificates and key references. Nothing secret.
for key in dev-rsa2048 dev-p256; do
  "$offkeyctl" --dev-dir="$state" ref "$key" --out "$demo/$key.ref" \
    --chain-out "$demo/$key.pem" --overwrite
done

./tools/provider-cnf.sh "$PWD/bazel-bin/client/openssl/offkey.so" "127.0.0.1:$port" \
  "$state/ca.pem" "$state/terminator.pem" "$state/terminator.key" localhost >"$demo/openssl.cnf"

# nginx's workers connect to offkeyd themselves, so they must read the terminator's key.
user_line=""
[[ $(id -u) -eq 0 ]] && user_line="user root;"
cat >"$demo/nginx.conf" <<EOF
daemon off;
worker_processes 2;
$user_line
pid $demo/nginx.pid;
error_log $demo/error.log info;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $demo/tmp;
  proxy_temp_path $demo/tmp;
  fastcgi_temp_path $demo/tmp;
  uwsgi_temp_path $demo/tmp;
  scgi_temp_path $demo/tmp;
  server {
    listen 127.0.0.1:$nginx_port ssl;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate     $demo/dev-rsa2048.pem;
    ssl_certificate_key $demo/dev-rsa2048.ref;
    ssl_certificate     $demo/dev-p256.pem;
    ssl_certificate_key $demo/dev-p256.ref;
    location / { return 200 "hello over TLS from nginx, which holds no private key\n"; }
  }
}
EOF
mkdir -p "$demo/tmp"
OPENSSL_CONF="$demo/openssl.cnf" nginx -p "$demo" -e "$demo/error.log" -c "$demo/nginx.conf" &
pids+=($!)
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$nginx_port") 2>/dev/null && break
  sleep 0.1
done

echo
echo "Files nginx was given ($demo):"
ls "$demo"/*.pem "$demo"/*.ref
word="PRIVATE"  # Spelled in two parts so this script holds no key marker itself.
if grep -l -e "$word KEY" "$demo"/*.pem "$demo"/*.ref; then
  echo "nginx-demo: a private key is on disk" >&2
  exit 1
fi
echo "(none holds a private key)"
for tls in "--tlsv1.3" "--tlsv1.2 --tls-max 1.2"; do
  echo
  echo "curl $tls https://localhost:$nginx_port/"
  # shellcheck disable=SC2086  # two words for TLS 1.2
  curl -sS $tls --cacert "$state/ca.pem" -w "(%{http_version}, TLS verified: %{ssl_verify_result})\n" \
    --resolve "localhost:$nginx_port:127.0.0.1" "https://localhost:$nginx_port/"
done
echo
echo "nginx-demo passed"

if [[ $once -eq 0 ]]; then
  echo
  echo "nginx keeps serving on https://localhost:$nginx_port/ (CA: $state/ca.pem); Ctrl-C stops it."
  wait
fi
