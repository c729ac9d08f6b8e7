package topo

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"time"
)

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)

// Ping runs `ping -c count -i 0.2 -W 2 ADDR` (ping -6 for IPv6) inside the
// namespace and returns its output, with an error if any packet was lost.
// Destinations outside the project's ranges (see Allowed) are refused
// without sending anything.
func (n *NS) Ping(ctx context.Context, addr netip.Addr, count int) (string, error) {
	return n.PingWith(ctx, addr, PingOptions{Count: count})
}

// PingWith is Ping with a payload size, DF (-M do) and timing options.
func (n *NS) PingWith(ctx context.Context, addr netip.Addr, o PingOptions) (string, error) {
	addr = addr.Unmap()
	if !Allowed(addr) {
		return "", fmt.Errorf("topo: refusing to ping %s: outside the project's address ranges", addr)
	}
	if o.Count <= 0 {
		o.Count = 3
	}
	if o.Interval <= 0 {
		o.Interval = 200 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	args := []string{"-n", "-c", strconv.Itoa(o.Count),
		"-i", strconv.FormatFloat(o.Interval.Seconds(), 'f', 3, 64),
		"-W", strconv.FormatFloat(o.Timeout.Seconds(), 'f', 3, 64)}
	if addr.Is6() {
		args = append([]string{"-6"}, args...)
	} else {
		args = append([]string{"-4"}, args...)
	}
	if o.DontFragment {
		args = append(args, "-M", "do")
	}
	if o.Size > 0 {
		args = append(args, "-s", strconv.Itoa(o.Size))
	}
	args = append(args, addr.String())
	outb, err := n.Command(ctx, "ping", args...).CombinedOutput()
	out := string(outb)
	m := pingSummary.FindStringSubmatch(out)
	if m == nil {
		if err == nil {
			err = fmt.Errorf("no summary line")
		}
		return out, fmt.Errorf("%s: ping %s: %w", n.Name, addr, err)
	}
	sent, _ := strconv.Atoi(m[1])
	recv, _ := strconv.Atoi(m[2])
	if sent < o.Count || recv < sent {
		return out, fmt.Errorf("%s: ping %s: %d sent, %d received (want %d)", n.Name, addr, sent, recv, o.Count)
	}
	if err != nil {
		return out, fmt.Errorf("%s: ping %s: %w", n.Name, addr, err)
	}
	return out, nil
}
