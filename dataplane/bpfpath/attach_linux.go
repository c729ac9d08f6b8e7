package bpfpath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// Attached is a tunnel's two programs, attached. Close detaches both; so
// does the end of the process that attached them (tcx links live with
// their file descriptors), so a crashed tunneld leaves no datapath behind.
type Attached struct {
	counters *ebpf.Map
	progs    []*ebpf.Program
	links    []link.Link
}

// Attach loads the tunnel's programs and attaches the encapsulation to the
// overlay device's egress and the decapsulation to the underlay device's
// ingress (tcx, Linux 6.6+). It must run on a thread in the namespace of
// both devices. Loading needs CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN).
func Attach(t Tunnel) (*Attached, error) {
	enc, err := t.EncapProgram()
	if err != nil {
		return nil, err
	}
	dec, err := t.DecapProgram()
	if err != nil {
		return nil, err
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "tp_counters", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: uint32(NumReasons)})
	if err != nil {
		return nil, fmt.Errorf("bpfpath: counters map: %w", err)
	}
	a := &Attached{counters: m}
	for _, p := range []asm.Instructions{enc, dec} {
		if err := p.AssociateMap(countersSym, m); err != nil {
			a.Close()
			return nil, fmt.Errorf("bpfpath: %w", err)
		}
	}
	for _, s := range []struct {
		name   string
		insns  asm.Instructions
		ifidx  int
		attach ebpf.AttachType
	}{
		{"tp_encap", enc, t.Device, ebpf.AttachTCXEgress},
		{"tp_decap", dec, t.Underlay, ebpf.AttachTCXIngress},
	} {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name:         s.name,
			Type:         ebpf.SchedCLS,
			Instructions: s.insns,
			License:      "Apache-2.0",
		})
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("bpfpath: load %s (%s): %w", s.name, t.Encap, err)
		}
		a.progs = append(a.progs, prog)
		l, err := link.AttachTCX(link.TCXOptions{Interface: s.ifidx, Program: prog, Attach: s.attach})
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("bpfpath: attach %s to ifindex %d: %w", s.name, s.ifidx, err)
		}
		a.links = append(a.links, l)
	}
	return a, nil
}

// Counters returns the programs' counts by Reason, summed over the CPUs.
func (a *Attached) Counters() ([NumReasons]uint64, error) {
	var out [NumReasons]uint64
	for r := Reason(0); r < NumReasons; r++ {
		var per []uint64
		if err := a.counters.Lookup(uint32(r), &per); err != nil {
			return out, fmt.Errorf("bpfpath: counter %s: %w", r, err)
		}
		for _, v := range per {
			out[r] += v
		}
	}
	return out, nil
}

// Close detaches and unloads the programs.
func (a *Attached) Close() error {
	var errs []error
	for _, l := range a.links {
		errs = append(errs, l.Close())
	}
	for _, p := range a.progs {
		errs = append(errs, p.Close())
	}
	if a.counters != nil {
		errs = append(errs, a.counters.Close())
	}
	a.links, a.progs, a.counters = nil, nil, nil
	return errors.Join(errs...)
}
