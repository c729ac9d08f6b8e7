package ring

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestNewPoolPanics(t *testing.T) {
	tests := []struct {
		name        string
		count, size int
		want        string
	}{
		{"count 0", 0, 2048, "count 0"},
		{"count -1", -1, 2048, "count -1"},
		{"size below headroom", 4, Headroom - 1, "size 127"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := mustPanic(t, func() { NewPool(tt.count, tt.size) })
			if !strings.Contains(msg, tt.want) {
				t.Errorf("panic %q does not mention %q", msg, tt.want)
			}
		})
	}
}

func TestPoolGetPutAll(t *testing.T) {
	for _, count := range []int{1, 3, 64, 100} {
		t.Run(fmt.Sprint(count), func(t *testing.T) {
			p := NewPool(count, Headroom+64)
			p.EnableDebug()
			if p.Cap() != count || p.Free() != count || p.BufSize() != Headroom+64 {
				t.Fatalf("Cap %d Free %d BufSize %d", p.Cap(), p.Free(), p.BufSize())
			}
			got := make(map[uint32]bool)
			for range count {
				i, ok := p.Get()
				if !ok {
					t.Fatalf("Get failed after %d of %d", len(got), count)
				}
				if i >= uint32(count) || got[i] {
					t.Fatalf("Get returned %d (out of range or twice)", i)
				}
				got[i] = true
			}
			if i, ok := p.Get(); ok {
				t.Fatalf("Get on an exhausted pool returned %d", i)
			}
			if p.Free() != 0 {
				t.Fatalf("Free() = %d, want 0", p.Free())
			}
			for i := range got {
				p.Put(i)
			}
			if p.Free() != count {
				t.Fatalf("Free() = %d after putting all back, want %d", p.Free(), count)
			}
		})
	}
}

func TestPoolBatchExhaustion(t *testing.T) {
	p := NewPool(10, Headroom)
	p.EnableDebug()
	out := make([]uint32, 4)
	var held []uint32
	for _, want := range []int{4, 4, 2, 0} {
		n := p.GetBatch(out)
		if n != want {
			t.Fatalf("GetBatch = %d, want %d", n, want)
		}
		held = append(held, out[:n]...)
	}
	p.PutBatch(held[:7])
	if p.Free() != 7 {
		t.Fatalf("Free() = %d, want 7", p.Free())
	}
	p.PutBatch(held[7:])
	big := make([]uint32, 32)
	if n := p.GetBatch(big); n != 10 {
		t.Fatalf("GetBatch(32) = %d, want 10", n)
	}
	p.PutBatch(big[:10])
	p.PutBatch(nil)
}

func TestPoolBuf(t *testing.T) {
	p := NewPool(3, 256)
	for i := range uint32(3) {
		b := p.Buf(i)
		if len(b) != 256 || cap(b) != 256 {
			t.Fatalf("Buf(%d): len %d cap %d, want 256 256", i, len(b), cap(b))
		}
		for k := range b {
			b[k] = byte(i + 1)
		}
	}
	// Appending to a full buffer must reallocate, not spill into buffer 1.
	b0 := append(p.Buf(0), 0xee)
	b0[0] = 0xee
	if p.Buf(1)[0] != 2 || p.Buf(0)[0] != 1 {
		t.Fatal("append on buffer 0 wrote into the slab")
	}
	mustPanic(t, func() { p.Buf(3) })
}

func TestPoolDebugPanics(t *testing.T) {
	tests := []struct {
		name string
		f    func(p *Pool)
		want string
	}{
		{"double Put", func(p *Pool) {
			i, _ := p.Get()
			p.Put(i)
			p.Put(i)
		}, "buffer 0 is already free (double Put)"},
		{"Put never taken", func(p *Pool) { p.Put(5) }, "buffer 5 is already free"},
		{"double in PutBatch", func(p *Pool) {
			out := make([]uint32, 3)
			p.GetBatch(out)
			p.PutBatch([]uint32{out[0], out[1], out[0]})
		}, "buffer 0 is already free"},
		{"Put out of range", func(p *Pool) { p.Put(8) }, "buffer index 8 out of range [0, 8)"},
		{"PutBatch out of range", func(p *Pool) {
			i, _ := p.Get()
			p.PutBatch([]uint32{i, 1 << 31})
		}, "buffer index 2147483648 out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPool(8, Headroom)
			p.EnableDebug()
			msg := mustPanic(t, func() { tt.f(p) })
			if !strings.Contains(msg, tt.want) {
				t.Errorf("panic %q, want it to contain %q", msg, tt.want)
			}
		})
	}
	t.Run("out of range without debug", func(t *testing.T) {
		p := NewPool(8, Headroom)
		mustPanic(t, func() { p.Put(8) })
		if p.Free() != 8 {
			t.Fatalf("Free() = %d after a rejected Put", p.Free())
		}
	})
}

// TestPoolStress has goroutines take buffers, stamp them with their own id,
// yield, and check the stamp is intact before putting them back: a buffer
// handed to two holders at once shows up as a wrong stamp (and as a data
// race under -race), and debug mode checks ownership on every call.
func TestPoolStress(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) {
			const (
				workers = 8
				count   = 64
			)
			iters := 200_000
			if raceEnabled {
				iters = 20_000
			}
			if testing.Short() {
				iters /= 10
			}
			p := NewPool(count, Headroom+64)
			p.EnableDebug()
			var stop atomic.Bool
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for w := range workers {
				wg.Go(func() {
					err := poolWorker(p, uint64(w+1), iters, batched, &stop)
					if err != nil {
						stop.Store(true)
					}
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if p.Free() != count {
				t.Fatalf("Free() = %d at the end, want %d", p.Free(), count)
			}
		})
	}
}

func poolWorker(p *Pool, id uint64, iters int, batched bool, stop *atomic.Bool) error {
	held := make([]uint32, 0, 8)
	stamp := func(i uint32, v uint64) {
		b := p.Buf(i)
		binary.LittleEndian.PutUint64(b, v)
		binary.LittleEndian.PutUint64(b[len(b)-8:], v)
	}
	check := func(i uint32, v uint64) error {
		b := p.Buf(i)
		head, tail := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[len(b)-8:])
		if head != v || tail != v {
			return fmt.Errorf("buffer %d: stamp %#x/%#x, want %#x: handed out twice", i, head, tail, v)
		}
		return nil
	}
	for it := 0; it < iters && !stop.Load(); it++ {
		v := id<<32 | uint64(it)
		held = held[:0]
		if batched {
			held = held[:p.GetBatch(held[:1+it%8])]
		} else if i, ok := p.Get(); ok {
			held = append(held, i)
		}
		if len(held) == 0 {
			runtime.Gosched()
			continue
		}
		for _, i := range held {
			stamp(i, v)
		}
		if it%4 == 0 {
			runtime.Gosched()
		}
		for _, i := range held {
			if err := check(i, v); err != nil {
				return err
			}
		}
		if batched {
			p.PutBatch(held)
		} else {
			p.Put(held[0])
		}
	}
	return nil
}
