// Package bench is the harness library behind cmd/tunbench: it measures
// tunnelplane end to end against the kernel, on namespace topologies built
// by bench/topo.
//
// Scenarios (Scenarios, LookupScenarios): two namespaces A and B joined by
// a veth (underlay 10.99.0.1 <-> 10.99.0.2), connected
//
//   - direct: straight over the veth;
//   - kernel-vxlan: kernel vxlan devices on both sides (VNI 42, port 4789,
//     MTU 1450, programmed like flannel), the baseline every ratio uses;
//   - ovs-vxlan: Open vSwitch's userspace datapath (datapath_type=netdev)
//     with a vxlan port on both sides, one ovsdb-server and ovs-vswitchd
//     per namespace (ovs.go): what a user picks when the kernel has
//     neither the vxlan nor the openvswitch module;
//   - tunneld-vxlan, -ipip, -gre, -ipudp (TUN) and tunneld-vxlan-tap:
//     tunneld on both sides (overlay 10.200.0.1 <-> 10.200.0.2), started
//     with GODEBUG=gctrace=1 and the metrics server off; the -gso, -pkt
//     and -kpath variants with underlay.tunnel_gso, raw_send: packet and
//     kernel_path: on (the in-kernel fast path) on both sides;
//   - tunneld-to-kernel, kernel-to-tunneld and their -gso and kpath
//     variants: tunneld on one side, the kernel's vxlan on the other.
//
// Each scenario runs on a fresh pair, with the veth offloads on or off,
// and is torn down afterwards whatever happens (Run).
//
// Traffic runners: RunPing (iputils ping, per-packet RTTs -> median and
// p99), RunIperf (iperf3 TCP with -J, 1 or more streams) and RunUDP (a
// built-in blaster: sendmmsg batches of 64-byte datagrams from a socket
// opened in A, counted with recvmmsg in B). For tunneld and OVS scenarios
// the harness also reads the daemons' CPU time (/proc/PID/stat) around the
// TCP runs, their VmRSS at the end and the GC cycles gctrace reports; for
// every scenario it reads the whole machine's busy CPU (/proc/stat) around
// the TCP runs, the only cost figure the kernel's own tunnels have.
//
// Report holds the raw numbers (WriteJSON), ratios to kernel-vxlan measured
// in the same run with the same offload setting (ComputeRatios), a text
// table (Table) and a grouped bar chart of single-stream TCP (SVG, written
// by hand, no dependencies).
//
// Everything that touches namespaces needs Linux and root; the parsers and
// the report work anywhere.
package bench
