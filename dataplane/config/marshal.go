package config

import (
	"net"

	"gopkg.in/yaml.v3"
)

// The file's shape, for Marshal only: Parse walks yaml.Node itself to keep
// positions.
type (
	fileConfig struct {
		Device        fileDevice   `yaml:"device"`
		Encap         fileEncap    `yaml:"encap"`
		Underlay      fileUnderlay `yaml:"underlay"`
		Peers         []filePeer   `yaml:"peers"`
		PeersFrom     string       `yaml:"peers_from"`
		Flannel       *fileFlannel `yaml:"flannel,omitempty"`
		Backend       string       `yaml:"backend"`
		Offload       string       `yaml:"offload"`
		Pipeline      string       `yaml:"pipeline"`
		InlineAnswers bool         `yaml:"inline_answers"`
		Queues        int          `yaml:"queues"`
		WakeTick      string       `yaml:"wake_tick"`
		Metrics       Metrics      `yaml:"metrics"`
		Log           Log          `yaml:"log"`
	}
	fileDevice struct {
		Name      string   `yaml:"name"`
		Mode      Mode     `yaml:"mode"`
		MTU       int      `yaml:"mtu"`
		Addresses []string `yaml:"addresses,flow"`
		MAC       string   `yaml:"mac,omitempty"`
	}
	fileEncap struct {
		Preset   string    `yaml:"preset,omitempty"`
		Type     EncapType `yaml:"type"`
		VNI      *uint32   `yaml:"vni,omitempty"`
		Port     *uint16   `yaml:"port,omitempty"`
		Key      *uint32   `yaml:"key,omitempty"`
		Checksum *bool     `yaml:"checksum,omitempty"`
		Sequence *bool     `yaml:"sequence,omitempty"`
		TTL      uint8     `yaml:"ttl"`
		TOS      any       `yaml:"tos"`
		DF       any       `yaml:"df"`
	}
	fileUnderlay struct {
		Local      string `yaml:"local"`
		MTU        int    `yaml:"mtu"`
		TunnelGSO  string `yaml:"tunnel_gso,omitempty"`
		RawSend    string `yaml:"raw_send,omitempty"`
		KernelPath string `yaml:"kernel_path,omitempty"`
	}
	fileFlannel struct {
		SubnetManager string   `yaml:"subnet_manager"`
		EtcdEndpoints []string `yaml:"etcd_endpoints,flow,omitempty"`
		EtcdPrefix    string   `yaml:"etcd_prefix,omitempty"`
		Kubeconfig    string   `yaml:"kubeconfig,omitempty"`
		NodeName      string   `yaml:"node_name,omitempty"`
		NetConf       string   `yaml:"net_conf,omitempty"`
		SubnetFile    string   `yaml:"subnet_file"`
	}
	filePeer struct {
		Remote   string   `yaml:"remote"`
		Prefixes []string `yaml:"prefixes,flow"`
		MAC      string   `yaml:"mac,omitempty"`
	}
)

// Marshal writes c as YAML that Parse reads back into an equal Config:
// every setting explicit, the MACs only where the file had set them (the
// rest are derived again), fields that do not apply to the encapsulation
// left out. tunneld can print it to show the effective configuration.
func (c *Config) Marshal() ([]byte, error) {
	f := fileConfig{
		Device: fileDevice{
			Name:      c.Device.Name,
			Mode:      c.Device.Mode,
			MTU:       c.Device.MTU,
			Addresses: []string{},
		},
		Encap:         fileEncap{Preset: c.Encap.Preset, Type: c.Encap.Type, TTL: c.Encap.TTL, TOS: "inherit", DF: "inherit"},
		Underlay:      fileUnderlay{Local: c.Underlay.Local.String(), MTU: c.Underlay.MTU, TunnelGSO: c.Underlay.TunnelGSO, RawSend: c.Underlay.RawSend, KernelPath: c.Underlay.KernelPath},
		Peers:         []filePeer{},
		PeersFrom:     c.PeersFrom,
		Backend:       c.Backend,
		Offload:       c.Offload,
		Pipeline:      c.Pipeline,
		InlineAnswers: c.InlineAnswers,
		Queues:        c.Queues,
		WakeTick:      c.WakeTick.String(),
		Metrics:       c.Metrics,
		Log:           c.Log,
	}
	if c.PeersFrom == PeersFromFlannel {
		fl := c.Flannel
		f.Flannel = &fileFlannel{SubnetManager: fl.SubnetManager, EtcdEndpoints: fl.EtcdEndpoints, EtcdPrefix: fl.EtcdPrefix,
			Kubeconfig: fl.Kubeconfig, NodeName: fl.NodeName, NetConf: fl.NetConf, SubnetFile: fl.SubnetFile}
	}
	for _, p := range c.Device.Addresses {
		f.Device.Addresses = append(f.Device.Addresses, p.String())
	}
	if c.Device.MACSet {
		f.Device.MAC = net.HardwareAddr(c.Device.MAC[:]).String()
	}
	e := c.Encap
	switch e.Type {
	case EncapVXLAN:
		f.Encap.VNI, f.Encap.Port = &e.VNI, &e.Port
	case EncapIPUDP:
		f.Encap.Port = &e.Port
	case EncapGRE:
		if e.HasKey {
			f.Encap.Key = &e.Key
		}
		f.Encap.Checksum, f.Encap.Sequence = &e.Checksum, &e.Sequence
	}
	if e.TOS != Inherit {
		f.Encap.TOS = e.TOS
	}
	if e.DF != Inherit {
		f.Encap.DF = e.DF == 1
	}
	for _, p := range c.Peers {
		fp := filePeer{Remote: p.Remote.String(), Prefixes: []string{}}
		for _, pfx := range p.Prefixes {
			fp.Prefixes = append(fp.Prefixes, pfx.String())
		}
		if p.MACSet {
			fp.MAC = net.HardwareAddr(p.MAC[:]).String()
		}
		f.Peers = append(f.Peers, fp)
	}
	return yaml.Marshal(&f)
}
