package dataplane

import (
	"time"

	"tunnelplane/ring"
)

// Headroom is the space kept in front of every packet for the outer headers
// and the TUN's virtio-net header.
const Headroom = ring.Headroom

// buffers is the data plane's memory: two pools from ring, each one slab
// allocated at start.
//
//   - small buffers hold one packet (MTU plus headroom): what the device
//     reader splits TSO super-packets into, and the copies of datagrams
//     split out of a UDP GRO read in the rings pipeline;
//   - large buffers (64 KiB plus headroom) receive from the underlay,
//     where one UDP GRO read can return up to 64 KiB. In the direct
//     pipeline the datagrams of such a read stay where they are: each
//     becomes a packet that borrows its bytes, the device writer gathers
//     runs of them into one TCP super-packet with writev (tcpgro.go), and
//     the buffer goes back to the pool when the batch is written.
//
// History, measured on this machine (iperf3, one stream through VXLAN,
// veth offloads on): all buffers packet-sized, 0.44 Gbit/s; large receive
// buffers that wireguard-go's tun.Write could coalesce into in place,
// 0.83; with UDP GSO/GRO, 2.1; borrowing GRO segments and coalescing with
// writev instead of copying, 4.5-5.3.
//
// A buffer id carries its pool in the top bit, so the rings and packets
// stay one 32-bit index wide.
type buffers struct {
	small, large *ring.Pool
}

const largeBit = 1 << 31

const (
	smallBuffers = 4096
	largeBuffers = 512
	largeSize    = Headroom + 65536
)

func newBuffers(packetSize int) *buffers {
	return newBuffersN(packetSize, smallBuffers, largeBuffers)
}

func newBuffersN(packetSize, small, large int) *buffers {
	return &buffers{
		small: ring.NewPool(small, Headroom+(packetSize+63)&^63),
		large: ring.NewPool(large, largeSize),
	}
}

// batchFor caps a reader's batch at half a pool, so that a reader never
// waits for more buffers than the pool can give while the other stages
// hold some (a small pool then means small batches, not a deadlock).
func batchFor(want int, p *ring.Pool) int { return max(1, min(want, p.Cap()/2)) }

func (b *buffers) buf(id uint32) []byte {
	if id&largeBit != 0 {
		return b.large.Buf(id &^ largeBit)
	}
	return b.small.Buf(id)
}

func (b *buffers) getSmall() (uint32, bool) { return b.small.Get() }

func (b *buffers) put(id uint32) {
	if id&largeBit != 0 {
		b.large.Put(id &^ largeBit)
	} else {
		b.small.Put(id)
	}
}

// putBatch returns ids to their pools. It reorders ids in place (small
// first) so that each pool takes its share in one batch.
func (b *buffers) putBatch(ids []uint32) {
	i, j := 0, len(ids)
	for i < j {
		if ids[i]&largeBit == 0 {
			i++
			continue
		}
		j--
		ids[i], ids[j] = ids[j], ids[i]
	}
	if i > 0 {
		b.small.PutBatch(ids[:i])
	}
	if i < len(ids) {
		large := ids[i:]
		for k := range large {
			large[k] &^= largeBit
		}
		b.large.PutBatch(large)
	}
}

// getBatch fills ids from one pool, waiting (briefly sleeping) until the
// pool has them all: a reader that cannot get buffers leaves packets in the
// kernel's queue, which is where back-pressure belongs. It must be a whole
// batch because a TUN read splits one TSO super-packet into up to
// BatchSize segments and drops it whole when given fewer buffers. It
// returns 0 only when done is closed.
func (b *buffers) getBatch(ids []uint32, large bool, done <-chan struct{}) int {
	p := b.small
	if large {
		p = b.large
	}
	n := 0
	for {
		n += p.GetBatch(ids[n:])
		if n == len(ids) {
			break
		}
		select {
		case <-done:
			p.PutBatch(ids[:n])
			return 0
		default:
			time.Sleep(20 * time.Microsecond)
		}
	}
	if large {
		for k := range ids {
			ids[k] |= largeBit
		}
	}
	return n
}

// refill tops ids up to its full length from the pool (small or large),
// ids[:held] being buffers the reader kept from its last batch. A reader
// thus only takes from the pool what went out with the last batch, rather
// than a whole batch each time. It reports false when done is closed (and
// has then returned ids[:held] to the pool).
func (b *buffers) refill(ids []uint32, held int, large bool, done <-chan struct{}) bool {
	if held == len(ids) {
		return true
	}
	if b.getBatch(ids[held:], large, done) == 0 {
		b.putBatch(ids[:held])
		return false
	}
	return true
}

// keep moves the buffers of a finished batch that the reader may use again
// (the unused and the dropped ones of its own pool) to the front of ids and
// returns how many; the others go back to their pool.
func (b *buffers) keep(ids, free []uint32, large bool) int {
	held := 0
	back := free[:0]
	for _, id := range free {
		if (id&largeBit != 0) == large && held < len(ids) {
			ids[held] = id
			held++
		} else {
			back = append(back, id)
		}
	}
	b.putBatch(back)
	return held
}
