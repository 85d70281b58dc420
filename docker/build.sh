#!/usr/bin/env bash
# Builds the compose stack's images with podman (or docker: ENGINE=docker), from the repository root.
#   docker/build.sh base     # podman only: a debian:bookworm base from debootstrap, when no registry
#                            # is reachable (skipped when the image exists; FORCE=1 rebuilds it)
#   docker/build.sh images   # localhost/tincan-ts, localhost/tincan-{prosody,coturn,router}
# Env: ENGINE (podman), EXTRA_CA_FILE (a CA bundle to trust for npm downloads, e.g. a TLS-inspecting
# proxy's: /etc/ssl/certs/ca-certificates.crt), DEBIAN_MIRROR (http://deb.debian.org/debian).
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${ENGINE:-podman}
BASE=docker.io/library/debian:bookworm

base() {
  if [[ -z ${FORCE:-} ]] && "$ENGINE" image exists "$BASE" 2>/dev/null; then
    echo "build.sh: $BASE exists (FORCE=1 rebuilds it)"
    return
  fi
  local rootfs
  rootfs=$(mktemp -d /var/tmp/tincan-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' RETURN
  debootstrap --variant=minbase bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | "$ENGINE" import --change 'CMD ["/bin/bash"]' - localhost/debian:bookworm >/dev/null
  "$ENGINE" tag localhost/debian:bookworm "$BASE"
  echo "build.sh: imported $BASE"
}

images() {
  local args=()
  if [[ $ENGINE == podman ]]; then args+=(--format docker); fi # keeps the HEALTHCHECK
  if [[ -n ${EXTRA_CA_FILE:-} ]]; then
    args+=(--volume "$EXTRA_CA_FILE:/run/build-ca.crt:ro" --build-arg EXTRA_CA_FILE=/run/build-ca.crt)
  fi
  "$ENGINE" build "${args[@]}" -f docker/Dockerfile -t localhost/tincan-ts:latest .
  for target in prosody coturn router; do
    "$ENGINE" build "${args[@]}" -f docker/lab.Dockerfile --target "$target" -t "localhost/tincan-$target:latest" .
  done
}

case "${1:-}" in
  base) base ;;
  images) images ;;
  *)
    sed -n '2,7s/^# \{0,1\}//p' "$0"
    exit 2
    ;;
esac
