package topo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where iproute2 (and therefore `ip netns exec`) looks for named
// namespaces.
const netnsDir = "/run/netns"

var (
	runID     = newRunID()  // per process: keeps parallel runs apart
	nsCounter atomic.Uint32 // names are tp-<pid base 36>-<random>-<counter>[-label]

	prepareMu   sync.Mutex
	prepareDone bool
)

func newRunID() string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return strconv.FormatInt(int64(os.Getpid()), 36) + "-" + hex.EncodeToString(b[:])
}

// Path returns the namespace's bind-mount path (/run/netns/NAME), usable with
// setns(2), `nsenter --net=PATH` or netns.GetFromPath.
func (n *NS) Path() string { return filepath.Join(netnsDir, n.Name) }

// Handle returns a netlink handle bound to the namespace. It is owned by the
// NS (do not Close it) and is safe for concurrent use.
func (n *NS) Handle() *netlink.Handle { return n.handle }

// Fd returns the namespace's file descriptor (for unix.Setns or
// netlink.NsFd). It is owned by the NS and closed by Close.
func (n *NS) Fd() int { return n.fd }

// BuildNS creates one empty named namespace with lo up. label (may be empty)
// is appended to the generated name. The caller must Close it.
func BuildNS(label string) (*NS, error) {
	if err := prepareNetnsDir(); err != nil {
		return nil, err
	}
	name := fmt.Sprintf("tp-%s-%d", runID, nsCounter.Add(1))
	if label != "" {
		name += "-" + label
	}
	fd, err := createNamed(name)
	if err != nil {
		return nil, fmt.Errorf("create netns %s: %w", name, err)
	}
	n := &NS{Name: name, fd: fd}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.handle, err = netlink.NewHandleAt(netns.NsHandle(fd))
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("netlink handle in %s: %w", name, err)
	}
	lo, err := n.handle.LinkByName("lo")
	if err == nil {
		err = n.handle.LinkSetUp(lo)
	}
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("lo up in %s: %w", name, err)
	}
	return n, nil
}

// prepareNetnsDir makes /run/netns a shared mount point, as `ip netns add`
// does. Without this, a later `ip netns add` by anyone would bind /run/netns
// onto itself recursively, copying our mounts underneath its own, and our
// unmount would then leave a hidden copy keeping the namespace alive.
func prepareNetnsDir() error {
	prepareMu.Lock()
	defer prepareMu.Unlock()
	if prepareDone {
		return nil
	}
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if err = unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
	if err != nil {
		return fmt.Errorf("prepare %s: %w", netnsDir, err)
	}
	prepareDone = true
	return nil
}

// createNamed creates a new network namespace, bind-mounts it at
// /run/netns/NAME and returns an open fd for it. The unshare happens on a
// goroutine locked to its thread that never unlocks: the thread, now in the
// new namespace, is discarded by the runtime when the goroutine ends.
func createNamed(name string) (int, error) {
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // deliberately never unlocked
		fd, err := func() (int, error) {
			path := filepath.Join(netnsDir, name)
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return -1, fmt.Errorf("unshare: %w", err)
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
			if err != nil {
				return -1, err // exists: someone else's, leave it alone
			}
			f.Close()
			self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
			if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
				os.Remove(path)
				return -1, fmt.Errorf("bind mount: %w", err)
			}
			fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				unix.Unmount(path, unix.MNT_DETACH)
				os.Remove(path)
				return -1, err
			}
			return fd, nil
		}()
		ch <- result{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}

// Close kills processes started through Command that still run, releases
// the namespace's handles and removes it. Links inside it vanish with it.
// Close is idempotent.
func (n *NS) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		if n.cancel != nil {
			n.cancel()
		}
		if n.handle != nil {
			n.handle.Close()
		}
		if n.fd >= 0 {
			unix.Close(n.fd)
			n.fd = -1
		}
		path := n.Path()
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", path, err))
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// Do runs fn on an OS thread switched into the namespace and waits for it.
// fn runs on its own goroutine (so it must not call t.FailNow; return an
// error instead — a panic is re-raised in the caller). The thread is never
// reused afterwards, so the namespace switch cannot leak to other goroutines.
// Sockets created inside fn stay in the namespace; goroutines started inside
// fn do not run in it.
func (n *NS) Do(fn func() error) error {
	type result struct {
		err      error
		panicked bool
		panicVal any
		goexit   bool
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // deliberately never unlocked: the thread dies with the goroutine
		var r result
		normal := false
		defer func() {
			if !normal {
				if p := recover(); p != nil {
					r.panicked, r.panicVal = true, p
				} else {
					r.goexit = true
				}
			}
			ch <- r
		}()
		if n.fd < 0 {
			r.err = fmt.Errorf("netns %s is closed", n.Name)
		} else if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			r.err = fmt.Errorf("setns %s: %w", n.Name, err)
		} else {
			r.err = fn()
		}
		normal = true
	}()
	r := <-ch
	switch {
	case r.panicked:
		panic(r.panicVal)
	case r.goexit:
		runtime.Goexit()
	}
	return r.err
}

// Command returns an exec.Cmd that runs name inside the namespace (through
// `ip netns exec`). The process is killed when ctx ends or when the NS is
// closed, whichever comes first.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(n.ctx, cancel)
	return exec.CommandContext(cctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Sysctl writes a sysctl inside the namespace, key in dotted or slash form
// ("net.ipv4.ip_forward" or "net/ipv4/ip_forward").
func (n *NS) Sysctl(key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	if strings.Contains(key, "/") {
		path = "/proc/sys/" + key
	}
	return n.Do(func() error {
		// /proc/sys/net resolves against the opening thread's namespace.
		return os.WriteFile(path, []byte(value), 0o644)
	})
}
