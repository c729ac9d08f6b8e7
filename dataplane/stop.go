package dataplane

import (
	"errors"
	"fmt"
	"net"
	"os"

	"tunnelplane/dataplane/stats"
)

// How a pipeline stage stops: what it reports, what it logs, and what
// becomes of the packets it still held.

// fatal reports that a stage stopped on err. During shutdown it says
// nothing: Close closes the files the stages block on. Otherwise a closed
// file means it went away underneath us (the kernel answers EBADFD on the
// queues of a deleted TUN device, which wireguard-go's tun reports as
// os.ErrClosed).
func (d *Dataplane) fatal(stage string, err error) {
	select {
	case <-d.done:
		return
	default:
	}
	if isClosed(err) {
		err = fmt.Errorf("%s: %w (device deleted, or socket closed, underneath tunneld)", stage, err)
	} else {
		err = fmt.Errorf("%s: %w", stage, err)
	}
	d.log.Error("pipeline stage stopped", "stage", stage, "err", err)
	select {
	case d.errc <- err:
	default:
	}
}

// logUnlessStopping logs a warning, except during shutdown (Close closes
// the files the stages write to).
func (d *Dataplane) logUnlessStopping(msg string, args ...any) {
	select {
	case <-d.done:
	default:
		d.log.Warn(msg, args...)
	}
}

// dropNotHandedOn returns packets a stopping stage could not hand on.
func (d *Dataplane) dropNotHandedOn(ps []packet, c *stats.Counters) {
	for _, p := range ps {
		c.Drop(stats.DropRingFull)
		if !p.borrowed {
			d.bufs.put(p.idx)
		}
	}
}

// isClosed says err is about a closed file or socket.
func isClosed(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed)
}
