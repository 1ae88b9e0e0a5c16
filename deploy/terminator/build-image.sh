#!/bin/bash
# Builds the image offkey-nginx-terminator (Containerfile beside this script): Debian's
# nginx plus the offkey-openssl-provider package, on the Debian 12 base image that
# deploy/image/build-image.sh makes with mmdebstrap. Tags localhost/offkey-nginx-terminator
# :dev and :<git describe>.
#
#   deploy/terminator/build-image.sh [--deb FILE]
#
#   --deb FILE  the provider package to install; default: build the packages with
#               tools/package.sh first
# Needs root (rootful podman) and Debian's archive (apt in the build); no registry.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
base_image=localhost/offkey-debian12-base:latest
image=localhost/offkey-nginx-terminator
export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/deploy/image/containers.conf}"
die() { echo "terminator build-image: $*" >&2; exit 1; }

deb=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --deb) deb=$2; shift 2 ;;
    -h | --help) sed -n 2,11p "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

[[ $(id -u) -eq 0 ]] || die "needs root (rootful podman)"
command -v podman >/dev/null || die "podman is missing: deploy/image/build-image.sh installs it"
podman image exists "$base_image" ||
  die "the base image $base_image is missing: deploy/image/build-image.sh makes it"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -z "$deb" ]]; then
  "$root/tools/package.sh" --out "$work/debs"
  deb=$(ls "$work"/debs/offkey-openssl-provider_*.deb)
fi
[[ -f "$deb" ]] || die "no package $deb"
cp "$deb" "$work/offkey-openssl-provider.deb"
cp "$here/Containerfile" "$work/Containerfile"

version=$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo unknown)
tags=(-t "$image:dev")
[[ "$version" == unknown ]] || tags+=(-t "$image:$version")
podman build --layers --pull=never --network=host "${tags[@]}" \
  --build-arg "BASE_IMAGE=$base_image" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)" \
  --label "org.opencontainers.image.source.package=$(basename "$deb")" \
  "$work"
size=$(podman image inspect --format '{{.Size}}' "$image:dev")
echo "terminator build-image: done: $image:dev ($version), $((size / 1000000)) MB"
