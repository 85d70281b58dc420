#!/usr/bin/env bash
# Minimal independent check of a reference VPN's throughput, outside bench.ts and test/lab: two
# namespaces over one veth, the VPN started by hand as its docs say, `iperf3 -t SECONDS` TCP 1 stream
# RUNS times. Used to find why bench.ts measured the references slower (see bench/RESULTS.md).
#
#   bash bench/two-ns.sh wireguard|nebula|veth [RUNS=3] [SECONDS=10]
#   env: ROUTINES=N (nebula, default 1), NEB_MTU (nebula tun.mtu, default 1300 = nebula's default),
#        SETSID=1 (start each daemon in its own session, as test/lab does; default: the script's)
#
# Namespaces twons-a / twons-b, 198.18.9.1/.2, tunnel 10.79.0.1/.2; all removed on exit, the daemons
# ended by PID.
set -euo pipefail
sys=${1:?usage: two-ns.sh wireguard|nebula|veth [runs] [seconds]}
runs=${2:-3}
secs=${3:-10}
A=twons-a B=twons-b
dir=$(mktemp -d /tmp/twons.XXXXXX)
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for ns in $A $B; do
    for p in $(ip netns pids $ns 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del $ns 2>/dev/null || true
  done
  rm -f /var/run/wireguard/wg-twa.sock /var/run/wireguard/wg-twb.sock
  rm -rf "$dir"
}
trap cleanup EXIT
for ns in $A $B; do ip netns del $ns 2>/dev/null || true; done
ip netns add $A
ip netns add $B
ip link add eth0 netns $A type veth peer name eth0 netns $B
ip -n $A addr add 198.18.9.1/24 dev eth0
ip -n $B addr add 198.18.9.2/24 dev eth0
for ns in $A $B; do ip -n $ns link set lo up; ip -n $ns link set eth0 up; done

daemon() { # ns, log, argv...: start in the background, remember the PID
  local ns=$1 log=$2
  shift 2
  if [[ ${SETSID:-0} == 1 ]]; then
    setsid ip netns exec "$ns" "$@" >"$log" 2>&1 &
  else
    ip netns exec "$ns" "$@" >"$log" 2>&1 &
  fi
  pids+=($!)
}

case $sys in
veth) dst=198.18.9.2 ;;
wireguard)
  # wireguard-go README: `wireguard-go wg0`, then configure with wg(8) and ip(8).
  for s in a b; do
    wg genkey >"$dir/$s.key"
    wg pubkey <"$dir/$s.key" >"$dir/$s.pub"
  done
  daemon $A "$dir/wg-a.log" wireguard-go -f wg-twa
  daemon $B "$dir/wg-b.log" wireguard-go -f wg-twb
  for dev in wg-twa wg-twb; do
    until [[ -S /var/run/wireguard/$dev.sock ]]; do sleep 0.05; done
  done
  ip netns exec $A wg set wg-twa private-key "$dir/a.key" listen-port 51820 \
    peer "$(cat "$dir/b.pub")" allowed-ips 10.79.0.2/32 endpoint 198.18.9.2:51820
  ip netns exec $B wg set wg-twb private-key "$dir/b.key" listen-port 51820 \
    peer "$(cat "$dir/a.pub")" allowed-ips 10.79.0.1/32 endpoint 198.18.9.1:51820
  ip -n $A addr add 10.79.0.1/24 dev wg-twa
  ip -n $B addr add 10.79.0.2/24 dev wg-twb
  ip -n $A link set wg-twa up
  ip -n $B link set wg-twb up
  dst=10.79.0.2
  ;;
nebula)
  # nebula quick start: a CA, one cert per host, the example config with our addresses.
  (cd "$dir" && nebula-cert ca -name twons >/dev/null &&
    nebula-cert sign -name a -ip 10.79.0.1/24 && nebula-cert sign -name b -ip 10.79.0.2/24)
  for s in a b; do
    if [[ $s == a ]]; then me=198.18.9.1 peer=198.18.9.2 pa=10.79.0.2 lh=true hosts=""
    else me=198.18.9.2 peer=198.18.9.1 pa=10.79.0.1 lh=false hosts='"10.79.0.1"'; fi
    cat >"$dir/$s.yml" <<EOF
pki: {ca: $dir/ca.crt, cert: $dir/$s.crt, key: $dir/$s.key}
static_host_map: {"$pa": ["$peer:4242"]}
lighthouse: {am_lighthouse: $lh, interval: 60, hosts: [$hosts]}
listen: {host: $me, port: 4242}
punchy: {punch: false}
relay: {am_relay: false, use_relays: false}
routines: ${ROUTINES:-1}
tun: {dev: neb-tw$s${NEB_MTU:+, mtu: $NEB_MTU}}
logging: {level: warning}
firewall:
  outbound: [{port: any, proto: any, host: any}]
  inbound: [{port: any, proto: any, host: any}]
EOF
  done
  daemon $A "$dir/neb-a.log" nebula -config "$dir/a.yml"
  daemon $B "$dir/neb-b.log" nebula -config "$dir/b.yml"
  dst=10.79.0.2
  ;;
*) echo "unknown system $sys" >&2; exit 2 ;;
esac

until ip netns exec $A ping -c1 -W1 -q $dst >/dev/null 2>&1; do sleep 0.2; done
ip netns exec $B iperf3 -s -B $dst >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
for ((i = 1; i <= runs; i++)); do
  mbit=$(ip netns exec $A iperf3 -c $dst -t "$secs" -J |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log((JSON.parse(s).end.sum_received.bits_per_second/1e6).toFixed(0)))')
  echo "$sys run $i: $mbit Mbit/s (load $(cut -d' ' -f1 /proc/loadavg))"
done
