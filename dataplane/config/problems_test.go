package config

// Tests of what a bad config file gets back: every problem with its
// position, several at once, the error format, the caps on aliases and
// problem counts.

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// base is a valid document that problem cases extend.
var base = []string{
	"encap:",
	"  type: vxlan",
	"underlay:",
	"  local: 10.99.0.1",
}

func withBase(lines ...string) []byte { return doc(append(append([]string{}, base...), lines...)...) }

func TestProblems(t *testing.T) {
	tests := []struct {
		name      string
		data      []byte
		line, col int
		path      string
		msg       string // a substring of the message
	}{
		// YAML itself
		{"syntax", doc("encap:", "  type: vxlan", " underlay: x"), 2, 0, "", "YAML syntax"},
		{"two documents", doc("encap: {type: ipip}", "underlay: {local: 10.99.0.1}", "---", "queues: 1"), 4, 1, "", "second"},
		{"top level not a mapping", doc("- a", "- b"), 1, 1, "", "must be a mapping"},
		{"unknown top-level key", withBase("peer:", "  - remote: 10.99.0.2"), 5, 1, "peer", `unknown key "peer" (did you mean "peers"?)`},
		{"unknown nested key", withBase("peers:", "  - remote: 10.99.0.2", "  - remot: 10.99.0.3"), 7, 5, "peers[1].remot", `did you mean "remote"`},
		{"unknown encap key", doc("encap:", "  type: vxlan", "  vnid: 3", "underlay: {local: 10.99.0.1}"), 3, 3, "encap.vnid", `unknown key "vnid"`},
		{"unknown key far from any", withBase("tunnels: 3"), 5, 1, "tunnels", "known: device, encap"},
		{"duplicate key", doc("encap:", "  type: vxlan", "  type: gre", "underlay: {local: 10.99.0.1}"), 3, 3, "encap.type", "duplicate key \"type\" (first at line 2)"},
		{"merge key", doc("encap: &e", "  type: vxlan", "underlay:", "  local: 10.99.0.1", "  <<: *e"), 5, 3, "underlay.<<", "merge keys (<<) are not supported"},
		{"section not a mapping", withBase("device: [tp0]"), 5, 9, "device", "must be a mapping"},
		{"peers not a list", withBase("peers: {remote: 10.99.0.2}"), 5, 8, "peers", "must be a list"},
		{"addresses not a list", withBase("device:", "  addresses: 10.200.0.1/24"), 6, 14, "device.addresses", "must be a list"},
		{"quoted number", withBase("device:", `  mtu: "1400"`), 6, 8, "device.mtu", `must be an integer, not "1400"`},
		{"float", withBase("queues: 1.5"), 5, 9, "queues", "must be an integer"},
		{"yes is not a bool", doc("encap:", "  type: gre", "  checksum: yes", "underlay: {local: 10.99.0.1}"), 3, 13, "encap.checksum", `must be true or false, not "yes"`},
		{"string of a list", withBase("offload: [auto]"), 5, 10, "offload", "must be a string"},
		{"wake_tick not a duration", withBase("wake_tick: often"), 5, 12, "wake_tick", `"often" is not a duration from 0 (off) to 100ms`},
		{"wake_tick too long", withBase("wake_tick: 1s"), 5, 12, "wake_tick", "is not a duration"},

		// device
		{"mode", withBase("device:", "  mode: tunnel"), 6, 9, "device.mode", `must be "tun" or "tap", not "tunnel"`},
		{"tap with ipip", doc("device:", "  mode: tap", "encap: {type: ipip}", "underlay: {local: 10.99.0.1}"), 2, 9, "device.mode", "vxlan or gre; ipip carries IP only"},
		{"tap with sit", doc("device:", "  mode: tap", "encap: {type: sit}", "underlay: {local: 10.99.0.1}"), 2, 9, "device.mode", "sit carries IP only"},
		{"tap with ipudp", doc("device:", "  mode: tap", "encap: {type: ipudp}", "underlay: {local: 10.99.0.1}"), 2, 9, "device.mode", "ipudp carries IP only"},
		{"name too long", withBase("device:", "  name: abcdefghijklmnop"), 6, 9, "device.name", "longer than 15"},
		{"name empty", withBase("device:", `  name: ""`), 6, 9, "device.name", "is empty"},
		{"name slash", withBase("device:", `  name: a/b`), 6, 9, "device.name", "must not contain"},
		{"mtu too small", withBase("device:", "  mtu: 67"), 6, 8, "device.mtu", "67 is out of range 68..65535"},
		{"mtu too large", withBase("device:", "  mtu: 65536"), 6, 8, "device.mtu", "out of range"},
		{"mtu below 1280 with IPv6", withBase("device:", "  mtu: 1279", "  addresses: [fd00::1/64]"), 6, 8, "device.mtu", "1279 is out of range 1280..65535"},
		{"mtu plus overhead too big", withBase("device:", "  mtu: 1451"), 6, 8, "device.mtu", "device mtu 1451 + 50 bytes of vxlan overhead = 1501 exceeds underlay mtu 1500; use at most 1450"},
		{"mtu plus overhead too big, underlay set", doc("device:", "  mtu: 9000", "encap: {type: gre, key: 1}", "underlay:", "  local: 10.99.0.1", "  mtu: 9000"), 2, 8, "device.mtu", "9000 + 28 bytes of gre overhead = 9028 exceeds underlay mtu 9000; use at most 8972"},
		{"derived mtu too small", doc("encap: {type: vxlan}", "underlay:", "  local: 10.99.0.1", "  mtu: 100"), 4, 8, "underlay.mtu", "underlay mtu 100 leaves 50 bytes for the device after the 50-byte vxlan overhead; the device needs at least 68"},
		{"derived mtu too small for IPv6", doc("device: {addresses: [\"fd00::1/64\"]}", "encap: {type: vxlan}", "underlay:", "  local: 10.99.0.1", "  mtu: 1300"), 5, 8, "underlay.mtu", "needs at least 1280"},
		{"address no length", withBase("device:", "  addresses: [10.200.0.1]"), 6, 15, "device.addresses[0]", `"10.200.0.1" has no prefix length; write 10.200.0.1/32`},
		{"address garbage", withBase("device:", "  addresses:", "    - 10.200.0.300/24"), 7, 7, "device.addresses[0]", "is not an IP prefix"},
		{"address duplicate", withBase("device:", "  addresses: [10.200.0.1/24, 10.200.0.1/16]"), 6, 30, "device.addresses[1]", "also device.addresses[0] (line 6)"},
		{"address multicast", withBase("device:", "  addresses: [224.0.0.1/24]"), 6, 15, "device.addresses[0]", "multicast"},
		{"ipip with IPv6 address", doc("device:", "  addresses: [10.200.0.1/24, \"fd00::1/64\"]", "encap: {type: ipip}", "underlay: {local: 10.99.0.1}"), 2, 30, "device.addresses[1]", "fd00::1/64 is IPv6, which ipip does not carry"},
		{"sit with IPv4 address", doc("device:", "  addresses: [10.200.0.1/24]", "encap: {type: sit}", "underlay: {local: 10.99.0.1}"), 2, 15, "device.addresses[0]", "IPv4, which sit does not carry"},
		{"mac garbage", withBase("device:", "  mac: 02:00:00:00:01"), 6, 8, "device.mac", "not a 6-byte MAC"},
		{"mac EUI-64", withBase("device:", "  mac: 02:00:00:00:00:00:00:01"), 6, 8, "device.mac", "not a 6-byte MAC"},
		{"mac multicast", withBase("device:", "  mac: 01:00:5e:00:00:01"), 6, 8, "device.mac", "multicast MAC"},
		{"mac zero", withBase("device:", "  mac: 00:00:00:00:00:00"), 6, 8, "device.mac", "not a usable MAC"},

		// encap
		{"type missing", doc("encap:", "  vni: 3", "underlay: {local: 10.99.0.1}"), 1, 1, "encap.type", "is required"},
		{"encap missing", doc("underlay:", "  local: 10.99.0.1"), 1, 1, "encap.type", "is required"},
		{"type null", doc("encap:", "  type:", "underlay: {local: 10.99.0.1}"), 2, 3, "encap.type", "is required"},
		{"type unknown", doc("encap:", "  type: geneve", "underlay: {local: 10.99.0.1}"), 2, 9, "encap.type", `"geneve" is not one of`},
		{"vni too big", doc("encap:", "  type: vxlan", "  vni: 16777216", "underlay: {local: 10.99.0.1}"), 3, 8, "encap.vni", "out of range 0..16777215"},
		{"vni negative", doc("encap:", "  type: vxlan", "  vni: -1", "underlay: {local: 10.99.0.1}"), 3, 8, "encap.vni", "out of range"},
		{"vni with gre", doc("encap:", "  type: gre", "  vni: 0", "underlay: {local: 10.99.0.1}"), 3, 8, "encap.vni", "vni applies only to vxlan, not gre"},
		{"port zero", doc("encap:", "  type: vxlan", "  port: 0", "underlay: {local: 10.99.0.1}"), 3, 9, "encap.port", "out of range 1..65535"},
		{"port too big", doc("encap:", "  type: ipudp", "  port: 65536", "underlay: {local: 10.99.0.1}"), 3, 9, "encap.port", "out of range 1..65535"},
		{"port with gre", doc("encap:", "  type: gre", "  port: 4789", "underlay: {local: 10.99.0.1}"), 3, 9, "encap.port", "applies only to vxlan and ipudp"},
		{"key with vxlan", doc("encap:", "  type: vxlan", "  key: 7", "underlay: {local: 10.99.0.1}"), 3, 8, "encap.key", "key applies only to gre, not vxlan"},
		{"key too big", doc("encap:", "  type: gre", "  key: 4294967296", "underlay: {local: 10.99.0.1}"), 3, 8, "encap.key", "out of range 0..4294967295"},
		{"checksum with ipip", doc("encap:", "  type: ipip", "  checksum: false", "underlay: {local: 10.99.0.1}"), 3, 13, "encap.checksum", "applies only to gre"},
		{"sequence with ipudp", doc("encap:", "  type: ipudp", "  sequence: true", "underlay: {local: 10.99.0.1}"), 3, 13, "encap.sequence", "applies only to gre"},
		{"ttl zero", doc("encap:", "  type: gre", "  ttl: 0", "underlay: {local: 10.99.0.1}"), 3, 8, "encap.ttl", "not supported yet"},
		{"ttl inherit", doc("encap:", "  type: gre", "  ttl: inherit", "underlay: {local: 10.99.0.1}"), 3, 8, "encap.ttl", "not supported yet"},
		{"ttl too big", doc("encap:", "  type: gre", "  ttl: 256", "underlay: {local: 10.99.0.1}"), 3, 8, "encap.ttl", "out of range 1..255"},
		{"tos too big", doc("encap:", "  type: gre", "  tos: 256", "underlay: {local: 10.99.0.1}"), 3, 8, "encap.tos", "out of range 0..255"},
		{"tos word", doc("encap:", "  type: gre", "  tos: copy", "underlay: {local: 10.99.0.1}"), 3, 8, "encap.tos", `must be "inherit" or a number 0..255, not "copy"`},
		{"df word", doc("encap:", "  type: gre", "  df: 1", "underlay: {local: 10.99.0.1}"), 3, 7, "encap.df", `must be "inherit", true or false, not 1`},

		// underlay
		{"tunnel_gso value", withBase("  tunnel_gso: yes"), 5, 15, "underlay.tunnel_gso", `must be "off", "auto" or "on", not "yes"`},
		{"tunnel_gso on with gre", doc("encap: {type: gre}", "underlay:", "  local: 10.99.0.1", "  tunnel_gso: on"), 4, 15, "underlay.tunnel_gso", "on needs a UDP encapsulation (vxlan or ipudp), not gre"},
		{"tunnel_gso on over IPv6", doc("encap: {type: vxlan}", "underlay:", "  local: fd00:99::1", "  tunnel_gso: on"), 4, 15, "underlay.tunnel_gso", "needs an IPv4 underlay"},
		{"kernel_path value", withBase("  kernel_path: bpf"), 5, 16, "underlay.kernel_path", `must be "off", "auto" or "on", not "bpf"`},
		{"kernel_path on with ipudp", doc("encap: {type: ipudp}", "underlay:", "  local: 10.99.0.1", "  kernel_path: on"), 4, 16, "underlay.kernel_path", "on needs ipip, gre or vxlan, not ipudp"},
		{"kernel_path on with gre key", doc("encap: {type: gre, key: 7}", "underlay:", "  local: 10.99.0.1", "  kernel_path: on"), 4, 16, "underlay.kernel_path", "needs plain gre"},
		{"kernel_path on over IPv6", doc("encap: {type: vxlan}", "underlay:", "  local: fd00:99::1", "  kernel_path: on"), 4, 16, "underlay.kernel_path", "needs an IPv4 underlay"},
		{"raw_send value", withBase("  raw_send: af_packet"), 5, 13, "underlay.raw_send", `must be "socket" or "packet", not "af_packet"`},
		{"raw_send packet with vxlan", withBase("  raw_send: packet"), 5, 13, "underlay.raw_send", "packet is for the raw-IP tunnels (ipip, sit, gre), not vxlan"},
		{"raw_send packet over IPv6", doc("encap: {type: gre}", "underlay:", "  local: fd00:99::1", "  raw_send: packet"), 4, 13, "underlay.raw_send", "needs an IPv4 underlay"},
		{"tunnel_gso on without offload", withBase("  tunnel_gso: on", "offload: \"off\""), 5, 15, "underlay.tunnel_gso", "needs offload: auto"},
		{"local missing", doc("encap: {type: gre}", "underlay:", "  mtu: 1500"), 2, 1, "underlay.local", "is required"},
		{"underlay missing", doc("encap: {type: gre}"), 1, 1, "underlay.local", "is required"},
		{"local garbage", doc("encap: {type: gre}", "underlay:", "  local: 10.99.0.x"), 3, 10, "underlay.local", `"10.99.0.x" is not an IP address`},
		{"local prefix", doc("encap: {type: gre}", "underlay:", "  local: 10.99.0.1/24"), 3, 10, "underlay.local", "is a prefix"},
		{"local zone", doc("encap: {type: gre}", "underlay:", "  local: fe80::1%eth0"), 3, 10, "underlay.local", "zones are not supported"},
		{"local unspecified", doc("encap: {type: gre}", "underlay:", "  local: 0.0.0.0"), 3, 10, "underlay.local", "unspecified"},
		{"local multicast", doc("encap: {type: gre}", "underlay:", "  local: ff02::1"), 3, 10, "underlay.local", "multicast"},
		{"ipip over IPv6", doc("encap: {type: ipip}", "underlay:", "  local: 2001:db8::1"), 3, 10, "underlay.local", "ipip needs an IPv4 underlay, but 2001:db8::1 is IPv6 (ipip and sit over an IPv6 underlay are out of scope"},
		{"sit over IPv6", doc("encap: {type: sit}", "underlay:", "  local: 2001:db8::1"), 3, 10, "underlay.local", "sit needs an IPv4 underlay"},
		{"underlay mtu too small", doc("encap: {type: gre}", "underlay:", "  local: 10.99.0.1", "  mtu: 60"), 4, 8, "underlay.mtu", "60 is out of range 68..65535"},
		{"underlay mtu IPv6", doc("encap: {type: gre}", "underlay:", "  local: 2001:db8::1", "  mtu: 1279"), 4, 8, "underlay.mtu", "1279 is out of range 1280..65535"},

		// peers
		{"remote missing", withBase("peers:", "  - prefixes: [10.200.0.0/24]"), 6, 5, "peers[0].remote", "is required"},
		{"remote garbage", withBase("peers:", "  - remote: 10.99.0.x"), 6, 13, "peers[0].remote", `"10.99.0.x" is not an IP address`},
		{"remote family", withBase("peers:", "  - remote: 2001:db8::2"), 6, 13, "peers[0].remote", "2001:db8::2 is IPv6 but underlay.local 10.99.0.1 is IPv4"},
		{"remote is local", withBase("peers:", "  - remote: 10.99.0.1"), 6, 13, "peers[0].remote", "is underlay.local itself"},
		{"remote duplicate", withBase("peers:", "  - remote: 10.99.0.2", "  - remote: 10.99.0.2"), 7, 13, "peers[1].remote", "also the remote of peers[0] (line 6)"},
		{"remote multicast", withBase("peers:", "  - remote: 239.1.1.1"), 6, 13, "peers[0].remote", "multicast"},
		{"peer not a mapping", withBase("peers:", "  - 10.99.0.2"), 6, 5, "peers[0]", "must be a mapping"},
		{"prefix garbage", withBase("peers:", "  - remote: 10.99.0.2", "    prefixes: [10.200.0.0/33]"), 7, 16, "peers[0].prefixes[0]", "not an IP prefix"},
		{"prefix no length", withBase("peers:", "  - remote: 10.99.0.2", "    prefixes: [\"fd00::2\"]"), 7, 16, "peers[0].prefixes[0]", "write fd00::2/128"},
		{"prefix ipip IPv6", doc("encap: {type: ipip}", "underlay: {local: 10.99.0.1}", "peers:", "  - remote: 10.99.0.2", "    prefixes: [\"fd00::/64\"]"), 5, 16, "peers[0].prefixes[0]", "fd00::/64 is IPv6, which ipip does not carry"},
		{"prefix sit IPv4", doc("encap: {type: sit}", "underlay: {local: 10.99.0.1}", "peers:", "  - remote: 10.99.0.2", "    prefixes: [10.0.0.0/8]"), 5, 16, "peers[0].prefixes[0]", "IPv4, which sit does not carry"},
		{"prefix on two peers", withBase("peers:", "  - remote: 10.99.0.2", "    prefixes: [10.200.0.0/24]", "  - remote: 10.99.0.3", "    prefixes: [10.200.0.9/24]"), 9, 16, "peers[1].prefixes[0]", "10.200.0.0/24 is claimed by both peers[0] (10.99.0.2) (line 6) and peers[1] (10.99.0.3)"},
		{"prefix twice on one peer", withBase("peers:", "  - remote: 10.99.0.2", "    prefixes: [10.200.0.0/24, 10.200.0.0/24]"), 7, 31, "peers[0].prefixes[1]", "listed twice"},
		{"peer mac multicast", withBase("peers:", "  - remote: 10.99.0.2", "    mac: 03:00:00:00:00:02"), 7, 10, "peers[0].mac", "multicast MAC"},
		{"peer mac clash", withBase("peers:", "  - remote: 10.99.0.2", "    mac: 02:00:0a:63:00:01"), 7, 10, "peers[0].mac", "also the MAC of device"},
		{"derived mac clash IPv6", doc("encap: {type: vxlan}", "underlay: {local: 2001:db8:1::1}", "peers:", "  - remote: 2001:db8:1::2", "  - remote: 2001:db8:2::2"), 5, 13, "peers[1].remote", "VTEP MAC 02:00:00:00:00:02 is also the MAC of peers[0]; set distinct macs"},

		// the rest
		{"offload", withBase("offload: on"), 5, 10, "offload", `must be "auto" or "off", not "on"`},
		{"queues too many", withBase("queues: 65"), 5, 9, "queues", "65 is out of range 0..64"},
		{"queues negative", withBase("queues: -1"), 5, 9, "queues", "out of range"},
		{"metrics no port", withBase("metrics:", "  listen: 127.0.0.1"), 6, 11, "metrics.listen", "not host:port"},
		{"metrics named port", withBase("metrics:", "  listen: localhost:http"), 6, 11, "metrics.listen", `port "http" is not a number`},
		{"metrics not a mapping", withBase("metrics: 127.0.0.1:9109"), 5, 10, "metrics", "must be a mapping"},
		{"log level", withBase("log:", "  level: trace"), 6, 10, "log.level", `not "trace"`},
		{"log unknown key", withBase("log:", "  format: json"), 6, 3, "log.format", `unknown key "format"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probs := parseProblems(t, tt.data)
			for _, p := range probs {
				if p.Path == tt.path && strings.Contains(p.Msg, tt.msg) {
					if p.Line != tt.line || p.Col != tt.col {
						t.Errorf("%s at %d:%d, want %d:%d", tt.path, p.Line, p.Col, tt.line, tt.col)
					}
					if len(probs) > 1 {
						t.Errorf("want one problem, got %d: %v", len(probs), probs)
					}
					return
				}
			}
			t.Errorf("no problem %s: %q among %v", tt.path, tt.msg, probs)
		})
	}
}

func TestValidCorners(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"no peers", withBase()},
		{"empty peers list", withBase("peers: []")},
		{"vni 0", doc("encap: {type: vxlan, vni: 0}", "underlay: {local: 10.99.0.1}")},
		{"vni max", doc("encap: {type: vxlan, vni: 16777215}", "underlay: {local: 10.99.0.1}")},
		{"gre key 0 and max", doc("encap: {type: gre, key: 4294967295}", "underlay: {local: 10.99.0.1}")},
		{"tos and df", doc("encap: {type: gre, tos: 184, df: false}", "underlay: {local: 10.99.0.1}")},
		{"tap gre", doc("device: {mode: tap}", "encap: {type: gre}", "underlay: {local: 10.99.0.1}")},
		{"IPv6 underlay", doc("encap: {type: ipudp}", "underlay: {local: \"2001:db8::1\"}", "peers: [{remote: \"2001:db8::2\"}]")},
		{"IPv4-mapped local", doc("encap: {type: ipip}", "underlay: {local: \"::ffff:10.99.0.1\"}", "peers: [{remote: 10.99.0.2}]")},
		{"metrics disabled", withBase("metrics: {listen: \"\"}")},
		{"metrics any host", withBase("metrics: {listen: \":9109\"}")},
		{"hex queues", withBase("queues: 0x10")},
		{"wake_tick off", withBase("wake_tick: 0")},
		{"wake_tick 500us", withBase("wake_tick: 500us")},
		{"jumbo", doc("device: {mtu: 8950}", "encap: {type: vxlan}", "underlay: {local: 10.99.0.1, mtu: 9000}")},
		{"overlapping but not identical prefixes", withBase("peers:", "  - {remote: 10.99.0.2, prefixes: [10.0.0.0/8]}", "  - {remote: 10.99.0.3, prefixes: [10.1.0.0/16]}")},
		{"empty file", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.yaml", tt.data)
			switch tt.name {
			case "empty file":
				if err == nil || !strings.Contains(err.Error(), "encap.type: is required") || !strings.Contains(err.Error(), "underlay.local: is required") {
					t.Fatalf("got %v", err)
				}
				return
			}
			c := mustParse(t, tt.data)
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			checkRoundTrip(t, c)
		})
	}
}

func TestMultipleProblemsReportedTogether(t *testing.T) {
	probs := parseProblems(t, doc(
		"device:",
		"  mode: tap",
		"encap:",
		"  type: ipip",
		"  port: 1",
		"underlay:",
		"  local: 10.99.0.x",
		"peers:",
		"  - remot: 10.99.0.2",
		"log: {level: loud}",
	))
	want := []struct {
		line int
		path string
	}{
		{2, "device.mode"},
		{5, "encap.port"},
		{7, "underlay.local"},
		{9, "peers[0].remot"},
		{10, "log.level"},
	}
	if len(probs) != len(want) {
		t.Fatalf("got %d problems, want %d: %v", len(probs), len(want), probs)
	}
	for i, w := range want {
		if probs[i].Line != w.line || probs[i].Path != w.path {
			t.Errorf("problem %d = %v, want line %d path %s", i, probs[i], w.line, w.path)
		}
	}
}

// TestBadFiles compares the full error text for each testdata/bad-*.yaml
// with testdata/bad-*.err; go test -update rewrites the .err files.
func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/bad-*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/bad-*.yaml: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			_, err := Load(file)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("error text differs from %s\n got:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	var e *Error
	if !errors.Is(err, os.ErrNotExist) || errors.As(err, &e) {
		t.Fatalf("got %v, want a wrapped os.ErrNotExist", err)
	}
}

func TestErrorFormat(t *testing.T) {
	e := &Error{File: "t.yaml", Problems: []Problem{
		{Line: 12, Col: 5, Path: "peers[1].remote", Msg: `"10.99.0.x" is not an IP address`},
		{Line: 3, Msg: "YAML syntax: oops"},
		{Path: "queues", Msg: "bad"},
	}}
	want := "t.yaml:12:5: peers[1].remote: \"10.99.0.x\" is not an IP address\n" +
		"t.yaml:3: YAML syntax: oops\n" +
		"t.yaml: queues: bad"
	if got := e.Error(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestAliasExpansionIsBounded(t *testing.T) {
	data := "x: &a [" + strings.Repeat("10.0.0.0/32, ", 1000) + "10.0.0.0/32]\n" +
		"encap: {type: gre}\nunderlay: {local: 10.99.0.1}\n" +
		"peers: [" + strings.Repeat("{remote: 10.0.0.2, prefixes: *a}, ", 1000) + "]\n"
	probs := parseProblems(t, []byte(data))
	found := false
	for _, p := range probs {
		found = found || strings.Contains(p.Msg, "aliases expand the document too far")
	}
	if !found || len(probs) > maxShown+1 {
		t.Fatalf("got %d problems, want the alias one among at most %d: %v", len(probs), maxShown+1, probs[:min(len(probs), 5)])
	}
}

func TestManyProblemsAreCapped(t *testing.T) {
	lines := append([]string{}, base...)
	lines = append(lines, "peers:")
	for range 300 {
		lines = append(lines, "  - remote: nope")
	}
	probs := parseProblems(t, doc(lines...))
	if len(probs) != maxShown+1 {
		t.Fatalf("got %d problems, want %d", len(probs), maxShown+1)
	}
	if last := probs[maxShown]; last.Msg != "... and 200 more problems" {
		t.Errorf("last problem %v", last)
	}
	if probs[0].Line != 6 || probs[maxShown-1].Line != 6+maxShown-1 {
		t.Errorf("problems not the first in file order: %v ... %v", probs[0], probs[maxShown-1])
	}
}
