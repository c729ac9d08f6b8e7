package dataplane

import (
	"net/netip"
	"tunnelplane/dataplane/device"
	"tunnelplane/dataplane/stats"
	"tunnelplane/dataplane/underlay"
	"tunnelplane/encap"
)

// packetWriter is the writing end of a stage: it takes a batch of packets
// (at most size()), writes them, and returns their buffers to the pool.
type packetWriter interface {
	write(ps []packet) error
	size() int
}

var (
	_ packetWriter = (*underlayWriter)(nil)
	_ packetWriter = (*deviceWriter)(nil)
)

// writeAll writes ps in chunks of the writer's size. On an error (only a
// closed file) it returns the buffers of what it did not write.
func (d *Dataplane) writeAll(w packetWriter, ps []packet) error {
	for len(ps) > 0 {
		n := min(len(ps), w.size())
		if err := w.write(ps[:n]); err != nil {
			for _, p := range ps[n:] {
				if !p.borrowed {
					d.bufs.put(p.idx)
				}
			}
			return err
		}
		ps = ps[n:]
	}
	return nil
}

// maxGSOSegments is the most datagrams one UDP_SEGMENT send may carry
// (UDP_MAX_SEGMENTS in older kernels; newer ones allow 128).
const maxGSOSegments = 64

// maxGSOBytes keeps a GSO send within one IP packet's 16-bit length.
const maxGSOBytes = 65000

// underlayWriter is one goroutine's scratch state for sending packets.
type underlayWriter struct {
	d        *Dataplane
	w        underlay.Writer
	tapQueue int // this queue's queue of the UDP-tunnel GSO TAP
	// pw sends through the packet socket of this queue (pktsend.go), with
	// messages of its own; ipid numbers the outer IPv4 headers it writes.
	pw    underlay.Writer
	pmsgs []underlay.Message
	ipid  uint16
	c     *stats.Counters
	msgs  []underlay.Message
	idx   []uint32
	bufs  [][]byte // backing store for the messages' Bufs
}

func (d *Dataplane) newUnderlayWriter(q *queueSet, c *stats.Counters, size int) *underlayWriter {
	u := &underlayWriter{d: d, w: q.send.NewBatchWriter(size), tapQueue: q.id, c: c,
		msgs: make([]underlay.Message, size), idx: make([]uint32, size), bufs: make([][]byte, size)}
	if d.pkt != nil {
		u.pw, u.pmsgs = d.pkt.queues[q.id].NewBatchWriter(size), make([]underlay.Message, size)
	}
	return u
}

// write sends ps (at most the writer's size) and returns their buffers to
// the pool. It fails only when the socket is closed.
func (u *underlayWriter) write(ps []packet) error {
	d, c := u.d, u.c
	n := len(ps)
	if n == 0 {
		return nil
	}
	bytes, owned := account(ps, u.idx, c, true)
	var err error
	for i := 0; i < n && err == nil; {
		if ps[i].gso != 0 {
			p := &ps[i]
			if err := d.tgso.write(u.tapQueue, d.bufs.buf(p.idx)[p.off:p.end], c); err != nil {
				d.logUnlessStopping("UDP-tunnel GSO TAP refused a frame; sending super-packets through the sockets from now on", "tap", d.tgso.tap.Name(), "err", err)
			}
			ps[i].peer = nil
			i++
			continue
		}
		j := i + 1
		for j < n && ps[j].gso == 0 {
			j++
		}
		err = u.send(ps[i:j])
		i = j
	}
	if err == nil {
		c.TxPackets.Add(uint64(n))
		c.TxBytes.Add(bytes)
	}
	d.bufs.putBatch(u.idx[:owned])
	return err
}

// send sends ps, none of them TAP frames, through the socket.
func (u *underlayWriter) send(ps []packet) error {
	d := u.d
	if u.pw != nil {
		n, err := u.sendPackets(ps)
		if err != nil || n == 0 {
			return err
		}
		ps = ps[:n]
	}
	for i := range ps {
		p := &ps[i]
		u.bufs[i] = d.bufs.buf(p.idx)[p.off:p.end]
	}
	nm := d.buildMessages(ps, u.bufs[:len(ps)], u.msgs, u.c)
	for i := range ps {
		ps[i].peer = nil
	}
	return d.sendMessages(u.w, u.msgs[:nm], u.c)
}

// sendPackets sends the packets of ps that can go the packet socket's
// way, and moves the others, in order, to the front of ps: it returns
// how many. The error is the socket's when it is closed.
func (u *underlayWriter) sendPackets(ps []packet) (int, error) {
	d, g := u.d, u.d.pkt
	proto := uint8(d.tunnel.rawProto())
	rest, nm := 0, 0
	// A batch is mostly runs of one peer: one hop lookup per run.
	var last *Peer
	var mac [6]byte
	var hop bool
	for i := range ps {
		p := &ps[i]
		if p.peer != last {
			last = p.peer
			hop = p.peer.Remote.Is4()
			if hop {
				mac, hop = d.hops.lookup(p.peer.Remote)
			}
		}
		if !hop || p.big {
			ps[rest] = *p
			rest++
			continue
		}
		b := d.bufs.buf(p.idx)
		h := g.hdr
		h.Dst, h.Protocol, h.ID = p.peer.Remote, proto, u.ipid
		if d.tosInherit {
			h.TOS = p.tos
		}
		u.ipid++
		ip := encap.PushIPv4(b, int(p.off), int(p.end), &h)
		eth := encap.PushEthernet(b, ip, mac, g.srcMAC, encap.EtherTypeIPv4)
		m := &u.pmsgs[nm]
		nm++
		m.Buf, m.Bufs, m.GSOSize, m.SetTOS, m.Addr = b[eth:p.end], nil, 0, false, noAddr
		p.peer = nil
	}
	if nm == 0 {
		return rest, nil
	}
	u.c.PacketSocket.Add(uint64(nm))
	return rest, d.sendMessages(u.pw, u.pmsgs[:nm], u.c)
}

// buildMessages turns packets into datagram messages. With UDP GSO, runs
// of packets to the same peer whose sizes are equal (the last of a run may
// be shorter) become one message the kernel segments: one trip through
// the UDP/IP stack for up to maxGSOSegments datagrams.
func (d *Dataplane) buildMessages(ps []packet, bufs [][]byte, msgs []underlay.Message, c *stats.Counters) int {
	gso := d.gso.Load()
	nm := 0
	for i := 0; i < len(ps); {
		m := &msgs[nm]
		nm++
		m.Addr = netip.AddrPortFrom(ps[i].peer.Remote, d.dport)
		m.Buf, m.Bufs, m.GSOSize = bufs[i], nil, 0
		m.TOS, m.SetTOS = ps[i].tos, d.tosInherit
		j := i + 1
		if gso {
			size, total := len(bufs[i]), len(bufs[i])
			for !ps[i].big && j < len(ps) && !ps[j].big && j-i < maxGSOSegments && ps[j].peer == ps[i].peer && ps[j].tos == ps[i].tos &&
				len(bufs[j]) <= size && total+len(bufs[j]) <= maxGSOBytes {
				total += len(bufs[j])
				j++
				if len(bufs[j-1]) < size {
					break // a shorter datagram ends the run
				}
			}
			if j-i > 1 {
				m.Bufs, m.GSOSize = bufs[i:j], size
			}
		}
		c.Segments.Observe(j - i)
		i = j
	}
	return nm
}

// sendMessages writes msgs, skipping (and counting) any datagram the
// kernel refuses. A refusal of a GSO send with EIO means the path cannot
// segment: GSO is turned off and the batch sent again without it.
func (d *Dataplane) sendMessages(w underlay.Writer, msgs []underlay.Message, c *stats.Counters) error {
	for sent := 0; sent < len(msgs); {
		k, err := w.WriteBatch(msgs[sent:])
		sent += k
		if err == nil {
			continue
		}
		if isClosed(err) {
			return err
		}
		if m := &msgs[sent]; m.GSOSize > 0 && underlay.IsGSORefused(err) && d.gso.CompareAndSwap(true, false) {
			d.log.Warn("UDP GSO refused by the kernel; sending datagrams one by one", "err", err)
		}
		m := &msgs[sent]
		if m.GSOSize > 0 && !d.gso.Load() {
			// Resend this run as single datagrams.
			for _, b := range m.Bufs {
				single := [1]underlay.Message{{Buf: b, Addr: m.Addr, TOS: m.TOS, SetTOS: m.SetTOS}}
				if _, err := w.WriteBatch(single[:]); err != nil {
					if isClosed(err) {
						return err
					}
					c.Drop(stats.DropUnderlayWrite)
				}
			}
		} else {
			c.Drop(stats.DropUnderlayWrite)
			if m.Bufs != nil {
				for range m.Bufs[1:] {
					c.Drop(stats.DropUnderlayWrite)
				}
			}
		}
		sent++
	}
	return nil
}

// account records a batch a writer is about to write: the stage's batch
// counters, the per-peer counts (one atomic add per run of one peer), and
// the ids of the buffers to return (those not borrowed) in idx. It returns
// the bytes of the batch and the number of ids.
func account(ps []packet, idx []uint32, c *stats.Counters, tx bool) (bytes uint64, owned int) {
	c.Batches.Add(1)
	c.BatchSize.Observe(len(ps))
	var run peerRun
	for i := range ps {
		p := &ps[i]
		if !p.borrowed {
			idx[owned] = p.idx
			owned++
		}
		size := int(p.end - p.off)
		if tx && p.gso != 0 {
			size -= underlay.TunnelFrameOverhead // what a socket would have been handed
		}
		bytes += uint64(size)
		run.add(p.peer, size, tx)
	}
	run.flush(tx)
	return bytes, owned
}

func (u *underlayWriter) size() int { return len(u.msgs) }

// deviceWriter is one goroutine's scratch state for writing to the device.
type deviceWriter struct {
	d    *Dataplane
	dev  device.Device
	c    *stats.Counters
	bufs [][]byte
	gsos []uint16 // per packet: the GSO segment size of a super-packet (partial.go)
	idx  []uint32
	vw   *device.GatherWriter // a queue with the virtio header: our own coalescing writev
}

func (d *Dataplane) newDeviceWriter(dev device.Device, c *stats.Counters, size int) *deviceWriter {
	return &deviceWriter{d: d, dev: dev, c: c, bufs: make([][]byte, size), gsos: make([]uint16, size), idx: make([]uint32, size),
		vw: device.NewGatherWriter(dev, size, d.cfg.Device.MTU)}
}

// headroomFree reports whether the writer leaves the bytes in front of
// each packet alone, so that packets may share a buffer (borrowed).
// wireguard-go's Write with the virtio header writes that header there.
func (w *deviceWriter) headroomFree() bool {
	return w.vw != nil || !device.WritesIntoHeadroom(w.dev)
}

// write hands ps (at most the writer's size) to the device and returns
// their buffers to the pool. It fails only when the device is closed.
func (w *deviceWriter) write(ps []packet) error {
	d, c := w.d, w.c
	n := len(ps)
	if n == 0 {
		return nil
	}
	bytes, owned := account(ps, w.idx, c, false)
	if w.vw != nil {
		for i := range ps {
			p := &ps[i]
			w.bufs[i], w.gsos[i] = d.bufs.buf(p.idx)[p.off:p.end], p.gso
			p.peer = nil
		}
		dropped, partial, err := w.vw.Write(w.bufs[:n], w.gsos[:n])
		d.bufs.putBatch(w.idx[:owned])
		if err != nil {
			return err
		}
		if partial > 0 {
			c.PartialCsum.Add(uint64(partial))
		}
		c.Drops[stats.DropDeviceWrite].Add(uint64(dropped))
		c.TxPackets.Add(uint64(n - dropped))
		c.TxBytes.Add(bytes)
		return nil
	}
	partial := 0
	for i := range ps {
		p := &ps[i]
		// No virtio header to say NEEDS_CSUM: complete a peer's partial
		// checksum here, as the NIC would have (partial.go).
		if ip, _, ok := d.tunnel.innerIP(d.bufs.buf(p.idx), int(p.off), int(p.end)); ok && device.CompletePartial(ip) {
			partial++
		}
		// Every packet must sit at the same offset for Write, and a
		// decapsulated one starts wherever its outer headers ended: slice
		// each buffer so that the packet begins Headroom bytes into its
		// slice.
		w.bufs[i] = d.bufs.buf(p.idx)[int(p.off)-Headroom : p.end]
		ps[i].peer = nil
	}
	if partial > 0 {
		c.PartialCsum.Add(uint64(partial))
	}
	_, err := w.dev.Write(w.bufs[:n], Headroom)
	d.bufs.putBatch(w.idx[:owned])
	if err != nil {
		if isClosed(err) {
			return err
		}
		c.Drop(stats.DropDeviceWrite)
		return nil
	}
	c.TxPackets.Add(uint64(n))
	c.TxBytes.Add(bytes)
	return nil
}

func (w *deviceWriter) size() int { return len(w.bufs) }
