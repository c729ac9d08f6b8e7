package config

import (
	"reflect"
	"strings"
	"testing"
)

func flannelDoc(lines ...string) []byte {
	base := []string{"encap: {preset: flannel-vxlan}", "underlay: {local: 10.99.0.1}", "peers_from: flannel"}
	return doc(append(base, lines...)...)
}

func TestFlannelDefaults(t *testing.T) {
	c := mustParse(t, flannelDoc())
	want := Flannel{SubnetManager: "etcd", EtcdEndpoints: []string{DefaultEtcdEndpoint}, EtcdPrefix: DefaultEtcdPrefix, SubnetFile: DefaultSubnetFile}
	if !reflect.DeepEqual(c.Flannel, want) {
		t.Fatalf("Flannel = %+v, want %+v", c.Flannel, want)
	}
	checkRoundTrip(t, c)

	c = mustParse(t, flannelDoc("flannel:", "  subnet_manager: etcd", "  etcd_endpoints: [http://10.99.0.254:2379, http://10.99.0.253:2379/]",
		"  etcd_prefix: /flannel/net", "  subnet_file: /tmp/x/subnet.env"))
	want = Flannel{SubnetManager: "etcd", EtcdEndpoints: []string{"http://10.99.0.254:2379", "http://10.99.0.253:2379/"}, EtcdPrefix: "/flannel/net", SubnetFile: "/tmp/x/subnet.env"}
	if !reflect.DeepEqual(c.Flannel, want) {
		t.Fatalf("Flannel = %+v, want %+v", c.Flannel, want)
	}
	checkRoundTrip(t, c)

	// The kube subnet manager: net_conf defaults to flanneld's path, no
	// etcd defaults; kubeconfig and node_name stay empty (in-cluster config,
	// $NODE_NAME at start).
	c = mustParse(t, flannelDoc("flannel: {subnet_manager: kube}"))
	want = Flannel{SubnetManager: "kube", NetConf: DefaultNetConf, SubnetFile: DefaultSubnetFile}
	if !reflect.DeepEqual(c.Flannel, want) {
		t.Fatalf("Flannel = %+v, want %+v", c.Flannel, want)
	}
	checkRoundTrip(t, c)
	c = mustParse(t, flannelDoc("flannel:", "  subnet_manager: kube", "  kubeconfig: /etc/kubernetes/kubelet.conf", "  node_name: node-a.example",
		"  net_conf: /etc/tp/net-conf.json", "  subnet_file: /run/tp/subnet.env"))
	want = Flannel{SubnetManager: "kube", Kubeconfig: "/etc/kubernetes/kubelet.conf", NodeName: "node-a.example", NetConf: "/etc/tp/net-conf.json", SubnetFile: "/run/tp/subnet.env"}
	if !reflect.DeepEqual(c.Flannel, want) {
		t.Fatalf("Flannel = %+v, want %+v", c.Flannel, want)
	}
	checkRoundTrip(t, c)

	// Without peers_from: flannel the block stays zero and is not printed.
	c = mustParse(t, doc("encap: {preset: flannel-vxlan}", "underlay: {local: 10.99.0.1}"))
	if !reflect.DeepEqual(c.Flannel, Flannel{}) {
		t.Fatalf("Flannel = %+v without peers_from: flannel", c.Flannel)
	}
	out, _ := c.Marshal()
	if strings.Contains(string(out), "flannel:") {
		t.Fatalf("Marshal printed a flannel block:\n%s", out)
	}
}

func TestFlannelBackend(t *testing.T) {
	for typ, want := range map[EncapType]string{EncapVXLAN: "vxlan", EncapIPUDP: "udp", EncapIPIP: "ipip", EncapGRE: "", EncapSIT: ""} {
		if got := FlannelBackend(typ); got != want {
			t.Errorf("FlannelBackend(%s) = %q, want %q", typ, got, want)
		}
	}
	for _, preset := range []string{"flannel-udp", "calico-ipip"} {
		c := mustParse(t, doc("encap: {preset: "+preset+"}", "underlay: {local: 10.99.0.1}", "peers_from: flannel"))
		if FlannelBackend(c.Encap.Type) == "" {
			t.Errorf("%s: no flannel backend", preset)
		}
	}
}

func TestFlannelProblems(t *testing.T) {
	tests := []struct {
		name      string
		data      []byte
		line, col int
		path      string
		msg       string
	}{
		{"kube key with etcd", flannelDoc("flannel:", "  net_conf: /etc/kube-flannel/net-conf.json"), 5, 13, "flannel.net_conf", "applies only to subnet_manager: kube"},
		{"etcd key with kube", flannelDoc("flannel:", "  subnet_manager: kube", "  etcd_prefix: /coreos.com/network"), 6, 16, "flannel.etcd_prefix", "applies only to subnet_manager: etcd"},
		{"net conf relative", flannelDoc("flannel:", "  subnet_manager: kube", "  net_conf: net-conf.json"), 6, 13, "flannel.net_conf", "must be an absolute file path"},
		{"kubeconfig empty", flannelDoc("flannel:", "  subnet_manager: kube", "  kubeconfig: ''"), 6, 15, "flannel.kubeconfig", "leave the key out for the in-cluster config"},
		{"node name upper", flannelDoc("flannel:", "  subnet_manager: kube", "  node_name: Node-A"), 6, 14, "flannel.node_name", "is not a Node name"},
		{"node name empty label", flannelDoc("flannel:", "  subnet_manager: kube", "  node_name: a..b"), 6, 14, "flannel.node_name", "empty label"},
		{"node name empty", flannelDoc("flannel:", "  subnet_manager: kube", "  node_name: ''"), 6, 14, "flannel.node_name", "leave the key out to take $NODE_NAME"},
		{"manager unknown", flannelDoc("flannel: {subnet_manager: consul}"), 4, 27, "flannel.subnet_manager", `must be "etcd" or "kube", not "consul"`},
		{"unknown key", flannelDoc("flannel:", "  etcd_endpoint: [http://10.99.0.254:2379]"), 5, 3, "flannel.etcd_endpoint", `did you mean "etcd_endpoints"?`},
		{"no endpoints", flannelDoc("flannel:", "  etcd_endpoints: []"), 5, 3, "flannel.etcd_endpoints", "needs at least one etcd URL"},
		{"endpoints not a list", flannelDoc("flannel:", "  etcd_endpoints: http://10.99.0.254:2379"), 5, 19, "flannel.etcd_endpoints", "must be a list"},
		{"endpoint no scheme", flannelDoc("flannel:", "  etcd_endpoints: [10.99.0.254:2379]"), 5, 20, "flannel.etcd_endpoints[0]", "is not a URL"},
		{"endpoint tls", flannelDoc("flannel:", "  etcd_endpoints:", "    - http://10.99.0.254:2379", "    - https://10.99.0.253:2379"), 7, 7, "flannel.etcd_endpoints[1]", "TLS, which is not supported yet"},
		{"endpoint no port", flannelDoc("flannel:", "  etcd_endpoints: [http://etcd]"), 5, 20, "flannel.etcd_endpoints[0]", "must be http://host:port"},
		{"endpoint bad port", flannelDoc("flannel:", "  etcd_endpoints: [http://etcd:99999]"), 5, 20, "flannel.etcd_endpoints[0]", `port "99999" is not a number`},
		{"prefix relative", flannelDoc("flannel:", "  etcd_prefix: coreos.com/network"), 5, 16, "flannel.etcd_prefix", "must start with /"},
		{"prefix trailing slash", flannelDoc("flannel:", "  etcd_prefix: /coreos.com/network/"), 5, 16, "flannel.etcd_prefix", "must not end with /"},
		{"subnet file relative", flannelDoc("flannel:", "  subnet_file: subnet.env"), 5, 16, "flannel.subnet_file", "must be an absolute file path"},
		{"block without peers_from", doc("encap: {preset: flannel-vxlan}", "underlay: {local: 10.99.0.1}", "flannel: {subnet_manager: etcd}"), 3, 1, "flannel", `applies only with peers_from: flannel, not "config"`},
		{"gre", doc("encap: {type: gre}", "underlay: {local: 10.99.0.1}", "peers_from: flannel"), 1, 15, "encap.type", "flannel has no gre backend"},
		{"tap", doc("device: {mode: tap}", "encap: {preset: flannel-vxlan}", "underlay: {local: 10.99.0.1}", "peers_from: flannel"), 1, 16, "device.mode", "flannel has no L2 mode"},
		{"addresses", doc("device: {addresses: [10.244.1.0/32]}", "encap: {preset: flannel-vxlan}", "underlay: {local: 10.99.0.1}", "peers_from: flannel"), 1, 10, "device.addresses", "takes the device address from the node's lease"},
		{"ipv6 underlay", doc("encap: {preset: flannel-vxlan}", "underlay: {local: 'fd00::1'}", "peers_from: flannel"), 2, 19, "underlay.local", "IPv4 PublicIP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probs := parseProblems(t, tt.data)
			for _, p := range probs {
				if p.Path == tt.path && strings.Contains(p.Msg, tt.msg) {
					if p.Line != tt.line || p.Col != tt.col {
						t.Errorf("%s at %d:%d, want %d:%d", tt.path, p.Line, p.Col, tt.line, tt.col)
					}
					if len(probs) > 1 {
						t.Errorf("want one problem, got %d: %v", len(probs), probs)
					}
					return
				}
			}
			t.Errorf("no problem %s: %q among %v", tt.path, tt.msg, probs)
		})
	}
}

func TestFlannelValidateBuiltInCode(t *testing.T) {
	c := mustParse(t, flannelDoc())
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	c.Flannel.SubnetManager = "kube"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "flannel.net_conf") {
		t.Fatalf("Validate = %v, want net_conf missing", err)
	}
	c.Flannel.NetConf = DefaultNetConf
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}
