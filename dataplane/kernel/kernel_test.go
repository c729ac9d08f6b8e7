package kernel

import (
	"strings"
	"testing"

	"tunnelplane/dataplane/config"
)

func parse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	c, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCompatible(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		msg  string // "" = compatible
	}{
		{"vxlan", "encap: {type: vxlan}\nunderlay: {local: 10.99.0.1}\n", ""},
		{"vxlan IPv6 underlay", "encap: {type: vxlan}\nunderlay: {local: \"fd99::1\"}\n", ""},
		{"ipip", "encap: {preset: calico-ipip}\nunderlay: {local: 10.99.0.1}\n", ""},
		{"gre key", "encap: {type: gre, key: 0, checksum: true}\nunderlay: {local: 10.99.0.1}\n", ""},
		{"gretap one peer", "device: {mode: tap}\nencap: {type: gre}\nunderlay: {local: 10.99.0.1}\npeers: [{remote: 10.99.0.2}]\n", ""},
		{"ipudp", "encap: {preset: flannel-udp}\nunderlay: {local: 10.99.0.1}\n", "ipudp has no kernel link type"},
		{"df false", "encap: {type: ipip, df: false}\nunderlay: {local: 10.99.0.1}\n", "df: false"},
		{"gretap two peers", "device: {mode: tap}\nencap: {type: gre}\nunderlay: {local: 10.99.0.1}\npeers: [{remote: 10.99.0.2}, {remote: 10.99.0.3}]\n", "point to point"},
		{"gre IPv6 underlay", "encap: {type: gre}\nunderlay: {local: \"fd99::1\"}\n", "IPv6 underlay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Compatible(parse(t, tt.yaml))
			switch {
			case tt.msg == "" && err != nil:
				t.Fatalf("Compatible: %v", err)
			case tt.msg != "" && (err == nil || !strings.Contains(err.Error(), tt.msg)):
				t.Fatalf("Compatible = %v, want %q", err, tt.msg)
			}
		})
	}
}

func TestUseWithoutProbing(t *testing.T) {
	c := parse(t, "encap: {type: vxlan}\nunderlay: {local: 10.99.0.1}\n")
	if use, err := Use(c); use || err != nil {
		t.Errorf("default backend: Use = %v, %v; want userspace", use, err)
	}
	c = parse(t, "encap: {type: ipudp}\nunderlay: {local: 10.99.0.1}\nbackend: auto\n")
	if use, err := Use(c); use || err != nil {
		t.Errorf("auto ipudp: Use = %v, %v; want userspace without error", use, err)
	}
	c.Backend = config.BackendKernel
	if use, err := Use(c); use || err == nil {
		t.Errorf("kernel ipudp: Use = %v, %v; want an error", use, err)
	}
}
