#!/bin/sh
# Starts prosody as its own user after creating an account per /run/secrets/tincan/<user>.password
# and installing the TLS key and certificate from the same directory (see docker/make-secrets.sh).
set -eu
secrets=/run/secrets/tincan
config=/etc/prosody/prosody.cfg.lua
install -d -o prosody -g prosody /run/prosody /var/lib/prosody
install -o prosody -g prosody -m 0600 "$secrets/vpn.test.key" /var/lib/prosody/vpn.test.key
install -o prosody -g prosody -m 0644 "$secrets/vpn.test.crt" /var/lib/prosody/vpn.test.crt
for file in "$secrets"/*.password; do
  user=$(basename "$file" .password)
  [ "$user" = turn ] && continue
  prosodyctl --config "$config" register "$user" vpn.test "$(cat "$file")"
done
exec setpriv --reuid prosody --regid prosody --init-groups prosody --config "$config" -F
