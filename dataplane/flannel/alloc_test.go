package flannel

import (
	"errors"
	"net/netip"
	"testing"
)

func TestAllocate(t *testing.T) {
	nc, err := ParseNetworkConfig([]byte(`{"Network":"10.244.0.0/16","SubnetMin":"10.244.1.0","SubnetMax":"10.244.4.0"}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Allocate(nc, nil, nil)
	if err != nil || got != pfx("10.244.1.0/24") {
		t.Fatalf("empty: %v, %v", got, err)
	}
	taken := []netip.Prefix{pfx("10.244.1.0/24"), pfx("10.244.3.0/24")}
	var n int
	got, err = Allocate(nc, taken, func(k int) int { n = k; return k - 1 })
	if err != nil || got != pfx("10.244.4.0/24") || n != 2 {
		t.Fatalf("two taken: %v, %v (chose among %d)", got, err, n)
	}
	// A larger lease (a reservation covering two subnets) overlaps both.
	got, err = Allocate(nc, []netip.Prefix{pfx("10.244.0.0/23"), pfx("10.244.2.0/24")}, nil)
	if err != nil || got != pfx("10.244.3.0/24") {
		t.Fatalf("overlap: %v, %v", got, err)
	}
	_, err = Allocate(nc, []netip.Prefix{pfx("10.244.0.0/16")}, nil)
	if !errors.Is(err, ErrNoSubnets) {
		t.Fatalf("full: %v", err)
	}
	// The last subnet of the address space does not wrap around.
	nc2, _ := ParseNetworkConfig([]byte(`{"Network":"255.255.255.0/24","SubnetLen":26}`))
	got, err = Allocate(nc2, []netip.Prefix{pfx("255.255.255.64/26"), pfx("255.255.255.128/26")}, nil)
	if err != nil || got != pfx("255.255.255.192/26") {
		t.Fatalf("top of the space: %v, %v", got, err)
	}
	// At most maxCandidates are offered.
	big, _ := ParseNetworkConfig([]byte(`{"Network":"10.0.0.0/8"}`))
	Allocate(big, nil, func(k int) int { n = k; return 0 })
	if n != maxCandidates {
		t.Fatalf("candidates %d, want %d", n, maxCandidates)
	}
}

func TestFindOwn(t *testing.T) {
	nc, _ := ParseNetworkConfig([]byte(`{"Network":"10.244.0.0/16"}`))
	me := addr("10.99.0.1")
	leases := []Lease{
		{Subnet: pfx("10.244.7.0/24"), PublicIP: addr("10.99.0.2")},
		{Subnet: pfx("10.245.1.0/24"), PublicIP: me}, // from an older network config
		{Subnet: pfx("10.244.9.0/24"), PublicIP: me},
	}
	l, ok := FindOwn(leases, me, nc)
	if !ok || l.Subnet != pfx("10.244.9.0/24") {
		t.Fatalf("FindOwn = %+v %v", l, ok)
	}
	l, ok = FindOwn(leases[:2], me, nc)
	if !ok || l.Subnet != pfx("10.245.1.0/24") || nc.Compatible(l.Subnet) {
		t.Fatalf("incompatible own lease: %+v %v", l, ok)
	}
	if _, ok := FindOwn(leases, addr("10.99.0.9"), nc); ok {
		t.Fatal("found a lease for a stranger")
	}
}
