#!/bin/bash
# Makes the Debian packages offkeyd, offkeyctl and offkey-openssl-provider from binaries
# already built (tools/package.sh builds them with Bazel first, then calls this).
#
#   packaging/build-debs.sh --offkeyd FILE --offkeyctl FILE --provider FILE \
#       --version VERSION --maintainer "NAME <EMAIL>" [--date RFC2822-DATE] --out DIR
#
# Debian's own tools do the work: the debian/ directory beside this script goes into a
# scratch source tree with the binaries under prebuilt/, and `dpkg-buildpackage -b` runs
# debhelper there (strip, dpkg-shlibdeps, systemd maintainer scripts, man pages,
# changelogs, md5sums). Needs debhelper and dpkg-dev (tools/setup.sh); no network.
set -euo pipefail

usage() { sed -n 2,12p "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "build-debs: $*" >&2; exit 1; }

offkeyd="" offkeyctl="" provider="" version="" maintainer="" date="" out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --offkeyd) offkeyd=$2; shift 2 ;;
    --offkeyctl) offkeyctl=$2; shift 2 ;;
    --provider) provider=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --maintainer) maintainer=$2; shift 2 ;;
    --date) date=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ -n "$offkeyd" && -n "$offkeyctl" && -n "$provider" && -n "$version" && -n "$out" &&
  -n "$maintainer" ]] ||
  { usage >&2; exit 2; }
for f in "$offkeyd" "$offkeyctl" "$provider"; do [[ -f "$f" ]] || die "no file $f"; done
for tool in dpkg-buildpackage dh; do
  command -v "$tool" >/dev/null || die "needs dpkg-dev and debhelper (tools/setup.sh installs them)"
done
[[ -n "$date" ]] || date=$(date -R)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src="$work/offkey-$version"
mkdir -p "$src/prebuilt/completions" "$src/packaging" "$out"
cp -rL "$here/debian" "$src/debian"
sed -i "s|@MAINTAINER@|$maintainer|" "$src/debian/control"
cp -rL "$here/man" "$here/examples" "$src/packaging/"
install -m 0755 "$offkeyd" "$src/prebuilt/offkeyd"
install -m 0755 "$offkeyctl" "$src/prebuilt/offkeyctl"
install -m 0644 "$provider" "$src/prebuilt/offkey.so"
# The completion script comes from offkeyctl itself, so it always matches its commands.
"$offkeyctl" completion bash >"$src/prebuilt/completions/offkeyctl"

cat >"$src/debian/changelog" <<EOF_CHANGELOG
offkey ($version) unstable; urgency=medium

  * Built from the offkey source tree.

 -- $maintainer  $date
EOF_CHANGELOG

# No -dbgsym packages: the binaries are built with -g1 for backtraces, which the
# stripped packages do not need.
# The log is shown only on failure, each line with its time (dpkg-shlibdeps is the slow
# step: it looks up every library the binaries link).
(cd "$src" && DEB_BUILD_OPTIONS="noautodbgsym ${DEB_BUILD_OPTIONS:-}" \
  dpkg-buildpackage -b -us -uc --no-pre-clean 2>&1 |
  while IFS= read -r line; do echo "$(date +%T) $line"; done >"$work/build.log"
  exit "${PIPESTATUS[0]}") ||
  { cat "$work/build.log" >&2; die "dpkg-buildpackage failed"; }
for f in "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes; do
  cp "$f" "$out/"
done
ls -1 "$out"/*_"$version"_*.deb
