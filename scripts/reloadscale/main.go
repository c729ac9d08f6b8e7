// Command reloadscale measures how tunneld copes with a large peer table:
// it starts tunneld in a namespace with a generated config of -peers peers
// of -prefixes prefixes each (plus one real peer in a second namespace),
// sends -reloads SIGHUPs that each change one peer, and reports the time
// from each signal to the `reloaded` log line, the RSS after the reloads,
// and the loss of a ping stream to the real peer that runs throughout.
//
// Run as root: go run ./scripts/reloadscale -peers 10000 -prefixes 10
// (scripts/reload-scale.sh runs the standard set and builds tunneld first).
//
// Addresses: underlay fd99::/64 (10,000 underlay addresses do not fit in
// 10.99.0.0/24; nothing is sent to the generated ones), overlay /32s in
// 10.244.0.0/16 and 10.200.1.0-10.200.255.255.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tunnelplane/bench/topo"
)

func main() {
	peers := flag.Int("peers", 10000, "generated peers")
	prefixes := flag.Int("prefixes", 1, "prefixes per generated peer")
	reloads := flag.Int("reloads", 10, "SIGHUP reloads, each changing one peer")
	bin := flag.String("tunneld", "bin/tunneld", "tunneld binary")
	cpuProf := flag.String("cpuprofile", "", "write a CPU profile of tunneld taken during the reloads here")
	heapProf := flag.String("heapprofile", "", "write a heap profile of tunneld taken after the reloads here")
	flag.Parse()
	if err := run(*bin, *peers, *prefixes, *reloads, *cpuProf, *heapProf); err != nil {
		fmt.Fprintln(os.Stderr, "reloadscale:", err)
		os.Exit(1)
	}
}

// overlay returns the k-th generated /32.
func overlay(k int) netip.Prefix {
	base := netip.MustParseAddr("10.244.0.0").As4()
	if k >= 65536 {
		base = netip.MustParseAddr("10.200.1.0").As4()
		k -= 65536
	}
	v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	v += uint32(k)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32)
}

// writeConfig writes tunneld's config with n generated peers; variant
// changes the last one (a one-peer change between reloads).
func writeConfig(path string, n, per, variant int) error {
	var b bytes.Buffer
	b.WriteString("device:\n  name: tp0\n  addresses: [10.200.0.1/24]\nencap:\n  type: vxlan\n  vni: 42\nunderlay:\n  local: fd99::1\nqueues: 1\nmetrics:\n  listen: 127.0.0.1:9109\n  pprof: true\npeers:\n")
	b.WriteString("  - remote: fd99::2\n    prefixes: [10.200.0.2/32]\n")
	for i := range n {
		fmt.Fprintf(&b, "  - remote: fd99::1:%x:%x\n    prefixes: [", i>>16, i&0xffff)
		for j := range per {
			if j > 0 {
				b.WriteString(", ")
			}
			k := i*per + j
			if i == n-1 && variant%2 == 1 {
				k = n*per + j // the changed peer moves to fresh prefixes
			}
			b.WriteString(overlay(k).String())
		}
		b.WriteString("]\n")
	}
	return os.WriteFile(path+".tmp", b.Bytes(), 0o644)
}

// waitLog waits (bounded) for count matches of re in l.
func waitLog(l *topo.LogBuffer, re *regexp.Regexp, count int, limit time.Duration) ([]string, error) {
	deadline := time.Now().Add(limit)
	for {
		m := re.FindAllString(l.String(), -1)
		if len(m) >= count {
			return m, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no %d× %q in the log within %v:\n%s", count, re, limit, tail(l.String(), 2000))
		}
		time.Sleep(time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func rssMiB(pid int) float64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// tunneldPid finds the tunneld process under `ip netns exec`.
func tunneldPid(parent int) int {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", parent, parent))
	if f := strings.Fields(string(data)); len(f) > 0 {
		pid, _ := strconv.Atoi(f[0])
		return pid
	}
	return parent // ip netns exec execs the command in place
}

func run(bin string, n, per, reloads int, cpuProf, heapProf string) error {
	p, err := topo.Build(topo.PairOptions{IPv6: true, Offloads: true})
	if err != nil {
		return err
	}
	defer p.Close()
	dir, err := os.MkdirTemp("", "reloadscale")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfgA, cfgB := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	if err := writeConfig(cfgA, n, per, 0); err != nil {
		return err
	}
	if err := os.Rename(cfgA+".tmp", cfgA); err != nil {
		return err
	}
	if err := os.WriteFile(cfgB, []byte("device:\n  name: tp0\n  addresses: [10.200.0.2/24]\nencap:\n  type: vxlan\n  vni: 42\nunderlay:\n  local: fd99::2\nqueues: 1\nmetrics:\n  listen: \"\"\npeers:\n  - remote: fd99::1\n    prefixes: [10.200.0.1/32]\n"), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := func(ns *topo.NS, cfg string) (*exec.Cmd, *topo.LogBuffer, error) {
		log := &topo.LogBuffer{}
		cmd := ns.Command(ctx, bin, "--config", cfg)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			return nil, nil, err
		}
		go cmd.Wait()
		return cmd, log, nil
	}
	t0 := time.Now()
	a, logA, err := start(p.A, cfgA)
	if err != nil {
		return err
	}
	defer a.Process.Signal(syscall.SIGTERM)
	_, logB, err := start(p.B, cfgB)
	if err != nil {
		return err
	}
	fwd := regexp.MustCompile(`msg=forwarding`)
	if _, err := waitLog(logA, fwd, 1, 120*time.Second); err != nil {
		return err
	}
	startup := time.Since(t0)
	if _, err := waitLog(logB, fwd, 1, 10*time.Second); err != nil {
		return err
	}
	pid := tunneldPid(a.Process.Pid)
	fmt.Printf("peers=%d prefixes/peer=%d total_prefixes=%d startup=%v rss_start=%.1fMiB\n", n, per, n*per+1, startup.Round(time.Millisecond), rssMiB(pid))

	// A ping stream to the real peer runs through every reload.
	pingCtx, stopPing := context.WithCancel(ctx)
	defer stopPing()
	pingOut := &topo.LogBuffer{}
	ping := p.A.Command(pingCtx, "ping", "-n", "-i", "0.01", "-W", "1", "10.200.0.2")
	ping.Stdout, ping.Stderr = pingOut, pingOut
	if err := ping.Start(); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)

	profDone := make(chan error, 1)
	if cpuProf != "" {
		go func() { profDone <- fetch(p.A, "/debug/pprof/profile?seconds=10", cpuProf) }()
		time.Sleep(200 * time.Millisecond)
	}
	re := regexp.MustCompile(`msg=reloaded[^\n]*`)
	var lat []time.Duration
	var took []string
	for i := 1; i <= reloads; i++ {
		if err := writeConfig(cfgA, n, per, i); err != nil {
			return err
		}
		if err := os.Rename(cfgA+".tmp", cfgA); err != nil {
			return err
		}
		t := time.Now()
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return err
		}
		lines, err := waitLog(logA, re, i, 60*time.Second)
		if err != nil {
			return err
		}
		lat = append(lat, time.Since(t))
		if m := regexp.MustCompile(`took=(\S+)`).FindStringSubmatch(lines[i-1]); m != nil {
			took = append(took, m[1])
		}
		time.Sleep(200 * time.Millisecond)
	}
	rss := rssMiB(pid)
	if cpuProf != "" {
		if err := <-profDone; err != nil {
			return err
		}
	}
	if heapProf != "" {
		if err := fetch(p.A, "/debug/pprof/heap", heapProf); err != nil {
			return err
		}
	}
	time.Sleep(300 * time.Millisecond)
	ping.Process.Signal(syscall.SIGINT)
	ping.Wait()
	loss := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(pingOut.String())
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	fmt.Printf("reload signal->reloaded: median=%v max=%v all=%v\n", sorted[len(sorted)/2].Round(time.Millisecond),
		sorted[len(sorted)-1].Round(time.Millisecond), roundAll(lat))
	fmt.Printf("reload took= (tunneld's own figure): %v\n", took)
	fmt.Printf("rss_after_reloads=%.1fMiB\n", rss)
	if loss != nil {
		fmt.Printf("ping to the staying peer during the reloads: %s sent, %s received\n", loss[1], loss[2])
	} else {
		fmt.Printf("ping output: %s\n", tail(pingOut.String(), 500))
	}
	return nil
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// fetch gets a URL of tunneld's metrics listener inside ns A into a file.
func fetch(ns *topo.NS, path, out string) error {
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = ns.Do(func() error {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}}
	resp, err := client.Get("http://127.0.0.1:9109" + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}
