package topo

import (
	"os"
	"testing"
)

// SNMP reads the namespace's /proc/net/snmp and snmp6 (see ParseSNMP).
// The files are read from a thread that has entered the namespace:
// /proc/self/net would show the main thread's.
func (n *NS) SNMP() (map[string]int64, error) {
	var snmp, snmp6 []byte
	err := n.Do(func() error {
		var err error
		if snmp, err = os.ReadFile("/proc/thread-self/net/snmp"); err != nil {
			return err
		}
		snmp6, _ = os.ReadFile("/proc/thread-self/net/snmp6") // absent without IPv6
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ParseSNMP(snmp, snmp6)
}

// NoChecksumErrors fails tb at cleanup when the kernel of any of nss
// counted a packet with a bad TCP/UDP/ICMP checksum after this call: the
// loss a tunnel causes after its device write, which no counter of its own
// can see. Call it after the namespaces exist, so it runs before their
// teardown.
func NoChecksumErrors(tb testing.TB, nss ...*NS) {
	tb.Helper()
	before := make([]map[string]int64, len(nss))
	for i, n := range nss {
		m, err := n.SNMP()
		if err != nil {
			tb.Fatalf("%s: %v", n.Name, err)
		}
		before[i] = m
	}
	tb.Cleanup(func() {
		for i, n := range nss {
			after, err := n.SNMP()
			if err != nil {
				tb.Errorf("%s: %v", n.Name, err)
				continue
			}
			if ChecksumErrors(after) != ChecksumErrors(before[i]) {
				tb.Errorf("%s: the kernel dropped packets for bad checksums: %s", n.Name, CsumErrorsLine(before[i], after))
			}
		}
	})
}
