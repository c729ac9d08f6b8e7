package topo

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// ParseSNMP reads the tables of /proc/net/snmp ("Udp: InDatagrams ..."
// header lines, each followed by a line of values) and /proc/net/snmp6
// ("Udp6InCsumErrors 0" pairs) into one map: "Udp.InCsumErrors" for the
// first, "Udp6.InCsumErrors" for the second.
func ParseSNMP(snmp, snmp6 []byte) (map[string]int64, error) {
	m := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(snmp))
	names := map[string][]string{}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		proto := strings.TrimSuffix(f[0], ":")
		hdr, ok := names[proto]
		if !ok {
			names[proto] = f[1:]
			continue
		}
		if len(hdr) != len(f)-1 {
			return nil, fmt.Errorf("snmp: %s: %d names, %d values", proto, len(hdr), len(f)-1)
		}
		for i, n := range hdr {
			v, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("snmp: %s.%s: %w", proto, n, err)
			}
			m[proto+"."+n] = v
		}
		delete(names, proto)
	}
	sc = bufio.NewScanner(bytes.NewReader(snmp6))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("snmp6: %s: %w", f[0], err)
		}
		for _, p := range []string{"Ip6", "Icmp6", "Udp6", "UdpLite6"} {
			if rest, ok := strings.CutPrefix(f[0], p); ok && rest != "" && rest[0] >= 'A' && rest[0] <= 'Z' {
				m[p+"."+rest] = v
				break
			}
		}
	}
	return m, nil
}

// ChecksumErrors sums the kernel's counters of packets dropped for a bad
// checksum (Tcp, Udp, UdpLite, Icmp and their IPv6 twins: every
// "*.InCsumErrors"). A tunnel that hands the kernel packets whose
// checksums it cannot verify shows up here and nowhere else.
func ChecksumErrors(m map[string]int64) int64 {
	var n int64
	for k, v := range m {
		if strings.HasSuffix(k, ".InCsumErrors") {
			n += v
		}
	}
	return n
}

// CsumErrorsLine formats the non-zero checksum counters of m for a
// failure message.
func CsumErrorsLine(before, after map[string]int64) string {
	var parts []string
	for k, v := range after {
		if strings.HasSuffix(k, ".InCsumErrors") && v != before[k] {
			parts = append(parts, fmt.Sprintf("%s +%d", k, v-before[k]))
		}
	}
	return strings.Join(parts, ", ")
}
