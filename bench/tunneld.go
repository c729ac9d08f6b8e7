package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"tunnelplane/bench/topo"
)

// TunneldConfig renders a tunneld config for one side of a pair: device
// tp0 in mode (tun|tap) with address own, the encap: block body (each line
// indented two spaces), the local underlay address and one peer at remote
// owning peer's address. The metrics server is switched off.
func TunneldConfig(mode, encapBody string, local, remote netip.Addr, own, peer netip.Prefix) string {
	return TunneldConfigMACs(mode, encapBody, local, remote, own, peer, [6]byte{}, [6]byte{})
}

// TunneldConfigMACs is TunneldConfig with fixed MACs for the device and
// the peer (a kernel vxlan peer's VTEP MAC); zero MACs are left out.
func TunneldConfigMACs(mode, encapBody string, local, remote netip.Addr, own, peer netip.Prefix, ownMAC, peerMAC [6]byte) string {
	bits := 32
	if peer.Addr().Is6() {
		bits = 128
	}
	var b strings.Builder
	fmt.Fprintf(&b, "device:\n  name: %s\n  mode: %s\n  addresses: [%s]\n", TunneldDevice, mode, own)
	if ownMAC != ([6]byte{}) {
		fmt.Fprintf(&b, "  mac: %s\n", net.HardwareAddr(ownMAC[:]))
	}
	fmt.Fprintf(&b, "encap:\n%s", encapBody)
	fmt.Fprintf(&b, "underlay:\n  local: %s\n", local)
	fmt.Fprintf(&b, "peers:\n  - remote: %s\n    prefixes: [%s/%d]\n", remote, peer.Addr(), bits)
	if peerMAC != ([6]byte{}) {
		fmt.Fprintf(&b, "    mac: %s\n", net.HardwareAddr(peerMAC[:]))
	}
	b.WriteString("metrics:\n  listen: \"\"\n")
	return b.String()
}

// TunneldDevice is the device name in the configs TunneldConfig renders.
const TunneldDevice = "tp0"

// Daemon is a process running inside a namespace: tunneld (started with
// GODEBUG=gctrace=1 so that its garbage collections can be counted), or
// another data plane's (Open vSwitch's ovs-vswitchd and ovsdb-server).
type Daemon struct {
	Name string // the program, e.g. "tunneld"
	NS   *topo.NS
	Cmd  *exec.Cmd
	Log  *LogWriter
	done chan error
	err  error
}

// PID is the tunneld process id (`ip netns exec` execs tunneld in place,
// so the child's PID is tunneld's own).
func (d *Daemon) PID() int { return d.Cmd.Process.Pid }

// StartTunneld writes config into dir, runs bin inside ns and waits (at
// most 10 s) until its device exists. The process ends with ctx (SIGTERM,
// then SIGKILL after 5 s) or with Stop.
func StartTunneld(ctx context.Context, ns *topo.NS, bin, dir, config string) (*Daemon, error) {
	path := filepath.Join(dir, ns.Name+".yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return nil, err
	}
	d, err := startDaemon(ctx, ns, []string{"GODEBUG=gctrace=1"}, bin, "--config", path)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := ns.Handle().LinkByName(TunneldDevice); err == nil {
			if err := d.checkPID(bin); err != nil {
				d.Stop()
				return nil, err
			}
			return d, nil
		}
		select {
		case err := <-d.done:
			d.done <- err
			return nil, fmt.Errorf("tunneld in %s exited early: %v\n%s", ns.Name, err, d.Log)
		case <-ctx.Done():
			d.Stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.Stop()
			return nil, fmt.Errorf("tunneld in %s: device %s did not appear within 10s\n%s", ns.Name, TunneldDevice, d.Log)
		}
	}
}

// startDaemon runs name inside ns with environ added, its output into
// Log. It ends with ctx (SIGTERM, then SIGKILL after 5 s) or with Stop.
func startDaemon(ctx context.Context, ns *topo.NS, environ []string, name string, args ...string) (*Daemon, error) {
	d := &Daemon{Name: filepath.Base(name), NS: ns, Log: &LogWriter{}, done: make(chan error, 1)}
	d.Cmd = ns.Command(ctx, name, args...)
	d.Cmd.Env = append(os.Environ(), environ...)
	d.Cmd.Stdout, d.Cmd.Stderr = d.Log, d.Log
	d.Cmd.Cancel = func() error { return d.Cmd.Process.Signal(syscall.SIGTERM) }
	d.Cmd.WaitDelay = 5 * time.Second
	if err := d.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", filepath.Base(name), ns.Name, err)
	}
	go func() { d.done <- d.Cmd.Wait() }()
	return d, nil
}

// Exited reports whether the process has ended (and how).
func (d *Daemon) Exited() (bool, error) {
	select {
	case err := <-d.done:
		d.done <- err
		return true, err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM and waits up to 5 s, then kills. It is idempotent.
func (d *Daemon) Stop() error {
	if d.Cmd.Process == nil {
		return nil
	}
	if exited, err := d.Exited(); exited {
		return err
	}
	d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		d.done <- err
		return err
	case <-time.After(5 * time.Second):
		d.Cmd.Process.Kill()
		err := <-d.done
		d.done <- err
		return fmt.Errorf("%s in %s ignored SIGTERM for 5s: killed", d.Name, d.NS.Name)
	}
}

// BuildTunneld compiles cmd/tunneld into dir (the go tool must run inside
// the tunnelplane module, e.g. from the repository root) and returns the
// binary's path.
func BuildTunneld(ctx context.Context, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	bin := filepath.Join(dir, "tunneld")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "tunnelplane/cmd/tunneld").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build tunnelplane/cmd/tunneld (run from the repository, or pass --tunneld): %w\n%s", err, out)
	}
	return bin, nil
}

// checkPID makes sure the PID whose /proc figures are read is tunneld
// itself and not a wrapper (`ip netns exec` execs in place).
func (d *Daemon) checkPID(bin string) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", d.PID()))
	if err != nil {
		return fmt.Errorf("tunneld in %s: %w", d.NS.Name, err)
	}
	comm, want := strings.TrimSpace(string(b)), filepath.Base(bin)
	if len(want) > 15 { // TASK_COMM_LEN - 1
		want = want[:15]
	}
	if comm != want {
		return fmt.Errorf("tunneld in %s: pid %d is %q, not %q", d.NS.Name, d.PID(), comm, want)
	}
	return nil
}
