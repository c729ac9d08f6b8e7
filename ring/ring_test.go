package ring

import (
	"fmt"
	"strings"
	"testing"
)

// queue is the method set SPSC and MPMC share; the tests run against both.
type queue[T any] interface {
	Enqueue(T) bool
	Dequeue() (T, bool)
	EnqueueBatch([]T) int
	DequeueBatch([]T) int
	Len() int
	Cap() int
}

var (
	_ queue[int] = (*SPSC[int])(nil)
	_ queue[int] = (*MPMC[int])(nil)
)

type kind struct {
	name string
	new  func(capacity int) queue[int]
}

var kinds = []kind{
	{"SPSC", func(c int) queue[int] { return NewSPSC[int](c) }},
	{"MPMC", func(c int) queue[int] { return NewMPMC[int](c) }},
}

func forEachKind(t *testing.T, f func(t *testing.T, k kind)) {
	t.Helper()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) { f(t, k) })
	}
}

func TestCapacityRounding(t *testing.T) {
	tests := []struct{ in, want int }{
		{2, 2}, {3, 4}, {4, 4}, {5, 8}, {7, 8}, {8, 8}, {9, 16},
		{1000, 1024}, {1024, 1024}, {1025, 2048},
	}
	forEachKind(t, func(t *testing.T, k kind) {
		one := 1
		if k.name == "MPMC" {
			one = 2 // see NewMPMC
		}
		for _, tt := range append(tests, struct{ in, want int }{1, one}) {
			t.Run(fmt.Sprint(tt.in), func(t *testing.T) {
				if got := k.new(tt.in).Cap(); got != tt.want {
					t.Errorf("Cap() = %d, want %d", got, tt.want)
				}
			})
		}
	})
}

func TestRoundCapacityLimits(t *testing.T) {
	for _, tt := range []struct{ in, want uint64 }{
		{1<<29 + 1, 1 << 30}, {1 << 30, 1 << 30},
	} {
		if got := roundCapacity("test", int(tt.in)); got != tt.want {
			t.Errorf("roundCapacity(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestCapacityPanics(t *testing.T) {
	forEachKind(t, func(t *testing.T, k kind) {
		for _, c := range []int{0, -1, -1 << 40, 1<<30 + 1} {
			t.Run(fmt.Sprint(c), func(t *testing.T) {
				msg := mustPanic(t, func() { k.new(c) })
				if !strings.Contains(msg, fmt.Sprint(c)) {
					t.Errorf("panic %q does not name the capacity", msg)
				}
			})
		}
	})
}

func TestFullEmpty(t *testing.T) {
	forEachKind(t, func(t *testing.T, k kind) {
		for _, capacity := range []int{1, 2, 5, 64} {
			t.Run(fmt.Sprint(capacity), func(t *testing.T) {
				q := k.new(capacity)
				if _, ok := q.Dequeue(); ok {
					t.Fatal("Dequeue on a new ring succeeded")
				}
				if n := q.DequeueBatch(make([]int, 4)); n != 0 {
					t.Fatalf("DequeueBatch on a new ring = %d", n)
				}
				for i := range q.Cap() {
					if !q.Enqueue(i) {
						t.Fatalf("Enqueue %d of %d failed", i, q.Cap())
					}
					if q.Len() != i+1 {
						t.Fatalf("Len() = %d, want %d", q.Len(), i+1)
					}
				}
				if q.Enqueue(-1) {
					t.Fatal("Enqueue on a full ring succeeded")
				}
				if n := q.EnqueueBatch([]int{-1, -2}); n != 0 {
					t.Fatalf("EnqueueBatch on a full ring = %d", n)
				}
				for i := range q.Cap() {
					v, ok := q.Dequeue()
					if !ok || v != i {
						t.Fatalf("Dequeue = %d, %v; want %d, true", v, ok, i)
					}
				}
				if v, ok := q.Dequeue(); ok {
					t.Fatalf("Dequeue on a drained ring = %d, true", v)
				}
				if q.Len() != 0 {
					t.Fatalf("Len() = %d after drain", q.Len())
				}
			})
		}
	})
}

func TestWraparound(t *testing.T) {
	forEachKind(t, func(t *testing.T, k kind) {
		tests := []struct {
			name          string
			capacity, put int // put elements per round, then take them all
			batch         bool
		}{
			{"single/1", 4, 1, false},
			{"single/3", 4, 3, false},
			{"single/full", 4, 4, false},
			{"batch/3", 4, 3, true},
			{"batch/full", 8, 8, true},
			{"batch/5of8", 8, 5, true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				q := k.new(tt.capacity)
				next, want := 0, 0
				for round := range 10 * tt.capacity {
					if tt.batch {
						vs := make([]int, tt.put)
						for i := range vs {
							vs[i] = next + i
						}
						if n := q.EnqueueBatch(vs); n != tt.put {
							t.Fatalf("round %d: EnqueueBatch = %d, want %d", round, n, tt.put)
						}
						next += tt.put
						out := make([]int, tt.capacity+3)
						n := q.DequeueBatch(out)
						if n != tt.put {
							t.Fatalf("round %d: DequeueBatch = %d, want %d", round, n, tt.put)
						}
						for _, v := range out[:n] {
							if v != want {
								t.Fatalf("round %d: got %d, want %d", round, v, want)
							}
							want++
						}
						continue
					}
					for range tt.put {
						if !q.Enqueue(next) {
							t.Fatalf("round %d: Enqueue failed", round)
						}
						next++
					}
					for range tt.put {
						v, ok := q.Dequeue()
						if !ok || v != want {
							t.Fatalf("round %d: Dequeue = %d, %v; want %d", round, v, ok, want)
						}
						want++
					}
				}
			})
		}
	})
}

func TestBatchPartial(t *testing.T) {
	forEachKind(t, func(t *testing.T, k kind) {
		q := k.new(8)
		seq := func(from, n int) []int {
			s := make([]int, n)
			for i := range s {
				s[i] = from + i
			}
			return s
		}
		steps := []struct {
			name      string
			enq       []int // EnqueueBatch(enq) when non-nil
			deq       int   // else DequeueBatch(make([]int, deq))
			wantN     int
			wantFirst int // first dequeued value
		}{
			{name: "empty batch", enq: []int{}, wantN: 0},
			{name: "put 5", enq: seq(0, 5), wantN: 5},
			{name: "put 6, 3 fit", enq: seq(5, 6), wantN: 3},
			{name: "full", enq: seq(100, 1), wantN: 0},
			{name: "take 3", deq: 3, wantN: 3, wantFirst: 0},
			{name: "put 4 across the end, 3 fit", enq: seq(8, 4), wantN: 3},
			{name: "take 0", deq: 0, wantN: 0},
			{name: "take 20, 8 there", deq: 20, wantN: 8, wantFirst: 3},
			{name: "take from empty", deq: 4, wantN: 0},
			{name: "put more than cap", enq: seq(11, 20), wantN: 8},
			{name: "take all", deq: 8, wantN: 8, wantFirst: 11},
		}
		for _, st := range steps {
			if st.enq != nil {
				if n := q.EnqueueBatch(st.enq); n != st.wantN {
					t.Fatalf("%s: EnqueueBatch = %d, want %d", st.name, n, st.wantN)
				}
				continue
			}
			out := make([]int, st.deq)
			n := q.DequeueBatch(out)
			if n != st.wantN {
				t.Fatalf("%s: DequeueBatch = %d, want %d", st.name, n, st.wantN)
			}
			for i, v := range out[:n] {
				if v != st.wantFirst+i {
					t.Fatalf("%s: out[%d] = %d, want %d", st.name, i, v, st.wantFirst+i)
				}
			}
		}
	})
}

func TestNeedsClear(t *testing.T) {
	type flat struct {
		a, b uint32
		c    [4]uint64
	}
	type withString struct {
		a int
		s string
	}
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"uint32", needsClear[uint32](), false},
		{"float64", needsClear[float64](), false},
		{"flat struct", needsClear[flat](), false},
		{"[0]*int", needsClear[[0]*int](), false},
		{"*int", needsClear[*int](), true},
		{"string", needsClear[string](), true},
		{"[]byte", needsClear[[]byte](), true},
		{"any", needsClear[any](), true},
		{"func()", needsClear[func()](), true},
		{"struct with string", needsClear[withString](), true},
		{"[2]*int", needsClear[[2]*int](), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("needsClear = %v, want %v", tt.got, tt.want)
			}
		})
	}
}

// TestDequeueZeroesPointerSlots checks that a dequeued pointer no longer
// sits in the ring, for every dequeue path.
func TestDequeueZeroesPointerSlots(t *testing.T) {
	vals := make([]*int, 6)
	for i := range vals {
		vals[i] = new(int)
	}
	t.Run("SPSC", func(t *testing.T) {
		r := NewSPSC[*int](4)
		r.Enqueue(vals[0])
		r.Dequeue()
		r.EnqueueBatch(vals[1:5]) // wraps
		r.DequeueBatch(make([]*int, 4))
		for i, p := range r.buf {
			if p != nil {
				t.Errorf("slot %d still holds a pointer", i)
			}
		}
	})
	t.Run("MPMC", func(t *testing.T) {
		r := NewMPMC[*int](4)
		r.Enqueue(vals[0])
		r.Dequeue()
		r.EnqueueBatch(vals[1:5])
		r.DequeueBatch(make([]*int, 4))
		for i, p := range r.vals {
			if p != nil {
				t.Errorf("slot %d still holds a pointer", i)
			}
		}
	})
}

func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	batch := make([]uint64, 32)
	out := make([]uint64, 32)
	spsc := NewSPSC[uint64](64)
	mpmc := NewMPMC[uint64](64)
	pool := NewPool(64, 2048)
	idx := make([]uint32, 32)
	tests := []struct {
		name string
		f    func()
	}{
		{"SPSC/single", func() { spsc.Enqueue(1); spsc.Dequeue() }},
		{"SPSC/batch", func() { spsc.EnqueueBatch(batch); spsc.DequeueBatch(out) }},
		{"MPMC/single", func() { mpmc.Enqueue(1); mpmc.Dequeue() }},
		{"MPMC/batch", func() { mpmc.EnqueueBatch(batch); mpmc.DequeueBatch(out) }},
		{"Pool/single", func() { i, _ := pool.Get(); pool.Put(i) }},
		{"Pool/batch", func() { n := pool.GetBatch(idx); pool.PutBatch(idx[:n]) }},
		{"Pool/Buf", func() { _ = pool.Buf(3) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if a := testing.AllocsPerRun(1000, tt.f); a != 0 {
				t.Errorf("%v allocs per run, want 0", a)
			}
		})
	}
}

// mustPanic runs f and returns the panic message; it fails t if f returns.
func mustPanic(t testing.TB, f func()) (msg string) {
	t.Helper()
	defer func() {
		r := recover()
		if r == nil {
			t.Fatal("did not panic")
		}
		msg = fmt.Sprint(r)
	}()
	f()
	return ""
}
