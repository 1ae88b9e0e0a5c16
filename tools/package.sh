#!/bin/bash
# Builds offkeyd, offkeyctl and the OpenSSL provider with Bazel (opt mode, .bazelrc), then
# the Debian packages offkeyd, offkeyctl and offkey-openssl-provider with Debian's own
# tools (packaging/build-debs.sh: debhelper, dpkg-buildpackage).
#
#   tools/package.sh --out DIR [--lintian]
#
# The Maintainer field: $DEBFULLNAME <$DEBEMAIL> (Debian's convention), else the
# committer of the checked-out commit.
# The version is 0~gitYYYYMMDD.HHMMSS.COMMIT of the checked-out commit (its commit time,
# so later commits sort later; +dirty when the tree has changes).
set -euo pipefail
cd "$(dirname "$0")/.."

out="" lintian=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --lintian) lintian=1; shift ;;
    -h | --help) sed -n 2,12p "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "package: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n "$out" ]] || { echo "package: give --out DIR (see --help)" >&2; exit 2; }

bazel build //service:offkeyd //client/cli:offkeyctl //client/openssl:offkey_module.so
bin=$(bazel info bazel-bin 2>/dev/null)

epoch=$(git log -1 --format=%ct)
version="0~git$(date -u -d "@$epoch" +%Y%m%d.%H%M%S).$(git rev-parse --short=7 HEAD)"
[[ -z "$(git status --porcelain --untracked-files=no)" ]] || version+="+dirty"
name="${DEBFULLNAME:-$(git log -1 --format=%cn)}"
email="${DEBEMAIL:-$(git log -1 --format=%ce)}"
mkdir -p "$out"
packaging/build-debs.sh --offkeyd "$bin/service/offkeyd" \
  --offkeyctl "$bin/client/cli/offkeyctl" --provider "$bin/client/openssl/offkey_module.so" \
  --version "$version" --maintainer "$name <$email>" --date "$(date -R -u -d "@$epoch")" --out "$out"
if [[ $lintian -eq 1 ]]; then
  lintian --info --display-info --fail-on error,warning "$out"/*_"$version"_*.deb
fi
