package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestPresets(t *testing.T) {
	tests := []struct {
		name  string
		data  []byte
		typ   EncapType
		vni   uint32
		port  uint16
		dev   string
		mtu   int
		check func(t *testing.T, c *Config)
	}{
		{"flannel-vxlan", doc("encap: {preset: flannel-vxlan}", "underlay: {local: 10.99.0.1}"), EncapVXLAN, 1, 8472, "tp0", 1450, nil},
		{"flannel-udp", doc("encap: {preset: flannel-udp}", "underlay: {local: 10.99.0.1}"), EncapIPUDP, 0, 8285, "tp0", 1472, nil},
		{"calico-vxlan", doc("encap: {preset: calico-vxlan}", "underlay: {local: 10.99.0.1}"), EncapVXLAN, 4096, 4789, "tp0", 1450, nil},
		{"calico-ipip", doc("encap: {preset: calico-ipip}", "underlay: {local: 10.99.0.1}"), EncapIPIP, 0, 0, "tunl0", 1480, nil},
		{"calico-ipip jumbo underlay keeps 1480", doc("encap: {preset: calico-ipip}", "underlay: {local: 10.99.0.1, mtu: 9000}"), EncapIPIP, 0, 0, "tunl0", 1480, nil},
		{"calico-ipip small underlay caps the mtu", doc("encap: {preset: calico-ipip}", "underlay: {local: 10.99.0.1, mtu: 1400}"), EncapIPIP, 0, 0, "tunl0", 1380, nil},
		{"explicit vni overrides", doc("encap:", "  preset: flannel-vxlan", "  vni: 5", "underlay: {local: 10.99.0.1}"), EncapVXLAN, 5, 8472, "tp0", 1450, nil},
		{"explicit port overrides", doc("encap: {preset: calico-vxlan, port: 4790}", "underlay: {local: 10.99.0.1}"), EncapVXLAN, 4096, 4790, "tp0", 1450, nil},
		{"explicit vni 0 overrides", doc("encap: {preset: calico-vxlan, vni: 0}", "underlay: {local: 10.99.0.1}"), EncapVXLAN, 0, 4789, "tp0", 1450, nil},
		{"explicit device overrides", doc("device: {name: ipip0, mtu: 1400}", "encap: {preset: calico-ipip}", "underlay: {local: 10.99.0.1}"), EncapIPIP, 0, 0, "ipip0", 1400, nil},
		{"same type given", doc("encap: {preset: flannel-vxlan, type: vxlan}", "underlay: {local: 10.99.0.1}"), EncapVXLAN, 1, 8472, "tp0", 1450, nil},
		{"tap mode", doc("device: {mode: tap}", "encap: {preset: calico-vxlan}", "underlay: {local: 10.99.0.1}"), EncapVXLAN, 4096, 4789, "tp0", 1450, nil},
		{"other keys still apply", doc("encap: {preset: calico-ipip, ttl: 32}", "underlay: {local: 10.99.0.1}"), EncapIPIP, 0, 0, "tunl0", 1480, func(t *testing.T, c *Config) {
			if c.Encap.TTL != 32 {
				t.Errorf("ttl %d, want 32", c.Encap.TTL)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.data)
			e := c.Encap
			if e.Type != tt.typ || e.VNI != tt.vni || e.Port != tt.port || c.Device.Name != tt.dev || c.Device.MTU != tt.mtu {
				t.Errorf("type %s vni %d port %d device %s mtu %d; want %s %d %d %s %d",
					e.Type, e.VNI, e.Port, c.Device.Name, c.Device.MTU, tt.typ, tt.vni, tt.port, tt.dev, tt.mtu)
			}
			if e.Preset == "" {
				t.Errorf("Preset not recorded")
			}
			if tt.check != nil {
				tt.check(t, c)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			checkRoundTrip(t, c)
		})
	}
	for name, p := range Presets {
		if !knownEncap(p.Type) {
			t.Errorf("preset %s has unknown type %q", name, p.Type)
		}
	}
}

func TestNewKeysDefaults(t *testing.T) {
	c := mustParse(t, withBase())
	if c.Backend != BackendUserspace || c.PeersFrom != PeersFromConfig || c.Encap.Preset != "" {
		t.Errorf("backend %q peers_from %q preset %q; want userspace, config, none", c.Backend, c.PeersFrom, c.Encap.Preset)
	}
}

func TestNewKeysValid(t *testing.T) {
	tests := []struct {
		name      string
		data      []byte
		backend   string
		peersFrom string
	}{
		{"backend auto", withBase("backend: auto"), BackendAuto, PeersFromConfig},
		{"backend kernel", withBase("backend: kernel"), BackendKernel, PeersFromConfig},
		{"backend userspace", withBase("backend: userspace"), BackendUserspace, PeersFromConfig},
		{"backend auto ipudp", doc("encap: {type: ipudp}", "underlay: {local: 10.99.0.1}", "backend: auto"), BackendAuto, PeersFromConfig},
		{"peers_from routes", doc("encap: {type: ipip}", "underlay: {local: 10.99.0.1}", "peers_from: routes"), BackendUserspace, PeersFromRoutes},
		{"peers_from routes with static peers", doc("encap: {type: ipip}", "underlay: {local: 10.99.0.1}", "peers_from: routes",
			"peers:", "  - {remote: 10.99.0.2, prefixes: [10.200.2.0/24]}"), BackendUserspace, PeersFromRoutes},
		{"peers_from config", withBase("peers_from: config"), BackendUserspace, PeersFromConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.data)
			if c.Backend != tt.backend || c.PeersFrom != tt.peersFrom {
				t.Errorf("backend %q peers_from %q, want %q %q", c.Backend, c.PeersFrom, tt.backend, tt.peersFrom)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			checkRoundTrip(t, c)
		})
	}
}

func TestNewKeysProblems(t *testing.T) {
	tests := []struct {
		name      string
		data      []byte
		line, col int
		path      string
		msg       string
	}{
		{"preset unknown", doc("encap:", "  preset: weave", "underlay: {local: 10.99.0.1}"), 2, 11, "encap.preset", `"weave" is not one of calico-ipip, calico-vxlan, flannel-udp, flannel-vxlan`},
		{"preset not a string", doc("encap:", "  preset: [flannel-vxlan]", "underlay: {local: 10.99.0.1}"), 2, 11, "encap.preset", "must be a string"},
		{"preset type disagrees", doc("encap:", "  preset: flannel-vxlan", "  type: gre", "underlay: {local: 10.99.0.1}"), 3, 9, "encap.type", "gre disagrees with encap.preset flannel-vxlan (line 2), which is vxlan"},
		{"preset type disagrees, type first", doc("encap:", "  type: ipip", "  preset: calico-vxlan", "underlay: {local: 10.99.0.1}"), 2, 9, "encap.type", "ipip disagrees with encap.preset calico-vxlan (line 3), which is vxlan"},
		{"preset ipip with vni", doc("encap:", "  preset: calico-ipip", "  vni: 3", "underlay: {local: 10.99.0.1}"), 3, 8, "encap.vni", "vni applies only to vxlan, not ipip"},
		{"preset ipip in tap mode", doc("device: {mode: tap}", "encap: {preset: calico-ipip}", "underlay: {local: 10.99.0.1}"), 1, 16, "device.mode", "ipip carries IP only"},
		{"preset typo key", doc("encap:", "  prest: calico-ipip", "underlay: {local: 10.99.0.1}"), 2, 3, "encap.prest", `did you mean "preset"`},
		{"backend unknown", withBase("backend: ebpf"), 5, 10, "backend", `must be "userspace", "kernel" or "auto", not "ebpf"`},
		{"backend not a string", withBase("backend: [kernel]"), 5, 10, "backend", "must be a string"},
		{"backend kernel ipudp", doc("encap: {preset: flannel-udp}", "underlay: {local: 10.99.0.1}", "backend: kernel"), 3, 10, "backend", "no ipudp link type"},
		{"backend kernel peer prefix is the device subnet", doc("device: {addresses: [10.200.0.1/24]}", "encap: {preset: calico-vxlan}", "underlay: {local: 10.99.0.1}",
			"peers: [{remote: 10.99.0.2, prefixes: [10.200.0.0/24]}]", "backend: kernel"), 4, 40, "peers[0].prefixes[0]", "is the subnet of device address 10.200.0.1/24"},
		{"backend auto peer prefix is the device subnet", doc("device: {addresses: [10.200.0.1/24]}", "encap: {preset: calico-vxlan}", "underlay: {local: 10.99.0.1}",
			"peers: [{remote: 10.99.0.2, prefixes: [10.200.0.0/24]}]", "backend: auto"), 4, 40, "peers[0].prefixes[0]", "(backend auto)"},
		{"peers_from unknown", withBase("peers_from: bgp"), 5, 13, "peers_from", `must be "config", "routes" or "flannel", not "bgp"`},
		{"peers_from typo", withBase("peer_from: routes"), 5, 1, "peer_from", `did you mean "peers_from"`},
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

func TestValidateNewKeysBuiltInCode(t *testing.T) {
	c := mustParse(t, doc("encap: {preset: calico-ipip}", "underlay: {local: 10.99.0.1}"))
	c.Backend, c.PeersFrom = "", "" // zero values count as the defaults
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	c.Encap.Type = EncapGRE
	c.Backend = "fast"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "encap.type: gre disagrees with encap.preset calico-ipip, which is ipip") ||
		!strings.Contains(err.Error(), `backend: must be`) {
		t.Fatalf("Validate = %v", err)
	}
}

// TestExamples loads every file in examples/ (the repository's commented
// sample configurations): each must parse without a problem.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples/*.yaml: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			checkRoundTrip(t, c)
		})
	}
}
