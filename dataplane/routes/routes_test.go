package routes

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"tunnelplane/dataplane/config"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

func cand(p, gw string, metric int) candidate {
	return candidate{PeerRoute{Prefix: pfx(p), Gateway: ip(gw)}, metric}
}

func TestGroup(t *testing.T) {
	tests := []struct {
		name  string
		cands []candidate
		want  []Peer
	}{
		{"empty", nil, []Peer{}},
		{"one", []candidate{cand("10.200.80.0/24", "10.99.0.2", 0)},
			[]Peer{{ip("10.99.0.2"), []netip.Prefix{pfx("10.200.80.0/24")}}}},
		{"grouped by gateway, sorted", []candidate{
			cand("10.200.81.0/24", "10.99.0.3", 0),
			cand("10.200.80.0/24", "10.99.0.2", 0),
			cand("fd00:200::/64", "fd99::2", 0),
			cand("10.200.79.0/24", "10.99.0.2", 0),
			cand("10.200.79.0/25", "10.99.0.2", 0),
		}, []Peer{
			{ip("10.99.0.2"), []netip.Prefix{pfx("10.200.79.0/24"), pfx("10.200.79.0/25"), pfx("10.200.80.0/24")}},
			{ip("10.99.0.3"), []netip.Prefix{pfx("10.200.81.0/24")}},
			{ip("fd99::2"), []netip.Prefix{pfx("fd00:200::/64")}},
		}},
		{"duplicates collapse", []candidate{cand("10.200.80.0/24", "10.99.0.2", 0), cand("10.200.80.0/24", "10.99.0.2", 0)},
			[]Peer{{ip("10.99.0.2"), []netip.Prefix{pfx("10.200.80.0/24")}}}},
		{"lowest metric wins", []candidate{cand("10.200.80.0/24", "10.99.0.2", 200), cand("10.200.80.0/24", "10.99.0.3", 100)},
			[]Peer{{ip("10.99.0.3"), []netip.Prefix{pfx("10.200.80.0/24")}}}},
		{"ecmp: lowest gateway wins", []candidate{cand("10.200.80.0/24", "10.99.0.3", 0), cand("10.200.80.0/24", "10.99.0.2", 0)},
			[]Peer{{ip("10.99.0.2"), []netip.Prefix{pfx("10.200.80.0/24")}}}},
		{"host bits masked, mapped gateway unmapped", []candidate{cand("10.200.80.9/24", "::ffff:10.99.0.2", 0)},
			[]Peer{{ip("10.99.0.2"), []netip.Prefix{pfx("10.200.80.0/24")}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := group(tt.cands); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	c := &config.Config{
		Encap:    config.Encap{Type: config.EncapIPIP},
		Underlay: config.Underlay{Local: ip("10.99.0.1")},
		Peers: []config.Peer{
			{Remote: ip("10.99.0.2"), Prefixes: []netip.Prefix{pfx("10.200.2.0/24")}, MAC: [6]byte{2, 0, 0, 0, 2, 2}, MACSet: true},
			{Remote: ip("10.99.0.9"), Prefixes: []netip.Prefix{pfx("10.200.9.0/24")}, MAC: config.DefaultMAC(ip("10.99.0.9"))},
		},
	}
	learned := []Peer{
		{ip("10.99.0.2"), []netip.Prefix{pfx("10.200.20.0/24"), pfx("10.200.9.0/24")}}, // second is peers[1]'s
		{ip("10.99.0.3"), []netip.Prefix{pfx("10.200.3.0/24"), pfx("fd00:200::/64")}},  // IPv6 not carried by ipip
		{ip("10.99.0.1"), []netip.Prefix{pfx("10.200.1.0/24")}},                        // ourselves
		{ip("fd99::4"), []netip.Prefix{pfx("10.200.4.0/24")}},                          // other family
		{ip("10.99.0.5"), []netip.Prefix{pfx("10.200.2.0/24")}},                        // only a claimed prefix
	}
	got, notes := Merge(c, learned)
	want := []config.Peer{
		{Remote: ip("10.99.0.2"), Prefixes: []netip.Prefix{pfx("10.200.2.0/24"), pfx("10.200.20.0/24")}, MAC: [6]byte{2, 0, 0, 0, 2, 2}, MACSet: true},
		{Remote: ip("10.99.0.9"), Prefixes: []netip.Prefix{pfx("10.200.9.0/24")}, MAC: config.DefaultMAC(ip("10.99.0.9"))},
		{Remote: ip("10.99.0.3"), Prefixes: []netip.Prefix{pfx("10.200.3.0/24")}, MAC: config.DefaultMAC(ip("10.99.0.3"))},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Merge\n got %+v\nwant %+v", got, want)
	}
	if len(notes) != 5 {
		t.Errorf("want 5 notes, got %d: %q", len(notes), notes)
	}
	for _, n := range []string{"10.200.9.0/24 via 10.99.0.2", "fd00:200::/64", "underlay.local itself", "other address family", "10.200.2.0/24 via 10.99.0.5"} {
		if !strings.Contains(strings.Join(notes, "\n"), n) {
			t.Errorf("no note mentions %q: %q", n, notes)
		}
	}
	if len(c.Peers[0].Prefixes) != 1 {
		t.Errorf("Merge modified the config's peers: %v", c.Peers[0].Prefixes)
	}
	// The merged list is what the config package accepts.
	v := *c
	v.Device = config.Device{Name: "tp0", Mode: config.ModeTUN, MTU: 1480}
	v.Underlay.MTU = 1500
	v.Encap.TTL, v.Encap.TOS, v.Encap.DF = 64, config.Inherit, config.Inherit
	v.Offload, v.Log.Level = "auto", "info"
	v.Peers = got
	if err := v.Validate(); err != nil {
		t.Errorf("merged peers do not validate: %v", err)
	}
}
