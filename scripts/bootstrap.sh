#!/usr/bin/env bash
# Installs everything TinCan-TS needs on a fresh Debian machine (run as root), then the
# workspace's npm dependencies, then builds. Safe to run again: each step is skipped when done.
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION=10.34.8
APT_PACKAGES=(iproute2 iputils-ping fping iperf3 iptables prosody coturn openssl dnsutils procps lua-unbound wireguard-go wireguard-tools nebula
  ejabberd # the second XMPP server of the lab (test/ejabberd.test.ts)
  systemd # systemd-analyze verify of the units (test/deb-package.test.ts)
  podman runc containernetworking-plugins docker-compose debootstrap mmdebstrap # pnpm test:compose
  chromium) # the overlay map in a headless browser (test/overlay-map.test.ts)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "bootstrap: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The Debian packages would start their services (ejabberd also an epmd); the lab runs its own
  # private instances instead, so nothing may start during the install (policy-rc.d exit 101).
  own_policy=
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}" >/dev/null
  if [[ -n $own_policy ]]; then rm -f /usr/sbin/policy-rc.d; fi
fi
# Stop and disable the system services, in case an earlier install started them.
for svc in prosody coturn ejabberd epmd.socket epmd.service; do
  if [[ -d /run/systemd/system ]]; then systemctl disable --now --quiet "$svc" 2>/dev/null || true; fi
done
if [[ ! -d /run/systemd/system ]] && command -v update-rc.d >/dev/null; then
  for svc in prosody coturn ejabberd; do update-rc.d "$svc" disable >/dev/null 2>&1 || true; done
fi
# No system epmd may hold port 4369 in the root namespace (the lab runs one per namespace): stop it by PID.
for pid in $(ss -Hltnp 'sport = :4369' 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == epmd ]] && kill "$pid" 2>/dev/null || true
done

if ! command -v pnpm >/dev/null || [[ "$(pnpm --version)" != "$PNPM_VERSION" ]]; then
  echo "bootstrap: npm install -g pnpm@$PNPM_VERSION"
  npm install -g --silent "pnpm@$PNPM_VERSION"
fi

pnpm install --frozen-lockfile=false --reporter=append-only
pnpm run build
