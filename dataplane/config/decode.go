package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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
	underlayKeys = []string{"local", "mtu", "tunnel_gso", "raw_send", "kernel_path"}
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
				case "kernel_path":
					c.Underlay.KernelPath, _ = d.str(n, path)
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
