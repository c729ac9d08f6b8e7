package neigh

import (
	"testing"

	"github.com/google/gopacket/layers"
)

// Each iteration restores the request (a 42- or 86-byte copy, a few ns) and
// answers it, as the data plane would for a fresh frame.
func benchHandle(b *testing.B, req []byte, want Result) {
	r := newTestResponder()
	buf := make([]byte, 2048)
	const off = 64
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		copy(buf[off:], req)
		if res, _ := r.Handle(buf, off, off+len(req)); res != want {
			b.Fatalf("Handle = %v, want %v", res, want)
		}
	}
}

func BenchmarkHandleARP(b *testing.B) { benchHandle(b, arpRequest(b), Replied) }

func BenchmarkHandleNS(b *testing.B) { benchHandle(b, nsFrame(b, defaultNS()), Replied) }

func BenchmarkHandleNSNotForUs(b *testing.B) {
	s := defaultNS()
	s.target = other6
	benchHandle(b, nsFrame(b, s), NotForUs)
}

func BenchmarkHandleNotNeigh(b *testing.B) {
	// An IPv4 frame: the common case on the ingress path, rejected on the
	// Ethernet type.
	f := arpFrame(b, ourMAC, layers.ARPRequest, peerMAC, peer4, our4)
	f[12], f[13] = 0x08, 0x00
	benchHandle(b, f, NotNeigh)
}
