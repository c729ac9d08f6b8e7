package topo

import "testing"

func TestParseSNMP(t *testing.T) {
	snmp := "Ip: Forwarding DefaultTTL\nIp: 1 64\n" +
		"Tcp: RtoAlgorithm InSegs InErrs InCsumErrors\nTcp: 1 500 3 3\n" +
		"Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"Udp: 100 2 30 400 25 0 5 0 0\n" +
		"UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"UdpLite: 0 0 0 0 0 0 0 0 0\n"
	snmp6 := "Ip6InReceives                   \t12\nUdp6InCsumErrors                \t2\nIcmp6InCsumErrors 0\n"
	m, err := ParseSNMP([]byte(snmp), []byte(snmp6))
	if err != nil {
		t.Fatal(err)
	}
	if m["Udp.InDatagrams"] != 100 || m["Udp.RcvbufErrors"] != 25 || m["Tcp.InCsumErrors"] != 3 || m["Udp6.InCsumErrors"] != 2 || m["Ip6.InReceives"] != 12 {
		t.Errorf("%v", m)
	}
	if got := ChecksumErrors(m); got != 3+5+2 {
		t.Errorf("ChecksumErrors = %d, want 10", got)
	}
	if _, err := ParseSNMP([]byte("Udp: A B\nUdp: 1\n"), nil); err == nil {
		t.Error("mismatched Udp lines: no error")
	}
}
