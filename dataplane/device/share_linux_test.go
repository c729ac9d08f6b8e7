package device

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tunnelplane/bench/topo"
)

// TestShareTwoReaders reads one TUN queue from its own reader (which
// waits) and from a shared view (which never does) at once, while 2000
// UDP datagrams with sequence numbers go out through the device: every
// one arrives exactly once, and the two readers never hold the queue at
// the same time. Run it with -race.
func TestShareTwoReaders(t *testing.T) {
	topo.RequireRoot(t)
	ns, err := topo.BuildNS("share")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	var devs []Device
	err = ns.Do(func() error {
		devs, err = Open(Config{Name: "tpshare0", MTU: 1400, Offload: true}, 1)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	owner := devs[0]
	defer owner.Close()
	view, ok := Share(owner)
	if !ok {
		t.Fatalf("Share(%T) refused", owner)
	}
	if err := ns.AddAddr("tpshare0", netip.MustParsePrefix("10.200.77.1/24")); err != nil {
		t.Fatal(err)
	}
	if err := ns.LinkUp("tpshare0"); err != nil {
		t.Fatal(err)
	}
	const total = 2000
	var seen [total]atomic.Int32
	var inside atomic.Int32 // readers between their first read and ReleaseRead
	var got atomic.Int32
	record := func(b []byte) {
		if len(b) < 32 || b[0]>>4 != 4 || b[9] != 17 {
			return // the kernel's own chatter
		}
		seq := binary.BigEndian.Uint32(b[28:])
		if seq < total {
			seen[seq].Add(1)
			got.Add(1)
		}
	}
	type scratch struct {
		bufs  [][]byte
		sizes []int
	}
	newScratch := func() *scratch {
		s := &scratch{bufs: make([][]byte, 128), sizes: make([]int, 128)}
		for i := range s.bufs {
			s.bufs[i] = make([]byte, 1600)
		}
		return s
	}
	batch := func(dev Device, s *scratch) error {
		bufs, sizes := s.bufs, s.sizes
		n, err := dev.Read(bufs, sizes, 0)
		if err == nil || n > 0 {
			if inside.Add(1) != 1 {
				t.Error("both readers hold the queue")
			}
			for i := range n {
				record(bufs[i][:sizes[i]])
			}
			for t0 := time.Now(); time.Since(t0) < 5*time.Microsecond; { // hold it a little, as a send would
			}
			inside.Add(-1)
		}
		ReleaseRead(dev)
		return err
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		s := newScratch()
		for {
			if err := batch(owner, s); err != nil {
				return // closed at the end
			}
		}
	}()
	go func() {
		defer wg.Done()
		s := newScratch()
		for {
			select {
			case <-done:
				return
			default:
			}
			time.Sleep(50 * time.Microsecond) // as after a device write
			if err := batch(view, s); err != nil && !errors.Is(err, ErrWouldBlock) && !errors.Is(err, os.ErrClosed) {
				t.Errorf("view: %v", err)
				return
			}
		}
	}()
	err = ns.Do(func() error {
		c, err := net.Dial("udp", "10.200.77.2:9")
		if err != nil {
			return err
		}
		defer c.Close()
		msg := make([]byte, 100)
		for i := range total {
			binary.BigEndian.PutUint32(msg, uint32(i))
			if _, err := c.Write(msg); err != nil {
				return err
			}
			if i%10 == 0 {
				time.Sleep(200 * time.Microsecond) // let both readers in, and keep within the queue
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for got.Load() < total && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	close(done)
	var dropped uint64
	if link, err := ns.Handle().LinkByName("tpshare0"); err == nil && link.Attrs().Statistics != nil {
		dropped = link.Attrs().Statistics.TxDropped
	}
	owner.Close()
	wg.Wait()
	if dropped != 0 {
		t.Fatalf("the device dropped %d datagrams (its queue overflowed): the readers were too slow", dropped)
	}
	for i := range seen {
		if n := seen[i].Load(); n != 1 {
			t.Fatalf("datagram %d read %d times (%d of %d read in all)", i, n, got.Load(), total)
		}
	}
}
