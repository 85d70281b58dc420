#!/bin/bash
# Container entrypoint (under tini): runs the datapath and one controller, both as user `tincan`.
#   tincan-entrypoint groupvpn|socialvpn|none [controller args...]
# The datapath gets CAP_NET_ADMIN as an ambient capability (the container needs --cap-add NET_ADMIN
# and --device /dev/net/tun); the controller gets no capabilities. SIGTERM/SIGINT go to both; when
# either process exits the other is stopped and the container exits with the first one's status.
# Configs: $TINCAN_CONFIG_DIR/tincan.json and $TINCAN_CONFIG_DIR/<controller>.json (default /etc/tincan).
set -uo pipefail

controller=${1:-groupvpn}
shift || true
case "$controller" in
  groupvpn | socialvpn | none) ;;
  -h | --help)
    sed -n '2,7s/^# \{0,1\}//p' "$0"
    exit 0
    ;;
  *)
    echo "tincan-entrypoint: unknown controller \"$controller\" (groupvpn, socialvpn or none)" >&2
    exit 2
    ;;
esac
dir=${TINCAN_CONFIG_DIR:-/etc/tincan}
as_tincan=(setpriv --reuid tincan --regid tincan --init-groups)
if [[ $(id -u) == 0 ]]; then
  install -d -o tincan -g tincan -m 0750 /run/tincan # /run may be a fresh tmpfs
  # The container's own device node (created by the runtime, often 0600 root): open it to tincan.
  if [[ -c /dev/net/tun ]]; then chgrp tincan /dev/net/tun && chmod g+rw /dev/net/tun; fi
else
  as_tincan=() # started as a non-root user: run as that user
fi

pids=()
stop() {
  trap '' TERM INT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
}
trap 'stop' TERM INT

if [[ ${#as_tincan[@]} -gt 0 ]]; then
  "${as_tincan[@]}" --inh-caps +net_admin --ambient-caps +net_admin -- tincan --config "$dir/tincan.json" &
else
  tincan --config "$dir/tincan.json" &
fi
pids+=($!)
if [[ $controller != none ]]; then
  "${as_tincan[@]}" "$controller" --config "$dir/$controller.json" "$@" &
  pids+=($!)
fi

# wait -n returns early (status > 128) when a trapped signal arrives: keep waiting until a child exits.
while :; do
  wait -n "${pids[@]}"
  status=$?
  alive=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=$((alive + 1)); done
  ((alive < ${#pids[@]})) && break
done
stop
wait
exit "$status"
