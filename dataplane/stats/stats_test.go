package stats

import (
	"testing"

	"tunnelplane/encap"
)

func TestDropNames(t *testing.T) {
	seen := map[string]bool{}
	for d := range NumDrops {
		s := d.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Fatalf("drop %d: name %q (empty, unknown or repeated)", d, s)
		}
		seen[s] = true
	}
	if got := Drop(encap.DropTruncated).String(); got != encap.DropTruncated.String() {
		t.Fatalf("wire reason by cast: %q", got)
	}
	if NumDrops.String() != "unknown" {
		t.Fatalf("past the end: %q", NumDrops.String())
	}
}

func TestHist(t *testing.T) {
	var h Hist
	h.Observe(1)
	h.ObserveN(3, 2)
	h.Observe(1000)
	h.ObserveN(5, 0)
	var s HistSum
	s.Add(&h)
	want := [len(HistBuckets) + 1]uint64{1, 0, 2, 0, 0, 0, 0, 0, 1}
	if s.Buckets != want || s.Sum != 1+6+1000 || s.Count() != 4 {
		t.Fatalf("buckets %v sum %d count %d", s.Buckets, s.Sum, s.Count())
	}
}
