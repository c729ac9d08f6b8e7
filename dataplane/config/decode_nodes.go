package config

// The YAML node helpers the decoder is built from: shapes (mapping,
// sequence), scalars with their ranges, and the problem texts' pieces
// (describe, suggest).

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

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
