#!/bin/bash
# Full TLS handshakes per second (no resumption) of nginx and haproxy with offkey against
# the same server with the same key as a local file, in one run:
#   TLS 1.2 RSA-2048 key exchange (AES128-GCM-SHA256) and TLS 1.3 ECDSA P-256.
# Client (openssl s_time), server, offkeyd and SoftHSM2 share this machine's cores.
#
#   tests/bench/handshake_bench.sh [--seconds 5] [--clients 4] [--rounds 3] [--no-bound]
#                                  [--binaries DIR] [--resumption "0 50 90"]
#
# Each key is made locally, imported into a fresh development offkeyd (so both sides use
# the same key) and given to the servers twice: as the PEM file and as a key reference.
# Prints each measurement (with the CPU it used), then per case the median rates, the
# keyless/local ratio, and the HSM bound: the ratio keyless could reach if offkey cost
# nothing but the HSM's own private-key operation in place of OpenSSL's, from this run's
# CPU time per local handshake and both operations' single-core costs (openssl speed;
# key_store_bench's bare PKCS#11 path).
# nginx also serves the same keys with OpenSC's PKCS#11 engine (libengine-pkcs11-openssl)
# from a SoftHSM2 token of its own (the engine stops finding keys in a token holding an
# Ed25519 key, as offkeyd's development token does): mode "engine" loads SoftHSM2 into
# nginx, "engine-p11kit" reaches the token through `p11-kit server` over a Unix socket
# (p11-kit-client.so). A probe handshake decides whether the engine serves a case at all
# (OpenSSL 3.0 refuses the engine's RSA decryption for TLS 1.2 RSA key exchange); a case
# it cannot serve prints "unsupported".
# Each measurement also snapshots the server side's threads (tests/bench/thread_cpu.py):
# the terminator (nginx master and workers, haproxy) and the key's process (offkeyd for
# keyless, p11-kit server for engine-p11kit). It prints their CPU per handshake, then per
# case and mode the split by process and thread name (event loop and workers, gRPC and
# provider threads; offkeyd's workers, gRPC threads, catalog, metrics) and the off-CPU
# time of the main threads that worked (a blocked or idle worker).
# --resumption RATES (percentages; tests/bench/resumption_bench.sh) turns session tickets
# on in every server (ticket keys from a file) and measures each case at each rate with
# tests/bench/resume_client in place of s_time: that share of the client's handshakes
# offers the last session it got. Cases are then named with the rate ("-r50"), rows show
# the share the servers actually resumed, and a last table the speed-up over the
# case's first rate. It implies --no-bound (the bound models full handshakes only).
# --no-bound skips the HSM bound (its single-core measurements); --binaries DIR takes
# offkeyd, offkeyctl, offkey.so, key_store_bench and resume_client from DIR, laid out like bazel-bin
# (service/offkeyd, ...), instead of building them, and skips tools/setup.sh.
# NGINX_WORKERS (default 2) sets nginx's worker processes; SERVERS, KEYS and MODES
# ("nginx haproxy", "rsa ec", "local keyless engine engine-p11kit"; the engine modes are
# nginx's only) narrow the cases; OFFKEY_TRANSPORT (stream or unary) sets the provider's
# transport; OFFKEYD_RUN_ON_RPC_THREADS=1 turns on offkeyd's
# workers.run_on_rpc_threads_when_idle; PERF_DIR records each measurement with perf and
# prints its split by command (see measure below).
set -euo pipefail
cd "$(dirname "$0")/../.."
PATH="$PATH:/usr/sbin:/sbin"  # nginx and haproxy, also under Bazel's strict PATH.
seconds=5 clients=4 rounds=3 bound=1 binaries="" resumption=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --no-bound) bound=0; shift ;;
    --binaries) binaries="$2"; shift 2 ;;
    --resumption) resumption="$2"; bound=0; shift 2 ;;
    -h|--help) sed -n 2,44p "$0"; exit 0 ;;
    *) echo "handshake_bench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [[ -z "$binaries" ]]; then
  ./tools/setup.sh >/dev/null
  bazel build //service:offkeyd //client/cli:offkeyctl //client/openssl:offkey.so \
    //hsm/pkcs11:key_store_bench //tests/bench:resume_client 2>/dev/null
  binaries="$PWD/bazel-bin"
fi
binaries=$(cd "$binaries" && pwd)
thread_cpu=(/usr/bin/python3 "$PWD/tests/bench/thread_cpu.py")
resume_client="$binaries/tests/bench/resume_client"
softhsm_module=/usr/lib/softhsm/libsofthsm2.so
engine_so=$(compgen -G '/usr/lib/*/engines-3/pkcs11.so' | head -1 || true)
p11kit_client=$(compgen -G '/usr/lib/*/pkcs11/p11-kit-client.so' | head -1 || true)
work=$(mktemp -d /tmp/offkey-handshake-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n "${KEEP_WORK:-}" ]]; then echo "work files kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
offkeyctl="$binaries/client/cli/offkeyctl"
dev="$work/dev"
wanted() { [[ -z "${MODES:-}" || " $MODES " == *" $1 "* ]]; }
case_name() {  # case_name SERVER KEY[@RATE]
  local name="$1 tls1.3-p256"
  [[ ${2%@*} == rsa ]] && name="$1 tls1.2-rsa"
  [[ $2 == *@* ]] && name+="-r${2#*@}"
  echo "$name"
}
variants() {  # the keys measured, each with each resumption rate (KEY@RATE) if any
  local key rate
  for key in ${KEYS:-rsa ec}; do
    if [[ -z "$resumption" ]]; then echo "$key"; else
      for rate in $resumption; do echo "$key@$rate"; done
    fi
  done
}
cid() {  # cid SERVER KEY[@RATE] MODE: a measured case's id, SERVER-KEY-MODE[@RATE]
  local id="$1-${2%@*}-$3"
  [[ $2 == *@* ]] && id+="@${2#*@}"
  echo "$id"
}
engines=()
for mode in engine engine-p11kit; do
  if [[ " ${SERVERS:-nginx haproxy} " == *" nginx "* ]] && wanted "$mode"; then
    engines+=("$mode")
  fi
done
if [[ ${#engines[@]} -gt 0 && ( -z "$engine_so" || -z "$p11kit_client" ) ]]; then
  echo "handshake_bench: OpenSC's PKCS#11 engine or p11-kit-client.so is missing" \
    "(tools/setup.sh installs them; MODES='local keyless' skips the engine)" >&2
  exit 1
fi

start_offkeyd() {
  rm -f "$work/offkeyd.port" "$work/metrics.port"
  "$binaries/service/offkeyd" --dev --dev_state_dir="$dev" --listen=127.0.0.1:0 \
    --admin_listen=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
    --port_file="$work/offkeyd.port" --metrics_port_file="$work/metrics.port" \
    >"$work/offkeyd.log" 2>&1 &
  pids+=($!)
  offkeyd_pid=$!
  for _ in $(seq 1 300); do [[ -s "$work/offkeyd.port" ]] && break; sleep 0.2; done
  [[ -s "$work/offkeyd.port" ]] || { cat "$work/offkeyd.log"; exit 1; }
  offkeyd_port=$(cat "$work/offkeyd.port")
}
start_offkeyd
if [[ -n "${OFFKEYD_RUN_ON_RPC_THREADS:-}" ]]; then
  # The development configuration exists now; restart offkeyd with the option in it.
  kill -TERM "$offkeyd_pid"
  wait "$offkeyd_pid" || true
  echo 'workers { run_on_rpc_threads_when_idle: true }' >>"$dev/config.textproto"
  start_offkeyd
fi

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

./tools/provider-cnf.sh "$binaries/client/openssl/offkey.so" \
  "127.0.0.1:$offkeyd_port" "$dev/ca.pem" "$dev/terminator.pem" "$dev/terminator.key" \
  localhost >"$work/openssl.cnf"

# The engine's token: the same two keys, imported as an operator would.
if [[ ${#engines[@]} -gt 0 ]]; then
  engine_pin=$(openssl rand -hex 8)
  mkdir -p "$work/engine-token/tokens"
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$work/engine-token/tokens" >"$work/engine-token/softhsm2.conf"
  export SOFTHSM2_CONF="$work/engine-token/softhsm2.conf"
  softhsm2-util --init-token --free --label bench-engine --pin "$engine_pin" \
    --so-pin "$(openssl rand -hex 8)" >/dev/null
  id=1
  for key in rsa ec; do
    softhsm2-util --import "$work/$key.key" --token bench-engine --label "bench-$key" \
      --id "0$id" --pin "$engine_pin" >/dev/null
    id=$((id + 1))
  done
  for mode in "${engines[@]}"; do
    module=$softhsm_module
    [[ $mode == engine-p11kit ]] && module=$p11kit_client
    cat >"$work/$mode.cnf" <<EOF_CNF
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $engine_so
MODULE_PATH = $module
PIN = $engine_pin
init = 1
EOF_CNF
  done
fi
p11kit_pid=""
if [[ " ${engines[*]} " == *" engine-p11kit "* ]]; then
  mkdir -p "$work/p11kit"
  XDG_RUNTIME_DIR="$work/p11kit" p11-kit server --foreground --provider "$softhsm_module" \
    --name "$work/p11kit/pkcs11.sock" "pkcs11:token=bench-engine" >"$work/p11kit.log" 2>&1 &
  pids+=($!)
  p11kit_pid=$!
  for _ in $(seq 1 150); do [[ -S "$work/p11kit/pkcs11.sock" ]] && break; sleep 0.1; done
  [[ -S "$work/p11kit/pkcs11.sock" ]] || { cat "$work/p11kit.log"; exit 1; }
fi

# Ports below the ephemeral range: each server x {rsa, ec} x its modes.
base=$((20000 + RANDOM % 10000))
declare -A port
i=0
for server in nginx haproxy; do
  for key in rsa ec; do
    for mode in local keyless engine engine-p11kit; do
      [[ $server == haproxy && $mode == engine* ]] && continue
      port[$server-$key-$mode]=$((base + i))
      i=$((i + 1))
    done
  done
done

user_line=""
[[ $(id -u) -eq 0 ]] && user_line="user root;"
nginx_conf() {  # nginx_conf NAME MODE...: one nginx instance serving both keys per mode
  local name=$1 key mode k tls
  shift
  echo "daemon off; worker_processes ${NGINX_WORKERS:-2}; $user_line"
  echo "pid $work/$name.pid; error_log $work/$name-error.log warn;"
  # The engine over p11-kit finds the server through this variable; workers keep it.
  echo "env P11_KIT_SERVER_ADDRESS; events { worker_connections 256; }"
  echo "http { access_log off; client_body_temp_path $work/t; proxy_temp_path $work/t;"
  echo "  fastcgi_temp_path $work/t; uwsgi_temp_path $work/t; scgi_temp_path $work/t;"
  for key in rsa ec; do
    for mode in "$@"; do
      case $mode in
        local) k="$work/$key.key" ;;
        keyless) k="$work/$key.ref" ;;
        *) k="\"engine:pkcs11:pkcs11:token=bench-engine;object=bench-$key;type=private\"" ;;
      esac
      if [[ $key == rsa ]]; then
        tls="ssl_protocols TLSv1.2; ssl_ciphers AES128-GCM-SHA256;"
      else
        tls="ssl_protocols TLSv1.3;"
      fi
      echo "  server { listen 127.0.0.1:${port[nginx-$key-$mode]} ssl; $tls"
      if [[ -n "$resumption" ]]; then
        echo "    ssl_session_cache off; ssl_session_ticket_key $work/ticket.key;"
      else
        echo "    ssl_session_cache off; ssl_session_tickets off;"
      fi
      echo "    ssl_certificate $work/$key.pem; ssl_certificate_key $k; return 200 ok; }"
    done
  done
  echo "}"
}
# Random session-ticket keys (nginx: one 80-byte file; haproxy: three base64 lines).
if [[ -n "$resumption" ]]; then
  openssl rand -out "$work/ticket.key" 80
  for _ in 1 2 3; do openssl rand 80 | base64 -w 0; echo; done >"$work/tickets.keys"
fi
nginx_conf nginx local keyless >"$work/nginx.conf"
for mode in "${engines[@]}"; do nginx_conf "nginx-$mode" "$mode" >"$work/nginx-$mode.conf"; done
mkdir -p "$work/t"

{
  echo "global"
  echo "  nbthread 2"
  echo "  ssl-mode-async"
  # Resumption by ticket only, as with nginx.
  [[ -n "$resumption" ]] && echo "  tune.ssl.cachesize 0"
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
      tickets="no-tls-tickets"
      [[ -n "$resumption" ]] && tickets="tls-ticket-keys $work/tickets.keys"
      echo "  bind 127.0.0.1:${port[haproxy-$key-$mode]} ssl crt $work/$key-$mode.crt $tls $tickets"
    done
  done
  echo "  http-request return status 200 content-type text/plain string ok"
} >"$work/haproxy.cfg"

# The terminator processes of each mode (nginx's master; its workers are its children).
declare -A terminator
OPENSSL_CONF="$work/openssl.cnf" nginx -p "$work" -e "$work/nginx-error.log" \
  -c "$work/nginx.conf" &
pids+=($!)
terminator[nginx-local]=$! terminator[nginx-keyless]=$!
for mode in "${engines[@]}"; do
  OPENSSL_CONF="$work/$mode.cnf" P11_KIT_SERVER_ADDRESS="unix:path=$work/p11kit/pkcs11.sock" \
    nginx -p "$work" -e "$work/nginx-$mode-error.log" -c "$work/nginx-$mode.conf" &
  pids+=($!)
  terminator[nginx-$mode]=$!
done
OPENSSL_CONF="$work/openssl.cnf" haproxy -W -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
terminator[haproxy-local]=$! terminator[haproxy-keyless]=$!
alive() {  # alive: are all the terminators still running?
  local pid
  for pid in "${terminator[@]}"; do kill -0 "$pid" 2>/dev/null || return 1; done
}
for p in "${port[@]}"; do
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break
    alive || break
    sleep 0.1
  done
done
if ! alive; then
  echo "handshake_bench: a server did not start; its logs:" >&2
  tail -n 5 "$work"/*error.log "$work/haproxy.log" >&2 2>/dev/null || true
  exit 1
fi

# thread_cpu.py groups for a server and mode: the terminator, and the key's process.
cpu_groups() {  # cpu_groups SERVER MODE
  echo "$1=${terminator[$1-$2]}"
  case $2 in
    keyless) echo "offkeyd=$offkeyd_pid" ;;
    engine-p11kit) echo "p11-kit=$p11kit_pid" ;;
  esac
}

# One full handshake with the s_time client's settings: does this case work at all?
probe() {  # probe PORT KEY
  local args=(-connect "127.0.0.1:$1")
  [[ $2 == ec ]] && args+=(-tls1_3)
  [[ $2 == rsa ]] && args+=(-cipher AES128-GCM-SHA256)
  OPENSSL_CONF=/dev/null timeout 20 openssl s_client "${args[@]}" </dev/null 2>&1 |
    grep -qE '^(New|Reused), TLSv1\.[23], Cipher is [A-Z0-9_-]+$'
}
declare -A unsupported
for mode in "${engines[@]}"; do
  if ! kill -0 "${terminator[nginx-$mode]}" 2>/dev/null; then
    echo "handshake_bench: nginx with the engine ($mode) did not start:" >&2
    cat "$work/nginx-$mode-error.log" >&2
    exit 1
  fi
  for key in ${KEYS:-rsa ec}; do
    if ! probe "${port[nginx-$key-$mode]}" "$key"; then
      unsupported[nginx-$key-$mode]=1
      echo "note: $(case_name nginx "$key") $mode: unsupported, the probe handshake failed;" \
        "nginx says: $(grep -v '^$' "$work/nginx-$mode-error.log" | tail -1 | cut -c 1-300)"
    fi
  done
done

# CPU seconds used so far on this machine (all cores: user, system and interrupts).
cpu_busy() {
  awk -v hz="$(getconf CLK_TCK)" '/^cpu / {
    printf "%.3f", ($2 + $3 + $4 + $7 + $8) / hz }' /proc/stat
}

# "RATE CPU_MS HANDSHAKES SERVER_MS RESUMED": handshakes per second from $clients parallel s_time
# processes for $seconds seconds, the machine's CPU milliseconds per handshake
# meanwhile, the handshakes, and the server side's CPU milliseconds per handshake (the
# `groups` processes and their children, by thread: snapshots $work/cpu/NAME.{0,1}).
# With PERF_DIR set, `perf record -a` samples the whole machine during it into
# $PERF_DIR/NAME.data (split by command at the end). KEY@RATE: resume_client's $clients
# threads in place of s_time, RATE percent of handshakes offering a session, and RESUMED
# the percentage the server resumed ("-" without a rate).
mkdir -p "$work/cpu"
measure() {  # measure PORT KEY[@RATE] NAME GROUP...
  local args=(-connect "127.0.0.1:$1" -new -time "$seconds")
  [[ ${2%@*} == ec ]] && args+=(-tls1_3)
  [[ ${2%@*} == rsa ]] && args+=(-cipher AES128-GCM-SHA256)
  local port=$1 key=$2 rate="" resumed=-
  [[ $2 == *@* ]] && rate=${2#*@}
  local name=$3
  shift 3
  local clients_pids=() busy_before busy_after perf_pid=""
  if [[ -n "${PERF_DIR:-}" ]]; then
    perf record -a -q -F 499 -o "$PERF_DIR/$name.data" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  "${thread_cpu[@]}" snapshot "$work/cpu/$name.0" "$@"
  rm -f "$work"/s_time.*
  busy_before=$(cpu_busy)
  if [[ -n "$rate" ]]; then
    local version=(--tls1_3)
    [[ ${key%@*} == rsa ]] && version=(--tls1_2 --cipher AES128-GCM-SHA256)
    # A failed client shows as missing handshakes.
    OPENSSL_CONF=/dev/null "$resume_client" --connect "127.0.0.1:$port" --seconds "$seconds" \
      --clients "$clients" --resume "$rate" "${version[@]}" >"$work/resume.out" 2>&1 || true
    # In s_time's words, for the sum below.
    awk '$1 == "handshakes" { print $2 " connections in " $6 " real seconds" }' \
      "$work/resume.out" >"$work/s_time.1"
    resumed=$(awk '$1 == "handshakes" && $2 > 0 { printf "%.0f", $4 * 100 / $2 }' \
      "$work/resume.out")
    resumed=${resumed:--}
  else
    for c in $(seq 1 "$clients"); do
      OPENSSL_CONF=/dev/null openssl s_time "${args[@]}" >"$work/s_time.$c" 2>&1 &
      clients_pids+=($!)
    done
    wait "${clients_pids[@]}" || true  # A failed client shows as missing handshakes.
  fi
  busy_after=$(cpu_busy)
  "${thread_cpu[@]}" snapshot "$work/cpu/$name.1" "$@"
  if [[ -n "$perf_pid" ]]; then
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
  fi
  local rate_cpu_n
  rate_cpu_n=$(cat "$work"/s_time.* | awk -v busy="$(awk -v a="$busy_before" \
    -v b="$busy_after" 'BEGIN { print b - a }')" '/connections in [0-9.]+ real seconds/ {
    n += $1; t = ($4 > t ? $4 : t) } END {
    if (t > 0 && n > 0) printf "%.0f %.3f %d\n", n / t, busy * 1000 / n, n
    else print "0 0 0" }')
  local n=${rate_cpu_n##* }
  echo "$rate_cpu_n $(if ((n > 0)); then "${thread_cpu[@]}" total "$work/cpu/$name.0" \
    "$work/cpu/$name.1" --ops "$n"; else echo 0; fi) $resumed"
}

operations() {  # offkeyd's finished operations so far
  curl -s "http://127.0.0.1:$(cat "$work/metrics.port")/metrics" 2>/dev/null |
    awk '/^offkey_operations_total\{.*operation="(sign|decrypt-premaster)"/ { n += $2 }
         END { print n + 0 }'
}

modes_of() {  # modes_of SERVER ROUND: the wanted modes, alternating their order by round
  local order=(local keyless)
  [[ $1 == nginx ]] && order+=("${engines[@]}")
  (($2 % 2 == 0)) && mapfile -t order < <(printf '%s\n' "${order[@]}" | tac)
  for mode in "${order[@]}"; do wanted "$mode" && echo "$mode"; done
}

printf 'handshake_bench: %s s per measurement, %s s_time clients, %s rounds\n' \
  "$seconds" "$clients" "$rounds"
# With --resumption, rows end with the share of handshakes the server resumed.
# printf reuses its format for surplus arguments, so the last column is passed only then.
row_format='%-8s %-22s %-14s %10s %12s %15s\n'
resumed_header=()
if [[ -n "$resumption" ]]; then
  row_format='%-8s %-22s %-14s %10s %12s %15s %10s\n'
  resumed_header=("resumed %")
fi
# shellcheck disable=SC2059
printf "$row_format" round case mode "hs/s" "CPU ms/hs" "server ms/hs" "${resumed_header[@]}"
declare -A rates cpu server_cpu handshakes
failed=0
for round in $(seq 1 "$rounds"); do
  for server in ${SERVERS:-nginx haproxy}; do
    for key in $(variants); do
      for mode in $(modes_of "$server" "$round"); do
        c=$(cid "$server" "$key" "$mode")
        if [[ -n "${unsupported[${c%@*}]:-}" ]]; then
          printf '%-8s %-22s %-14s %10s\n' "$round" "$(case_name "$server" "$key")" "$mode" \
            unsupported
          continue
        fi
        # shellcheck disable=SC2046
        read -r rate cpu_ms n server_ms resumed < <(measure \
          "${port[$server-${key%@*}-$mode]}" "$key" "$c-$round" $(cpu_groups "$server" "$mode"))
        rates[$c]+="$rate "
        cpu[$c]+="$cpu_ms "
        server_cpu[$c]+="$server_ms "
        handshakes[$c]=$((${handshakes[$c]:-0} + n))
        if ((n == 0)); then
          failed=1
          rate=FAILED
        fi
        # shellcheck disable=SC2059
        resumed_cell=()
        [[ -n "$resumption" ]] && resumed_cell=("$resumed")
        printf "$row_format" "$round" "$(case_name "$server" "$key")" "$mode" "$rate" \
          "$cpu_ms" "$server_ms" "${resumed_cell[@]}"
      done
    done
  done
done

# Single-core cost in ms of one handshake's private-key work: OpenSSL's, and SoftHSM2's
# through bare PKCS#11 (the least any server pays with this HSM).
declare -A ossl_ms hsm_ms
if ((bound)); then
echo
echo "private-key work per handshake, one core:"
while read -r what ms; do ossl_ms[$what]=$ms; done < <(
  openssl speed -elapsed -seconds 3 rsa2048 ecdsap256 2>/dev/null | awk '
    /^rsa 2048 bits/ { printf "rsa %.4f\n", 1000 / $6 }
    /ecdsa \(nistp256\)/ { printf "ec %.4f\n", 1000 / $7 }')
bare_ms() {  # bare_ms OPERATION: key_store_bench's bare single-thread cost
  "$binaries/hsm/pkcs11/key_store_bench" --seconds=3 --rounds=1 --only="$1" --threads=1 |
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
fi

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# A mode's median of one figure for a case: "-" when not measured, "unsupported" when
# the probe failed.
figure() {  # figure ARRAY_NAME CASE
  local -n values=$1
  if [[ -n "${unsupported[${2%@*}]:-}" ]]; then echo unsupported
  elif [[ -z "${values[$2]:-}" ]]; then echo -
  else echo "${values[$2]}" | median; fi
}
echo
printf '%-22s %12s %12s %8s %11s %12s %14s\n' case "local hs/s" "keyless hs/s" ratio \
  "HSM bound" "engine hs/s" "eng-p11k hs/s"
for server in ${SERVERS:-nginx haproxy}; do
  for key in $(variants); do
    local_rate=$(figure rates "$(cid "$server" "$key" local)")
    keyless_rate=$(figure rates "$(cid "$server" "$key" keyless)")
    local_cpu=$(figure cpu "$(cid "$server" "$key" local)")
    # Keyless needs at least the local handshake's CPU with OpenSSL's private-key
    # operation swapped for the HSM's: at most cores/that handshakes per second.
    awk -v n="$(case_name "$server" "$key")" -v l="$local_rate" -v k="$keyless_rate" \
      -v c="$local_cpu" -v o="${ossl_ms[$key]:-}" -v h="${hsm_ms[$key]:-}" \
      -v cores="$(nproc)" -v e="$(figure rates "$(cid "$server" "$key" engine)")" \
      -v p="$(figure rates "$(cid "$server" "$key" engine-p11kit)")" 'BEGIN {
        bound = "-"
        if (o != "" && l > 0 && c > 0) {
          bound = cores * 1000 / (c - o + h) / l
          bound = sprintf("%.3f", bound > 1 ? 1 : bound)
        }
        ratio = (l > 0 && k ~ /^[0-9]/) ? sprintf("%.3f", k / l) : "-"
        printf "%-22s %12s %12s %8s %11s %12s %14s\n", n, l, k, ratio, bound, e, p }'
  done
done

if [[ -n "$resumption" ]]; then
  first=${resumption%% *}
  echo
  echo "speed-up over ${first} % resumption (hs/s at the rate / hs/s at ${first} %):"
  printf '%-22s %-14s %10s\n' case mode speed-up
  for server in ${SERVERS:-nginx haproxy}; do
    for key in $(variants); do
      for mode in $(modes_of "$server" 1); do
        awk -v n="$(case_name "$server" "$key")" -v m="$mode" \
          -v r="$(figure rates "$(cid "$server" "$key" "$mode")")" \
          -v b="$(figure rates "$(cid "$server" "${key%@*}@$first" "$mode")")" 'BEGIN {
            printf "%-22s %-14s %10s\n", n, m,
              (b > 0 && r ~ /^[0-9]/) ? sprintf("%.2f", r / b) : "-" }'
      done
    done
  done
fi

echo
echo "server CPU per handshake (ms; terminator processes + offkeyd or p11-kit server):"
printf '%-22s %10s %10s %10s %14s\n' case local keyless engine engine-p11kit
for server in ${SERVERS:-nginx haproxy}; do
  for key in $(variants); do
    printf '%-22s %10s %10s %10s %14s\n' "$(case_name "$server" "$key")" \
      "$(figure server_cpu "$(cid "$server" "$key" local)")" \
      "$(figure server_cpu "$(cid "$server" "$key" keyless)")" \
      "$(figure server_cpu "$(cid "$server" "$key" engine)")" \
      "$(figure server_cpu "$(cid "$server" "$key" engine-p11kit)")"
  done
done

echo
echo "CPU split per handshake, all rounds (ms by process group and thread name):"
for server in ${SERVERS:-nginx haproxy}; do
  for key in $(variants); do
    for mode in $(modes_of "$server" 1); do
      c=$(cid "$server" "$key" "$mode")
      ((${handshakes[$c]:-0} > 0)) || continue
      echo " $(case_name "$server" "$key") $mode (${handshakes[$c]} handshakes):"
      snapshots=()
      for round in $(seq 1 "$rounds"); do
        snapshots+=("$work/cpu/$c-$round.0" "$work/cpu/$c-$round.1")
      done
      "${thread_cpu[@]}" report "${snapshots[@]}" --ops "${handshakes[$c]}" --unit hs \
        --indent "   "
    done
  done
done

if [[ -n "${PERF_DIR:-}" ]] && command -v perf >/dev/null; then
  echo
  echo "perf: machine-wide samples by command, per measurement (top 6):"
  for data in "$PERF_DIR"/*.data; do
    echo " $(basename "$data" .data):"
    perf report -i "$data" --sort comm --stdio -q 2>/dev/null | grep -v '^$' | head -6 |
      sed 's/^/   /'
  done
fi
echo "offkeyd private-key operations during the run: $(operations)"
if ((failed)); then
  echo "handshake_bench: a measurement made no handshake (FAILED above)" >&2
  exit 1
fi
