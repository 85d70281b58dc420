#!/usr/bin/env bash
# Builds the compose stack's images with podman (or docker: ENGINE=docker), from the repository root.
#   docker/build.sh base     # podman only: a debian:bookworm base from mmdebstrap (or debootstrap), when
#                            # no registry is reachable (skipped when the image exists; FORCE=1 rebuilds it)
#   docker/build.sh images   # localhost/tincan-ts and localhost/tincan-lab (prosody, coturn, router), in parallel
# Env: ENGINE (podman), EXTRA_CA_FILE (a CA bundle to trust for npm downloads, e.g. a TLS-inspecting
# proxy's: /etc/ssl/certs/ca-certificates.crt), DEBIAN_MIRROR (http://deb.debian.org/debian),
# PREBUILT (a `pnpm deploy --prod` output to put in the node image instead of building it there).
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${ENGINE:-podman}
BASE=docker.io/library/debian:bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# No documentation, manual pages or translations in the base, nor in what images install on top of it.
DPKG_EXCLUDES='path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias'

base() {
  if [[ -z ${FORCE:-} ]] && "$ENGINE" image exists "$BASE" 2>/dev/null; then
    echo "build.sh: $BASE exists (FORCE=1 rebuilds it)"
    return
  fi
  local rootfs
  rootfs=$(mktemp -d /var/tmp/tincan-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' RETURN
  if command -v mmdebstrap >/dev/null; then
    # Downloads in parallel and unpacks in one dpkg run: several times faster than debootstrap.
    local opts=()
    while read -r line; do opts+=(--dpkgopt="$line"); done <<<"$DPKG_EXCLUDES"
    mmdebstrap --quiet --mode=root --variant=minbase "${opts[@]}" bookworm "$rootfs" "$MIRROR"
  else
    debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >/dev/null
    echo "$DPKG_EXCLUDES" >"$rootfs/etc/dpkg/dpkg.cfg.d/01-tincan-nodoc"
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf "$rootfs"/usr/share/{man,info}/* "$rootfs"/var/cache/apt/archives/*.deb
  fi
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  tar -C "$rootfs" -c . | "$ENGINE" import --change 'CMD ["/bin/bash"]' - localhost/debian:bookworm >/dev/null
  "$ENGINE" tag localhost/debian:bookworm "$BASE"
  echo "build.sh: imported $BASE"
}

images() {
  local args=() node_args=()
  if [[ $ENGINE == podman ]]; then args+=(--format docker); fi # keeps the HEALTHCHECK
  if [[ -n ${EXTRA_CA_FILE:-} ]]; then
    args+=(--volume "$EXTRA_CA_FILE:/run/build-ca.crt:ro" --build-arg EXTRA_CA_FILE=/run/build-ca.crt)
  fi
  if [[ -n ${PREBUILT:-} ]]; then node_args+=(--target prebuilt --build-context "deploy=$PREBUILT"); fi
  # Both at once: one downloads while the other unpacks or compiles.
  "$ENGINE" build "${args[@]}" "${node_args[@]}" -f docker/Dockerfile -t localhost/tincan-ts:latest . &
  local node=$!
  "$ENGINE" build "${args[@]}" -f docker/lab.Dockerfile -t localhost/tincan-lab:latest . &
  local lab=$!
  local status=0
  wait "$node" || status=$?
  wait "$lab" || status=$?
  return "$status"
}

case "${1:-}" in
  base) base ;;
  images) images ;;
  *)
    sed -n '2,8s/^# \{0,1\}//p' "$0"
    exit 2
    ;;
esac
