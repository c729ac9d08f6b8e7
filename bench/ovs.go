package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"tunnelplane/bench/topo"
)

// The Open vSwitch scenario: what a user picks when the kernel has no vxlan
// module and no openvswitch module either, OVS's userspace datapath
// (datapath_type=netdev), VXLAN between the two namespaces. Each namespace
// runs its own ovsdb-server and ovs-vswitchd (Debian's openvswitch-switch)
// on a database in the run directory:
//
//	br-phy (netdev): the underlay veth as a port; the underlay address moves
//	                 from the veth to br-phy's internal port, so that OVS's
//	                 tunnel routing and ARP see it
//	br-int (netdev): its internal port carries the overlay address, MTU
//	                 1450; vx0 is a vxlan port (key 42, port 4789) to the
//	                 other side's underlay address
//
// OVS's userspace TSO is left off (its default: experimental in 3.1), so the
// internal port takes MSS-sized segments from the kernel.

// OVSDevice is the device A's overlay traffic leaves by in the OVS scenario.
const OVSDevice = "br-int"

const ovsSchema = "/usr/share/openvswitch/vswitch.ovsschema"

// haveOVS reports what is missing to run the OVS scenario.
func haveOVS() error {
	for _, b := range []string{"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s not found: install openvswitch-switch (make bench does)", b)
		}
	}
	if _, err := os.Stat(ovsSchema); err != nil {
		return fmt.Errorf("OVS schema: %w (install openvswitch-switch)", err)
	}
	return nil
}

// ovsSide is one namespace's OVS: its two daemons and the socket to reach
// its database.
type ovsSide struct {
	ns      *topo.NS
	dir     string
	sock    string
	daemons []*Daemon
}

// startOVS runs OVS in ns (state under dir/ns.Name) and connects it as the
// comment above says: phy is the underlay veth holding local, remote the
// other side's underlay address, overlay this side's overlay address.
func startOVS(ctx context.Context, ns *topo.NS, dir, phy string, local netip.Prefix, remote netip.Addr, overlay netip.Prefix) (_ []*Daemon, err error) {
	if err := haveOVS(); err != nil {
		return nil, err
	}
	o := &ovsSide{ns: ns, dir: filepath.Join(dir, "ovs-"+ns.Name)}
	defer func() {
		if err != nil {
			for _, d := range o.daemons {
				d.Stop()
			}
			err = fmt.Errorf("ovs in %s: %w", ns.Name, err)
		}
	}()
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return nil, err
	}
	db := filepath.Join(o.dir, "conf.db")
	o.sock = filepath.Join(o.dir, "db.sock")
	if out, err := exec.CommandContext(ctx, "ovsdb-tool", "create", db, ovsSchema).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ovsdb-tool create: %w: %s", err, out)
	}
	dbd, err := startDaemon(ctx, ns, nil, "ovsdb-server", db, "--remote=punix:"+o.sock,
		"--unixctl="+filepath.Join(o.dir, "ovsdb.ctl"), "-vconsole:warn", "--no-chdir")
	if err != nil {
		return nil, err
	}
	o.daemons = append(o.daemons, dbd)
	if err := waitFile(ctx, o.sock, dbd); err != nil {
		return nil, err
	}
	if err := o.vsctl(ctx, "--no-wait", "init"); err != nil {
		return nil, err
	}
	vsd, err := startDaemon(ctx, ns, nil, "ovs-vswitchd", "unix:"+o.sock,
		"--unixctl="+filepath.Join(o.dir, "vswitchd.ctl"), "-vconsole:warn", "--no-chdir")
	if err != nil {
		return nil, err
	}
	o.daemons = append(o.daemons, vsd)
	steps := [][]string{
		{"add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev"},
		{"add-port", "br-phy", phy},
		{"add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev"},
		{"add-port", "br-int", "vx0", "--", "set", "interface", "vx0", "type=vxlan",
			"options:remote_ip=" + remote.String(), "options:key=42", "options:dst_port=4789"},
	}
	for _, s := range steps {
		if err := o.vsctl(ctx, s...); err != nil {
			return nil, err
		}
	}
	ip := [][]string{
		{"addr", "del", local.String(), "dev", phy},
		{"addr", "add", local.String(), "dev", "br-phy"},
		{"link", "set", "br-phy", "up"},
		{"link", "set", OVSDevice, "mtu", fmt.Sprint(KernelVXLANMTU)},
		{"addr", "add", overlay.String(), "dev", OVSDevice},
		{"link", "set", OVSDevice, "up"},
	}
	for _, a := range ip {
		if out, err := ns.Command(ctx, "ip", a...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip %s: %w: %s", strings.Join(a, " "), err, out)
		}
	}
	return o.daemons, nil
}

// vsctl runs ovs-vsctl against this side's database, bounded in time.
func (o *ovsSide) vsctl(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	full := append([]string{"--db=unix:" + o.sock, "--timeout=15"}, args...)
	out, err := o.ns.Command(ctx, "ovs-vsctl", full...).CombinedOutput()
	if err != nil {
		logs := ""
		for _, d := range o.daemons {
			logs += "\n" + d.Log.String()
		}
		return fmt.Errorf("ovs-vsctl %s: %w: %s%s", strings.Join(args, " "), err, out, logs)
	}
	return nil
}

// waitFile waits (at most 10 s) for path to exist while d runs.
func waitFile(ctx context.Context, path string, d *Daemon) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if exited, err := d.Exited(); exited {
			return fmt.Errorf("%s exited: %v\n%s", d.Name, err, d.Log)
		}
		if time.Now().After(deadline) {
			return errors.New(path + " did not appear within 10s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
