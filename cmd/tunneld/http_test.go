package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tunnelplane/dataplane/config"
)

// The operator listener: /debug/pprof/ answers only with metrics.pprof on;
// /metrics and /healthz always.
func TestHTTPPProfOffByDefault(t *testing.T) {
	for _, on := range []bool{false, true} {
		name := "pprof off"
		if on {
			name = "pprof on"
		}
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "tunneld_test_total", Help: "test"}))
			_, addr := startHTTP(t, config.Metrics{Listen: "127.0.0.1:0", PProf: on}, reg)
			pprofCode := http.StatusNotFound
			if on {
				pprofCode = http.StatusOK
			}
			for _, tc := range []struct {
				path string
				code int
				body string
			}{
				{"/healthz", http.StatusOK, "ok"},
				{"/metrics", http.StatusOK, "tunneld_test_total"},
				{"/debug/pprof/", pprofCode, ""},
				{"/debug/pprof/goroutine?debug=1", pprofCode, ""},
				{"/debug/pprof/cmdline", pprofCode, ""},
				{"/debug/pprof/symbol", pprofCode, ""},
			} {
				code, body := get(t, "http://"+addr+tc.path)
				if code != tc.code {
					t.Errorf("GET %s: %d, want %d", tc.path, code, tc.code)
				}
				if tc.code == http.StatusOK && !strings.Contains(body, tc.body) {
					t.Errorf("GET %s: body lacks %q", tc.path, tc.body)
				}
				if on && tc.path == "/debug/pprof/goroutine?debug=1" && !strings.HasPrefix(body, "goroutine profile:") {
					t.Errorf("GET %s: not a goroutine profile: %.60q", tc.path, body)
				}
			}
		})
	}
}

// startHTTP runs serveHTTP on a free loopback port and closes it at
// cleanup; it returns the address, taken from the listener's log line.
func startHTTP(tb testing.TB, cfg config.Metrics, reg *prometheus.Registry) (*http.Server, string) {
	tb.Helper()
	var logBuf bytes.Buffer // written before serveHTTP returns, only then
	srv, err := serveHTTP(cfg, reg, slog.New(slog.NewTextHandler(&logBuf, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	m := regexp.MustCompile(`msg="http listener" addr=(\S+) pprof=(\w+)`).FindStringSubmatch(logBuf.String())
	if m == nil {
		tb.Fatalf("no listener line in the log: %q", logBuf.String())
	}
	if want := fmt.Sprint(cfg.PProf); m[2] != want {
		tb.Errorf("listener logs pprof=%s, want %s", m[2], want)
	}
	return srv, m[1]
}

func get(tb testing.TB, url string) (int, string) {
	tb.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}
