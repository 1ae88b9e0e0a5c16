#!/bin/bash
# Soak: a real offkeyd under a steady mixed load for a while, watched for leaks.
#   tools/soak.sh [--minutes N | --seconds N] [--rate OPS] [--threads N] [--keep]
#                 [--bin-dir DIR]
# Builds offkeyd, offkeyctl and the load driver //tests/soak:soak-load (or copies the
# three from --bin-dir), makes a SoftHSM2 token, a development CA, certificates and keys
# in a fresh directory under /tmp (offkeyd --dev) and starts offkeyd on 127.0.0.1 on
# ports the kernel picks. For the duration (default 30 minutes) it runs at once:
#   - the data-plane load: RSA and P-256 signatures, DecryptPremaster, DeriveMasterSecret
#     and VerifyClient, unary and on Pipeline streams, every answer checked; streams are
#     reopened every 10 s and each client reconnects every 30 s (--rate ops/s, 100);
#   - admin changes with offkeyctl: create, label, disable, enable, schedule destruction,
#     cancel it, destroy; one key at a time, a cycle every few seconds;
#   - readiness and liveness probes every 5 s and a metrics scrape every 15 s;
#   - certificate reloads: offkeyd's serving certificate and key swapped for a fresh
#     pair from the same CA (a Kubernetes-style secret volume) every 60 s (a quarter of
#     the run if shorter), each checked to be served to a new connection within 20 s;
# and samples offkeyd's RSS, open descriptors and threads every 5 s. At the end it
# prints RSS after warm-up (20 % of the run, at least 1 minute unless the run is under
# 3 minutes) and at the end, the growth, descriptors and threads, and calls and errors
# by kind. It exits 1 on any error, on RSS growth over 5 % after warm-up, or when the
# fewest descriptors, or threads of one name, seen in the last quarter exceed the fewest
# in the first quarter after warm-up (the fewest, because connections come and go
# between samples; gRPC's default-executor and timer threads, pools that never shrink,
# are reported, not judged); 2 on bad usage. Its files stay in /tmp/offkey-soak.* on
# failure or with --keep.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=1800
rate=100
threads=4
keep=0
bin_dir=""
sample_every=5
aim_percent=5
while [[ $# -gt 0 ]]; do
  case "$1" in
    --minutes) duration=$(( ${2:?} * 60 )); shift 2 ;;
    --seconds) duration="${2:?}"; shift 2 ;;
    --rate) rate="${2:?}"; shift 2 ;;
    --threads) threads="${2:?}"; shift 2 ;;
    --keep) keep=1; shift ;;
    --bin-dir) bin_dir="${2:?}"; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
    *) echo "soak: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for n in "$duration" "$rate" "$threads"; do
  [[ "$n" =~ ^[0-9]+$ && "$n" -gt 0 ]] || { echo "soak: --minutes, --seconds, --rate and --threads want positive integers" >&2; exit 2; }
done
[[ $duration -ge 20 ]] || { echo "soak: a run needs at least 20 seconds" >&2; exit 2; }

if [[ $duration -ge 180 ]]; then
  warmup=$(( duration / 5 > 60 ? duration / 5 : 60 ))
else
  warmup=$(( duration / 5 ))
fi
reload_every=$(( duration / 4 < 60 ? duration / 4 : 60 ))

work=$(mktemp -d /tmp/offkey-soak.XXXXXX)
mkdir -p "$work/bin" "$work/tls"
if [[ -z "$bin_dir" ]]; then
  bazel build //service:offkeyd //client/cli:offkeyctl //tests/soak:soak-load
  # Copies, so that another build (which rewrites bazel-bin) cannot change them mid-run.
  cp -f bazel-bin/service/offkeyd bazel-bin/client/cli/offkeyctl \
        bazel-bin/tests/soak/soak-load "$work/bin/"
else
  for b in offkeyd offkeyctl soak-load; do
    [[ -x "$bin_dir/$b" ]] || { echo "soak: no $b in $bin_dir" >&2; exit 2; }
    cp -f "$bin_dir/$b" "$work/bin/"
  done
fi
bin="$work/bin"
state="$work/dev"
# One line per admin step, reload, probe or scrape: "<what> ok|miss|error [detail]".
events="$work/events"
# One line per sample: "<second> <VmRSS kB> <fds> <threads> <RssAnon kB> <RssFile kB>".
samples="$work/samples"
: >"$events"
: >"$samples"

pids=()
cleanup() {
  local rc=$?
  touch "$work/stop"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ $keep -eq 0 && $rc -eq 0 ]]; then
    rm -rf "$work"
  else
    echo "soak: files kept in $work (offkeyd.log, load.log, events, samples)" >&2
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits up to 180 s for file $1 to be non-empty while process $2 lives (making the RSA
# development key on a busy machine can take a while).
await_file() {
  for _ in $(seq 1 900); do
    [[ -s "$1" ]] && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

# 1. Development state: token, CA, certificates, keys, config. A first offkeyd makes it
#    and is stopped once it serves.
"$bin/offkeyd" --dev --dev_state_dir="$state" --listen=127.0.0.1:0 \
  --admin_listen=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
  --port_file="$work/prepare.port" >"$work/prepare.log" 2>&1 &
prepare=$!
pids+=("$prepare")
if ! await_file "$work/prepare.port" "$prepare"; then
  echo "soak: offkeyd --dev did not start within 180 s:" >&2; cat "$work/prepare.log" >&2; exit 1
fi
kill -TERM "$prepare"; wait "$prepare" || true
unset 'pids[-1]'

# 2. The serving certificate lives in a secret-volume-like directory: tls.crt and
#    tls.key are symlinks through ..data, swapped atomically to a new version directory,
#    so offkeyd never reads a new certificate with an old key.
publish() {  # $1 certificate file, $2 key file, $3 generation (1, 2, ...)
  local generation="$3" version="..v$3"
  mkdir "$work/tls/$version"
  cp "$1" "$work/tls/$version/tls.crt"
  cp "$2" "$work/tls/$version/tls.key"
  chmod 600 "$work/tls/$version/tls.key"
  [[ -L "$work/tls/tls.crt" ]] || ln -s ..data/tls.crt "$work/tls/tls.crt"
  [[ -L "$work/tls/tls.key" ]] || ln -s ..data/tls.key "$work/tls/tls.key"
  ln -sfn "$version" "$work/tls/..data_tmp"
  mv -T "$work/tls/..data_tmp" "$work/tls/..data"
  # The version before the previous one is no longer referenced.
  rm -rf "$work/tls/..v$((generation - 2))"
}
publish "$state/server.pem" "$state/server.key" 1
sed -e "s#\"$state/server.pem\"#\"$work/tls/tls.crt\"#" \
    -e "s#\"$state/server.key\"#\"$work/tls/tls.key\"#" \
    "$state/config.textproto" >"$work/soak.textproto"
grep -q "$work/tls/tls.crt" "$work/soak.textproto" || { echo "soak: cannot find tls.cert_file in $state/config.textproto" >&2; exit 1; }
cat >>"$work/soak.textproto" <<EOF
reload { interval_seconds: 1 }
audit { path: "$work/audit.log" }
EOF

# 3. The offkeyd under test.
"$bin/offkeyd" --dev --dev_state_dir="$state" --config="$work/soak.textproto" \
  --listen=127.0.0.1:0 --admin_listen=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
  --port_file="$work/offkeyd.port" --metrics_port_file="$work/metrics.port" \
  >"$work/offkeyd.log" 2>&1 &
offkeyd=$!
pids+=("$offkeyd")
# The metrics port file is written last of the three.
if ! await_file "$work/metrics.port" "$offkeyd"; then
  echo "soak: offkeyd did not start within 180 s:" >&2; cat "$work/offkeyd.log" >&2; exit 1
fi
port=$(cat "$work/offkeyd.port")
metrics_port=$(cat "$work/metrics.port")
ctl() { "$bin/offkeyctl" --dev-dir="$state" --timeout=30 "$@"; }

# Runs one step, recording "<what> ok" or "<what> error <message>".
step() {
  local what="$1"; shift
  local out
  if out=$("$@" 2>&1); then
    echo "$what ok" >>"$events"
  else
    echo "$what error $(echo "$out" | tr '\n' ' ' | cut -c1-200)" >>"$events"
  fi
}

admin_loop() {
  local i=0 name algorithm
  local algorithms=(ec-p256 ed25519 ec-p256 rsa-2048)
  while [[ ! -e "$work/stop" ]]; do
    i=$((i + 1)); name="soak-$i"; algorithm=${algorithms[$((i % 4))]}
    step create ctl create "$name" -a "$algorithm" -l soak=yes
    step label ctl update "$name" -l cycle="$i"
    step disable ctl -y disable "$name"
    step enable ctl enable "$name"
    step schedule-destroy ctl -y schedule-destroy "$name" --window 1h --force
    step cancel-destroy ctl cancel-destroy "$name"
    step destroy ctl -y destroy "$name" --force
    sleep 1
  done
}

# The SHA-256 fingerprint of the certificate offkeyd serves to a new connection.
served_fingerprint() {
  openssl s_client -connect "127.0.0.1:$port" -servername localhost -alpn h2 \
    -CAfile "$state/ca.pem" -cert "$state/terminator.pem" -key "$state/terminator.key" \
    </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null
}

reload_once() {
  local n="$1" dir="$work/reload"
  mkdir -p "$dir"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/ext"
  if ! openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
         -keyout "$dir/key.pem" -subj "/CN=offkeyd soak $n" -out "$dir/csr.pem" 2>/dev/null ||
     ! openssl x509 -req -in "$dir/csr.pem" -CA "$state/ca.pem" -CAkey "$state/ca.key" \
         -set_serial "0x$(openssl rand -hex 16)" -days 2 -extfile "$dir/ext" \
         -out "$dir/cert.pem" 2>/dev/null; then
    echo "could not make a certificate"
    return 1
  fi
  local want
  want=$(openssl x509 -noout -fingerprint -sha256 -in "$dir/cert.pem")
  publish "$dir/cert.pem" "$dir/key.pem" $((n + 1))
  for _ in $(seq 1 40); do
    [[ "$(served_fingerprint)" == "$want" ]] && return 0
    sleep 0.5
  done
  echo "certificate $n not served within 20 s"
  return 1
}

reload_loop() {
  local n=0
  while [[ ! -e "$work/stop" ]]; do
    for _ in $(seq 1 "$reload_every"); do
      [[ -e "$work/stop" ]] && return 0
      sleep 1
    done
    n=$((n + 1))
    step reload reload_once "$n"
  done
}

# What a kubelet and Prometheus do: readiness and liveness probes every 5 s and a
# metrics scrape every 15 s. Probes are judged as a kubelet with the default
# failureThreshold of 3 judges them: one failure (offkeyd reports not ready while its own
# HSM check waits, e.g. behind an RSA key generation that holds a SoftHSM2 token) is
# recorded as a "miss"; three in a row are an error.
probe_loop() {
  local n=0 path out
  local -A streak=([readyz]=0 [healthz]=0)
  while [[ ! -e "$work/stop" ]]; do
    n=$((n + 1))
    for path in readyz healthz; do
      if out=$(curl -sSf -o /dev/null "http://127.0.0.1:$metrics_port/$path" 2>&1); then
        streak[$path]=0
        echo "$path ok" >>"$events"
      elif (( ++streak[$path] >= 3 )); then
        echo "$path error ${streak[$path]} failures in a row: $out" >>"$events"
      else
        echo "$path miss $out" >>"$events"
      fi
    done
    if (( n % 3 == 0 )); then
      step scrape curl -sSf -o /dev/null "http://127.0.0.1:$metrics_port/metrics"
    fi
    sleep 5
  done
}

sample() {  # Appends one sample line; fails when offkeyd is gone.
  local rss anon file fds tasks
  # VmRSS, then its anonymous part (heap, stacks: where leaks show) and its file-backed
  # part (library code and data paged in as new paths run; shared, bounded).
  read -r rss anon file < <(awk '/^VmRSS:/ {r = $2} /^RssAnon:/ {a = $2}
    /^RssFile:/ {f = $2} END {print r, a, f}' "/proc/$offkeyd/status" 2>/dev/null)
  [[ "$rss" =~ ^[0-9]+$ && "$anon" =~ ^[0-9]+$ && "$file" =~ ^[0-9]+$ ]] || return 1
  fds=$(find "/proc/$offkeyd/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  tasks=$(find "/proc/$offkeyd/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  echo "$(( $(date +%s) - start )) $rss $fds $tasks $anon $file" >>"$samples"
  # And offkeyd's threads by name, to tell which grew.
  echo "$(( $(date +%s) - start )) $(cat /proc/"$offkeyd"/task/*/comm 2>/dev/null |
    sort | uniq -c | awk '{printf "%s=%d ", $2, $1}')" >>"$work/threads"
}

echo "soak: offkeyd pid $offkeyd on 127.0.0.1:$port; $duration s at $rate ops/s over" \
     "$threads threads, warm-up $warmup s, certificate reload every $reload_every s"
start=$(date +%s)
start_load=$(cut -d' ' -f1-3 /proc/loadavg)
"$bin/soak-load" --target="127.0.0.1:$port" --ca="$state/ca.pem" \
  --cert="$state/terminator.pem" --key="$state/terminator.key" \
  --seconds="$duration" --rate="$rate" --threads="$threads" >"$work/load.log" 2>&1 &
load=$!
pids+=("$load")
admin_loop &
pids+=($!)
reload_loop &
pids+=($!)
probe_loop &
pids+=($!)

offkeyd_died=0
while kill -0 "$load" 2>/dev/null; do
  if ! sample; then offkeyd_died=1; break; fi
  # offkeyd's memory map after warm-up and at the end, to tell where RSS went.
  if [[ ! -e "$work/smaps.warm" && $(( $(date +%s) - start )) -ge $warmup ]]; then
    cp "/proc/$offkeyd/smaps" "$work/smaps.warm" 2>/dev/null || true
  fi
  sleep "$sample_every"
done
load_rc=0
wait "$load" || load_rc=$?
sample || offkeyd_died=1
cp "/proc/$offkeyd/smaps" "$work/smaps.end" 2>/dev/null || true
touch "$work/stop"
wait "${pids[-1]}" "${pids[-2]}" "${pids[-3]}" 2>/dev/null || true
pids=("$offkeyd")  # The rest have ended and been waited for.
end_load=$(cut -d' ' -f1-3 /proc/loadavg)

# 4. Summary.
failed=()
[[ $offkeyd_died -eq 0 ]] || failed+=("offkeyd exited during the run")
[[ $load_rc -eq 0 ]] || failed+=("the load driver failed (exit $load_rc)")
awk -v warmup="$warmup" -v aim="$aim_percent" '
  { t[NR] = $1; rss[NR] = $2; fds[NR] = $3; th[NR] = $4; anon[NR] = $5; file[NR] = $6; n = NR }
  END {
    if (n == 0) { print "soak: no samples"; exit 1 }
    w = n
    for (i = 1; i <= n; i++) if (t[i] >= warmup) { w = i; break }
    rmax = 0; fmin = fmax = fds[w]; tmin = tmax = th[w]
    for (i = w; i <= n; i++) {
      if (rss[i] > rmax) rmax = rss[i]
      if (fds[i] < fmin) fmin = fds[i]; if (fds[i] > fmax) fmax = fds[i]
      if (th[i] < tmin) tmin = th[i]; if (th[i] > tmax) tmax = th[i]
    }
    # First and last quarter of the samples after warm-up: the fewest in each.
    q = int((n - w + 1) / 4); if (q < 1) q = 1
    fe = th_e = 1e9; fl = th_l = 1e9
    for (i = w; i < w + q; i++) { if (fds[i] < fe) fe = fds[i]; if (th[i] < th_e) th_e = th[i] }
    for (i = n - q + 1; i <= n; i++) { if (fds[i] < fl) fl = fds[i]; if (th[i] < th_l) th_l = th[i] }
    growth = (rss[n] - rss[w]) * 100.0 / rss[w]
    printf "soak: RSS after warm-up (%d s) %.1f MiB, at end (%d s) %.1f MiB: growth %+.2f %% (aim <= %d %%); max after warm-up %.1f MiB; at start %.1f MiB\n",
      t[w], rss[w] / 1024, t[n], rss[n] / 1024, growth, aim, rmax / 1024, rss[1] / 1024
    printf "soak: of which anonymous (heap, stacks) %.1f -> %.1f MiB (%+.2f %%), file-backed (libraries) %.1f -> %.1f MiB\n",
      anon[w] / 1024, anon[n] / 1024, (anon[n] - anon[w]) * 100.0 / anon[w], file[w] / 1024, file[n] / 1024
    printf "soak: descriptors after warm-up min %d max %d; fewest in first quarter %d, in last quarter %d\n", fmin, fmax, fe, fl
    printf "soak: threads     after warm-up min %d max %d; fewest in first quarter %d, in last quarter %d (judged by name below)\n", tmin, tmax, th_e, th_l
    printf "soak: %d samples every few seconds, warm-up ended at sample %d\n", n, w
    bad = 0
    if (growth > aim) { print "soak: FAIL: RSS grew more than the aim"; bad = 1 }
    if (fl > fe) { print "soak: FAIL: descriptors grew"; bad = 1 }
    exit bad
  }' "$samples" || failed+=("memory or descriptors (above)")
# Resident memory by kind of mapping, after warm-up and at the end.
rss_by_mapping() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / { name = $6 == "" ? "anon" : ($6 ~ /^\// ? "file" : $6) }
       /^Rss:/ { kb[name] += $2 }
       END { printf "%.1f %.1f %.1f %.1f\n", kb["[heap]"] / 1024, kb["anon"] / 1024,
             kb["[stack]"] / 1024, kb["file"] / 1024 }' "$1"
}
if [[ -s "$work/smaps.warm" && -s "$work/smaps.end" ]]; then
  read -r h0 a0 s0 f0 < <(rss_by_mapping "$work/smaps.warm")
  read -r h1 a1 s1 f1 < <(rss_by_mapping "$work/smaps.end")
  echo "soak: RSS by mapping after warm-up -> at end (MiB): [heap] $h0 -> $h1;" \
       "anonymous mappings (other threads' malloc arenas, thread stacks) $a0 -> $a1;" \
       "main stack $s0 -> $s1; files $f0 -> $f1"
fi

# Threads by name, judged the same way (fewest in the last quarter against fewest in the
# first quarter after warm-up), except two pools of gRPC's that never shrink:
# default-executor adds threads up to two per core as work queues up, and the timer
# manager adds one whenever every timer thread is busy at once ("always increasing until
# all the threads are stopped", timer_manager.cc). When a burst comes late in the run
# they step up once; they are reported, not judged.
awk -v warmup="$warmup" '
  { t[NR] = $1; for (i = 2; i <= NF; i++) { split($i, kv, "="); c[kv[1], NR] = kv[2]; names[kv[1]] = 1 }; n = NR }
  END {
    w = n
    for (i = 1; i <= n; i++) if (t[i] >= warmup) { w = i; break }
    q = int((n - w + 1) / 4); if (q < 1) q = 1
    bad = 0
    for (name in names) {
      early = late = 1e9; peak = 0
      for (i = w; i < w + q; i++) if (c[name, i] + 0 < early) early = c[name, i] + 0
      for (i = n - q + 1; i <= n; i++) if (c[name, i] + 0 < late) late = c[name, i] + 0
      for (i = 1; i <= n; i++) if (c[name, i] + 0 > peak) peak = c[name, i] + 0
      line = sprintf("%s: fewest %d in first quarter, %d in last quarter, most %d", name, early, late, peak)
      if (name == "default-executo" || name == "grpc_global_tim") {
        if (late > early) printf "soak: threads %s (gRPC pool that never shrinks; not judged)\n", line
      } else if (late > early) {
        printf "soak: FAIL: threads grew: %s\n", line; bad = 1
      }
    }
    exit bad
  }' "$work/threads" || failed+=("threads grew (above)")
sed -n 's/^soak-load: \(RESULT\|TOTAL\) /soak: data plane /p' "$work/load.log"
grep -q '^soak-load: TOTAL' "$work/load.log" || { echo "soak: the load driver printed no totals:"; tail -5 "$work/load.log"; }
awk '{ what[$1] = 1 }
  $2 == "ok" { ok[$1]++ }
  $2 == "miss" { miss[$1]++ }
  $2 == "error" { err[$1]++; if (!($1 in first)) { w = $1; $1 = $2 = ""; first[w] = $0 } }
  END { for (w in what) printf "soak: %-16s ok %d errors %d%s%s\n", w, ok[w], err[w],
          (w in miss) ? sprintf(" single misses %d", miss[w]) : "",
          (w in first) ? "  first error:" first[w] : "" }' "$events" | sort
if grep -q '^[^ ]* error' "$events"; then failed+=("admin, reload or probe errors (above)"); fi
grep -q '^reload ok' "$events" || failed+=("no certificate reload was checked")
grep -q '^destroy ok' "$events" || failed+=("no admin cycle completed")
echo "soak: load average (1, 5, 15 min) at start $start_load, at end $end_load"
if [[ ${#failed[@]} -eq 0 ]]; then
  echo "soak: PASS"
else
  printf 'soak: FAIL: %s\n' "${failed[@]}"
  exit 1
fi
