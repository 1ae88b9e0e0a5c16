#!/bin/bash
# Full TLS handshakes per second (no resumption) of nginx and haproxy with offkey against
# the same server with the same key as a local file, in one run:
#   TLS 1.2 RSA-2048 key exchange (AES128-GCM-SHA256) and TLS 1.3 ECDSA P-256.
# Client (openssl s_time), server, offkeyd and SoftHSM2 share this machine's cores.
#
#   tests/bench/handshake_bench.sh [--seconds 5] [--clients 4] [--rounds 3]
#
# Each key is made locally, imported into a fresh development offkeyd (so both sides use
# the same key) and given to the servers twice: as the PEM file and as a key reference.
# Prints each measurement (with the CPU it used), then per case the median rates, the
# keyless/local ratio, and the HSM bound: the ratio keyless could reach if offkey cost
# nothing but the HSM's own private-key operation in place of OpenSSL's, from this run's
# CPU time per local handshake and both operations' single-core costs (openssl speed;
# key_store_bench's bare PKCS#11 path).
# NGINX_WORKERS (default 2) sets nginx's worker processes; SERVERS, KEYS and MODES
# ("nginx haproxy", "rsa ec", "local keyless") narrow the cases; OFFKEY_TRANSPORT
# (stream or unary) sets the provider's transport; PERF_DIR records each measurement with
# perf (see measure below).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=5 clients=4 rounds=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    -h|--help) sed -n 2,19p "$0"; exit 0 ;;
    *) echo "handshake_bench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

./tools/setup.sh >/dev/null
bazel build //service:offkeyd //client/cli:offkeyctl //client/openssl:offkey.so \
  //hsm/pkcs11:key_store_bench 2>/dev/null
work=$(mktemp -d /tmp/offkey-handshake-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n "${KEEP_WORK:-}" ]]; then echo "work files kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
offkeyctl="$PWD/bazel-bin/client/cli/offkeyctl"
dev="$work/dev"

bazel-bin/service/offkeyd --dev --dev_state_dir="$dev" --listen=127.0.0.1:0 \
  --admin_listen=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
  --port_file="$work/offkeyd.port" --metrics_port_file="$work/metrics.port" \
  >"$work/offkeyd.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do [[ -s "$work/offkeyd.port" ]] && break; sleep 0.2; done
[[ -s "$work/offkeyd.port" ]] || { cat "$work/offkeyd.log"; exit 1; }
offkeyd_port=$(cat "$work/offkeyd.port")

# The same key on both sides: made here, imported into offkeyd, certified by the dev CA.
printf 'subjectAltName=DNS:localhost\n' >"$work/san.ext"
for key in rsa ec; do
  if [[ $key == rsa ]]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/$key.key" 2>/dev/null
  else
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/$key.key"
  fi
  openssl req -new -key "$work/$key.key" -subj /CN=localhost -out "$work/$key.csr"
  openssl x509 -req -in "$work/$key.csr" -CA "$dev/ca.pem" -CAkey "$dev/ca.key" -days 1 \
    -extfile "$work/san.ext" -out "$work/$key.pem" 2>/dev/null
  "$offkeyctl" --dev-dir="$dev" import "bench-$key" -f "$work/$key.key" >/dev/null
  "$offkeyctl" --dev-dir="$dev" ref "bench-$key" --out "$work/$key.ref" 2>/dev/null
  cat "$work/$key.pem" "$work/$key.key" >"$work/$key-local.crt"  # haproxy: cert + key.
  cat "$work/$key.pem" "$work/$key.ref" >"$work/$key-keyless.crt"
done

./tools/provider-cnf.sh "$PWD/bazel-bin/client/openssl/offkey.so" \
  "127.0.0.1:$offkeyd_port" "$dev/ca.pem" "$dev/terminator.pem" "$dev/terminator.key" \
  localhost >"$work/openssl.cnf"

# Eight ports below the ephemeral range: nginx and haproxy x {rsa, ec} x {local, keyless}.
base=$((20000 + RANDOM % 10000))
declare -A port
i=0
for server in nginx haproxy; do
  for key in rsa ec; do
    for mode in local keyless; do
      port[$server-$key-$mode]=$((base + i))
      i=$((i + 1))
    done
  done
done

user_line=""
[[ $(id -u) -eq 0 ]] && user_line="user root;"
{
  echo "daemon off; worker_processes ${NGINX_WORKERS:-2}; $user_line pid $work/nginx.pid;"
  echo "error_log $work/nginx-error.log warn; events { worker_connections 256; }"
  echo "http { access_log off; client_body_temp_path $work/t; proxy_temp_path $work/t;"
  echo "  fastcgi_temp_path $work/t; uwsgi_temp_path $work/t; scgi_temp_path $work/t;"
  for key in rsa ec; do
    for mode in local keyless; do
      k="$work/$key.key"
      [[ $mode == keyless ]] && k="$work/$key.ref"
      if [[ $key == rsa ]]; then
        tls="ssl_protocols TLSv1.2; ssl_ciphers AES128-GCM-SHA256;"
      else
        tls="ssl_protocols TLSv1.3;"
      fi
      echo "  server { listen 127.0.0.1:${port[nginx-$key-$mode]} ssl; $tls"
      echo "    ssl_session_cache off; ssl_session_tickets off;"
      echo "    ssl_certificate $work/$key.pem; ssl_certificate_key $k; return 200 ok; }"
    done
  done
  echo "}"
} >"$work/nginx.conf"
mkdir -p "$work/t"

{
  echo "global"
  echo "  nbthread 2"
  echo "  ssl-mode-async"
  echo "defaults"
  echo "  mode http"
  echo "  timeout connect 5s"
  echo "  timeout client 10s"
  echo "  timeout server 10s"
  echo "frontend tls"
  for key in rsa ec; do
    for mode in local keyless; do
      if [[ $key == rsa ]]; then
        tls="ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.2 ciphers AES128-GCM-SHA256"
      else
        tls="ssl-min-ver TLSv1.3"
      fi
      echo "  bind 127.0.0.1:${port[haproxy-$key-$mode]} ssl crt $work/$key-$mode.crt $tls no-tls-tickets"
    done
  done
  echo "  http-request return status 200 content-type text/plain string ok"
} >"$work/haproxy.cfg"

OPENSSL_CONF="$work/openssl.cnf" nginx -p "$work" -e "$work/nginx-error.log" \
  -c "$work/nginx.conf" &
pids+=($!)
OPENSSL_CONF="$work/openssl.cnf" haproxy -W -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
for p in "${port[@]}"; do
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break
    sleep 0.1
  done
done

# CPU seconds used so far on this machine (all cores: user, system and interrupts).
cpu_busy() {
  awk -v hz="$(getconf CLK_TCK)" '/^cpu / {
    printf "%.3f", ($2 + $3 + $4 + $7 + $8) / hz }' /proc/stat
}

# "RATE CPU_MS": handshakes per second from $clients parallel s_time processes for
# $seconds seconds, and the machine's CPU milliseconds per handshake meanwhile.
# With PERF_DIR set, `perf record -a` samples the whole machine during it into
# $PERF_DIR/NAME.data (compare with `perf report --sort comm -i FILE`).
measure() {  # measure PORT KEY NAME
  local args=(-connect "127.0.0.1:$1" -new -time "$seconds")
  [[ $2 == ec ]] && args+=(-tls1_3)
  [[ $2 == rsa ]] && args+=(-cipher AES128-GCM-SHA256)
  local clients_pids=() busy_before perf_pid=""
  if [[ -n "${PERF_DIR:-}" ]]; then
    perf record -a -q -F 499 -o "$PERF_DIR/$3.data" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  busy_before=$(cpu_busy)
  for c in $(seq 1 "$clients"); do
    OPENSSL_CONF=/dev/null openssl s_time "${args[@]}" >"$work/s_time.$c" 2>&1 &
    clients_pids+=($!)
  done
  wait "${clients_pids[@]}"
  if [[ -n "$perf_pid" ]]; then
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
  fi
  cat "$work"/s_time.* | awk -v busy="$(awk -v a="$busy_before" -v b="$(cpu_busy)" \
    'BEGIN { print b - a }')" '/connections in [0-9.]+ real seconds/ {
    n += $1; t = ($4 > t ? $4 : t) } END {
    if (t > 0 && n > 0) printf "%.0f %.3f\n", n / t, busy * 1000 / n; else print "0 0" }'
}

operations() {  # offkeyd's finished operations so far
  curl -s "http://127.0.0.1:$(cat "$work/metrics.port")/metrics" 2>/dev/null |
    awk '/^offkey_operations_total\{.*operation="(sign|decrypt-premaster)"/ { n += $2 }
         END { print n + 0 }'
}

printf 'handshake_bench: %s s per measurement, %s s_time clients, %s rounds\n' \
  "$seconds" "$clients" "$rounds"
printf '%-8s %-22s %-8s %10s %12s\n' round case mode "hs/s" "CPU ms/hs"
declare -A rates cpu
for round in $(seq 1 "$rounds"); do
  for server in ${SERVERS:-nginx haproxy}; do
    for key in ${KEYS:-rsa ec}; do
      order=(local keyless)
      [[ $((round % 2)) -eq 0 ]] && order=(keyless local)
      for mode in "${order[@]}"; do
        [[ -n "${MODES:-}" && " $MODES " != *" $mode "* ]] && continue
        read -r rate cpu_ms < <(measure "${port[$server-$key-$mode]}" "$key" \
          "$server-$key-$mode-$round")
        rates[$server-$key-$mode]+="$rate "
        cpu[$server-$key-$mode]+="$cpu_ms "
        name="$server tls1.2-rsa"
        [[ $key == ec ]] && name="$server tls1.3-p256"
        printf '%-8s %-22s %-8s %10s %12s\n' "$round" "$name" "$mode" "$rate" "$cpu_ms"
      done
    done
  done
done

# Single-core cost in ms of one handshake's private-key work: OpenSSL's, and SoftHSM2's
# through bare PKCS#11 (the least any server pays with this HSM).
echo
echo "private-key work per handshake, one core:"
declare -A ossl_ms hsm_ms
while read -r what ms; do ossl_ms[$what]=$ms; done < <(
  openssl speed -elapsed -seconds 3 rsa2048 ecdsap256 2>/dev/null | awk '
    /^rsa 2048 bits/ { printf "rsa %.4f\n", 1000 / $6 }
    /ecdsa \(nistp256\)/ { printf "ec %.4f\n", 1000 / $7 }')
bare_ms() {  # bare_ms OPERATION: key_store_bench's bare single-thread cost
  bazel-bin/hsm/pkcs11/key_store_bench --seconds=3 --rounds=1 --only="$1" --threads=1 |
    awk -v op="$1" '$1 == op { printf "%.4f", 1000 / $3 }'
}
# TLS 1.2 RSA key exchange costs the HSM a raw decryption and the substitute's HMAC.
decrypt_ms=$(bare_ms rsa2048-decrypt-raw)
hmac_ms=$(bare_ms store-secret-hmac-sha256)
hsm_ms[rsa]=$(awk -v d="$decrypt_ms" -v h="$hmac_ms" 'BEGIN { printf "%.4f", d + h }')
hsm_ms[ec]=$(bare_ms p256-sign-ecdsa-sha256)
printf '  %-30s OpenSSL %.3f ms, SoftHSM2 %.3f ms (decryption %.3f + HMAC %.3f)\n' \
  "TLS 1.2 RSA-2048 key exchange" "${ossl_ms[rsa]}" "${hsm_ms[rsa]}" "$decrypt_ms" "$hmac_ms"
printf '  %-30s OpenSSL %.3f ms, SoftHSM2 %.3f ms\n' \
  "TLS 1.3 ECDSA P-256 signature" "${ossl_ms[ec]}" "${hsm_ms[ec]}"

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo
printf '%-22s %12s %12s %8s %11s\n' case "local hs/s" "keyless hs/s" ratio "HSM bound"
for server in ${SERVERS:-nginx haproxy}; do
  for key in ${KEYS:-rsa ec}; do
    local_rate=$(echo "${rates[$server-$key-local]:-}" | median)
    keyless_rate=$(echo "${rates[$server-$key-keyless]:-}" | median)
    local_cpu=$(echo "${cpu[$server-$key-local]:-}" | median)
    name="$server tls1.2-rsa"
    [[ $key == ec ]] && name="$server tls1.3-p256"
    # Keyless needs at least the local handshake's CPU with OpenSSL's private-key
    # operation swapped for the HSM's: at most cores/that handshakes per second.
    awk -v n="$name" -v l="$local_rate" -v k="$keyless_rate" -v c="$local_cpu" \
      -v o="${ossl_ms[$key]}" -v h="${hsm_ms[$key]}" -v cores="$(nproc)" 'BEGIN {
        bound = (l > 0 && c > 0) ? cores * 1000 / (c - o + h) / l : 0
        if (bound > 1) bound = 1
        printf "%-22s %12d %12d %8.3f %11.3f\n", n, l, k, (l > 0 ? k / l : 0), bound }'
  done
done
echo "offkeyd private-key operations during the run: $(operations)"
