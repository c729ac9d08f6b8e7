package config

import (
	"sort"
	"strings"
)

// Preset is a named set of defaults that makes tunneld speak another
// implementation's wire format. A preset fills only the keys the file
// leaves out: `preset: flannel-vxlan` with `vni: 5` gives VNI 5.
type Preset struct {
	Type EncapType
	VNI  uint32 // vxlan: the VNI (0: the general default)
	Port uint16 // vxlan, ipudp: the UDP port (0: the general default)
	// DeviceName and DeviceMTU default device.name and device.mtu (empty
	// and 0: the general defaults). DeviceMTU is capped at what the
	// underlay leaves after the overhead, so a small underlay MTU does not
	// turn the preset into an error.
	DeviceName string
	DeviceMTU  int
}

// Presets are the known values of encap.preset.
var Presets = map[string]Preset{
	// flannel's vxlan backend: VNI 1, Linux's historical port 8472.
	"flannel-vxlan": {Type: EncapVXLAN, VNI: 1, Port: 8472},
	// flannel's udp backend: bare IP in UDP on port 8285.
	"flannel-udp": {Type: EncapIPUDP, Port: 8285},
	// Calico's VXLAN mode: VNI 4096 on the IANA port.
	"calico-vxlan": {Type: EncapVXLAN, VNI: 4096, Port: 4789},
	// Calico's IPIP mode: the tunl0 device with MTU 1480.
	"calico-ipip": {Type: EncapIPIP, DeviceName: "tunl0", DeviceMTU: 1480},
}

// presetNames lists the known presets, sorted, for messages.
func presetNames() string {
	names := make([]string, 0, len(Presets))
	for n := range Presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// presetType fills encap.type from a known preset when the file left it
// out; it runs before the defaults that depend on the type.
func presetType(c *Config, given map[string]bool) {
	if p, ok := Presets[c.Encap.Preset]; ok && !given["encap.type"] {
		c.Encap.Type = p.Type
	}
}

// applyPreset fills the other defaults of a known preset for the paths the
// file did not set, over the general defaults of the type; the device MTU
// is done by applyDefaults. An unknown preset, or one whose type the file
// contradicts, fills nothing (the validator reports it).
func applyPreset(c *Config, given map[string]bool) {
	p, ok := Presets[c.Encap.Preset]
	if !ok || c.Encap.Type != p.Type {
		return
	}
	if p.VNI != 0 && !given["encap.vni"] {
		c.Encap.VNI = p.VNI
	}
	if p.Port != 0 && !given["encap.port"] {
		c.Encap.Port = p.Port
	}
	if p.DeviceName != "" && !given["device.name"] {
		c.Device.Name = p.DeviceName
	}
}
