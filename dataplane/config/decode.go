package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The schema: the keys each mapping accepts, in documentation order.
var (
	topKeys      = []string{"device", "encap", "underlay", "peers", "peers_from", "flannel", "backend", "offload", "pipeline", "inline_answers", "queues", "wake_tick", "metrics", "log"}
	deviceKeys   = []string{"name", "mode", "mtu", "addresses", "mac"}
	encapKeys    = []string{"preset", "type", "vni", "port", "key", "checksum", "sequence", "ttl", "tos", "df"}
	underlayKeys = []string{"local", "mtu", "tunnel_gso", "raw_send"}
	peerKeys     = []string{"remote", "prefixes", "mac"}
	flannelKeys  = []string{"subnet_manager", "etcd_endpoints", "etcd_prefix", "kubeconfig", "node_name", "net_conf", "subnet_file"}
	metricsKeys  = []string{"listen", "pprof"}
	logKeys      = []string{"level"}
)

type position struct{ line, col int }

// decoder walks the yaml.Node tree of one file into a Config. It reports
// what the walk alone can tell (syntax, unknown and duplicate keys, values
// of the wrong kind) and records, for the validator, where every path sits
// in the file and which paths the file gave a value.
type decoder struct {
	problems []Problem
	more     int // problems past maxProblems, counted only
	// budget is how many more nodes the walk may visit. Aliases let a
	// small file name the same list many times over; the budget keeps the
	// work linear in the file's size.
	budget int
	// pos is the position of each path: the value for scalars, the key
	// for mappings, sequences and nulls, the element for list entries.
	pos map[string]position
	// seqs holds the list nodes by path: the position of a list entry
	// ("peers[3].prefixes[7]") is found through its list when a message
	// needs it, rather than stored for each of 100,000 prefixes.
	seqs map[string]*yaml.Node
	// given holds the paths the file set to a non-null value.
	given map[string]bool
	// reported holds the paths that already have a problem; the validator
	// says nothing more about them or anything below them.
	reported map[string]bool
}

func newDecoder() *decoder {
	return &decoder{
		pos:      map[string]position{"": {1, 1}},
		seqs:     map[string]*yaml.Node{},
		given:    map[string]bool{},
		reported: map[string]bool{},
	}
}

func (d *decoder) problem(n *yaml.Node, path, format string, args ...any) {
	d.reported[path] = true
	if len(d.problems) >= maxProblems {
		d.more++
		return
	}
	d.problems = append(d.problems, Problem{Line: n.Line, Col: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// spend takes one node from the walk's budget and reports whether the walk
// may go on.
func (d *decoder) spend(n *yaml.Node) bool {
	d.budget--
	if d.budget == -1 {
		d.problem(n, "", "aliases expand the document too far; write the values out")
	}
	return d.budget >= 0
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxProblem turns a yaml.v3 error ("yaml: line 3: did not find
// expected key") into a Problem; yaml.v3 gives no column.
func syntaxProblem(err error) Problem {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{Line: line, Msg: "YAML syntax: " + m[2]}
	}
	return Problem{Line: 1, Msg: "YAML syntax: " + strings.TrimPrefix(msg, "yaml: ")}
}

// readDocument parses data into a single YAML document node; nil when the
// file is empty or broken.
func (d *decoder) readDocument(data []byte) (doc *yaml.Node) {
	defer func() {
		// yaml.v3 is not ours; a bug in it must not take the daemon down.
		if r := recover(); r != nil {
			d.problems = append(d.problems, Problem{Line: 1, Msg: fmt.Sprintf("YAML parser failed: %v", r)})
			d.reported[""] = true
			doc = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var first yaml.Node
	if err := dec.Decode(&first); err != nil {
		if !errors.Is(err, io.EOF) {
			d.problems = append(d.problems, syntaxProblem(err))
			d.reported[""] = true
		}
		return nil
	}
	var second yaml.Node
	switch err := dec.Decode(&second); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.problems = append(d.problems, syntaxProblem(err))
		d.reported[""] = true
		return nil
	case !isNull(&second):
		line := second.Line
		if len(second.Content) > 0 {
			line = second.Content[0].Line
		}
		d.problems = append(d.problems, Problem{Line: line, Col: 1, Msg: "a config file holds one YAML document; found a second"})
	}
	return &first
}

// decode walks data into a Config holding the file's values and the
// defaults that depend on nothing else; see applyDefaults for the rest.
func (d *decoder) decode(data []byte) *Config {
	c := &Config{
		Device:    Device{Name: DefaultDeviceName, Mode: ModeTUN},
		Encap:     Encap{TTL: DefaultTTL, TOS: Inherit, DF: Inherit},
		Underlay:  Underlay{MTU: DefaultUnderlayMTU},
		PeersFrom: DefaultPeersFrom,
		Backend:   DefaultBackend,
		Offload:   DefaultOffload,
		Pipeline:  DefaultPipeline,
		WakeTick:  DefaultWakeTick,
		Metrics:   Metrics{Listen: DefaultMetricsListen},
		Log:       Log{Level: DefaultLogLevel},
	}
	d.budget = 4*len(data) + 1000
	doc := d.readDocument(data)
	if doc == nil || len(doc.Content) == 0 {
		return c
	}
	root := doc.Content[0]
	d.pos[""] = position{root.Line, root.Column}
	d.mapping(root, "", topKeys, func(key string, n *yaml.Node, path string) {
		switch key {
		case "device":
			d.device(n, path, &c.Device)
		case "encap":
			d.encap(n, path, &c.Encap)
		case "underlay":
			d.mapping(n, path, underlayKeys, func(key string, n *yaml.Node, path string) {
				switch key {
				case "local":
					c.Underlay.Local, _ = d.addr(n, path)
				case "mtu":
					c.Underlay.MTU, _ = d.integer(n, path, MinMTU, MaxMTU)
				case "tunnel_gso":
					c.Underlay.TunnelGSO, _ = d.str(n, path)
				case "raw_send":
					c.Underlay.RawSend, _ = d.str(n, path)
				}
			})
		case "peers":
			d.sequence(n, path, func(i int, n *yaml.Node, path string) {
				c.Peers = append(c.Peers, Peer{})
				d.peer(n, path, &c.Peers[i])
			})
		case "peers_from":
			c.PeersFrom, _ = d.str(n, path)
		case "flannel":
			d.flannel(n, path, &c.Flannel)
		case "backend":
			c.Backend, _ = d.str(n, path)
		case "offload":
			c.Offload, _ = d.str(n, path)
		case "pipeline":
			c.Pipeline, _ = d.str(n, path)
		case "inline_answers":
			c.InlineAnswers, _ = d.boolean(n, path)
		case "queues":
			c.Queues, _ = d.integer(n, path, 0, MaxQueues)
		case "wake_tick":
			if s, ok := d.str(n, path); ok {
				t, err := time.ParseDuration(s)
				if s == "0" {
					t, err = 0, nil
				}
				if err != nil || t < 0 || t > MaxWakeTick {
					d.problem(n, path, "%q is not a duration from 0 (off) to %s, like 1ms", s, MaxWakeTick)
				} else {
					c.WakeTick = t
				}
			}
		case "metrics":
			d.mapping(n, path, metricsKeys, func(key string, n *yaml.Node, path string) {
				switch key {
				case "listen":
					c.Metrics.Listen, _ = d.str(n, path)
				case "pprof":
					c.Metrics.PProf, _ = d.boolean(n, path)
				}
			})
		case "log":
			d.mapping(n, path, logKeys, func(_ string, n *yaml.Node, path string) {
				c.Log.Level, _ = d.str(n, path)
			})
		}
	})
	return c
}

func (d *decoder) flannel(n *yaml.Node, path string, f *Flannel) {
	d.mapping(n, path, flannelKeys, func(key string, n *yaml.Node, path string) {
		switch key {
		case "subnet_manager":
			f.SubnetManager, _ = d.str(n, path)
		case "etcd_endpoints":
			f.EtcdEndpoints = []string{}
			d.sequence(n, path, func(_ int, n *yaml.Node, path string) {
				s, _ := d.str(n, path)
				f.EtcdEndpoints = append(f.EtcdEndpoints, s)
			})
		case "etcd_prefix":
			f.EtcdPrefix, _ = d.str(n, path)
		case "kubeconfig":
			f.Kubeconfig, _ = d.str(n, path)
		case "node_name":
			f.NodeName, _ = d.str(n, path)
		case "net_conf":
			f.NetConf, _ = d.str(n, path)
		case "subnet_file":
			f.SubnetFile, _ = d.str(n, path)
		}
	})
}

func (d *decoder) device(n *yaml.Node, path string, dev *Device) {
	d.mapping(n, path, deviceKeys, func(key string, n *yaml.Node, path string) {
		switch key {
		case "name":
			dev.Name, _ = d.str(n, path)
		case "mode":
			s, _ := d.str(n, path)
			dev.Mode = Mode(s)
		case "mtu":
			dev.MTU, _ = d.integer(n, path, MinMTU, MaxMTU)
		case "addresses":
			d.sequence(n, path, func(_ int, n *yaml.Node, path string) {
				p, _ := d.prefix(n, path)
				dev.Addresses = append(dev.Addresses, p)
			})
		case "mac":
			dev.MAC, dev.MACSet = d.mac(n, path)
		}
	})
}

func (d *decoder) encap(n *yaml.Node, path string, e *Encap) {
	d.mapping(n, path, encapKeys, func(key string, n *yaml.Node, path string) {
		switch key {
		case "preset":
			e.Preset, _ = d.str(n, path)
		case "type":
			s, _ := d.str(n, path)
			e.Type = EncapType(s)
		case "vni":
			v, _ := d.integer(n, path, 0, MaxVNI)
			e.VNI = uint32(v)
		case "port":
			v, _ := d.integer(n, path, 1, 65535)
			e.Port = uint16(v)
		case "key":
			v, ok := d.integer(n, path, 0, 1<<32-1)
			e.Key, e.HasKey = uint32(v), ok
		case "checksum":
			e.Checksum, _ = d.boolean(n, path)
		case "sequence":
			e.Sequence, _ = d.boolean(n, path)
		case "ttl":
			if n.Kind == yaml.ScalarNode && (n.Value == "inherit" || n.ShortTag() == "!!int" && isZero(n)) {
				d.problem(n, path, "%s", ttlInheritMsg)
				return
			}
			v, _ := d.integer(n, path, 1, 255)
			e.TTL = uint8(v)
		case "tos":
			if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
				e.TOS, _ = d.integer(n, path, 0, 255)
			} else if n.Kind != yaml.ScalarNode || n.Value != "inherit" {
				d.problem(n, path, `must be "inherit" or a number 0..255, not %s`, describe(n))
			}
		case "df":
			switch {
			case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool":
				if b, _ := d.boolean(n, path); b {
					e.DF = 1
				} else {
					e.DF = 0
				}
			case n.Kind != yaml.ScalarNode || n.Value != "inherit":
				d.problem(n, path, `must be "inherit", true or false, not %s`, describe(n))
			}
		}
	})
}

const ttlInheritMsg = "ttl 0 (inherit the inner TTL) is not supported yet; use 1..255"

func isZero(n *yaml.Node) bool {
	var v int64
	return n.Decode(&v) == nil && v == 0
}

func (d *decoder) peer(n *yaml.Node, path string, p *Peer) {
	d.mapping(n, path, peerKeys, func(key string, n *yaml.Node, path string) {
		switch key {
		case "remote":
			p.Remote, _ = d.addr(n, path)
		case "prefixes":
			d.sequence(n, path, func(_ int, n *yaml.Node, path string) {
				pfx, _ := d.prefix(n, path)
				if pfx.IsValid() {
					pfx = pfx.Masked()
				}
				p.Prefixes = append(p.Prefixes, pfx)
			})
		case "mac":
			p.MAC, p.MACSet = d.mac(n, path)
		}
	})
}

// deref follows aliases (*name) to the anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = deref(n)
	switch n.Kind {
	case 0:
		return true
	case yaml.DocumentNode:
		return len(n.Content) == 0 || isNull(n.Content[0])
	case yaml.ScalarNode:
		return n.ShortTag() == "!!null"
	}
	return false
}

// mapping walks the mapping n at path, calling f for each known key with a
// non-null value. Unknown and duplicate keys are problems; a null mapping
// is an empty one.
func (d *decoder) mapping(n *yaml.Node, path string, keys []string, f func(key string, val *yaml.Node, path string)) {
	n = deref(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.problem(n, path, "must be a mapping of %s, not %s", strings.Join(keys, ", "), describe(n))
		return
	}
	seen := map[string]int{}
	var typos []string // known keys that unknown ones look like
	defer func() {
		// A misspelt key is reported once, as unknown, not again as a
		// missing required key.
		for _, k := range typos {
			if _, ok := seen[k]; !ok {
				d.reported[join(path, k)] = true
			}
		}
	}()
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if !d.spend(k) {
			return
		}
		if k.Kind != yaml.ScalarNode {
			d.problem(k, path, "keys must be plain words, not %s", describe(k))
			continue
		}
		child := join(path, k.Value)
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			d.problem(k, child, "merge keys (<<) are not supported; repeat the keys")
			continue
		}
		if !contains(keys, k.Value) {
			msg := fmt.Sprintf("unknown key %q", k.Value)
			if s := suggest(k.Value, keys); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
				typos = append(typos, s)
			} else {
				msg += fmt.Sprintf(" (known: %s)", strings.Join(keys, ", "))
			}
			d.problem(k, child, "%s", msg)
			continue
		}
		if line, dup := seen[k.Value]; dup {
			d.problem(k, child, "duplicate key %q (first at line %d)", k.Value, line)
			continue
		}
		seen[k.Value] = k.Line
		if v.Kind == yaml.ScalarNode && !isNull(v) {
			d.pos[child] = position{v.Line, v.Column}
		} else {
			d.pos[child] = position{k.Line, k.Column}
		}
		if isNull(v) {
			continue
		}
		d.given[child] = true
		f(k.Value, v, child)
	}
}

// sequence walks the list n at path, calling f for each entry with its
// index; a null list is an empty one.
func (d *decoder) sequence(n *yaml.Node, path string, f func(i int, val *yaml.Node, path string)) {
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		d.problem(n, path, "must be a list, not %s", describe(n))
		return
	}
	d.seqs[path] = n
	for i, e := range n.Content {
		e = deref(e)
		if !d.spend(e) {
			return
		}
		f(i, e, path+"["+strconv.Itoa(i)+"]")
	}
}

// describe names what a node is, for "must be X, not Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!str":
			return strconv.Quote(n.Value)
		}
		return n.Value
	}
	return "an empty value"
}

func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.problem(n, path, "must be a string, not %s", describe(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) integer(n *yaml.Node, path string, lo, hi int64) (int, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.problem(n, path, "must be an integer, not %s", describe(n))
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil || v < lo || v > hi {
		d.problem(n, path, "%s is out of range %d..%d", n.Value, lo, hi)
		return 0, false
	}
	return int(v), true
}

func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		d.problem(n, path, "must be true or false, not %s", describe(n))
		return false, false
	}
	return b, true
}

func (d *decoder) addr(n *yaml.Node, path string) (netip.Addr, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		if _, perr := netip.ParsePrefix(s); perr == nil {
			d.problem(n, path, "%q is a prefix; want an IP address without /length", s)
		} else {
			d.problem(n, path, "%q is not an IP address", s)
		}
		return netip.Addr{}, false
	case a.Zone() != "":
		d.problem(n, path, "%q: IPv6 zones are not supported", s)
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func (d *decoder) prefix(n *yaml.Node, path string) (netip.Prefix, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil {
			d.problem(n, path, "%q has no prefix length; write %s/%d", s, s, a.BitLen())
		} else {
			d.problem(n, path, "%q is not an IP prefix (CIDR)", s)
		}
		return netip.Prefix{}, false
	}
	return p, true
}

func (d *decoder) mac(n *yaml.Node, path string) ([6]byte, bool) {
	var mac [6]byte
	s, ok := d.str(n, path)
	if !ok {
		return mac, false
	}
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		d.problem(n, path, "%q is not a 6-byte MAC address", s)
		return mac, false
	}
	copy(mac[:], hw)
	return mac, true
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// suggest returns the known key closest to an unknown one, if it is a
// plausible typo (edit distance at most 2).
func suggest(key string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if dist := editDistance(strings.ToLower(key), k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
