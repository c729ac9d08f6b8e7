// Command tunbench measures tunnelplane end to end against the kernel: it
// builds pairs of network namespaces joined by a veth, connects them
// directly, through kernel vxlan devices and through tunneld with each
// encapsulation, and runs iperf3 TCP (1 and 4 streams), a UDP small-packet
// blaster and ping through each, with the veth offloads on and off. It
// prints a table with ratios to the kernel's vxlan measured in the same
// run, and writes the raw numbers as JSON and a chart as SVG.
//
// It needs root, iperf3, ping and ethtool. Usage:
//
//	go run ./cmd/tunbench [--scenarios direct,kernel-vxlan,tunneld-vxlan,...]
//	    [--offloads on,off] [--duration 5s] [--tunneld PATH] [--quick]
//	    [--json out/tunbench.json] [--svg out/tunbench.svg]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"tunnelplane/bench"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status (0 ok, 1 a
// measurement failed or the run was interrupted, 2 usage).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tunbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scen := fs.String("scenarios", "all", "comma-separated scenarios ("+strings.Join(bench.ScenarioNames(), ",")+") or all")
	offl := fs.String("offloads", "on,off", "underlay veth offload settings to run: on, off or on,off")
	dur := fs.Duration("duration", 5*time.Second, "length of each TCP and UDP run")
	tunneld := fs.String("tunneld", "", "tunneld binary (default: go build one into a temporary directory)")
	quick := fs.Bool("quick", false, "1 s runs and 50 pings (smoke tests)")
	jsonPath := fs.String("json", "out/tunbench.json", "write all raw numbers here as JSON (empty: don't)")
	svgPath := fs.String("svg", "out/tunbench.svg", "write the TCP chart here as SVG (empty: don't)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tunbench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	opt := bench.Options{Duration: *dur, Progress: stderr, Tunneld: *tunneld}
	var err error
	if opt.Scenarios, err = bench.LookupScenarios(*scen); err != nil {
		fmt.Fprintln(stderr, "tunbench:", err)
		return 2
	}
	if opt.Offloads, err = parseOffloads(*offl); err != nil {
		fmt.Fprintln(stderr, "tunbench:", err)
		return 2
	}
	if *quick {
		opt.Quick()
	}
	if opt.Duration < time.Second || opt.Duration > time.Hour {
		fmt.Fprintln(stderr, "tunbench: --duration must be between 1s and 1h")
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "tunbench: needs root (network namespaces, veth pairs, ethtool)")
		return 1
	}

	// Ctrl-C or SIGTERM cancels the context: running commands stop, and
	// every namespace and tunneld is torn down before exiting. Further
	// signals are swallowed until then (teardown is bounded).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "tunbench: %v: stopping and cleaning up...\n", s)
			cancel()
		case <-ctx.Done():
		}
	}()

	if bench.NeedsTunneld(opt.Scenarios) && opt.Tunneld == "" {
		dir, err := os.MkdirTemp("", "tunbench-bin")
		if err != nil {
			fmt.Fprintln(stderr, "tunbench:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		fmt.Fprintln(stderr, "building tunneld...")
		if opt.Tunneld, err = bench.BuildTunneld(ctx, dir); err != nil {
			fmt.Fprintln(stderr, "tunbench:", err)
			return 1
		}
	}

	rep, runErr := bench.Run(ctx, opt)
	if rep == nil {
		fmt.Fprintln(stderr, "tunbench:", runErr)
		return 1
	}
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, rep.Table())
	code := 0
	if *jsonPath != "" {
		if err := rep.WriteJSON(*jsonPath); err != nil {
			fmt.Fprintln(stderr, "tunbench:", err)
			code = 1
		} else {
			fmt.Fprintln(stdout, "wrote", *jsonPath)
		}
	}
	if *svgPath != "" {
		if err := rep.WriteSVG(*svgPath); err != nil {
			fmt.Fprintln(stderr, "tunbench:", err)
			code = 1
		} else {
			fmt.Fprintln(stdout, "wrote", *svgPath)
		}
	}
	if runErr != nil {
		if errors.Is(runErr, context.Canceled) {
			fmt.Fprintln(stderr, "tunbench: interrupted; results above are partial")
		} else {
			fmt.Fprintln(stderr, "tunbench:", runErr)
		}
		code = 1
	}
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(stderr, "tunbench: %s: %s\n", r.Key(), r.Error)
			code = 1
		}
	}
	return code
}

func parseOffloads(s string) ([]bool, error) {
	var out []bool
	seen := map[bool]bool{}
	for _, f := range strings.Split(s, ",") {
		var v bool
		switch strings.TrimSpace(f) {
		case "on":
			v = true
		case "off":
			v = false
		case "":
			continue
		default:
			return nil, fmt.Errorf("--offloads: %q is neither on nor off", f)
		}
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--offloads: give on, off or on,off")
	}
	return out, nil
}
