//go:build linux

package packetsock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tunnelplane/bench/topo"
)

// env is two namespaces A (10.99.0.1/24 on vxa) and B (10.99.0.2/24 on vxb)
// joined by a veth pair, with static neighbours both ways. Everything is
// removed by t.Cleanup, failures included.
type env struct {
	t          *testing.T
	nsA, nsB   string
	macA, macB net.HardwareAddr
	ifA, ifB   int // ifindex of vxa (in A) and vxb (in B)

	mu   sync.Mutex
	open map[int]bool // sockets from socketIn not yet closed
}

func requireRoot(t *testing.T) {
	t.Helper()
	topo.RequireRoot(t) // namespaces, packet sockets, tc; a failure in CI
	for _, b := range []string{"ip", "tc", "ethtool"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s not installed (scripts/deps.sh installs iproute2 and ethtool)", b)
		}
	}
}

func run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func (e *env) must(args ...string) string {
	e.t.Helper()
	out, err := run(args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func newEnv(t *testing.T) *env {
	requireRoot(t)
	var r [4]byte
	_, _ = rand.Read(r[:])
	tag := fmt.Sprintf("tp-pkt-%d-%s", os.Getpid(), hex.EncodeToString(r[:]))
	e := &env{t: t, nsA: tag + "-a", nsB: tag + "-b"}
	for _, ns := range []string{e.nsA, e.nsB} {
		e.must("ip", "netns", "add", ns)
		t.Cleanup(func() {
			if _, err := run("ip", "netns", "del", ns); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
	}
	e.must("ip", "-n", e.nsA, "link", "add", "vxa", "type", "veth", "peer", "name", "vxb", "netns", e.nsB)
	for _, c := range [][]string{
		{"ip", "-n", e.nsA, "addr", "add", "10.99.0.1/24", "dev", "vxa"},
		{"ip", "-n", e.nsB, "addr", "add", "10.99.0.2/24", "dev", "vxb"},
		{"ip", "-n", e.nsA, "link", "set", "lo", "up"},
		{"ip", "-n", e.nsB, "link", "set", "lo", "up"},
		{"ip", "-n", e.nsA, "link", "set", "vxa", "up"},
		{"ip", "-n", e.nsB, "link", "set", "vxb", "up"},
		{"ip", "netns", "exec", e.nsA, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"},
		{"ip", "netns", "exec", e.nsB, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"},
	} {
		e.must(c...)
	}
	e.macA, e.ifA = e.link(e.nsA, "vxa")
	e.macB, e.ifB = e.link(e.nsB, "vxb")
	// Static neighbours: no ARP during a run, for either path. The packet
	// socket paths use macB directly (what a neighbour lookup would return).
	e.must("ip", "-n", e.nsA, "neigh", "replace", "10.99.0.2", "lladdr", e.macB.String(), "dev", "vxa", "nud", "permanent")
	e.must("ip", "-n", e.nsB, "neigh", "replace", "10.99.0.1", "lladdr", e.macA.String(), "dev", "vxb", "nud", "permanent")
	return e
}

// link returns a device's MAC and ifindex.
func (e *env) link(ns, dev string) (net.HardwareAddr, int) {
	out := e.must("ip", "-n", ns, "-o", "link", "show", "dev", dev)
	idx, err := strconv.Atoi(strings.TrimSuffix(strings.Fields(out)[0], ":"))
	if err != nil {
		e.t.Fatalf("ifindex in %q: %v", out, err)
	}
	f := strings.Fields(out)
	for i, w := range f {
		if w == "link/ether" && i+1 < len(f) {
			m, err := net.ParseMAC(f[i+1])
			if err != nil {
				e.t.Fatal(err)
			}
			return m, idx
		}
	}
	e.t.Fatalf("no MAC in %q", out)
	return nil, 0
}

// setOffloads switches the veth pair's offloads the way bench/topo does
// (ethtool -K rx tx tso gso gro on|off, both ends). "on" is not quite the
// kernel default: GRO is off on a fresh veth, and "on" turns it on (which
// also gives the peer NAPI); features() records the state.
func (e *env) setOffloads(on bool) {
	v := "off"
	if on {
		v = "on"
	}
	e.must("ip", "netns", "exec", e.nsA, "ethtool", "-K", "vxa", "rx", v, "tx", v, "tso", v, "gso", v, "gro", v)
	e.must("ip", "netns", "exec", e.nsB, "ethtool", "-K", "vxb", "rx", v, "tx", v, "tso", v, "gso", v, "gro", v)
}

// resetOffloads puts the veth pair back to what the kernel gives a new
// veth: everything on except GRO.
func (e *env) resetOffloads() {
	e.setOffloads(true)
	e.must("ip", "netns", "exec", e.nsA, "ethtool", "-K", "vxa", "gro", "off")
	e.must("ip", "netns", "exec", e.nsB, "ethtool", "-K", "vxb", "gro", "off")
}

// features is the subset of `ethtool -k` that matters here, for vxa and vxb.
func (e *env) features() string {
	var keep []string
	for _, d := range [][2]string{{e.nsA, "vxa"}, {e.nsB, "vxb"}} {
		out, _ := run("ip", "netns", "exec", d[0], "ethtool", "-k", d[1])
		var f []string
		for _, l := range strings.Split(out, "\n") {
			l = strings.TrimSpace(l)
			for _, k := range []string{"rx-checksumming:", "tx-checksumming:", "generic-segmentation-offload:", "generic-receive-offload:"} {
				if strings.HasPrefix(l, k) {
					f = append(f, strings.TrimSuffix(strings.Fields(l)[0], ":")+"="+strings.Fields(l)[1])
				}
			}
		}
		keep = append(keep, d[1]+": "+strings.Join(f, ","))
	}
	return strings.Join(keep, "; ")
}

// setQdisc puts qdisc ("noqueue", the veth default, or "pfifo_fast", the
// classic NIC default and built into every kernel) at vxa's root.
func (e *env) setQdisc(q string) {
	if q == "noqueue" {
		_, _ = run("tc", "-n", e.nsA, "qdisc", "del", "dev", "vxa", "root")
		return
	}
	e.must("tc", "-n", e.nsA, "qdisc", "replace", "dev", "vxa", "root", q)
}

// qdiscPackets is the packet counter of vxa's root qdisc (0 for noqueue).
func (e *env) qdiscPackets() int64 {
	out, _ := run("tc", "-n", e.nsA, "-s", "qdisc", "show", "dev", "vxa")
	f := strings.Fields(out)
	for i, w := range f {
		// "Sent 1234 bytes 56 pkt (dropped 0, ...)"
		if w == "Sent" && i+4 < len(f) && f[i+4] == "pkt" {
			v, _ := strconv.ParseInt(f[i+3], 10, 64)
			return v
		}
	}
	return 0
}

// inNS runs fn on a thread switched into the named namespace. The thread
// stays locked and so dies with its goroutine: no thread returns to the pool
// in the wrong namespace. Sockets opened there keep it.
func inNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// socketIn opens a socket in namespace ns, closed by t.Cleanup.
func (e *env) socketIn(ns string, domain, typ, proto int, setup func(fd int) error) int {
	e.t.Helper()
	fd := -1
	err := inNS(ns, func() error {
		s, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		fd = s
		// Bounds every blocking send (a TX ring send waits for its frames).
		tv := unix.NsecToTimeval(int64(2 * time.Second))
		if err := unix.SetsockoptTimeval(s, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
			return err
		}
		if setup != nil {
			return setup(s)
		}
		return nil
	})
	if fd >= 0 {
		e.mu.Lock()
		if e.open == nil {
			e.open = map[int]bool{}
		}
		e.open[fd] = true
		e.mu.Unlock()
		e.t.Cleanup(func() { e.closeNow(fd) })
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return fd
}

// closeNow closes a socket from socketIn before the test ends; the cleanup
// then leaves it alone (the number may belong to another file by then).
func (e *env) closeNow(fd int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.open[fd] {
		delete(e.open, fd)
		unix.Close(fd)
	}
}

// linkCounter reads one of a device's statistics (from sysfs inside its
// namespace): tx_dropped, rx_packets, ...
func linkCounter(ns, dev, name string) int64 {
	out, err := run("ip", "netns", "exec", ns, "cat", "/sys/class/net/"+dev+"/statistics/"+name)
	if err != nil {
		return -1
	}
	v, _ := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	return v
}

// snmp reads one counter of /proc/net/snmp in namespace ns ("Ip",
// "InReceives"), -1 if absent.
func snmp(ns, group, name string) int64 {
	out, err := run("ip", "netns", "exec", ns, "cat", "/proc/net/snmp")
	if err != nil {
		return -1
	}
	var names []string
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, group+": ") {
			continue
		}
		f := strings.Fields(l)[1:]
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == name && i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				return v
			}
		}
	}
	return -1
}

// rawDrops sums the drops column of /proc/net/raw in namespace ns.
func rawDrops(ns string) int64 {
	out, err := run("ip", "netns", "exec", ns, "cat", "/proc/net/raw")
	if err != nil {
		return -1
	}
	var sum int64
	for i, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if i == 0 || len(f) == 0 {
			continue
		}
		v, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
		sum += v
	}
	return sum
}

// cpuStat is /proc/stat's first line: busy and total jiffies of the machine.
func cpuStat() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)[1:]
	for i, v := range f {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i >= 8 { // guest, guest_nice are already in user
			break
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

func tv(t unix.Timeval) time.Duration {
	return time.Duration(t.Sec)*time.Second + time.Duration(t.Usec)*time.Microsecond
}

// threadCPU is the calling thread's user and system time.
func threadCPU() (u, s time.Duration) {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return tv(ru.Utime), tv(ru.Stime)
}

func uname() string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	return unix.ByteSliceToString(u.Release[:])
}

// envInt is an integer from the environment, def when unset or invalid.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
