package flannel

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

// Values as flanneld v0.28.10 writes them (captured from etcd in the
// end-to-end test): field order, "PublicIPv6":null, no BackendType for udp.
const (
	goldenVXLAN = `{"PublicIP":"10.99.0.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:0a:63:00:02"}}`
	goldenUDP   = `{"PublicIP":"10.99.0.2","PublicIPv6":null}`
	goldenIPIP  = `{"PublicIP":"10.99.0.2","PublicIPv6":null,"BackendType":"ipip"}`
)

func TestEncodeLeaseGolden(t *testing.T) {
	mac := [6]byte{0x02, 0, 10, 99, 0, 2}
	for _, tt := range []struct{ backend, want string }{
		{BackendVXLAN, goldenVXLAN}, {BackendUDP, goldenUDP}, {BackendIPIP, goldenIPIP},
	} {
		if got := string(EncodeLease(addr("10.99.0.2"), tt.backend, 1, mac)); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.backend, got, tt.want)
		}
		l, err := ParseLease("/coreos.com/network/subnets/10.244.2.0-24", []byte(tt.want))
		if err != nil {
			t.Fatalf("%s: ParseLease(golden): %v", tt.backend, err)
		}
		if l.Subnet != pfx("10.244.2.0/24") || l.PublicIP != addr("10.99.0.2") || l.Backend() != tt.backend {
			t.Errorf("%s: parsed %+v", tt.backend, l)
		}
		if tt.backend == BackendVXLAN && (!l.HasVtepMAC || l.VtepMAC != mac || l.VNI != 1) {
			t.Errorf("vxlan: MAC %v (%v) VNI %d", l.VtepMAC, l.HasVtepMAC, l.VNI)
		}
	}
}

func TestParseLeaseAcceptsFlannelVariants(t *testing.T) {
	for _, v := range []string{
		// older flanneld: no PublicIPv6 key
		`{"PublicIP":"10.99.0.3","BackendType":"vxlan","BackendData":{"VtepMAC":"0a:58:0a:f4:03:00","VNI":1}}`,
		// dual-stack node: a v6 part we ignore
		`{"PublicIP":"10.99.0.3","PublicIPv6":"fd00::3","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:0a:f4:03:00"},"BackendV6Data":{"VNI":1,"VtepMAC":"0a:58:0a:f4:03:01"}}`,
	} {
		l, err := ParseLease("10.244.3.0-24&fd00:3::-64", []byte(v))
		if err != nil || l.PublicIP != addr("10.99.0.3") || !l.HasVtepMAC {
			t.Errorf("ParseLease(%s) = %+v, %v", v, l, err)
		}
	}
}

func TestParseLeaseMalformed(t *testing.T) {
	tests := []struct{ key, value, msg string }{
		{"10.244.2.0", goldenVXLAN, "not <ip>-<length>"},
		{"10.244.2.0-33", goldenVXLAN, "prefix length"},
		{"10.244.2.0-024", goldenVXLAN, "prefix length"},
		{"10.244.2.1-24", goldenVXLAN, "host bits"},
		{"fd00::-64", goldenVXLAN, "not an IPv4 address"},
		{"10.244.2.0-24", `{"PublicIP":"10.99.0.2"`, "not lease JSON"},
		{"10.244.2.0-24", `[]`, "not lease JSON"},
		{"10.244.2.0-24", `{"PublicIP":"fd00::2","BackendType":"ipip"}`, "not an IPv4 address"},
		{"10.244.2.0-24", `{"PublicIP":"0.0.0.0","BackendType":"ipip"}`, "not a unicast"},
		{"10.244.2.0-24", `{"PublicIP":"224.0.0.1","BackendType":"ipip"}`, "not a unicast"},
		{"10.244.2.0-24", `{"PublicIP":"10.99.0.2","BackendType":"vxlan"}`, "without BackendData"},
		{"10.244.2.0-24", `{"PublicIP":"10.99.0.2","BackendType":"vxlan","BackendData":"x"}`, "without BackendData"},
		{"10.244.2.0-24", `{"PublicIP":"10.99.0.2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"03:00:00:00:00:01"}}`, "not a unicast MAC"},
		{"10.244.2.0-24", `{"PublicIP":"10.99.0.2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"00:00:00:00:00:00"}}`, "not a unicast MAC"},
		{"10.244.2.0-24", `{"PublicIP":"10.99.0.2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"00:11:22:33:44:55:66:77"}}`, "not a unicast MAC"},
	}
	for _, tt := range tests {
		_, err := ParseLease(tt.key, []byte(tt.value))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseLease(%q, %s) = %v, want ErrMalformed with %q", tt.key, tt.value, err, tt.msg)
		}
	}
	// Another backend's data is not looked at: a host-gw lease is valid,
	// only of another type.
	l, err := ParseLease("10.244.5.0-24", []byte(`{"PublicIP":"10.99.0.5","BackendType":"host-gw","BackendData":42}`))
	if err != nil || l.Backend() != "host-gw" {
		t.Errorf("host-gw lease: %+v, %v", l, err)
	}
}

func TestSubnetKeyRoundTrip(t *testing.T) {
	for _, s := range []string{"10.244.1.0/24", "10.0.0.0/8", "192.168.10.16/28", "10.244.0.0/32"} {
		p := pfx(s)
		got, err := ParseSubnetKey("/coreos.com/network/subnets/" + SubnetKey(p))
		if err != nil || got != p {
			t.Errorf("%s: key %s parsed to %v, %v", s, SubnetKey(p), got, err)
		}
	}
	if SubnetKey(pfx("10.244.1.0/24")) != "10.244.1.0-24" {
		t.Errorf("SubnetKey = %s", SubnetKey(pfx("10.244.1.0/24")))
	}
}

func TestParseNetworkConfig(t *testing.T) {
	tests := []struct {
		json       string
		network    string
		len        int
		min, max   string
		be         BackendConfig
		subnetsCnt int
	}{
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`, "10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0", BackendConfig{Type: "vxlan"}, 255},
		{`{"Network":"10.244.0.0/16","SubnetLen":26,"SubnetMin":"10.244.4.0","SubnetMax":"10.244.7.192","Backend":{"Type":"vxlan","VNI":7,"Port":4789}}`,
			"10.244.0.0/16", 26, "10.244.4.0", "10.244.7.192", BackendConfig{Type: "vxlan", VNI: 7, Port: 4789}, 16},
		{`{"Network":"10.244.0.0/26"}`, "10.244.0.0/26", 28, "10.244.0.16", "10.244.0.48", BackendConfig{Type: "udp"}, 3},
		{`{"network":"10.244.0.0/16","backend":{"type":"ipip"}}`, "10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0", BackendConfig{Type: "ipip"}, 255},
		{`{"Network":"10.244.0.0/16","EnableIPv4":true,"Backend":null}`, "10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0", BackendConfig{Type: "udp"}, 255},
	}
	for _, tt := range tests {
		nc, err := ParseNetworkConfig([]byte(tt.json))
		if err != nil {
			t.Errorf("%s: %v", tt.json, err)
			continue
		}
		if nc.Network != pfx(tt.network) || nc.SubnetLen != tt.len || nc.SubnetMin != addr(tt.min) || nc.SubnetMax != addr(tt.max) || nc.Backend != tt.be || nc.Subnets() != tt.subnetsCnt {
			t.Errorf("%s: got %+v (%d subnets)", tt.json, nc, nc.Subnets())
		}
	}
	for _, tt := range []struct{ json, msg string }{
		{``, "not valid JSON"},
		{`{"Backend":{"Type":"vxlan"}}`, `no "Network"`},
		{`{"Network":"10.244.0.0"}`, "not an IPv4 prefix"},
		{`{"Network":"fd00::/48"}`, "not an IPv4 prefix"},
		{`{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/48"}`, "IPv4 networks only"},
		{`{"Network":"10.244.0.0/16","EnableIPv4":false}`, "disables IPv4"},
		{`{"Network":"10.244.0.0/29"}`, "too small"},
		{`{"Network":"10.244.0.0/16","SubnetLen":31}`, "at most 30"},
		{`{"Network":"10.244.0.0/16","SubnetLen":17}`, "fewer than four subnets"},
		{`{"Network":"10.244.0.0/16","SubnetMin":"10.245.0.0"}`, "not in Network"},
		{`{"Network":"10.244.0.0/16","SubnetMax":"10.244.3.7"}`, "boundary"},
		{`{"Network":"10.244.0.0/16","SubnetMin":"10.244.9.0","SubnetMax":"10.244.3.0"}`, "below SubnetMin"},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":3}}`, "Backend"},
	} {
		if _, err := ParseNetworkConfig([]byte(tt.json)); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: err %v, want %q", tt.json, err, tt.msg)
		}
	}
}

func TestCheckBackend(t *testing.T) {
	nc := func(s string) NetworkConfig {
		n, err := ParseNetworkConfig([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	ok := []struct {
		cfg, be   string
		vni, port int
	}{
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`, "vxlan", 1, 8472},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":4096,"Port":4789}}`, "vxlan", 4096, 4789},
		{`{"Network":"10.244.0.0/16"}`, "udp", 0, 8285},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"ipip"}}`, "ipip", 0, 0},
	}
	for _, tt := range ok {
		if err := nc(tt.cfg).CheckBackend(tt.be, tt.vni, tt.port); err != nil {
			t.Errorf("%s with %s/%d/%d: %v", tt.cfg, tt.be, tt.vni, tt.port, err)
		}
	}
	bad := []struct {
		cfg, be   string
		vni, port int
		msg       string
	}{
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`, "vxlan", 1, 8472, `backend is "host-gw"`},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`, "ipip", 0, 0, `speaks flannel's "ipip" backend`},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":2}}`, "vxlan", 1, 8472, "set encap.vni: 2"},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`, "vxlan", 1, 4789, "set encap.port: 8472"},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"udp","Port":9000}}`, "udp", 0, 8285, "set encap.port: 9000"},
	}
	for _, tt := range bad {
		if err := nc(tt.cfg).CheckBackend(tt.be, tt.vni, tt.port); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s with %s: %v, want %q", tt.cfg, tt.be, err, tt.msg)
		}
	}
}
