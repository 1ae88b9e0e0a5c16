#!/bin/bash
# The Debian packages, built and installed as an operator would:
#   1. packaging/build-debs.sh makes offkeyd, offkeyctl and offkey-openssl-provider from
#      this build's binaries (debhelper, dpkg-buildpackage);
#   2. their contents and control data are checked on the host: the provider exports
#      OSSL_provider_init alone, dependencies come from dpkg-shlibdeps, the unit is
#      hardened; lintian finds no error or warning;
#   3. a Debian 12 minbase container (localhost/offkey-debian12-base, made by
#      deploy/image/build-image.sh) installs them with apt, with Debian's nginx and curl
#      (the only network use: Debian's archive); the result is committed to a scratch image;
#   4. a container of that image on its own network namespace runs in_container.sh:
#      offkeyd as the unit runs it, offkeyctl makes a key, certificate and key reference,
#      nginx serves a page over TLS 1.2 and 1.3 through the installed provider.
# Runs outside the sandbox as root (rootful podman), like //deploy/image:image_test.
set -euo pipefail

base_image="${OFFKEY_BASE_IMAGE:-localhost/offkey-debian12-base:latest}"
runfiles="$TEST_SRCDIR/offkey"
export CONTAINERS_CONF="$runfiles/deploy/image/containers.conf"
logs="${TEST_UNDECLARED_OUTPUTS_DIR:-$TEST_TMPDIR}"
# Downloaded .debs are kept between runs: only the first run fetches nginx and the
# libraries from Debian's archive.
apt_cache=/var/cache/offkey-package-test/archives
version="0~test$(date -u +%Y%m%d.%H%M%S)"

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $* ($SECONDS s)"; }

command -v podman >/dev/null ||
  fail "podman is not installed: run deploy/image/build-image.sh (it installs podman and" \
       "makes the base image)"
[[ $(id -u) -eq 0 ]] || fail "needs root (rootful podman)"
podman image exists "$base_image" ||
  fail "base image $base_image is missing: deploy/image/build-image.sh makes it"
for tool in dpkg-buildpackage dh lintian nm; do
  command -v "$tool" >/dev/null || fail "$tool is missing: run tools/setup.sh"
done

step "build the packages"
debs="$TEST_TMPDIR/debs"
"$runfiles/packaging/build-debs.sh" --offkeyd "$runfiles/service/offkeyd" \
  --offkeyctl "$runfiles/client/cli/offkeyctl" \
  --provider "$runfiles/client/openssl/offkey_module.so" --version "$version" \
  --maintainer "offkey package test <package-test@example.org>" --out "$debs"
deb() { echo "$debs/${1}_${version}_amd64.deb"; }
for p in offkeyd offkeyctl offkey-openssl-provider; do
  [[ -f "$(deb "$p")" ]] || fail "no package $p"
  echo "$p: $(stat -c %s "$(deb "$p")") bytes, installed size $(dpkg-deb -f "$(deb "$p")" \
    Installed-Size) KiB"
done

step "package contents"
x="$TEST_TMPDIR/x"
for p in offkeyd offkeyctl offkey-openssl-provider; do
  mkdir -p "$x/$p"
  dpkg-deb -x "$(deb "$p")" "$x/$p"
  dpkg-deb -e "$(deb "$p")" "$x/$p/DEBIAN"
  [[ -s "$x/$p/DEBIAN/md5sums" ]] || fail "$p has no md5sums"
  (cd "$x/$p" && md5sum --quiet -c DEBIAN/md5sums) || fail "$p md5sums do not match"
  [[ -s "$x/$p/usr/share/doc/$p/changelog.gz" ]] || fail "$p has no changelog.gz"
  grep -q '^License: Apache-2.0' "$x/$p/usr/share/doc/$p/copyright" || fail "$p copyright"
done
# The provider exports its entry point and nothing else.
so="$x/offkey-openssl-provider/usr/lib/x86_64-linux-gnu/ossl-modules/offkey.so"
exported=$(nm -D --defined-only "$so" | awk '{print $3}')
echo "offkey.so exports: $exported"
[[ "$exported" == OSSL_provider_init ]] || fail "offkey.so exports more than OSSL_provider_init"
# Stripped, and its dependencies from its NEEDED libraries.
for f in "$x/offkeyd/usr/sbin/offkeyd" "$x/offkeyctl/usr/bin/offkeyctl" "$so"; do
  if readelf -S "$f" | grep -qE '\.debug_|\.symtab'; then fail "$f is not stripped"; fi
done
for p in offkeyd offkeyctl offkey-openssl-provider; do
  depends=$(dpkg-deb -f "$(deb "$p")" Depends)
  echo "$p Depends: $depends"
  for lib in libc6 libgrpc++1.51 libprotobuf32 libssl3; do
    [[ "$depends" == *"$lib "* || "$depends" == *"$lib," || "$depends" == *"$lib" ]] ||
      fail "$p does not depend on $lib"
  done
done
[[ "$(dpkg-deb -f "$(deb offkeyd)" Depends)" == *adduser* ]] || fail "offkeyd needs adduser"
grep -qx /etc/default/offkeyd "$x/offkeyd/DEBIAN/conffiles" || fail "conffiles"
unit="$x/offkeyd/lib/systemd/system/offkeyd.service"
for setting in Type=notify User=offkey ProtectSystem=strict NoNewPrivileges=yes \
  CapabilityBoundingSet= AmbientCapabilities= LimitCORE=0 StateDirectory=offkey \
  ConfigurationDirectory=offkey PrivateTmp=yes ProtectHome=yes \
  'ExecReload=/bin/kill -HUP $MAINPID'; do
  grep -qx "$setting" "$unit" || fail "the unit lacks $setting"
done
grep -q 'deb-systemd-helper' "$x/offkeyd/DEBIAN/postinst" || fail "postinst has no unit snippet"
if command -v systemd-analyze >/dev/null; then
  # The unit's syntax and settings, against the packaged binary's path; and its exposure
  # score (0 = fully sandboxed, 10 = none), which must stay at 2 or below (--threshold
  # counts tenths).
  sed -e "s|/usr/sbin/offkeyd|$x/offkeyd/usr/sbin/offkeyd|" -e '/^ConditionPathExists=/d' \
    "$unit" >"$TEST_TMPDIR/offkeyd.service"
  systemd-analyze verify --man=no "$TEST_TMPDIR/offkeyd.service" >"$logs/verify.txt" 2>&1 ||
    { cat "$logs/verify.txt" >&2; fail "systemd-analyze verify rejects the unit"; }
  [[ ! -s "$logs/verify.txt" ]] || { cat "$logs/verify.txt" >&2; fail "unit warnings"; }
  systemd-analyze security --offline=yes --threshold=20 "$TEST_TMPDIR/offkeyd.service" \
    >"$logs/security.txt" 2>&1 || { cat "$logs/security.txt" >&2; fail "unit exposure > 2"; }
  grep 'Overall exposure' "$logs/security.txt"
fi

step "lintian"
lintian --info --display-info --fail-on error,warning "$debs"/*_"$version"_amd64.deb >"$logs/lintian.txt" 2>&1 ||
  { cat "$logs/lintian.txt" >&2; fail "lintian reports errors or warnings"; }
cat "$logs/lintian.txt"

cid="" image=""
cleanup() {
  [[ -z "$cid" ]] || podman rm -f -t 0 "$cid" >/dev/null 2>&1 || true
  [[ -z "$image" ]] || podman rmi -f "$image" >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "apt install in a Debian 12 container"
mkdir -p "$apt_cache/partial"
cid=$(podman run -d --pull=never --network=host \
  -v "$debs:/debs:ro" -v "$apt_cache:/var/cache/apt/archives" "$base_image" sleep infinity)
# The base leaves documentation and manual pages out; the packages' are checked too.
podman exec "$cid" rm -f /etc/dpkg/dpkg.cfg.d/99mmdebstrap
podman exec -e DEBIAN_FRONTEND=noninteractive "$cid" bash -c "
  apt-get update -qq &&
  apt-get install -y -qq --no-install-recommends \
    /debs/offkeyd_${version}_amd64.deb /debs/offkeyctl_${version}_amd64.deb \
    /debs/offkey-openssl-provider_${version}_amd64.deb \
    nginx curl softhsm2 openssl" >"$logs/apt.log" 2>&1 ||
  { tail -40 "$logs/apt.log" >&2; fail "apt-get install failed"; }
image="localhost/offkey-package-test:$$"
podman commit --quiet "$cid" "$image" >/dev/null
podman rm -f -t 0 "$cid" >/dev/null
cid=""

step "keyless TLS with the installed packages (own network namespace)"
# The container has only its own loopback, so any port below 32768 is free there.
ports=$(shuf -i 20000-32000 -n 4 | tr '\n' ' ')
echo "ports (data admin metrics nginx): $ports"
mkdir -p "$TEST_TMPDIR/container-logs"
cid=$(podman run -d --pull=never --network=none \
  -v "$runfiles/packaging/in_container.sh:/test/in_container.sh:ro" \
  -v "$TEST_TMPDIR/container-logs:/logs" "$image" sleep infinity)
# shellcheck disable=SC2086
if ! podman exec "$cid" /test/in_container.sh $ports /logs; then
  cp -r "$TEST_TMPDIR/container-logs" "$logs/" 2>/dev/null || true
  fail "the in-container test failed (logs in the test's outputs)"
fi
cp -r "$TEST_TMPDIR/container-logs" "$logs/" 2>/dev/null || true
# The PINs and keys of the development state made in the container, for the suite's log
# scan (tools/logscan.py).
podman cp "$cid:/var/lib/offkey/dev" "$TEST_TMPDIR/dev-state"
# shellcheck source=base/testing/secret_ledger.sh
source "$runfiles/base/testing/secret_ledger.sh"
record_dev_state_secrets "$TEST_TMPDIR/dev-state"
echo "PASS ($SECONDS s)"
