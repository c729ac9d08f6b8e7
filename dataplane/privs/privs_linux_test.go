package privs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"tunnelplane/bench/topo"
)

// childEnv makes the test binary act as a child that changes its own
// privileges (so the test process keeps its own).
const childEnv = "TUNNELPLANE_PRIVS_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "drop":
		os.Exit(report(childDrop()))
	case "cgo":
		os.Exit(report(childCgo()))
	default:
		fmt.Println("unknown child mode")
		os.Exit(2)
	}
}

func report(problems []string) int {
	if len(problems) == 0 {
		fmt.Println("CHILD OK")
		return 0
	}
	for _, p := range problems {
		fmt.Println("CHILD FAIL:", p)
	}
	return 1
}

// lockedThreads parks n goroutines on their own OS threads, so that the
// process has threads besides the calling one when Drop runs. The returned
// func releases them.
func lockedThreads(n int) (release func()) {
	var ready sync.WaitGroup
	stop := make(chan struct{})
	ready.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			runtime.LockOSThread()
			ready.Done()
			<-stop
			runtime.UnlockOSThread()
		}()
	}
	ready.Wait()
	return func() { close(stop) }
}

func childDrop() (problems []string) {
	fail := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	want := uint64(1)<<unix.CAP_NET_ADMIN | 1<<unix.CAP_NET_RAW

	tmp, err := os.CreateTemp("", "privs-chown-*")
	if err != nil {
		return []string{err.Error()}
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	// Sanity: before Drop, root may give the file away.
	if err := os.Chown(tmp.Name(), 65534, 65534); err != nil {
		return []string{"chown before Drop (the test needs CAP_CHOWN to mean anything): " + err.Error()}
	}
	if err := os.Chown(tmp.Name(), 0, 0); err != nil {
		return []string{"chown back: " + err.Error()}
	}

	release := lockedThreads(6)
	defer release()
	if err := Drop(unix.CAP_NET_ADMIN, unix.CAP_NET_RAW); err != nil {
		return []string{"Drop: " + err.Error()}
	}

	if got, err := Current(); err != nil || got != want {
		fail("Current() = %#x (%s), %v; want %#x (%s)", got, Format(got), err, want, Format(want))
	}
	check := func(where string) {
		ts, err := Threads()
		if err != nil {
			fail("%s: %v", where, err)
			return
		}
		if len(ts) < 2 {
			fail("%s: only %d threads seen", where, len(ts))
		}
		for _, s := range ts {
			if s.Effective != want || s.Permitted != want || s.Inheritable != want || s.Bounding != want || s.Ambient != 0 || !s.NoNewPrivs {
				fail("%s: thread %d: eff %#x prm %#x inh %#x bnd %#x amb %#x nnp %v; want %#x in eff/prm/inh/bnd, no ambient, nnp",
					where, s.TID, s.Effective, s.Permitted, s.Inheritable, s.Bounding, s.Ambient, s.NoNewPrivs, want)
			}
		}
		if !problemsContain(problems, where) {
			fmt.Printf("%s: %d threads, all with exactly %s\n", where, len(ts), Format(want))
		}
	}
	check("after Drop")

	// Threads started after Drop inherit the lowered sets.
	more := lockedThreads(4)
	check("new threads")
	more()

	// CAP_NET_RAW is kept: a raw socket still opens.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
	if err != nil {
		fail("raw socket after Drop: %v", err)
	} else {
		unix.Close(fd)
	}
	// CAP_CHOWN is gone.
	if err := os.Chown(tmp.Name(), 65534, 65534); !errors.Is(err, os.ErrPermission) {
		fail("chown after Drop: got %v, want a permission error", err)
	}
	// The bounding set keeps them gone: raising is refused.
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, unix.CAP_CHOWN, 0, 0); err == nil {
		fail("raising CAP_CHOWN into the ambient set succeeded")
	}
	return problems
}

func problemsContain(problems []string, s string) bool {
	for _, p := range problems {
		if strings.HasPrefix(p, s) {
			return true
		}
	}
	return false
}

func childCgo() []string {
	before, err := Current()
	if err != nil {
		return []string{err.Error()}
	}
	if err := Drop(); !errors.Is(err, ErrCgo) {
		return []string{fmt.Sprintf("Drop in a cgo binary: got %v, want ErrCgo", err)}
	}
	if after, _ := Current(); after != before {
		return []string{fmt.Sprintf("Drop in a cgo binary changed the effective set: %#x -> %#x", before, after)}
	}
	return nil
}

func runChild(t *testing.T, bin, mode string) {
	t.Helper()
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	out, err := cmd.CombinedOutput()
	t.Logf("child (%s):\n%s", mode, out)
	if err != nil || !strings.Contains(string(out), "CHILD OK") {
		t.Fatalf("child %s failed: %v", mode, err)
	}
}

// TestDrop lowers the capabilities of a child process and checks every
// thread of it. Drop needs a binary without cgo: when this test binary links
// cgo (CGO_ENABLED=1, the default with a C compiler, or -race), it builds a
// CGO_ENABLED=0 copy of itself for the child.
func TestDrop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Log("privs: TestDrop needs root: its child drops capabilities it must first hold")
	}
	topo.RequireRoot(t)
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if errors.Is(Supported(), ErrCgo) {
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		bin = filepath.Join(t.TempDir(), "privs-nocgo.test")
		cmd := exec.Command(gobin, "test", "-c", "-o", bin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building a CGO_ENABLED=0 test binary for the child: %v\n%s", err, out)
		}
	}
	runChild(t, bin, "drop")
}

// TestDropCgo checks that Drop refuses, and changes nothing, in a binary
// that links cgo.
func TestDropCgo(t *testing.T) {
	if Supported() == nil {
		t.Skip("this test binary has no cgo; TestDrop covers the real path")
	}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	runChild(t, bin, "cgo")
}

func TestCurrentMatchesProc(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	got, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	s, err := readStatus(fmt.Sprintf("/proc/self/task/%d/status", unix.Gettid()))
	if err != nil {
		t.Fatal(err)
	}
	if got != s.Effective {
		t.Fatalf("Current() = %#x, /proc says CapEff %#x", got, s.Effective)
	}
}

func TestDropRejectsUnknownCap(t *testing.T) {
	if err := Drop(63); err == nil || !strings.Contains(err.Error(), "not known") {
		t.Fatalf("Drop(63) = %v, want an error about an unknown capability", err)
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		mask uint64
		want string
	}{
		{0, "none"},
		{1<<unix.CAP_NET_ADMIN | 1<<unix.CAP_NET_RAW, "cap_net_admin,cap_net_raw"},
		{1 << 50, "cap_50"},
	} {
		if got := Format(c.mask); got != c.want {
			t.Errorf("Format(%#x) = %q, want %q", c.mask, got, c.want)
		}
	}
	if len(names) != unix.CAP_LAST_CAP+1 {
		t.Errorf("names has %d entries, x/sys knows %d capabilities", len(names), unix.CAP_LAST_CAP+1)
	}
}
