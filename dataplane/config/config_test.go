package config

import (
	"errors"
	"flag"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/bad-*.err from the current output")

// doc joins lines into a YAML document, so that a test's line numbers are
// the positions in its list (first line = 1).
func doc(lines ...string) []byte {
	return []byte(strings.Join(lines, "\n") + "\n")
}

func mustParse(tb testing.TB, data []byte) *Config {
	tb.Helper()
	c, err := Parse("test.yaml", data)
	if err != nil {
		tb.Fatalf("Parse: %v\n--- input:\n%s", err, data)
	}
	return c
}

func parseProblems(tb testing.TB, data []byte) []Problem {
	tb.Helper()
	_, err := Parse("test.yaml", data)
	if err == nil {
		tb.Fatalf("Parse succeeded, want an error\n--- input:\n%s", data)
	}
	var e *Error
	if !errors.As(err, &e) {
		tb.Fatalf("Parse error is %T, want *Error: %v", err, err)
	}
	if e.File != "test.yaml" || len(e.Problems) == 0 {
		tb.Fatalf("Error{File: %q, %d problems}, want file test.yaml and problems", e.File, len(e.Problems))
	}
	return e.Problems
}

// checkRoundTrip checks that Marshal writes what Parse reads back as c.
func checkRoundTrip(tb testing.TB, c *Config) {
	tb.Helper()
	out, err := c.Marshal()
	if err != nil {
		tb.Fatalf("Marshal: %v", err)
	}
	c2, err := Parse("marshaled", out)
	if err != nil {
		tb.Fatalf("Parse(Marshal(c)): %v\n--- marshaled:\n%s", err, out)
	}
	if !reflect.DeepEqual(c, c2) {
		tb.Fatalf("round trip changed the config\n got %+v\nwant %+v\n--- marshaled:\n%s", c2, c, out)
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

func TestParseValidFiles(t *testing.T) {
	tests := []struct {
		file string
		want *Config
	}{
		{"valid-vxlan.yaml", &Config{
			Device: Device{
				Name: "tp0", Mode: ModeTUN, MTU: 1400,
				Addresses: []netip.Prefix{pfx("10.200.0.1/24"), pfx("fd00:200::1/64")},
				MAC:       [6]byte{2, 0, 0, 0, 1, 1}, MACSet: true,
			},
			Encap:    Encap{Type: EncapVXLAN, VNI: 42, Port: 8472, TTL: 32, TOS: 0, DF: 1},
			Underlay: Underlay{Local: ip("10.99.0.1"), MTU: 1500},
			Peers: []Peer{
				{Remote: ip("10.99.0.2"), Prefixes: []netip.Prefix{pfx("10.200.0.2/32"), pfx("fd00:200::2/128")}, MAC: [6]byte{2, 0, 0, 0, 2, 2}, MACSet: true},
				{Remote: ip("10.99.0.3"), Prefixes: []netip.Prefix{pfx("10.200.3.0/24")}, MAC: [6]byte{2, 0, 10, 99, 0, 3}},
			},
			PeersFrom: "config",
			Backend:   "userspace",
			Offload:   "off",
			Pipeline:  "direct",
			Queues:    4,
			WakeTick:  time.Millisecond,
			Metrics:   Metrics{Listen: "[::1]:9200"},
			Log:       Log{Level: "debug"},
		}},
		{"valid-gre-key.yaml", &Config{
			Device: Device{
				Name: "tp0", Mode: ModeTUN, MTU: 1500 - 36,
				Addresses: []netip.Prefix{pfx("192.168.77.1/24")},
				MAC:       [6]byte{2, 0, 10, 99, 0, 1},
			},
			Encap:    Encap{Type: EncapGRE, HasKey: true, Key: 7, Checksum: true, Sequence: true, TTL: 64, TOS: Inherit, DF: Inherit},
			Underlay: Underlay{Local: ip("10.99.0.1"), MTU: 1500},
			Peers: []Peer{
				{Remote: ip("10.99.0.2"), Prefixes: []netip.Prefix{pfx("192.168.77.2/32")}, MAC: [6]byte{2, 0, 10, 99, 0, 2}},
			},
			PeersFrom: "config",
			Backend:   "userspace",
			Offload:   "auto",
			Pipeline:  "direct",
			WakeTick:  time.Millisecond,
			Metrics:   Metrics{Listen: "127.0.0.1:9109"},
			Log:       Log{Level: "info"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c, err := Load(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c, tt.want) {
				t.Fatalf("Load(%s)\n got %+v\nwant %+v", tt.file, c, tt.want)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			checkRoundTrip(t, c)
		})
	}
}

func TestDefaults(t *testing.T) {
	minimal := doc(
		"encap:",
		"  type: vxlan",
		"underlay:",
		"  local: 10.99.0.1",
		"peers:",
		"  - remote: 10.99.0.2",
	)
	c := mustParse(t, minimal)
	tests := []struct {
		name      string
		got, want any
	}{
		{"device.name", c.Device.Name, "tp0"},
		{"device.mode", c.Device.Mode, ModeTUN},
		{"device.mtu", c.Device.MTU, 1450},
		{"device.addresses", len(c.Device.Addresses), 0},
		{"device.mac", c.Device.MAC, [6]byte{2, 0, 10, 99, 0, 1}},
		{"device.mac unset", c.Device.MACSet, false},
		{"encap.vni", c.Encap.VNI, uint32(1)},
		{"encap.port", c.Encap.Port, uint16(4789)},
		{"encap.key", c.Encap.HasKey, false},
		{"encap.ttl", c.Encap.TTL, uint8(64)},
		{"encap.tos", c.Encap.TOS, Inherit},
		{"encap.df", c.Encap.DF, Inherit},
		{"underlay.mtu", c.Underlay.MTU, 1500},
		{"peers[0].mac", c.Peers[0].MAC, [6]byte{2, 0, 10, 99, 0, 2}},
		{"peers[0].prefixes", len(c.Peers[0].Prefixes), 0},
		{"offload", c.Offload, "auto"},
		{"pipeline", c.Pipeline, "direct"},
		{"queues", c.Queues, 0},
		{"metrics.listen", c.Metrics.Listen, "127.0.0.1:9109"},
		{"log.level", c.Log.Level, "info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
			}
		})
	}
	checkRoundTrip(t, c)
}

func TestDerivedDefaults(t *testing.T) {
	tests := []struct {
		name    string
		encap   []string
		local   string
		mode    string
		mtu     int
		port    uint16
		options string
	}{
		{"ipip", []string{"type: ipip"}, "10.99.0.1", "tun", 1480, 0, ""},
		{"sit", []string{"type: sit"}, "10.99.0.1", "tun", 1480, 0, ""},
		{"gre", []string{"type: gre"}, "10.99.0.1", "tun", 1476, 0, ""},
		{"gre key", []string{"type: gre", "key: 0"}, "10.99.0.1", "tun", 1472, 0, ""},
		{"gre all options ipv6", []string{"type: gre", "key: 1", "checksum: true", "sequence: true"}, "2001:db8::1", "tun", 1500 - 56, 0, ""},
		{"gre tap", []string{"type: gre"}, "10.99.0.1", "tap", 1462, 0, ""},
		{"vxlan ipv6", []string{"type: vxlan"}, "2001:db8::1", "tun", 1430, 4789, ""},
		{"vxlan tap", []string{"type: vxlan"}, "10.99.0.1", "tap", 1450, 4789, ""},
		{"ipudp", []string{"type: ipudp"}, "10.99.0.1", "tun", 1472, 8285, ""},
		{"ipudp ipv6", []string{"type: ipudp"}, "2001:db8::1", "tun", 1452, 8285, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := []string{"device:", "  mode: " + tt.mode, "encap:"}
			for _, l := range tt.encap {
				lines = append(lines, "  "+l)
			}
			lines = append(lines, "underlay:", "  local: "+tt.local)
			c := mustParse(t, doc(lines...))
			if c.Device.MTU != tt.mtu || c.Encap.Port != tt.port {
				t.Errorf("device.mtu %d, encap.port %d; want %d, %d", c.Device.MTU, c.Encap.Port, tt.mtu, tt.port)
			}
			if got := c.Underlay.MTU - c.Overhead(); got != c.Device.MTU {
				t.Errorf("underlay mtu - Overhead() = %d, want device mtu %d", got, c.Device.MTU)
			}
			if c.Device.MAC != DefaultMAC(c.Underlay.Local) {
				t.Errorf("device.mac %x, want DefaultMAC(local) %x", c.Device.MAC, DefaultMAC(c.Underlay.Local))
			}
			checkRoundTrip(t, c)
		})
	}
}

func TestDeviceAddressesKeepHostBits(t *testing.T) {
	c := mustParse(t, doc(
		"device:",
		"  addresses: [10.200.0.1/24]",
		"encap: {type: ipip}",
		"underlay: {local: 10.99.0.1}",
		"peers:",
		"  - remote: 10.99.0.2",
		"    prefixes: [10.200.1.9/24]",
	))
	if got := c.Device.Addresses[0]; got != pfx("10.200.0.1/24") {
		t.Errorf("device address %v, want 10.200.0.1/24", got)
	}
	if got := c.Peers[0].Prefixes[0]; got != pfx("10.200.1.0/24") {
		t.Errorf("peer prefix %v, want masked 10.200.1.0/24", got)
	}
}

func TestNullMeansUnset(t *testing.T) {
	c := mustParse(t, doc(
		"device:",
		"  mtu:",
		"  mac: ~",
		"encap:",
		"  type: gre",
		"  key: null",
		"underlay:",
		"  local: 10.99.0.1",
		"peers:",
		"metrics:",
		"  listen: \"\"",
	))
	if c.Device.MTU != 1476 || c.Device.MACSet || c.Encap.HasKey || len(c.Peers) != 0 || c.Metrics.Listen != "" {
		t.Errorf("got %+v", c)
	}
}

func TestAnchorsAndAliases(t *testing.T) {
	c := mustParse(t, doc(
		"encap: {type: ipip}",
		"underlay: {local: 10.99.0.1}",
		"peers:",
		"  - remote: 10.99.0.2",
		"    prefixes: &nets [10.200.0.0/24]",
		"  - remote: 10.99.0.3",
		"    prefixes: [10.200.1.0/24]",
	))
	if len(c.Peers) != 2 {
		t.Fatalf("got %d peers", len(c.Peers))
	}
	probs := parseProblems(t, doc(
		"encap: {type: ipip}",
		"underlay: {local: 10.99.0.1}",
		"peers:",
		"  - remote: 10.99.0.2",
		"    prefixes: &nets [10.200.0.0/24]",
		"  - remote: 10.99.0.3",
		"    prefixes: *nets",
	))
	if len(probs) != 1 || probs[0].Path != "peers[1].prefixes[0]" {
		t.Fatalf("got %v", probs)
	}
}

func TestOverhead(t *testing.T) {
	v4, v6 := ip("10.0.0.1"), ip("2001:db8::1")
	tests := []struct {
		name  string
		encap Encap
		local netip.Addr
		mode  Mode
		want  int
	}{
		{"ipip", Encap{Type: EncapIPIP}, v4, ModeTUN, 20},
		{"sit", Encap{Type: EncapSIT}, v4, ModeTUN, 20},
		{"sit over IPv6", Encap{Type: EncapSIT}, v6, ModeTUN, 40},
		{"gre", Encap{Type: EncapGRE}, v4, ModeTUN, 24},
		{"gre key", Encap{Type: EncapGRE, HasKey: true}, v4, ModeTUN, 28},
		{"gre csum", Encap{Type: EncapGRE, Checksum: true}, v4, ModeTUN, 28},
		{"gre seq", Encap{Type: EncapGRE, Sequence: true}, v4, ModeTUN, 28},
		{"gre all", Encap{Type: EncapGRE, HasKey: true, Checksum: true, Sequence: true}, v4, ModeTUN, 36},
		{"gre IPv6", Encap{Type: EncapGRE}, v6, ModeTUN, 44},
		{"gre tap (TEB)", Encap{Type: EncapGRE}, v4, ModeTAP, 38},
		{"vxlan", Encap{Type: EncapVXLAN}, v4, ModeTUN, 50},
		{"vxlan tap", Encap{Type: EncapVXLAN}, v4, ModeTAP, 50},
		{"vxlan IPv6", Encap{Type: EncapVXLAN}, v6, ModeTUN, 70},
		{"ipudp", Encap{Type: EncapIPUDP}, v4, ModeTUN, 28},
		{"ipudp IPv6", Encap{Type: EncapIPUDP}, v6, ModeTUN, 48},
		{"unknown", Encap{Type: "x"}, v4, ModeTUN, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Encap: tt.encap, Underlay: Underlay{Local: tt.local}, Device: Device{Mode: tt.mode}}
			if got := c.Overhead(); got != tt.want {
				t.Errorf("Overhead() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestDefaultMAC(t *testing.T) {
	tests := []struct {
		addr string
		want [6]byte
	}{
		{"10.99.0.1", [6]byte{0x02, 0x00, 10, 99, 0, 1}},
		{"255.255.255.255", [6]byte{0x02, 0x00, 0xff, 0xff, 0xff, 0xff}},
		{"::ffff:10.99.0.1", [6]byte{0x02, 0x00, 10, 99, 0, 1}},
		{"2001:db8::aa:bbcc:ddee", [6]byte{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			got := DefaultMAC(ip(tt.addr))
			if got != tt.want {
				t.Errorf("DefaultMAC(%s) = %x, want %x", tt.addr, got, tt.want)
			}
			if got[0]&1 != 0 || got[0]&2 == 0 {
				t.Errorf("DefaultMAC(%s) = %x is not locally administered unicast", tt.addr, got)
			}
		})
	}
	if got := DefaultMAC(netip.Addr{}); got != [6]byte{2} {
		t.Errorf("DefaultMAC(invalid) = %x", got)
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	c := &Config{
		Device:   Device{Name: "tp0", Mode: ModeTUN, MTU: 1480},
		Encap:    Encap{Type: EncapIPIP, TTL: 64, TOS: Inherit, DF: Inherit},
		Underlay: Underlay{Local: ip("10.99.0.1"), MTU: 1500},
		Peers:    []Peer{{Remote: ip("10.99.0.2"), Prefixes: []netip.Prefix{pfx("10.200.0.0/24")}}},
		Offload:  "auto",
		Log:      Log{Level: "info"},
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	c.Encap.VNI = 3
	c.Peers[0].Prefixes[0] = pfx("10.200.0.1/24")
	c.Device.MTU = 1481
	err := c.Validate()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Validate = %v, want *Error", err)
	}
	var paths []string
	for _, p := range e.Problems {
		if p.Line != 0 || p.Col != 0 {
			t.Errorf("problem %v has a position", p)
		}
		paths = append(paths, p.Path)
	}
	want := []string{"encap.vni", "device.mtu", "peers[0].prefixes[0]"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("problem paths %v, want %v\n%v", paths, want, err)
	}
}
