package flannel

import (
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// kubeListTimeout bounds one list request (a page of Nodes), and the
// wait for a watch's answer. An unbounded request that met a half-dead
// connection would hold the reflector until HTTP/2's health check (30 s
// idle + 15 s ping) gave up on it.
const kubeListTimeout = 15 * time.Second

// nodeLW is the reflector's lister-watcher on Nodes: client-go's, with
// each list request and the start of each watch bounded, as every etcd
// request is, and each failed
// list or watch request counted and logged with how long the API server
// has been failing, so that a slow recovery explains itself in tunneld's
// log (the reflector's own messages about retries are below klog's
// default verbosity).
//
// It asks the reflector for a plain list and then a watch, not the
// streaming list (WatchListClient): that one is a watch whose initial
// events have no bound but the watch's timeout (minutes), where a list
// has kubeListTimeout.
type nodeLW struct {
	lw cache.ListerWatcherWithContext
	m  *KubeMember

	mu      sync.Mutex
	since   time.Time // the first failure of the current streak; zero while healthy
	failed  int       // failures in the current streak
	lastErr string
}

func newNodeLW(m *KubeMember) *nodeLW {
	lw := cache.NewListWatchFromClient(m.cs.CoreV1().RESTClient(), "nodes", "", fields.Everything())
	return &nodeLW{lw: cache.ToListerWatcherWithContext(lw), m: m}
}

// IsWatchListSemanticsUnSupported tells the reflector to list, then watch.
func (*nodeLW) IsWatchListSemanticsUnSupported() bool { return true }

// List and Watch are for callers without a context; the reflector calls
// the WithContext methods.
func (l *nodeLW) List(opts metav1.ListOptions) (runtime.Object, error) {
	return l.ListWithContext(context.Background(), opts)
}

func (l *nodeLW) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return l.WatchWithContext(context.Background(), opts)
}

func (l *nodeLW) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	if opts.ResourceVersion != "" && opts.ResourceVersion != "0" && opts.Continue == "" {
		// A relist after a broken watch asks for Nodes not older than the
		// last version seen, which kube-apiserver serves from its watch
		// cache once the cache has caught up. After an API server restart
		// in CI that list hung past kubeListTimeout twice in a row (46 s
		// without a Node added meanwhile). A consistent read (version "")
		// is at least as fresh, which is all the reflector needs, and
		// goes to etcd while the cache is not ready.
		opts.ResourceVersion, opts.ResourceVersionMatch = "", ""
	}
	rctx, cancel := context.WithTimeout(ctx, kubeListTimeout)
	defer cancel()
	obj, err := l.lw.ListWithContext(rctx, opts)
	l.note(ctx, "list", err)
	return obj, err
}

// WatchWithContext starts a watch that must answer (send its response
// headers) within kubeListTimeout; after that, it runs until the
// reflector stops it. The bound cannot be a deadline on the context,
// which would end the stream: a timer cancels the request if it has not
// returned by then.
func (l *nodeLW) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	wctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(kubeListTimeout, cancel)
	w, err := l.lw.WatchWithContext(wctx, opts)
	if !timer.Stop() {
		if err == nil {
			w.Stop()
		}
		err = fmt.Errorf("watch of Nodes: no answer within %s", kubeListTimeout)
	}
	if err != nil {
		cancel()
		l.note(ctx, "watch", err)
		return nil, err
	}
	l.note(ctx, "watch", nil)
	return &cancelOnStop{Interface: w, cancel: cancel}, nil
}

// cancelOnStop releases the watch's context when the reflector stops it.
type cancelOnStop struct {
	watch.Interface
	cancel context.CancelFunc
}

func (c *cancelOnStop) Stop() {
	c.Interface.Stop()
	c.cancel()
}

// note logs the first failure of a streak and every tenth after it, and
// the first success after one, with how long it lasted.
func (l *nodeLW) note(ctx context.Context, what string, err error) {
	if err != nil && ctx.Err() != nil {
		return // Close, not the API server
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if err == nil {
		if l.failed > 0 {
			l.m.log.Info("Kubernetes API: Nodes reachable again", "request", what,
				"failed_requests", l.failed, "for", now.Sub(l.since).Round(time.Millisecond), "last_err", l.lastErr)
		}
		l.failed, l.since = 0, time.Time{}
		return
	}
	l.m.st.ControlPlaneErrors.Add(1)
	if l.failed == 0 {
		l.since = now
	}
	l.failed++
	l.lastErr = err.Error()
	if l.failed == 1 || l.failed%10 == 0 {
		l.m.log.Warn("Kubernetes API: Node request failed; keeping the last peers, retrying", "request", what,
			"err", err, "failed_requests", l.failed, "for", now.Sub(l.since).Round(time.Millisecond))
	}
}
