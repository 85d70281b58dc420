#!/usr/bin/env bash
# Installs everything TinCan-TS needs on a fresh Debian machine (run as root), then the
# workspace's npm dependencies, then builds. Safe to run again: each step is skipped when done.
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION=10.34.8
APT_PACKAGES=(iproute2 iputils-ping fping iperf3 iptables prosody coturn openssl dnsutils procps lua-unbound wireguard-go wireguard-tools nebula
  systemd # systemd-analyze verify of the units (test/deb-package.test.ts)
  podman runc containernetworking-plugins docker-compose debootstrap mmdebstrap) # pnpm test:compose

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "bootstrap: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian packages start their services; the lab runs its own private instances instead.
for svc in prosody coturn; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then systemctl stop "$svc" || true; fi
done

if ! command -v pnpm >/dev/null || [[ "$(pnpm --version)" != "$PNPM_VERSION" ]]; then
  echo "bootstrap: npm install -g pnpm@$PNPM_VERSION"
  npm install -g --silent "pnpm@$PNPM_VERSION"
fi

pnpm install --frozen-lockfile=false --reporter=append-only
pnpm run build
