package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"tunnelplane/bench/topo"
)

// PingResult summarizes the per-packet round-trip times of one ping run.
type PingResult struct {
	Sent     int       `json:"sent"`
	Received int       `json:"received"`
	MedianUS float64   `json:"median_us"`
	P99US    float64   `json:"p99_us"`
	MinUS    float64   `json:"min_us"`
	MaxUS    float64   `json:"max_us"`
	RTTsUS   []float64 `json:"rtts_us,omitempty"`
}

var (
	pingTime = regexp.MustCompile(`icmp_seq=\d+ .*time[=<]([0-9.]+) ?(ms|us|µs|s)\b`)
	pingSent = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
)

// ParsePing reads iputils ping output: the per-reply "time=" values (in
// microseconds) and the summary counts. Duplicate replies (DUP!) are
// ignored.
func ParsePing(out string) (PingResult, error) {
	var r PingResult
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "DUP!") {
			continue
		}
		if m := pingTime.FindStringSubmatch(line); m != nil {
			v, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				return r, fmt.Errorf("ping: bad time in %q", line)
			}
			switch m[2] {
			case "ms":
				v *= 1e3
			case "s":
				v *= 1e6
			}
			r.RTTsUS = append(r.RTTsUS, v)
			continue
		}
		if m := pingSent.FindStringSubmatch(line); m != nil {
			r.Sent, _ = strconv.Atoi(m[1])
			r.Received, _ = strconv.Atoi(m[2])
		}
	}
	if len(r.RTTsUS) == 0 {
		return r, fmt.Errorf("ping: no replies in output")
	}
	if r.Sent == 0 {
		r.Sent, r.Received = len(r.RTTsUS), len(r.RTTsUS)
	}
	r.MedianUS = Median(r.RTTsUS)
	r.P99US = Percentile(r.RTTsUS, 99)
	r.MinUS = Percentile(r.RTTsUS, 0)
	r.MaxUS = Percentile(r.RTTsUS, 100)
	return r, nil
}

// RunPing sends count pings at interval from ns to dst and returns the RTT
// figures. Lost packets are tolerated as long as at least half come back.
func RunPing(ctx context.Context, ns *topo.NS, dst netip.Addr, count int, interval time.Duration) (PingResult, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(count)*interval+15*time.Second)
	defer cancel()
	out, err := ns.PingWith(ctx, dst, topo.PingOptions{Count: count, Interval: interval, Timeout: time.Second})
	r, perr := ParsePing(out)
	if perr != nil {
		if err != nil {
			return r, fmt.Errorf("%w (%v)", err, perr)
		}
		return r, perr
	}
	if r.Received*2 < count {
		return r, fmt.Errorf("ping %s: %d of %d replies", dst, r.Received, count)
	}
	return r, nil
}
