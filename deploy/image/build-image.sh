#!/bin/bash
# Builds offkey's container image, offline apart from Debian's package archive:
#   1. installs buildah, podman, mmdebstrap and runc from Debian if missing;
#   2. makes the base image localhost/offkey-debian12-base (Debian 12 minbase, with
#      mmdebstrap, from the apt sources this machine already uses) unless it exists;
#   3. builds deploy/image/Containerfile (Bazel build stage, minimal runtime stage) and
#      tags localhost/offkeyd:dev and localhost/offkeyd:<git describe>.
# Idempotent: a second run reuses the base image and the cached layers.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: deploy/image/build-image.sh [--rebuild-base] [--no-cache] [--help]

Builds the offkeyd container image with podman/buildah on a Debian 12 host, using only
Debian's package archive (no container registry).

  --rebuild-base  make the Debian 12 base image again even if it exists
  --no-cache      rebuild every layer of the Containerfile (base image kept)
  --help          this text

Images:
  localhost/offkey-debian12-base:latest   mmdebstrap --variant=minbase bookworm
  localhost/offkeyd:dev                   offkeyd (ENTRYPOINT) and offkeyctl
  localhost/offkeyd:<git describe>        the same image, by version

Environment:
  CONTAINERS_CONF  containers.conf to use (default: deploy/image/containers.conf:
                   runtime runc, ulimits nofile 20000 and nproc 32768)

Needs root (rootful podman). Run an image: see deploy/image/README.md.
EOF
}

rebuild_base=0
cache=(--layers)
for arg in "$@"; do
  case "$arg" in
    --rebuild-base) rebuild_base=1 ;;
    --no-cache) cache=(--no-cache) ;;
    -h | --help) usage; exit 0 ;;
    *) echo "build-image: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
base_image=localhost/offkey-debian12-base:latest
image=localhost/offkeyd
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"

say() { echo "build-image: $*"; }
die() { echo "build-image: $*" >&2; exit 1; }

step_start=0
step() {  # step NAME: prints how long the previous step took, then announces NAME
  local now
  now=$(date +%s)
  [[ $step_start -eq 0 ]] || say "  ... took $((now - step_start)) s"
  step_start=$now
  [[ $# -eq 0 ]] || say "$*"
}

[[ $(id -u) -eq 0 ]] || die "needs root (rootful podman); run it with sudo"
[[ -r "$CONTAINERS_CONF" ]] || die "CONTAINERS_CONF=$CONTAINERS_CONF is not readable"

# 1. Tools, from Debian's archive, only if missing.
step "tools: buildah podman mmdebstrap runc"
tools=(buildah podman mmdebstrap runc)
missing=()
for p in "${tools[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The base image: Debian 12 minbase from this machine's apt sources.
step "base image: $base_image"
if [[ $rebuild_base -eq 0 ]] && podman image exists "$base_image"; then
  say "  present; reusing it (--rebuild-base makes it again)"
else
  sources=()
  if [[ -f /etc/apt/sources.list ]] && grep -qE '^[[:space:]]*deb ' /etc/apt/sources.list; then
    sources+=(/etc/apt/sources.list)
  fi
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] && sources+=("$f")
  done
  [[ ${#sources[@]} -gt 0 ]] || die "no apt sources in /etc/apt/sources.list*"
  say "  mmdebstrap --variant=minbase bookworm from ${sources[*]}"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # Documentation and translations are left out of the base (and so of every package
  # installed on it later); copyright files stay.
  mmdebstrap --quiet --variant=minbase --format=tar \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    bookworm "$work/base.tar" "${sources[@]}"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --change 'LABEL org.opencontainers.image.title=offkey-debian12-base' \
    --change 'LABEL org.opencontainers.image.description="Debian 12 minbase (mmdebstrap)"' \
    "$work/base.tar" "$base_image" >/dev/null
  rm -rf "$work"
  trap - EXIT
fi

# 3. The image.
version=$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo unknown)
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
# The commit time, not now: an unchanged tree rebuilds to the same image.
created=$(git -C "$root" log -1 --format=%cI 2>/dev/null || true)
step "image: $image:dev and $image:$version (Containerfile build; Bazel runs inside)"
tags=(-t "$image:dev")
[[ "$version" == unknown ]] || tags+=(-t "$image:$version")
podman build "${cache[@]}" --pull=never --network=host \
  -f "$here/Containerfile" "${tags[@]}" \
  --build-arg "BASE_IMAGE=$base_image" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$revision" \
  --label "org.opencontainers.image.created=$created" \
  "$root"
step
size=$(podman image inspect --format '{{.Size}}' "$image:dev")
say "done: $image:dev ($version), $((size / 1000000)) MB"
