package ring

import (
	"runtime"
	"sync"
	"testing"
)

// Every benchmark moves b.N items, so ns/op is ns per item and Mitems/s the
// throughput, whatever the batch size.

const benchCap = 1024

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mitems/s")
}

// backoff spins briefly on a full or empty ring, then yields: with two Ps
// the other side is usually running and a yield costs more than the wait.
func backoff(spins *int) {
	*spins++
	if *spins > 32 {
		runtime.Gosched()
	}
}

// ringBench abstracts the two rings for the cross-goroutine benchmarks.
type ringBench interface {
	Enqueue(uint64) bool
	Dequeue() (uint64, bool)
	EnqueueBatch([]uint64) int
	DequeueBatch([]uint64) int
}

func benchSameGoroutine(b *testing.B, r ringBench, batch int) {
	b.ReportAllocs()
	buf := make([]uint64, batch)
	b.ResetTimer()
	if batch == 1 {
		for i := range b.N {
			r.Enqueue(uint64(i))
			r.Dequeue()
		}
	} else {
		for i := 0; i < b.N; i += batch {
			r.EnqueueBatch(buf)
			r.DequeueBatch(buf)
		}
	}
	b.StopTimer()
	reportRate(b)
}

// benchProducersConsumers moves b.N items from producers goroutines to
// consumers goroutines (the benchmark goroutine is one of the consumers).
func benchProducersConsumers(b *testing.B, r ringBench, producers, consumers, batch int) {
	b.ReportAllocs()
	share := func(n, parts, i int) int { // n split into parts, part i
		return n/parts + btoi(i < n%parts)
	}
	var wg sync.WaitGroup
	b.ResetTimer()
	for p := range producers {
		wg.Go(func() { benchProduce(r, share(b.N, producers, p), batch) })
	}
	for c := 1; c < consumers; c++ {
		wg.Go(func() { benchConsume(r, share(b.N, consumers, c), batch) })
	}
	benchConsume(r, share(b.N, consumers, 0), batch)
	wg.Wait()
	b.StopTimer()
	reportRate(b)
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

func benchProduce(r ringBench, n, batch int) {
	spins := 0
	if batch == 1 {
		for i := 0; i < n; {
			if r.Enqueue(uint64(i)) {
				i++
				spins = 0
			} else {
				backoff(&spins)
			}
		}
		return
	}
	buf := make([]uint64, batch)
	for i := 0; i < n; {
		m := r.EnqueueBatch(buf[:min(batch, n-i)])
		if m == 0 {
			backoff(&spins)
			continue
		}
		spins = 0
		i += m
	}
}

func benchConsume(r ringBench, n, batch int) {
	spins := 0
	if batch == 1 {
		for i := 0; i < n; {
			if _, ok := r.Dequeue(); ok {
				i++
				spins = 0
			} else {
				backoff(&spins)
			}
		}
		return
	}
	buf := make([]uint64, batch)
	for i := 0; i < n; {
		m := r.DequeueBatch(buf[:min(batch, n-i)])
		if m == 0 {
			backoff(&spins)
			continue
		}
		spins = 0
		i += m
	}
}

func BenchmarkSPSC(b *testing.B) {
	b.Run("single/1goroutine", func(b *testing.B) { benchSameGoroutine(b, NewSPSC[uint64](benchCap), 1) })
	b.Run("batch32/1goroutine", func(b *testing.B) { benchSameGoroutine(b, NewSPSC[uint64](benchCap), 32) })
	b.Run("single/1P1C", func(b *testing.B) { benchProducersConsumers(b, NewSPSC[uint64](benchCap), 1, 1, 1) })
	b.Run("batch32/1P1C", func(b *testing.B) { benchProducersConsumers(b, NewSPSC[uint64](benchCap), 1, 1, 32) })
}

func BenchmarkMPMC(b *testing.B) {
	b.Run("single/1goroutine", func(b *testing.B) { benchSameGoroutine(b, NewMPMC[uint64](benchCap), 1) })
	b.Run("batch32/1goroutine", func(b *testing.B) { benchSameGoroutine(b, NewMPMC[uint64](benchCap), 32) })
	b.Run("single/1P1C", func(b *testing.B) { benchProducersConsumers(b, NewMPMC[uint64](benchCap), 1, 1, 1) })
	b.Run("batch32/1P1C", func(b *testing.B) { benchProducersConsumers(b, NewMPMC[uint64](benchCap), 1, 1, 32) })
	b.Run("single/2P2C", func(b *testing.B) { benchProducersConsumers(b, NewMPMC[uint64](benchCap), 2, 2, 1) })
	b.Run("batch32/2P2C", func(b *testing.B) { benchProducersConsumers(b, NewMPMC[uint64](benchCap), 2, 2, 32) })
}

func BenchmarkPool(b *testing.B) {
	b.Run("single", func(b *testing.B) {
		p := NewPool(benchCap, 2048)
		b.ReportAllocs()
		for b.Loop() {
			i, _ := p.Get()
			p.Put(i)
		}
		reportRate(b)
	})
	b.Run("batch32", func(b *testing.B) {
		p := NewPool(benchCap, 2048)
		idx := make([]uint32, 32)
		b.ReportAllocs()
		for i := 0; i < b.N; i += len(idx) {
			n := p.GetBatch(idx)
			p.PutBatch(idx[:n])
		}
		reportRate(b)
	})
	b.Run("single/parallel", func(b *testing.B) {
		p := NewPool(benchCap, 2048)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if i, ok := p.Get(); ok {
					p.Put(i)
				}
			}
		})
		reportRate(b)
	})
}
