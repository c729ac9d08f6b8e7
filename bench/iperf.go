package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"tunnelplane/bench/topo"
)

// TCPResult is one iperf3 TCP run as the client saw it.
type TCPResult struct {
	Streams       int     `json:"streams"`
	Seconds       float64 `json:"seconds"`         // measured interval (receiver side)
	Bytes         int64   `json:"bytes"`           // bytes received by the server
	BitsPerSecond float64 `json:"bits_per_second"` // receiver-side rate
	SentBytes     int64   `json:"sent_bytes"`
	Retransmits   int64   `json:"retransmits"`
}

// Gbps is the receiver-side rate in Gbit/s.
func (r TCPResult) Gbps() float64 { return r.BitsPerSecond / 1e9 }

// iperfJSON is the part of `iperf3 -J` output that the harness reads.
type iperfJSON struct {
	Error string `json:"error"`
	End   struct {
		SumSent struct {
			Seconds       float64 `json:"seconds"`
			Bytes         int64   `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   int64   `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Seconds       float64 `json:"seconds"`
			Bytes         int64   `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// ParseIperfJSON reads the output of an `iperf3 -c ... -J` TCP client run.
// An "error" field in the JSON (iperf3 reports failures there, with exit
// status 1) is returned as an error.
func ParseIperfJSON(data []byte) (TCPResult, error) {
	var j iperfJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return TCPResult{}, fmt.Errorf("iperf3 JSON: %w", err)
	}
	if j.Error != "" {
		return TCPResult{}, fmt.Errorf("iperf3: %s", j.Error)
	}
	r := TCPResult{
		Seconds:       j.End.SumReceived.Seconds,
		Bytes:         j.End.SumReceived.Bytes,
		BitsPerSecond: j.End.SumReceived.BitsPerSecond,
		SentBytes:     j.End.SumSent.Bytes,
		Retransmits:   j.End.SumSent.Retransmits,
	}
	if r.Bytes <= 0 || r.Seconds <= 0 || math.IsNaN(r.BitsPerSecond) {
		return r, errors.New("iperf3: no data received (end.sum_received is empty)")
	}
	return r, nil
}

// IperfOptions is one TCP throughput run from client to server.
type IperfOptions struct {
	Client, Server *topo.NS
	Dst            netip.Addr // server address (bound with -B)
	Port           int        // 0: 5201
	Streams        int        // -P; 0 means 1
	Duration       time.Duration
	Bin            string // 0: "iperf3"
}

// RunIperf starts `iperf3 -s -1` in the server namespace, waits until it
// listens, runs the client with -J for the duration and parses the result.
// Both processes are bounded by ctx and a timeout of duration + 20 s.
func RunIperf(ctx context.Context, o IperfOptions) (TCPResult, error) {
	if !topo.Allowed(o.Dst) {
		return TCPResult{}, fmt.Errorf("iperf3: refusing destination %s outside the project's ranges", o.Dst)
	}
	if o.Port == 0 {
		o.Port = 5201
	}
	if o.Streams <= 0 {
		o.Streams = 1
	}
	if o.Bin == "" {
		o.Bin = "iperf3"
	}
	secs := int(math.Ceil(o.Duration.Seconds()))
	if secs < 1 {
		secs = 1
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+20*time.Second)
	defer cancel()
	port := strconv.Itoa(o.Port)

	srv := o.Server.Command(ctx, o.Bin, "-s", "-1", "-B", o.Dst.String(), "-p", port)
	var srvOut bytes.Buffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	srv.WaitDelay = 2 * time.Second
	if err := srv.Start(); err != nil {
		return TCPResult{}, fmt.Errorf("iperf3 server: %w", err)
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Wait() }()
	defer func() {
		select {
		case <-srvDone:
		case <-time.After(3 * time.Second):
			srv.Process.Kill()
			<-srvDone
		}
	}()
	if err := waitListen(ctx, o.Server, o.Port, srvDone); err != nil {
		srv.Process.Kill()
		return TCPResult{}, fmt.Errorf("iperf3 server: %w: %s", err, strings.TrimSpace(srvOut.String()))
	}
	cli := o.Client.Command(ctx, o.Bin, "-c", o.Dst.String(), "-p", port, "-t", strconv.Itoa(secs),
		"-P", strconv.Itoa(o.Streams), "-J")
	cli.WaitDelay = 2 * time.Second
	out, err := cli.Output()
	r, perr := ParseIperfJSON(out)
	if perr != nil {
		if err != nil {
			perr = fmt.Errorf("%w (%v)", perr, err)
		}
		srv.Process.Kill()
		return r, perr
	}
	r.Streams = o.Streams
	return r, nil
}

// waitListen polls the namespace's TCP table until something listens on
// port (iperf3 gives no readiness signal; connecting to probe it would use
// up its one-off test).
func waitListen(ctx context.Context, ns *topo.NS, port int, exited <-chan error) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, err := listening(ns, port)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited before listening: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on port %d after 10s", port)
		}
	}
}

func listening(ns *topo.NS, port int) (bool, error) {
	var found bool
	err := ns.Do(func() error {
		for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			data, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			if ListensOn(data, port) {
				found = true
				return nil
			}
		}
		return nil
	})
	return found, err
}

// ListensOn reports whether a /proc/net/tcp{,6} table has a socket in
// state LISTEN (0A) on the local port.
func ListensOn(table []byte, port int) bool {
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(bytes.NewReader(table))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[0] == "sl" {
			continue
		}
		if strings.HasSuffix(f[1], want) && f[3] == "0A" {
			return true
		}
	}
	return false
}
