#!/bin/sh
# Starts coturn with docker/coturn/turnserver.conf plus the TURN user from
# /run/secrets/tincan/turn.password (kept off the command line).
set -eu
install -d -o turnserver -g turnserver /run/turnserver
umask 077
{ cat /etc/turnserver.conf; echo "user=tincan:$(cat /run/secrets/tincan/turn.password)"; } > /run/turnserver/turnserver.conf
chown turnserver /run/turnserver/turnserver.conf
exec turnserver -c /run/turnserver/turnserver.conf
