#!/usr/bin/env bash
# make demo: two namespaces joined by a veth, tunneld on each side with a
# built-in VXLAN config, ping and a short iperf3 through the tunnel, a
# result table, and cleanup (also on failure or Ctrl-C).
#
# Addresses: underlay 10.99.0.1 <-> 10.99.0.2 (veth), overlay 10.200.0.1 <-> 10.200.0.2.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/tunneld}
ENCAP=${ENCAP:-vxlan}
DURATION=${DURATION:-3}
KERNEL_PATH=${KERNEL_PATH:-off} # on: the in-kernel fast path (underlay.kernel_path) carries the tunnel
suffix=$$
A=tp-demo-a-$suffix B=tp-demo-b-$suffix
work=$(mktemp -d)
pids=()

cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

if [ "$(id -u)" -ne 0 ]; then echo "demo: needs root (network namespaces)" >&2; exit 1; fi

ip netns add "$A"; ip netns add "$B"
ip link add veth-a netns "$A" type veth peer name veth-b netns "$B"
ip -n "$A" addr add 10.99.0.1/24 dev veth-a; ip -n "$B" addr add 10.99.0.2/24 dev veth-b
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set veth-a up; ip -n "$B" link set veth-b up

conf() { # local remote overlay peer-overlay
  cat <<YAML
device:
  name: tp0
  addresses: [$3/24]
encap:
  type: $ENCAP
underlay:
  local: $1
  kernel_path: $KERNEL_PATH
peers:
  - remote: $2
    prefixes: [$4/32]
YAML
}
conf 10.99.0.1 10.99.0.2 10.200.0.1 10.200.0.2 > "$work/a.yaml"
conf 10.99.0.2 10.99.0.1 10.200.0.2 10.200.0.1 > "$work/b.yaml"
ip netns exec "$A" "$BIN" --config "$work/a.yaml" 2> "$work/a.log" & pids+=($!)
ip netns exec "$B" "$BIN" --config "$work/b.yaml" 2> "$work/b.log" & pids+=($!)
for i in $(seq 50); do
  ip -n "$A" link show tp0 >/dev/null 2>&1 && ip -n "$B" link show tp0 >/dev/null 2>&1 && break
  sleep 0.1
done

echo "== ping 10.200.0.2 from $A through tunneld ($ENCAP)"
ping_out=$(ip netns exec "$A" ping -c 5 -i 0.2 -W 2 10.200.0.2) || { echo "$ping_out"; cat "$work/a.log" "$work/b.log"; exit 1; }
echo "$ping_out" | tail -2
loss=$(echo "$ping_out" | grep -o '[0-9.]*% packet loss' | cut -d% -f1)
rtt=$(echo "$ping_out" | awk -F/ '/^rtt/ {print $5}')

echo "== iperf3 ${DURATION}s TCP through the tunnel"
ip netns exec "$B" iperf3 -s -1 -B 10.200.0.2 >/dev/null 2>&1 & srv=$!
sleep 0.5
gbps=$(ip netns exec "$A" iperf3 -c 10.200.0.2 -t "$DURATION" -J 2>/dev/null | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))' || echo "failed")
wait $srv 2>/dev/null || true

echo
printf '%-10s %-12s %-8s %-12s %-14s %s\n' encap kernel_path "ping" "loss %" "rtt avg ms" "TCP Gbit/s"
printf '%-10s %-12s %-8s %-12s %-14s %s\n' "$ENCAP" "$KERNEL_PATH" ok "$loss" "$rtt" "$gbps"
