package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// The flannel block (peers_from: flannel): its defaults and its checks.

// flannelDefaults fills the flannel block's defaults (flanneld's own) for
// the keys the file left out.
func flannelDefaults(f *Flannel, given map[string]bool) {
	if !given["flannel.subnet_manager"] {
		f.SubnetManager = SubnetManagerEtcd
	}
	if !given["flannel.etcd_endpoints"] && f.SubnetManager == SubnetManagerEtcd {
		f.EtcdEndpoints = []string{DefaultEtcdEndpoint}
	}
	if !given["flannel.etcd_prefix"] && f.SubnetManager == SubnetManagerEtcd {
		f.EtcdPrefix = DefaultEtcdPrefix
	}
	if !given["flannel.net_conf"] && f.SubnetManager == SubnetManagerKube {
		f.NetConf = DefaultNetConf
	}
	if !given["flannel.subnet_file"] {
		f.SubnetFile = DefaultSubnetFile
	}
}

// FlannelBackend returns the flannel backend type that speaks the
// encapsulation t ("vxlan", "udp", "ipip"), or "" if flannel has none.
func FlannelBackend(t EncapType) string {
	switch t {
	case EncapVXLAN:
		return "vxlan"
	case EncapIPUDP:
		return "udp"
	case EncapIPIP:
		return "ipip"
	}
	return ""
}

// flannel checks peers_from: flannel: the flannel block, and what the
// rest of the file must leave to the lease.
func (v *validator) flannel() {
	c := v.c
	f := &c.Flannel
	switch f.SubnetManager {
	case SubnetManagerEtcd:
		if len(f.EtcdEndpoints) == 0 {
			v.fail("flannel.etcd_endpoints", "needs at least one etcd URL, like http://10.99.0.254:2379")
		}
		for i, e := range f.EtcdEndpoints {
			if msg := badEtcdEndpoint(e); msg != "" {
				v.fail(fmt.Sprintf("flannel.etcd_endpoints[%d]", i), "%q %s", e, msg)
			}
		}
		switch p := f.EtcdPrefix; {
		case !strings.HasPrefix(p, "/"):
			v.fail("flannel.etcd_prefix", "%q must start with /, like %s", p, DefaultEtcdPrefix)
		case len(p) > 1 && strings.HasSuffix(p, "/"):
			v.fail("flannel.etcd_prefix", "%q must not end with /; write %s", p, strings.TrimRight(p, "/"))
		case strings.ContainsAny(p, " \t\n\r"):
			v.fail("flannel.etcd_prefix", "%q must not contain white space", p)
		}
	case SubnetManagerKube:
		if f.NetConf == "" || !strings.HasPrefix(f.NetConf, "/") || strings.HasSuffix(f.NetConf, "/") {
			v.fail("flannel.net_conf", "%q must be an absolute file path, like %s", f.NetConf, DefaultNetConf)
		}
		if v.given != nil && v.given["flannel.kubeconfig"] && (f.Kubeconfig == "" || strings.HasSuffix(f.Kubeconfig, "/")) {
			v.fail("flannel.kubeconfig", "%q must be a kubeconfig file's path; leave the key out for the in-cluster config", f.Kubeconfig)
		}
		if f.NodeName != "" {
			if msg := badNodeName(f.NodeName); msg != "" {
				v.fail("flannel.node_name", "%q %s", f.NodeName, msg)
			}
		} else if v.given != nil && v.given["flannel.node_name"] {
			v.fail("flannel.node_name", `"" is not a Node name; leave the key out to take $NODE_NAME`)
		}
	default:
		v.fail("flannel.subnet_manager", `must be "etcd" or "kube", not %q`, f.SubnetManager)
	}
	only := map[string][]string{
		SubnetManagerEtcd: {"etcd_endpoints", "etcd_prefix"},
		SubnetManagerKube: {"kubeconfig", "node_name", "net_conf"},
	}
	for m, keys := range only {
		if m == f.SubnetManager || (f.SubnetManager != SubnetManagerEtcd && f.SubnetManager != SubnetManagerKube) {
			continue
		}
		for _, k := range keys {
			if v.given != nil && v.given["flannel."+k] {
				v.fail("flannel."+k, "applies only to subnet_manager: %s", m)
			}
		}
	}
	if f.SubnetFile == "" || !strings.HasPrefix(f.SubnetFile, "/") || strings.HasSuffix(f.SubnetFile, "/") {
		v.fail("flannel.subnet_file", "%q must be an absolute file path, like %s", f.SubnetFile, DefaultSubnetFile)
	}
	if knownEncap(c.Encap.Type) && FlannelBackend(c.Encap.Type) == "" {
		v.fail("encap.type", "flannel has no %s backend; use vxlan (preset flannel-vxlan), ipudp (preset flannel-udp) or ipip", c.Encap.Type)
	}
	if c.Device.Mode == ModeTAP {
		v.fail("device.mode", "peers_from: flannel routes the node's subnet (tun); flannel has no L2 mode")
	}
	if len(c.Device.Addresses) > 0 {
		v.fail("device.addresses", "peers_from: flannel takes the device address from the node's lease; leave addresses out")
	}
	if a := c.Underlay.Local; a.IsValid() && !a.Is4() {
		v.fail("underlay.local", "%s: flannel leases carry an IPv4 PublicIP; IPv6 underlays are not supported with peers_from: flannel", a)
	}
}

// set reports whether any key of the flannel block has a value.
func (f *Flannel) set() bool {
	return f.SubnetManager != "" || f.EtcdEndpoints != nil || f.EtcdPrefix != "" || f.Kubeconfig != "" ||
		f.NodeName != "" || f.NetConf != "" || f.SubnetFile != ""
}

// badNodeName says what is wrong with a Node name (a DNS subdomain: at
// most 253 characters of lowercase letters, digits, '-' and '.', each
// label starting and ending with a letter or digit), or "".
func badNodeName(n string) string {
	if len(n) > 253 {
		return "is longer than 253 characters"
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" {
			return "has an empty label (two dots, or a dot at an end)"
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			alnum := ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9'
			if !alnum && (ch != '-' || i == 0 || i == len(label)-1) {
				return "is not a Node name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"
			}
		}
	}
	return ""
}

// badEtcdEndpoint says what is wrong with an etcd client URL, or "".
func badEtcdEndpoint(e string) string {
	scheme, rest, ok := strings.Cut(e, "://")
	switch {
	case !ok:
		return "is not a URL; write http://host:port"
	case scheme == "https":
		return "needs TLS, which is not supported yet; use http"
	case scheme != "http":
		return "must be an http:// URL"
	}
	host, port, err := net.SplitHostPort(strings.TrimSuffix(rest, "/"))
	if err != nil || host == "" {
		return "must be http://host:port"
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Sprintf("port %q is not a number 1..65535", port)
	}
	return ""
}
