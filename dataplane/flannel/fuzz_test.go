package flannel

import (
	"errors"
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FuzzParseLease feeds arbitrary keys and values to the lease parser: it
// must never panic, must refuse with ErrMalformed, and what it accepts
// must be a usable peer (a masked IPv4 subnet, a unicast IPv4 PublicIP, a
// unicast VtepMAC for vxlan) that encodes and parses back to itself.
func FuzzParseLease(f *testing.F) {
	f.Add("/coreos.com/network/subnets/10.244.2.0-24", goldenVXLAN)
	f.Add("10.244.2.0-24", goldenUDP)
	f.Add("10.244.2.0-24&fd00::-64", goldenIPIP)
	f.Fuzz(func(t *testing.T, key, value string) {
		l, err := ParseLease(key, []byte(value))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !l.Subnet.Addr().Is4() || l.Subnet.Masked() != l.Subnet || !l.PublicIP.Is4() || l.PublicIP.IsUnspecified() {
			t.Fatalf("accepted %+v", l)
		}
		if l.Backend() == BackendVXLAN && (!l.HasVtepMAC || l.VtepMAC[0]&1 != 0) {
			t.Fatalf("accepted vxlan lease without a unicast MAC: %+v", l)
		}
		switch l.Backend() {
		case BackendVXLAN, BackendUDP, BackendIPIP:
			back, err := ParseLease(SubnetKey(l.Subnet), EncodeLease(l.PublicIP, l.Backend(), l.VNI, l.VtepMAC))
			if err != nil || back.Subnet != l.Subnet || back.PublicIP != l.PublicIP || back.VtepMAC != l.VtepMAC || back.Backend() != l.Backend() {
				t.Fatalf("round trip %+v -> %+v, %v", l, back, err)
			}
		}
	})
}

// FuzzParseNetworkConfig: any bytes, no panic; an accepted config has
// bounds inside the network on subnet boundaries.
func FuzzParseNetworkConfig(f *testing.F) {
	f.Add(`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`)
	f.Add(`{"Network":"10.244.0.0/16","SubnetLen":26,"SubnetMin":"10.244.4.0","SubnetMax":"10.244.7.192"}`)
	f.Fuzz(func(t *testing.T, s string) {
		nc, err := ParseNetworkConfig([]byte(s))
		if err != nil {
			return
		}
		if !nc.Network.Contains(nc.SubnetMin) || !nc.Network.Contains(nc.SubnetMax) || nc.SubnetLen > 30 || nc.Subnets() < 1 {
			t.Fatalf("accepted %+v", nc)
		}
		if netip.PrefixFrom(nc.SubnetMin, nc.SubnetLen).Masked().Addr() != nc.SubnetMin {
			t.Fatalf("SubnetMin off boundary: %+v", nc)
		}
		if _, err := Allocate(nc, nil, nil); err != nil {
			t.Fatalf("no subnet in %+v: %v", nc, err)
		}
	})
}

// FuzzNodeLease feeds a Node's annotations and podCIDRs from the fuzzer:
// NodeLease never panics, and a lease it accepts is one the peer table
// can use.
func FuzzNodeLease(f *testing.F) {
	f.Add("true", "vxlan", `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:02"}`, "10.99.0.2", "10.244.2.0/24", "")
	f.Add("true", "ipip", "null", "10.99.0.2", "fd00::/64", "10.244.2.0/24")
	f.Add("false", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, managed, typ, data, ip, cidr1, cidr2 string) {
		n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
			AnnotationKubeManaged: managed, AnnotationBackendType: typ, AnnotationBackendData: data, AnnotationPublicIP: ip,
		}}, Spec: v1.NodeSpec{PodCIDR: cidr1}}
		if cidr2 != "" {
			n.Spec.PodCIDRs = []string{cidr1, cidr2}
		}
		l, ok, err := NodeLease(n)
		if err != nil || !ok {
			return
		}
		if !l.Subnet.IsValid() || !l.Subnet.Addr().Is4() || l.Subnet.Masked() != l.Subnet || !l.PublicIP.Is4() {
			t.Fatalf("accepted lease %+v", l)
		}
		if l.Backend() == BackendVXLAN && (!l.HasVtepMAC || l.VtepMAC[0]&1 != 0) {
			t.Fatalf("vxlan lease without a unicast VtepMAC: %+v", l)
		}
	})
}
