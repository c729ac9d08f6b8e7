package config

import (
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"
)

// Mode is the kind of overlay device: L3 (tun) or L2 (tap).
type Mode string

const (
	ModeTUN Mode = "tun"
	ModeTAP Mode = "tap"
)

// EncapType names an encapsulation.
type EncapType string

const (
	EncapIPIP  EncapType = "ipip"  // IPv4 in IPv4, IP protocol 4
	EncapSIT   EncapType = "sit"   // IPv6 in IPv4 (6in4), IP protocol 41
	EncapGRE   EncapType = "gre"   // GRE, IP protocol 47; TEB in tap mode
	EncapVXLAN EncapType = "vxlan" // VXLAN over UDP (RFC 7348)
	EncapIPUDP EncapType = "ipudp" // bare IP in UDP (flannel's udp backend)
)

// Defaults filled in by Parse for keys the file leaves out.
const (
	DefaultDeviceName    = "tp0"
	DefaultUnderlayMTU   = 1500
	DefaultVXLANPort     = 4789
	DefaultIPUDPPort     = 8285
	DefaultVNI           = 1
	DefaultTTL           = 64
	DefaultOffload       = "auto"
	DefaultPipeline      = "direct"
	DefaultWakeTick      = time.Millisecond
	MaxWakeTick          = 100 * time.Millisecond
	DefaultMetricsListen = "127.0.0.1:9109"
	DefaultLogLevel      = "info"
	DefaultBackend       = BackendUserspace
	DefaultPeersFrom     = PeersFromConfig

	// Inherit is the value of Encap.TOS and Encap.DF meaning "copy from
	// the inner packet".
	Inherit = -1

	MaxVNI    = 1<<24 - 1
	MaxQueues = 64
	MinMTU    = 68   // RFC 791: every IPv4 link carries 68 bytes
	MinMTU6   = 1280 // RFC 8200: every IPv6 link carries 1280 bytes
	MaxMTU    = 65535
)

// Backend values: who carries the packets.
const (
	// BackendUserspace: tunneld's own data plane on a TUN/TAP device (the
	// default, so that a config without the key behaves as before).
	BackendUserspace = "userspace"
	// BackendKernel: the kernel's own tunnel link (vxlan, ipip, sit, gre,
	// gretap), programmed by tunneld; an error if the kernel lacks it.
	BackendKernel = "kernel"
	// BackendAuto: the kernel link when this kernel supports the
	// encapsulation, else the userspace data plane.
	BackendAuto = "auto"
)

// PeersFrom values: where the peer list comes from.
const (
	// PeersFromConfig: only the peers listed in the file.
	PeersFromConfig = "config"
	// PeersFromRoutes: also the kernel routes through the tunnel device
	// that have a gateway (`ip route add P via GW dev DEV onlink`, as
	// BIRD/Calico program a tunl0): one peer per gateway, with the routes'
	// prefixes. The listed peers are merged in as static peers.
	PeersFromRoutes = "routes"
	// PeersFromFlannel: tunneld is a flannel node. It leases its subnet
	// from flannel's subnet manager (see Flannel), publishes its own lease
	// as flanneld does, and takes the other nodes' leases as peers (package
	// dataplane/flannel). The listed peers are merged in as static peers.
	PeersFromFlannel = "flannel"
)

// Flannel subnet managers.
const (
	SubnetManagerEtcd = "etcd"
	SubnetManagerKube = "kube"
)

// Defaults of the flannel block, as flanneld's own.
const (
	DefaultEtcdEndpoint = "http://127.0.0.1:2379"
	DefaultEtcdPrefix   = "/coreos.com/network"
	DefaultSubnetFile   = "/run/flannel/subnet.env"
	DefaultNetConf      = "/etc/kube-flannel/net-conf.json"
)

// Config is a validated tunneld configuration with all defaults filled in.
type Config struct {
	Device   Device
	Encap    Encap
	Underlay Underlay
	Peers    []Peer
	// PeersFrom is PeersFromConfig, PeersFromRoutes or PeersFromFlannel
	// ("" counts as PeersFromConfig in a Config built in code).
	PeersFrom string
	// Flannel configures peers_from: flannel; zero otherwise.
	Flannel Flannel
	// Backend is BackendUserspace, BackendKernel or BackendAuto ("" counts
	// as BackendUserspace in a Config built in code).
	Backend string
	Offload string // "auto" | "off"
	// Pipeline is the goroutine shape: "direct" (each reader also encapsulates
	// and writes: run to completion) or "rings" (readers and writers joined by
	// lock-free rings). See dataplane/pipeline.go for the measurements.
	Pipeline string
	// InlineAnswers (pipeline direct): the underlay reader, right after
	// it writes to the device, reads and sends what the kernel answered
	// during that write (echo replies, TCP ACKs and the data they
	// release) instead of leaving it to the device reader's thread
	// (dataplane/devreader.go). Default off: on this project's machine it
	// did not lower ping latency and cost throughput where a kernel peer
	// sends with offloads off (docs/BENCHMARKS.md).
	InlineAnswers bool
	Queues        int // 0 = one per CPU
	// WakeTick, while traffic flows, wakes the process this often (0: never)
	// so that the next packet finds a warm CPU; see dataplane/warm.go.
	WakeTick time.Duration
	Metrics  Metrics
	Log      Log
}

// Device is the overlay TUN/TAP device.
type Device struct {
	Name string
	Mode Mode
	MTU  int
	// Addresses are the device's own overlay addresses; host bits are
	// kept (10.200.0.1/24 is address 10.200.0.1 on a /24).
	Addresses []netip.Prefix
	// MAC is the TAP MAC, or the own VTEP MAC for vxlan in tun mode.
	// Parse fills it with DefaultMAC(Underlay.Local) when the file does
	// not set it; MACSet reports whether the file set it.
	MAC    [6]byte
	MACSet bool
}

// Encap describes the encapsulation. Fields that do not apply to Type are
// zero.
type Encap struct {
	// Preset names a set of defaults matching another implementation's
	// wire format (see Presets); keys the file sets override it. Empty
	// when the file names none.
	Preset   string
	Type     EncapType
	VNI      uint32 // vxlan only
	Port     uint16 // vxlan and ipudp: the UDP destination port
	HasKey   bool   // gre only: send and require Key
	Key      uint32
	Checksum bool // gre only: send GRE checksums
	Sequence bool // gre only: send GRE sequence numbers
	TTL      uint8
	TOS      int // Inherit, or 0..255
	DF       int // Inherit, 0 (clear) or 1 (set)
}

// Underlay is the local end of the outer packets.
type Underlay struct {
	Local netip.Addr
	MTU   int
	// TunnelGSO is how VXLAN (and IP-in-UDP) super-packets leave: TunnelGSOOff or "" (split and
	// sent by the sockets), TunnelGSOAuto (whole, through a UDP-tunnel GSO
	// TAP redirected to the underlay device, where the kernel has it;
	// else as off) or TunnelGSOOn (the same, and tunneld does not start
	// without it). docs/OPERATIONS.md says what the TAP path bypasses.
	TunnelGSO string
	// RawSend is how raw-IP tunnels (ipip, sit, gre) send: RawSendSocket
	// or "" (the raw IP socket) or RawSendPacket (packet sockets on the
	// underlay device; docs/OPERATIONS.md says what they bypass).
	RawSend string
	// KernelPath is whether tunneld loads its in-kernel fast path (tc
	// programs that encapsulate on the device's egress and decapsulate on
	// the underlay's ingress, dataplane/bpfpath): KernelPathOff or ""
	// (the user-space path carries everything), KernelPathAuto (loaded
	// where the kernel and the config allow it; else as off, with a
	// warning) or KernelPathOn (the same, and tunneld does not start
	// without it). docs/OPERATIONS.md says what the path bypasses.
	KernelPath string
}

// Values of Underlay.KernelPath.
const (
	KernelPathOff  = "off"
	KernelPathAuto = "auto"
	KernelPathOn   = "on"
)

// Values of Underlay.RawSend.
const (
	RawSendSocket = "socket"
	RawSendPacket = "packet"
)

// Values of Underlay.TunnelGSO.
const (
	TunnelGSOOff  = "off"
	TunnelGSOAuto = "auto"
	TunnelGSOOn   = "on"
)

// Peer is a remote tunnel endpoint.
type Peer struct {
	Remote netip.Addr
	// Prefixes are the overlay prefixes behind the peer, masked. They are
	// both the routes toward the peer and the inner source addresses
	// accepted from it.
	Prefixes []netip.Prefix
	// MAC is the peer's VTEP MAC; Parse fills it with DefaultMAC(Remote)
	// when the file does not set it. MACSet reports whether it did.
	MAC    [6]byte
	MACSet bool
}

// Flannel is the flannel block: where the flannel subnet manager is and
// where the node's subnet.env goes. Parse fills the defaults only with
// peers_from: flannel.
type Flannel struct {
	SubnetManager string   // SubnetManagerEtcd or SubnetManagerKube
	EtcdEndpoints []string // etcd: URLs, e.g. http://10.99.0.254:2379
	EtcdPrefix    string   // etcd: e.g. /coreos.com/network, no trailing slash
	// Kubeconfig (kube) is the kubeconfig file; "" is the in-cluster
	// config (the pod's ServiceAccount), as flanneld without
	// --kubeconfig-file.
	Kubeconfig string
	// NodeName (kube) is this node's Node object; "" is $NODE_NAME, read
	// when tunneld starts (the downward API's spec.nodeName).
	NodeName string
	// NetConf (kube) is flannel's network config file, flanneld's
	// --net-config-path.
	NetConf    string
	SubnetFile string // absolute path of subnet.env
}

// Metrics configures the metrics HTTP server.
type Metrics struct {
	Listen string `yaml:"listen"` // host:port, or "" to disable
	// PProf serves the Go profiles under /debug/pprof/ on the same
	// listener. Off by default: profiles expose internals (goroutine
	// stacks, the command line) and a CPU profile costs CPU.
	PProf bool `yaml:"pprof"`
}

// Log configures logging.
type Log struct {
	Level string // "debug" | "info" | "warn" | "error"
}

// Problem is one thing wrong with a configuration. Line and Col are 1-based
// and zero when unknown (a Config built in code, see Config.Validate).
type Problem struct {
	Line, Col int
	Path      string // e.g. "peers[1].remote"; "" for the whole file
	Msg       string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "%d:", p.Line)
		if p.Col > 0 {
			fmt.Fprintf(&b, "%d:", p.Col)
		}
		b.WriteByte(' ')
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error lists every problem found in one configuration, in file order.
type Error struct {
	File     string
	Problems []Problem
}

// Error formats one problem per line, e.g.
//
//	tunneld.yaml:12:5: peers[1].remote: "10.99.0.x" is not an IP address
func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if e.File != "" {
			b.WriteString(e.File)
			if p.Line > 0 {
				b.WriteByte(':')
			} else {
				b.WriteString(": ")
			}
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// A broken file can yield a problem per line; past maxProblems they are
// counted, not formatted, and an Error shows the first maxShown.
const (
	maxProblems = 1000
	maxShown    = 100
)

// newError sorts the problems into file order and keeps the first
// maxShown; more counts the problems already dropped.
func newError(file string, probs []Problem, more int) *Error {
	sort.SliceStable(probs, func(i, j int) bool {
		if probs[i].Line != probs[j].Line {
			return probs[i].Line < probs[j].Line
		}
		return probs[i].Col < probs[j].Col
	})
	if len(probs) > maxShown {
		more += len(probs) - maxShown
		probs = probs[:maxShown]
	}
	if more > 0 {
		last := probs[len(probs)-1]
		probs = append(probs, Problem{Line: last.Line, Col: last.Col, Msg: fmt.Sprintf("... and %d more problems", more)})
	}
	return &Error{File: file, Problems: probs}
}

// Load reads the file at path and parses it with Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a YAML configuration and fills in defaults.
// name is used in error messages ("name:line:col: ..."). On failure the
// error is an *Error listing all problems found, not just the first.
func Parse(name string, data []byte) (*Config, error) {
	d := newDecoder()
	c := d.decode(data)
	applyDefaults(c, d.given)
	v := validator{c: c, pos: d.pos, seqs: d.seqs, given: d.given, reported: d.reported, problems: d.problems, more: d.more}
	if d.budget >= 0 { // else the Config is a fragment, not worth judging
		v.validate()
	}
	if len(v.problems) > 0 {
		return nil, newError(name, v.problems, v.more)
	}
	return c, nil
}

// Validate checks a complete Config, for example one built in code, against
// the same rules Parse applies; it fills in no defaults. The error, if any,
// is an *Error whose problems carry paths but no positions.
func (c *Config) Validate() error {
	v := validator{c: c}
	v.validate()
	if len(v.problems) > 0 {
		return newError("", v.problems, v.more)
	}
	return nil
}

// Overhead returns the bytes the encapsulation adds on the underlay to a
// packet of the device MTU:
//
//	ipip   20
//	sit    20 (IPv4 underlay), 40 (IPv6 underlay)
//	gre    24, +4 with a key, +4 with checksums, +4 with sequence numbers,
//	       +20 on an IPv6 underlay, +14 in tap mode (GRE-TEB carries the
//	       inner Ethernet header, as Linux gretap: MTU 1462 on 1500)
//	vxlan  50 (IPv4 underlay), 70 (IPv6 underlay); the inner Ethernet
//	       header is carried in tun mode too, so the same figures apply
//	ipudp  28 (IPv4 underlay), 48 (IPv6 underlay)
//
// An unknown type has no overhead. The underlay family is taken from
// Underlay.Local; an invalid Local counts as IPv4.
func (c *Config) Overhead() int {
	outer := 20
	if c.Underlay.Local.Is6() && !c.Underlay.Local.Is4In6() {
		outer = 40
	}
	const udp, vxlan, ether, gre = 8, 8, 14, 4
	switch c.Encap.Type {
	case EncapIPIP, EncapSIT:
		return outer
	case EncapGRE:
		n := outer + gre
		if c.Encap.HasKey {
			n += 4
		}
		if c.Encap.Checksum {
			n += 4
		}
		if c.Encap.Sequence {
			n += 4
		}
		if c.Device.Mode == ModeTAP {
			n += ether
		}
		return n
	case EncapVXLAN:
		return outer + udp + vxlan + ether
	case EncapIPUDP:
		return outer + udp
	}
	return 0
}

// DefaultMAC derives a stable, locally administered unicast MAC from an
// underlay address, so that both ends of a tunnel derive the same MAC for
// each other without exchanging it:
//
//	IPv4 a.b.c.d  -> 02:00:a:b:c:d
//	IPv6          -> 02 followed by the last 5 bytes of the address
//
// IPv4-mapped IPv6 addresses are treated as IPv4. Two IPv6 addresses that
// differ only outside their last 5 bytes map to the same MAC; Parse reports
// such a clash for vxlan, where the MACs are used. The invalid Addr maps to
// 02:00:00:00:00:00.
func DefaultMAC(a netip.Addr) [6]byte {
	mac := [6]byte{0x02}
	a = a.Unmap()
	switch {
	case a.Is4():
		b := a.As4()
		copy(mac[2:], b[:])
	case a.Is6():
		b := a.As16()
		copy(mac[1:], b[11:])
	}
	return mac
}
