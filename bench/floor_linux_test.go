package bench

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"tunnelplane/encap"
)

// The inputs of the floor model in docs/BENCHMARKS.md ("How close to the
// floor"): what one copy of a byte costs (user space memmove, and the
// kernel's copy across the user/kernel line, a pipe's write+read), what a
// checksum pass costs, and what an empty system call costs. Run with
//
//	go test -run '^$' -bench Floor -benchtime 2s ./bench/

var floorSink uint64

func BenchmarkFloorMemmove64K(b *testing.B) {
	src, dst := make([]byte, 64<<10), make([]byte, 64<<10)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		copy(dst, src)
	}
}

// A pipe moves each byte twice across the user/kernel line (write copies
// in, read copies out): SetBytes counts the bytes once, so the figure is
// the cost of two kernel copies.
func BenchmarkFloorPipe64K(b *testing.B) {
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 1<<20); err != nil {
		b.Skipf("F_SETPIPE_SZ: %v", err)
	}
	buf := make([]byte, 64<<10)
	rfd, wfd := int(r.Fd()), int(w.Fd())
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := unix.Write(wfd, buf); err != nil {
			b.Fatal(err)
		}
		for n := 0; n < len(buf); {
			m, err := unix.Read(rfd, buf[n:])
			if err != nil {
				b.Fatal(err)
			}
			n += m
		}
	}
}

func BenchmarkFloorChecksum64K(b *testing.B) {
	d := make([]byte, 64<<10)
	for i := range d {
		d[i] = byte(i)
	}
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		floorSink += encap.Sum(d, 0)
	}
}

// An empty system call (getppid): the fixed cost of every read, write,
// recvmmsg and sendmmsg before it does anything.
func BenchmarkFloorSyscall(b *testing.B) {
	for b.Loop() {
		unix.Getppid()
	}
}
