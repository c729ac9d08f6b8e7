#!/usr/bin/env bash
# make soak: a long steady load through tunneld, to catch leaks and drift.
#
# Two namespaces joined by a veth, tunneld (VXLAN) on each side, as in
# scripts/demo.sh. A short unlimited UDP run measures the maximum rate; then
# iperf3 sends UDP at SOAK_RATE (default 80% of that maximum) for
# SOAK_DURATION seconds while a ping measures loss and latency beside it.
# tunneld's RSS, goroutine count and GC cycles are recorded at the start and
# end of the soak (and every SOAK_SAMPLE seconds in between); at the end a
# table compares them, with packets sent and lost.
#
# Environment:
#   SOAK_DURATION  seconds of load (default 600)
#   SOAK_RATE      iperf3 -b value, e.g. 400M (default: 80% of the measured max)
#   SOAK_PROBE     seconds of the max-rate probe (default 5)
#   SOAK_SAMPLE    seconds between progress samples (default 60)
#   SOAK_LEN       UDP payload bytes (default 1200)
#   BIN            tunneld binary (default bin/tunneld, built if missing)
#
# Addresses: underlay 10.99.0.1 <-> 10.99.0.2 (veth), overlay 10.200.0.1 <-> 10.200.0.2.
# Exit status: 0 when the soak ran to the end with both tunnelds alive;
# 1 when a tunneld died or the traffic could not run. Leak suspicions
# (goroutines or RSS growing) are printed as WARN lines, not failures.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/tunneld}
DURATION=${SOAK_DURATION:-600}
RATE=${SOAK_RATE:-}
PROBE=${SOAK_PROBE:-5}
SAMPLE=${SOAK_SAMPLE:-60}
LEN=${SOAK_LEN:-1200}
METRICS=127.0.0.1:9109
suffix=$$
A=tp-soak-a-$suffix B=tp-soak-b-$suffix
work=$(mktemp -d)
pids=()
ok=0

cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  if [ "$ok" -ne 1 ] && [ -s "$work/a.log" ]; then
    echo "== last lines of the tunneld logs" >&2
    grep -v '^gc ' "$work/a.log" | tail -5 | sed 's/^/a: /' >&2 || true
    grep -v '^gc ' "$work/b.log" | tail -5 | sed 's/^/b: /' >&2 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "soak: interrupted" >&2; exit 130' INT
trap 'echo "soak: terminated" >&2; exit 143' TERM

die() { echo "soak: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
for c in ip iperf3 ping curl python3; do
  command -v "$c" >/dev/null || die "$c is missing (make deps installs it)"
done
case $DURATION in ''|*[!0-9]*) die "SOAK_DURATION must be whole seconds, got '$DURATION'";; esac
if [ ! -x "$BIN" ]; then
  [ "$BIN" = bin/tunneld ] || die "$BIN is not executable"
  echo "== building bin/tunneld"
  go build -o bin/ ./cmd/tunneld
fi

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
  type: vxlan
underlay:
  local: $1
peers:
  - remote: $2
    prefixes: [$4/32]
metrics:
  listen: $METRICS
  pprof: true
YAML
}
conf 10.99.0.1 10.99.0.2 10.200.0.1 10.200.0.2 > "$work/a.yaml"
conf 10.99.0.2 10.99.0.1 10.200.0.2 10.200.0.1 > "$work/b.yaml"
# gctrace=1 prints one "gc N @..." line to stderr per GC cycle.
GODEBUG=gctrace=1 ip netns exec "$A" "$BIN" --config "$work/a.yaml" 2> "$work/a.log" & pida=$!; pids+=("$pida")
GODEBUG=gctrace=1 ip netns exec "$B" "$BIN" --config "$work/b.yaml" 2> "$work/b.log" & pidb=$!; pids+=("$pidb")

health() { ip netns exec "$1" curl -sf --max-time 2 "http://$METRICS/healthz" >/dev/null 2>&1; }
for _ in $(seq 100); do
  health "$A" && health "$B" && break
  kill -0 "$pida" 2>/dev/null && kill -0 "$pidb" 2>/dev/null || die "tunneld exited during start"
  sleep 0.1
done
health "$A" && health "$B" || die "tunneld not healthy after 10 s (http://$METRICS/healthz in each namespace)"

alive() { kill -0 "$pida" 2>/dev/null && kill -0 "$pidb" 2>/dev/null; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo "?"; }  # KiB
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo "?"; } # KiB, peak
goroutines() { # namespace
  ip netns exec "$1" curl -sf --max-time 5 "http://$METRICS/debug/pprof/goroutine?debug=1" 2>/dev/null |
    awk 'NR == 1 && /^goroutine profile: total/ {print $4; found = 1} END {if (!found) print "?"}'
}
gcs() { grep -c '^gc ' "$1" || true; }
# Kernel-side drops in a namespace, where tunneld's own counters cannot see
# them: "udp_rcvbuf udp_sndbuf tp0_rx_dropped tp0_tx_dropped underlay_sock_drops"
# (the last: receive drops of the sockets bound to the VXLAN port 4789, i.e.
# tunneld's underlay sockets, from the drops column of /proc/net/udp).
kdrops() {
  { ip netns exec "$1" cat /proc/net/snmp; echo "SPLIT"; ip netns exec "$1" cat /proc/net/udp /proc/net/udp6
    echo "SPLIT"; ip -n "$1" -j -s link show dev tp0; } | python3 -c '
import json, sys
snmp, socks, link = sys.stdin.read().split("SPLIT\n")
rows = [l.split() for l in snmp.splitlines() if l.startswith("Udp:")]
udp = dict(zip(rows[0][1:], map(int, rows[1][1:])))
under = sum(int(f[-1]) for f in (l.split() for l in socks.splitlines())
            if len(f) > 10 and ":" in f[1] and f[1].rsplit(":", 1)[1] == "%04X" % 4789)
st = json.loads(link)[0]["stats64"]
print(udp["RcvbufErrors"], udp["SndbufErrors"], st["rx"]["dropped"], st["tx"]["dropped"], under)'
}

ip netns exec "$A" ping -c 3 -i 0.2 -W 2 10.200.0.2 >/dev/null || die "no ping through the tunnel"
ip netns exec "$B" iperf3 -s -B 10.200.0.2 >/dev/null 2>&1 & pids+=($!)
sleep 0.5

# iperf3 JSON (UDP client): end.sum has packets and lost_packets (as counted
# by the server) and seconds.
udp_stats() { # json-file -> "packets lost seconds lost%"
  python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
if "error" in s: sys.exit("iperf3: " + s["error"])
e = s["end"]["sum"]
print(e["packets"], e["lost_packets"], e["seconds"], "%.2f" % e["lost_percent"])' "$1"
}

echo "== probe: ${PROBE}s unlimited UDP (-l $LEN) to find the maximum rate"
ip netns exec "$A" iperf3 -c 10.200.0.2 -u -b 0 -l "$LEN" -t "$PROBE" -J > "$work/probe.json" 2>&1 ||
  die "probe failed: $(head -c 300 "$work/probe.json")"
read -r ppkts plost psecs ploss < <(udp_stats "$work/probe.json")
maxbps=$(python3 -c "print(int(($ppkts - $plost) * $LEN * 8 / $psecs))")
if [ -z "$RATE" ]; then
  RATE=$(( maxbps * 8 / 10 ))
  rate_note="80% of the measured max"
else
  rate_note="SOAK_RATE"
fi
mbit() { python3 -c "
import sys
v = sys.argv[1]; m = {'k': 1e3, 'K': 1e3, 'm': 1e6, 'M': 1e6, 'g': 1e9, 'G': 1e9}
print('%.0f' % ((float(v[:-1]) * m[v[-1]] if v[-1] in m else float(v)) / 1e6))" "$1"; }
printf 'probe: %d packets sent, %d lost (%s%%): %s Mbit/s received\n' "$ppkts" "$plost" "$ploss" "$(mbit "$maxbps")"

# Start values, after the probe: pools and rings are warm.
alive || die "tunneld died during the probe"
rss_a0=$(rss "$pida") rss_b0=$(rss "$pidb")
gr_a0=$(goroutines "$A") gr_b0=$(goroutines "$B")
gc_a0=$(gcs "$work/a.log") gc_b0=$(gcs "$work/b.log")
read -r kr_a0 ks_a0 kx_a0 kt_a0 ku_a0 < <(kdrops "$A")
read -r kr_b0 ks_b0 kx_b0 kt_b0 ku_b0 < <(kdrops "$B")

echo "== soak: ${DURATION}s UDP at $(mbit "$RATE") Mbit/s ($rate_note), ping beside it"
ip netns exec "$A" ping -i 0.2 -w "$DURATION" -W 2 10.200.0.2 > "$work/ping.txt" 2>&1 & pingpid=$!; pids+=("$pingpid")
ip netns exec "$A" iperf3 -c 10.200.0.2 -u -b "$RATE" -l "$LEN" -t "$DURATION" -J > "$work/soak.json" 2>&1 & cli=$!; pids+=("$cli")
start=$SECONDS
died=0
while kill -0 "$cli" 2>/dev/null; do
  sleep 1
  if ! alive; then died=1; break; fi
  t=$(( SECONDS - start ))
  if [ "$SAMPLE" -gt 0 ] && [ $(( t % SAMPLE )) -eq 0 ] && [ "$t" -lt "$DURATION" ]; then
    printf '  t=%4ds  rss KiB a=%s b=%s  goroutines a=%s b=%s  gc a=%s b=%s\n' "$t" \
      "$(rss "$pida")" "$(rss "$pidb")" "$(goroutines "$A")" "$(goroutines "$B")" \
      $(( $(gcs "$work/a.log") - gc_a0 )) $(( $(gcs "$work/b.log") - gc_b0 ))
  fi
done
[ "$died" -eq 0 ] || die "a tunneld exited during the soak"
traffic_ok=1
wait "$cli" || traffic_ok=0
wait "$pingpid" 2>/dev/null || true
elapsed=$(( SECONDS - start ))

rss_a1=$(rss "$pida") rss_b1=$(rss "$pidb")
hwm_a=$(hwm "$pida") hwm_b=$(hwm "$pidb")
gr_a1=$(goroutines "$A") gr_b1=$(goroutines "$B")
gc_a1=$(gcs "$work/a.log") gc_b1=$(gcs "$work/b.log")
read -r kr_a1 ks_a1 kx_a1 kt_a1 ku_a1 < <(kdrops "$A")
read -r kr_b1 ks_b1 kx_b1 kt_b1 ku_b1 < <(kdrops "$B")
alive || die "a tunneld exited at the end of the soak"

# Stop both tunnelds the normal way: they log their counters at exit.
kill -TERM "$pida" "$pidb"
wait "$pida" || echo "soak: tunneld a exited with $?" >&2
wait "$pidb" || echo "soak: tunneld b exited with $?" >&2
drops() { # log -> "reason=n ..." for the non-zero drop counters of the exit line
  grep 'msg=counters' "$1" | tail -1 | tr ' ' '\n' |
    awk -F= '/^drop_/ && $2 != "0" {sub(/^drop_/, "", $1); printf "%s%s=%s", sep, $1, $2; sep = " "} END {if (!sep) printf "none"}'
}
drops_a=$(drops "$work/a.log") drops_b=$(drops "$work/b.log")

[ "$traffic_ok" -eq 1 ] || die "iperf3 failed: $(head -c 300 "$work/soak.json")"
read -r spkts slost ssecs sloss < <(udp_stats "$work/soak.json")
ping_loss=$(grep -o '[0-9.]*% packet loss' "$work/ping.txt" | cut -d% -f1 || echo "?")
ping_rtt=$(sed -n 's|^rtt [^=]*= [0-9.]*/\([0-9.]*\)/\([0-9.]*\)/\([0-9.]*\) ms.*|\1 / \2|p' "$work/ping.txt")

delta() { [[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ ]] && printf '%+d' $(( $2 - $1 )) || echo "?"; }
echo
echo "== soak result (${elapsed}s, VXLAN, UDP -l $LEN at $(mbit "$RATE") Mbit/s)"
printf '%-26s %s\n' "UDP packets sent" "$spkts"
printf '%-26s %s (%s%%)\n' "UDP packets lost" "$slost" "$sloss"
printf '%-26s %s Mbit/s\n' "UDP received" "$(python3 -c "print('%.0f' % (($spkts - $slost) * $LEN * 8 / $ssecs / 1e6))")"
printf '%-26s %s%% loss, rtt avg / max %s ms\n' "ping beside the load" "$ping_loss" "${ping_rtt:-?}"
echo
printf '%-26s %-24s %-24s\n' "" "tunneld A (sender)" "tunneld B (receiver)"
printf '%-26s %-24s %-24s\n' "RSS KiB start -> end" "$rss_a0 -> $rss_a1 ($(delta "$rss_a0" "$rss_a1"))" "$rss_b0 -> $rss_b1 ($(delta "$rss_b0" "$rss_b1"))"
printf '%-26s %-24s %-24s\n' "RSS KiB peak (VmHWM)" "$hwm_a" "$hwm_b"
printf '%-26s %-24s %-24s\n' "goroutines start -> end" "$gr_a0 -> $gr_a1 ($(delta "$gr_a0" "$gr_a1"))" "$gr_b0 -> $gr_b1 ($(delta "$gr_b0" "$gr_b1"))"
printf '%-26s %-24s %-24s\n' "GC cycles during soak" "$(( gc_a1 - gc_a0 ))" "$(( gc_b1 - gc_b0 ))"
printf '%-26s %-24s %-24s\n' "drops (exit counters)" "$drops_a" "$drops_b"
printf '%-26s %-24s %-24s\n' "kernel: UDP RcvbufErrors" "$(( kr_a1 - kr_a0 ))" "$(( kr_b1 - kr_b0 ))"
printf '%-26s %-24s %-24s\n' "  of which tunneld :4789" "$(( ku_a1 - ku_a0 ))" "$(( ku_b1 - ku_b0 ))"
printf '%-26s %-24s %-24s\n' "kernel: UDP SndbufErrors" "$(( ks_a1 - ks_a0 ))" "$(( ks_b1 - ks_b0 ))"
printf '%-26s %-24s %-24s\n' "kernel: tp0 rx/tx dropped" "$(( kx_a1 - kx_a0 )) / $(( kt_a1 - kt_a0 ))" "$(( kx_b1 - kx_b0 )) / $(( kt_b1 - kt_b0 ))"
echo "(RcvbufErrors count every UDP socket of the namespace: tunneld's underlay sockets (:4789) and iperf3's;"
echo " tp0 tx_dropped on the sender is the TUN queue overflowing before tunneld reads it)"

# Leak suspicions: goroutines should not grow; RSS may move a little.
for side in a b; do
  g0=gr_${side}0 g1=gr_${side}1 r0=rss_${side}0 r1=rss_${side}1
  if [[ ${!g0} =~ ^[0-9]+$ && ${!g1} =~ ^[0-9]+$ ]] && [ $(( ${!g1} - ${!g0} )) -gt 5 ]; then
    echo "WARN: tunneld $side: goroutines grew from ${!g0} to ${!g1}"
  fi
  if [[ ${!r0} =~ ^[0-9]+$ && ${!r1} =~ ^[0-9]+$ ]] && [ $(( ${!r1} * 10 )) -gt $(( ${!r0} * 15 )) ]; then
    echo "WARN: tunneld $side: RSS grew by more than 50% (${!r0} -> ${!r1} KiB)"
  fi
done
ok=1
