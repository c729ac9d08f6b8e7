package flannel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"tunnelplane/dataplane/config"
)

// debouncer turns a burst of changes into one report: it fires a quiet
// time after the last poke, or maxDelay after the first one under a
// steady stream. Not safe for concurrent use: one loop owns it.
type debouncer struct {
	quiet       time.Duration
	timer       *time.Timer
	dirtySince  time.Time
	nowFunc     func() time.Time
	maxDelayDur time.Duration
}

func newDebouncer(quiet time.Duration) *debouncer {
	if quiet <= 0 {
		quiet = DefaultDebounce
	}
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &debouncer{quiet: quiet, timer: t, nowFunc: time.Now, maxDelayDur: maxDelay}
}

// poke notes a change and (re)arms the timer.
func (d *debouncer) poke() {
	now := d.nowFunc()
	if d.dirtySince.IsZero() {
		d.dirtySince = now
	}
	wait := d.quiet
	if left := d.maxDelayDur - now.Sub(d.dirtySince); left < wait {
		wait = max(left, 0)
	}
	d.timer.Reset(wait)
}

// c fires when a report is due; the owner then calls fired.
func (d *debouncer) c() <-chan time.Time { return d.timer.C }

func (d *debouncer) fired() { d.dirtySince = time.Time{} }

// reset forgets pending changes (a full resync reports at once).
func (d *debouncer) reset() {
	d.timer.Stop()
	d.dirtySince = time.Time{}
}

func (d *debouncer) stop() { d.timer.Stop() }

// retry runs f until it succeeds, fails permanently (a permanent error),
// or ctx is done, each try bounded to 5 s, sleeping with exponential
// backoff between transient failures, counting each in errs and logging
// it as msg.
func retry(ctx context.Context, log *slog.Logger, errs *atomic.Uint64, msg, what string, f func(ctx context.Context) error) error {
	wait := minBackoff
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(rctx)
		cancel()
		var perm permanent
		switch {
		case err == nil:
			return nil
		case errors.As(err, &perm):
			return perm.err
		case ctx.Err() != nil:
			return fmt.Errorf("flannel: %s: %w (last error: %v)", what, ctx.Err(), err)
		}
		errs.Add(1)
		log.Warn(msg, "what", what, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("flannel: %s: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, maxBackoff)
	}
}

// permanent marks an error retry must not retry.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }

// ignoredNotes logs each ignored lease once per subnet, backend and
// address, and counts every one it logs.
type ignoredNotes struct {
	mu     sync.Mutex
	warned map[string]string // subnet key -> backend/PublicIP logged
}

func (in *ignoredNotes) note(ignored []Lease, local /* this node's PublicIP */ string, backend string, st *Stats, log *slog.Logger) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.warned == nil {
		in.warned = map[string]string{}
	}
	for _, l := range ignored {
		k, v := SubnetKey(l.Subnet), l.Backend()+"/"+l.PublicIP.String()
		if in.warned[k] == v {
			continue
		}
		in.warned[k] = v
		st.IgnoredLeases.Add(1)
		if l.PublicIP.String() == local {
			log.Warn("flannel lease with this node's PublicIP under another subnet ignored (stale)", "subnet", l.Subnet)
		} else {
			log.Warn("flannel lease of another backend ignored", "subnet", l.Subnet, "public_ip", l.PublicIP, "backend", l.Backend(), "ours", backend)
		}
	}
}

// snapshots turns the leases a member knows into peer snapshots for its
// Run's fn: each time they differ from the last one reported (the first
// is always reported, empty or not), counting each and logging ignored
// leases once.
type snapshots struct {
	own     netip.Prefix
	local   netip.Addr
	backend string
	st      *Stats
	log     *slog.Logger
	ignored *ignoredNotes
	fn      func([]config.Peer)
	last    []config.Peer
}

func (s *snapshots) report(leases []Lease) {
	peers, ignored := Peers(leases, s.own, s.local, s.backend)
	s.ignored.note(ignored, s.local.String(), s.backend, s.st, s.log)
	if s.last != nil && peersEqual(peers, s.last) {
		return
	}
	s.last = peers
	if s.last == nil {
		s.last = []config.Peer{}
	}
	s.st.Snapshots.Add(1)
	s.fn(peers)
}

// leaseList is the leases of a map, in no particular order.
func leaseList(m map[string]Lease) []Lease {
	all := make([]Lease, 0, len(m))
	for _, l := range m {
		all = append(all, l)
	}
	return all
}
