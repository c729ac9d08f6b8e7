package flannel

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"tunnelplane/dataplane/config"
)

func TestPeers(t *testing.T) {
	own := pfx("10.244.1.0/24")
	me := addr("10.99.0.1")
	macA := [6]byte{0x0a, 0x58, 0, 0, 0, 2}
	macB := [6]byte{0x0a, 0x58, 0, 0, 0, 3}
	macB2 := [6]byte{0x0a, 0x58, 0, 0, 0, 0x33}
	leases := []Lease{
		{Subnet: own, PublicIP: me, BackendType: "vxlan", HasVtepMAC: true},
		{Subnet: pfx("10.244.3.0/24"), PublicIP: addr("10.99.0.3"), BackendType: "vxlan", VtepMAC: macB, HasVtepMAC: true, Rev: 5},
		{Subnet: pfx("10.244.2.0/24"), PublicIP: addr("10.99.0.2"), BackendType: "vxlan", VtepMAC: macA, HasVtepMAC: true, Rev: 4},
		{Subnet: pfx("10.244.9.0/24"), PublicIP: addr("10.99.0.3"), BackendType: "vxlan", VtepMAC: macB2, HasVtepMAC: true, Rev: 9},
		{Subnet: pfx("10.244.5.0/24"), PublicIP: addr("10.99.0.5"), BackendType: "host-gw"},
		{Subnet: pfx("10.244.8.0/24"), PublicIP: me, BackendType: "vxlan", HasVtepMAC: true}, // stale, ours
	}
	peers, ignored := Peers(leases, own, me, "vxlan")
	want := []config.Peer{
		{Remote: addr("10.99.0.2"), Prefixes: []netip.Prefix{pfx("10.244.2.0/24")}, MAC: macA, MACSet: true},
		{Remote: addr("10.99.0.3"), Prefixes: []netip.Prefix{pfx("10.244.3.0/24"), pfx("10.244.9.0/24")}, MAC: macB2, MACSet: true},
	}
	if !reflect.DeepEqual(peers, want) {
		t.Fatalf("peers\n got %+v\nwant %+v", peers, want)
	}
	if len(ignored) != 2 {
		t.Fatalf("ignored %+v", ignored)
	}
	// udp: leases without BackendType; MACs derived.
	peers, _ = Peers([]Lease{{Subnet: pfx("10.244.2.0/24"), PublicIP: addr("10.99.0.2")}}, own, me, "udp")
	if len(peers) != 1 || peers[0].MACSet || peers[0].MAC != config.DefaultMAC(addr("10.99.0.2")) {
		t.Fatalf("udp peers %+v", peers)
	}
	if !peersEqual(peers, peers) || peersEqual(peers, nil) {
		t.Fatal("peersEqual")
	}
}

func TestMerge(t *testing.T) {
	static := []config.Peer{{Remote: addr("10.99.0.9"), Prefixes: []netip.Prefix{pfx("10.244.9.0/24")}}}
	learned := []config.Peer{
		{Remote: addr("10.99.0.2"), Prefixes: []netip.Prefix{pfx("10.244.2.0/24")}},
		{Remote: addr("10.99.0.8"), Prefixes: []netip.Prefix{pfx("10.244.9.0/24")}},
		{Remote: addr("10.99.0.9"), Prefixes: []netip.Prefix{pfx("10.244.19.0/24")}},
	}
	peers, notes := Merge(static, learned)
	if len(peers) != 2 || len(peers[0].Prefixes) != 2 || peers[1].Remote != addr("10.99.0.2") {
		t.Fatalf("Merge = %+v", peers)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "10.244.9.0/24 of 10.99.0.8 ignored") {
		t.Fatalf("notes %q", notes)
	}
	if len(static[0].Prefixes) != 1 {
		t.Fatal("Merge modified its input")
	}
}

func TestSubnetEnv(t *testing.T) {
	got := string(SubnetEnv(pfx("10.244.0.0/16"), pfx("10.244.3.0/24"), 1450, false))
	want := "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "flannel", "subnet.env")
	for _, content := range []string{"one\n", want} {
		if err := WriteSubnetFile(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != content {
			t.Fatalf("read back %q, %v", b, err)
		}
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", st.Mode())
	}
	left, _ := os.ReadDir(filepath.Dir(path))
	if len(left) != 1 {
		t.Fatalf("temporary files left: %v", left)
	}
	if err := WriteSubnetFile(filepath.Join(path, "x"), nil); err == nil {
		t.Fatal("writing below a file succeeded")
	}
}
