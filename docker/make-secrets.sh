#!/usr/bin/env bash
# Creates the compose stack's secrets in docker/secrets/ (run once, as root, before `compose up`):
# an XMPP password per node, the TURN password and a self-signed certificate for vpn.test that
# the nodes trust as their CA (xmpp.caFile). Existing files are kept. The files are group 5800
# (the image's `tincan` group) and mode 0640, so the nodes' unprivileged user can read them.
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
install -d -m 0750 "$dir"
for name in alice bob carol turn; do
  [[ -e "$dir/$name.password" ]] || (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$dir/$name.password")
done
if [[ ! -e "$dir/vpn.test.crt" ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj /CN=vpn.test \
    -addext subjectAltName=DNS:vpn.test -keyout "$dir/vpn.test.key" -out "$dir/vpn.test.crt" 2>/dev/null
fi
chgrp -R 5800 "$dir"
chmod 0640 "$dir"/*
echo "secrets in $dir"
