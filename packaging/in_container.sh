#!/bin/bash
# The inside of //packaging:package_test: runs as root in a Debian 12 container that has
# the three offkey packages, nginx and curl installed with apt, on its own network
# namespace (loopback only). Everything here uses the packaged paths.
#
#   in_container.sh DATA_PORT ADMIN_PORT METRICS_PORT NGINX_PORT LOG_DIR
set -euo pipefail
data_port=$1 admin_port=$2 metrics_port=$3 nginx_port=$4 logs=$5

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }
state=/var/lib/offkey
dev=$state/dev
unit=/lib/systemd/system/offkeyd.service
provider_dir=/usr/lib/x86_64-linux-gnu/ossl-modules

step "what the packages installed"
for f in /usr/sbin/offkeyd /usr/bin/offkeyctl "$provider_dir/offkey.so" "$unit" /etc/offkey \
  /etc/default/offkeyd /usr/share/bash-completion/completions/offkeyctl \
  /usr/share/man/man1/offkeyctl.1.gz /usr/share/man/man8/offkeyd.8.gz \
  /usr/share/doc/offkey-openssl-provider/examples/openssl.cnf \
  /usr/share/doc/offkeyd/examples/offkeyd.textproto; do
  [[ -e "$f" ]] || fail "$f is not installed"
done
for p in offkeyd offkeyctl offkey-openssl-provider; do
  for f in copyright changelog.gz; do
    [[ -s /usr/share/doc/$p/$f ]] || fail "$p has no /usr/share/doc/$p/$f"
  done
done
grep -qx /etc/default/offkeyd /var/lib/dpkg/info/offkeyd.conffiles ||
  fail "/etc/default/offkeyd is not a conffile"
# The system user made by offkeyd's postinst, and its state directory.
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd offkey) || fail "no user offkey"
[[ $uid -lt 1000 && "$home" == "$state" && "$shell" == /usr/sbin/nologin ]] ||
  fail "offkey is not a system user with home $state: uid $uid home $home shell $shell"
[[ "$(stat -c '%U:%G %a' "$state")" == "offkey:offkey 700" ]] ||
  fail "$state is $(stat -c '%U:%G %a' "$state"), not offkey:offkey 700"
# The completion script loads and completes offkeyctl.
bash -c 'source /usr/share/bash-completion/completions/offkeyctl && complete -p offkeyctl' ||
  fail "the bash completion does not register for offkeyctl"
zcat /usr/share/man/man1/offkeyctl.1.gz | grep -q '^\.TH OFFKEYCTL 1' || fail "man page"

step "development state as the offkey user (SoftHSM2 token, CA, certificates)"
setpriv --reuid=offkey --regid=offkey --init-groups /usr/sbin/offkeyd --dev --dev_state_dir="$dev" \
  --listen=127.0.0.1:0 --admin_listen=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
  >"$logs/offkeyd-setup.log" 2>&1 &
pid=$!
deadline=$((SECONDS + 120))
until [[ -s "$dev/admin.port" ]]; do
  kill -0 "$pid" 2>/dev/null || { cat "$logs/offkeyd-setup.log" >&2; fail "offkeyd --dev exited"; }
  [[ $SECONDS -lt $deadline ]] || fail "offkeyd --dev not serving after 120 s"
  sleep 0.2
done
kill -TERM "$pid"
wait "$pid" || fail "offkeyd --dev exited with $? on SIGTERM"

step "configuration in /etc/offkey and /etc/default/offkeyd, as an operator writes it"
# /etc/offkey comes with the package; the file root:offkey 0640.
install -m 0640 -g offkey "$dev/config.textproto" /etc/offkey/offkeyd.textproto
cat >>/etc/default/offkeyd <<EOF_DEFAULT
OFFKEYD_ARGS="--listen=127.0.0.1:$data_port --admin_listen=127.0.0.1:$admin_port --metrics_address=127.0.0.1:$metrics_port"
SOFTHSM2_CONF=$dev/softhsm2.conf
EOF_DEFAULT

step "offkeyd as the unit starts it (its User=, EnvironmentFile=, ExecStart=)"
unit_value() { sed -n "s/^$1=//p" "$unit"; }
[[ "$(unit_value User)" == offkey && "$(unit_value Group)" == offkey ]] ||
  fail "the unit does not run as offkey:offkey"
exec_start=$(unit_value ExecStart)
[[ "$exec_start" == "/usr/sbin/offkeyd --config=/etc/offkey/offkeyd.textproto \$OFFKEYD_ARGS" ]] ||
  fail "unexpected ExecStart=$exec_start"
[[ "$(unit_value EnvironmentFile)" == "-/etc/default/offkeyd" ]] || fail "EnvironmentFile"
# The unit's privileges: no capabilities at all, no new privileges, no core files,
# umask 0077. setpriv and prlimit (util-linux) stand in for systemd here.
(
  set -a
  # shellcheck disable=SC1091
  source /etc/default/offkeyd
  set +a
  umask 0077
  eval "exec prlimit --core=0 setpriv --reuid=offkey --regid=offkey --init-groups \
    --no-new-privs --bounding-set=-all --inh-caps=-all $exec_start"
) >"$logs/offkeyd.log" 2>&1 &
pid=$!
ctl() {
  offkeyctl --dev-dir="$dev" --admin-endpoint="127.0.0.1:$admin_port" \
    --endpoint="127.0.0.1:$data_port" --timeout=20 "$@"
}
deadline=$((SECONDS + 60))
until ctl health >/dev/null 2>&1; do
  kill -0 "$pid" 2>/dev/null || { cat "$logs/offkeyd.log" >&2; fail "offkeyd exited"; }
  [[ $SECONDS -lt $deadline ]] || { cat "$logs/offkeyd.log" >&2; fail "not serving after 60 s"; }
  sleep 0.2
done
ctl health
read -r _ ruid _ < <(grep '^Uid:' "/proc/$pid/status")
[[ "$(cat "/proc/$pid/comm")" == offkeyd && $ruid == "$uid" ]] ||
  fail "pid $pid is not offkeyd running as offkey"
grep -q '^CapBnd:[[:space:]]*0000000000000000$' "/proc/$pid/status" || fail "capabilities left"

step "a key, its certificate and its key reference, with offkeyctl"
work=$(mktemp -d)
ctl create www --algorithm ec-p256 --label tier=edge
ctl csr www --subject CN=localhost --dns localhost --out "$work/www.csr"
# The development CA signs the request, as an operator's CA would.
openssl x509 -req -in "$work/www.csr" -CA "$dev/ca.pem" -CAkey "$dev/ca.key" \
  -days 2 -copy_extensions copy -out "$work/www.crt" 2>/dev/null
ctl attach-cert www --chain "$work/www.crt"
install -d /etc/nginx/offkey
ctl ref www --out /etc/nginx/offkey/www.ref --chain-out /etc/nginx/offkey/www.pem
grep -q 'BEGIN OFFKEY KEY REFERENCE' /etc/nginx/offkey/www.ref || fail "not a key reference"
if grep -rq 'PRIVATE KEY' /etc/nginx; then fail "a private key is in /etc/nginx"; fi

step "nginx with the installed provider (the packaged example openssl.cnf)"
# The terminator's client identity for offkeyd, where the example expects it.
install -d -m 0750 -g www-data /etc/offkey/provider
install -m 0640 -g www-data "$dev/ca.pem" /etc/offkey/provider/ca.crt
install -m 0640 -g www-data "$dev/terminator.pem" /etc/offkey/provider/client.crt
install -m 0640 -g www-data "$dev/terminator.key" /etc/offkey/provider/client.key
sed -e "s|^endpoint = .*|endpoint = 127.0.0.1:$data_port|" \
  -e 's|^#server_name = .*|server_name = localhost|' \
  /usr/share/doc/offkey-openssl-provider/examples/openssl.cnf >/etc/offkey/provider/openssl.cnf
if grep -v '^#' /etc/offkey/provider/openssl.cnf | grep -q REPLACE_; then
  fail "openssl.cnf still has a REPLACE_ value"
fi
OPENSSL_CONF=/etc/offkey/provider/openssl.cnf openssl list -providers |
  tee "$logs/providers.txt"
grep -A3 '^  offkey$' "$logs/providers.txt" | grep -q 'status: active' ||
  fail "the offkey provider is not active"
# A page nginx cannot have been given by anything but this run.
token=$(openssl rand -hex 16)
# Workers run as www-data (Debian's nginx.conf does the same): they read the client TLS
# files when they first call offkeyd.
cat >/etc/nginx/offkey-test.conf <<EOF_NGINX
user www-data;
worker_processes 2;
pid /run/nginx-offkey-test.pid;
error_log $logs/nginx-error.log info;
env OPENSSL_CONF;
events { worker_connections 64; }
http {
  access_log $logs/nginx-access.log;
  server {
    listen 127.0.0.1:$nginx_port ssl;
    server_name localhost;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate /etc/nginx/offkey/www.pem;
    ssl_certificate_key /etc/nginx/offkey/www.ref;
    location / { return 200 "keyless $token\n"; }
  }
}
EOF_NGINX
OPENSSL_CONF=/etc/offkey/provider/openssl.cnf nginx -t -c /etc/nginx/offkey-test.conf
OPENSSL_CONF=/etc/offkey/provider/openssl.cnf nginx -c /etc/nginx/offkey-test.conf
deadline=$((SECONDS + 30))
until (exec 3<>"/dev/tcp/127.0.0.1/$nginx_port") 2>/dev/null; do
  [[ $SECONDS -lt $deadline ]] || { cat "$logs/nginx-error.log" >&2; fail "nginx not listening"; }
  sleep 0.1
done

fetch() {  # fetch NAME CURL-FLAGS...: the page over TLS, verified against the dev CA
  local name=$1
  shift
  curl -sS -v "$@" --cacert "$dev/ca.pem" --resolve "localhost:$nginx_port:127.0.0.1" \
    "https://localhost:$nginx_port/" >"$logs/$name.body" 2>"$logs/$name.err"
}
step "TLS 1.3 and TLS 1.2"
for v in 1.3 1.2; do
  fetch "tls$v" "--tlsv$v" --tls-max "$v" || { cat "$logs/tls$v.err" >&2; fail "TLS $v fetch"; }
  grep -q "SSL connection using TLSv$v " "$logs/tls$v.err" ||
    fail "not TLS $v: $(grep 'SSL connection' "$logs/tls$v.err")"
  [[ "$(cat "$logs/tls$v.body")" == "keyless $token" ]] || fail "TLS $v page: $(cat "$logs/tls$v.body")"
  echo "TLS $v: $(grep -o 'SSL connection using .*' "$logs/tls$v.err"): $(cat "$logs/tls$v.body")"
done

step "without offkeyd there is no handshake (the key is only in its token)"
kill -TERM "$pid"
wait "$pid" || fail "offkeyd exited with $? on SIGTERM"
grep -q 'offkeyd: stopped' "$logs/offkeyd.log" || fail "no clean stop in the log"
if fetch after-stop --tlsv1.3; then fail "a handshake succeeded with offkeyd stopped"; fi
echo "handshake refused: $(tail -1 "$logs/after-stop.err")"
kill -QUIT "$(cat /run/nginx-offkey-test.pid)"
echo "PASS (in the container)"
