package ring

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// Items in the stress tests are tagged (producer id, sequence number).
func tag(producer, seq int) uint64 { return uint64(producer)<<32 | uint64(seq) }
func untag(v uint64) (producer, seq int) {
	return int(v >> 32), int(uint32(v))
}

// stressItems is how many items each producer moves.
func stressItems(t *testing.T) int {
	switch {
	case raceEnabled && testing.Short():
		return 20_000
	case raceEnabled:
		return 200_000
	case testing.Short():
		return 100_000
	}
	return 1_000_000
}

// batchSize varies batch sizes between 1 and 33 along the sequence, so
// batches straddle the ring's end at every offset.
func batchSize(i int) int { return 1 + (i*7)%33 }

func TestSPSCStress(t *testing.T) {
	for _, tt := range []struct {
		name     string
		capacity int
		batchEnq bool
		batchDeq bool
	}{
		{"single/cap64", 64, false, false},
		{"single/cap2", 2, false, false},
		{"batch/cap64", 64, true, true},
		{"batch/cap16", 16, true, true},
		{"batchEnq-singleDeq", 64, true, false},
		{"singleEnq-batchDeq", 64, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := stressItems(t)
			r := NewSPSC[uint64](tt.capacity)
			done := make(chan struct{})
			var stop atomic.Bool // the consumer failed: let the producer go
			defer func() { stop.Store(true); <-done }()
			go func() {
				defer close(done)
				buf := make([]uint64, 33)
				for i, round := 0, 0; i < n && !stop.Load(); round++ {
					if !tt.batchEnq {
						if r.Enqueue(tag(0, i)) {
							i++
						} else {
							runtime.Gosched()
						}
						continue
					}
					b := buf[:min(batchSize(round), n-i)]
					for k := range b {
						b[k] = tag(0, i+k)
					}
					m := r.EnqueueBatch(b)
					if m == 0 {
						runtime.Gosched()
					}
					i += m
				}
			}()
			out := make([]uint64, 33)
			for want, round := 0, 0; want < n; round++ {
				got := out[:1]
				if tt.batchDeq {
					got = out[:r.DequeueBatch(out[:batchSize(round)])]
				} else if v, ok := r.Dequeue(); ok {
					got[0] = v
				} else {
					got = got[:0]
				}
				if len(got) == 0 {
					runtime.Gosched()
				}
				for _, v := range got {
					if p, s := untag(v); p != 0 || s != want {
						t.Fatalf("got (%d, %d), want (0, %d)", p, s, want)
					}
					want++
				}
			}
			if l := r.Len(); l != 0 {
				t.Fatalf("Len() = %d after all items moved", l)
			}
		})
	}
}

func TestMPMCStress(t *testing.T) {
	for _, tt := range []struct {
		name                 string
		producers, consumers int
		capacity             int
		batchEnq, batchDeq   bool
	}{
		{"4P4C/single", 4, 4, 64, false, false},
		{"4P4C/batch", 4, 4, 64, true, true},
		{"4P4C/mixed", 4, 4, 64, true, false},
		{"2P6C/single/cap2", 2, 6, 2, false, true},
		{"6P2C/batch/cap8", 6, 2, 8, true, true},
		{"1P1C/batch", 1, 1, 64, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := stressItems(t)
			if tt.producers > 2 && raceEnabled {
				n /= 2
			}
			r := NewMPMC[uint64](tt.capacity)
			total := tt.producers * n
			var consumed atomic.Int64
			var stop atomic.Bool // set on the first error so no one waits forever
			var wg sync.WaitGroup
			for p := range tt.producers {
				batched := tt.batchEnq && (p%2 == 0 || tt.name != "4P4C/mixed")
				wg.Go(func() { produce(r, p, n, batched, &stop) })
			}
			seen := make([][]bool, tt.consumers) // per consumer, per item
			errs := make(chan error, tt.consumers)
			for c := range tt.consumers {
				seen[c] = make([]bool, total)
				wg.Go(func() {
					err := consume(r, seen[c], tt.producers, n, tt.batchDeq, &consumed, &stop)
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
			// No loss, no duplication: every item seen by exactly one consumer.
			for i := range total {
				count := 0
				for c := range seen {
					if seen[c][i] {
						count++
					}
				}
				if count != 1 {
					t.Fatalf("item (%d, %d) seen %d times", i/n, i%n, count)
				}
			}
			if l := r.Len(); l != 0 {
				t.Fatalf("Len() = %d after all items moved", l)
			}
		})
	}
}

func produce(r *MPMC[uint64], p, n int, batched bool, stop *atomic.Bool) {
	buf := make([]uint64, 33)
	for i, round := 0, 0; i < n && !stop.Load(); round++ {
		if !batched {
			if r.Enqueue(tag(p, i)) {
				i++
			} else {
				runtime.Gosched()
			}
			continue
		}
		b := buf[:min(batchSize(round+p), n-i)]
		for k := range b {
			b[k] = tag(p, i+k)
		}
		m := r.EnqueueBatch(b)
		if m == 0 {
			runtime.Gosched()
		}
		i += m
	}
}

// consume takes items until all producers*n have been consumed by someone.
// It checks that, per producer, the sequence numbers it sees increase
// (Vyukov's queue hands positions to consumers in order, and one producer's
// positions are in its program order).
func consume(r *MPMC[uint64], seen []bool, producers, n int, batched bool, consumed *atomic.Int64, stop *atomic.Bool) error {
	last := make([]int, producers)
	for i := range last {
		last[i] = -1
	}
	out := make([]uint64, 33)
	total := int64(producers * n)
	for round := 0; consumed.Load() < total && !stop.Load(); round++ {
		got := out[:1]
		if batched {
			got = out[:r.DequeueBatch(out[:batchSize(round)])]
		} else if v, ok := r.Dequeue(); ok {
			got[0] = v
		} else {
			got = got[:0]
		}
		if len(got) == 0 {
			runtime.Gosched()
			continue
		}
		for _, v := range got {
			p, s := untag(v)
			if p >= producers || s >= n {
				return fmt.Errorf("bogus item (%d, %d)", p, s)
			}
			if s <= last[p] {
				return fmt.Errorf("producer %d: saw sequence %d after %d", p, s, last[p])
			}
			last[p] = s
			if seen[p*n+s] {
				return fmt.Errorf("item (%d, %d) dequeued twice by one consumer", p, s)
			}
			seen[p*n+s] = true
		}
		consumed.Add(int64(len(got)))
	}
	return nil
}
