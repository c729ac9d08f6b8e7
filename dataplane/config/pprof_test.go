package config

import (
	"strings"
	"testing"
)

// metrics.pprof: off unless the file turns it on, shown by Marshal (and so
// by tunneld --print-config), and only with a listener to serve it on.
func TestMetricsPProf(t *testing.T) {
	c := mustParse(t, withBase())
	if c.Metrics.PProf {
		t.Errorf("pprof on by default")
	}
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "pprof: false") {
		t.Errorf("Marshal does not show metrics.pprof:\n%s", out)
	}

	c = mustParse(t, withBase("metrics: {listen: 127.0.0.1:9109, pprof: true}"))
	if !c.Metrics.PProf || c.Metrics.Listen != "127.0.0.1:9109" {
		t.Errorf("metrics %+v, want pprof on 127.0.0.1:9109", c.Metrics)
	}
	checkRoundTrip(t, c)
	if out, _ := c.Marshal(); !strings.Contains(string(out), "pprof: true") {
		t.Errorf("Marshal does not show pprof: true:\n%s", out)
	}

	tests := []struct {
		name      string
		data      []byte
		line, col int
		path      string
		msg       string
	}{
		{"not a bool", withBase("metrics:", "  pprof: yes please"), 6, 10, "metrics.pprof", "must be true or false"},
		{"typo", withBase("metrics:", "  prof: true"), 6, 3, "metrics.prof", `did you mean "pprof"`},
		{"no listener", withBase("metrics:", `  listen: ""`, "  pprof: true"), 7, 10, "metrics.pprof", "metrics.listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probs := parseProblems(t, tt.data)
			if len(probs) != 1 || probs[0].Path != tt.path || !strings.Contains(probs[0].Msg, tt.msg) {
				t.Fatalf("problems %v, want one at %s: %q", probs, tt.path, tt.msg)
			}
			if p := probs[0]; p.Line != tt.line || p.Col != tt.col {
				t.Errorf("%s at %d:%d, want %d:%d", tt.path, p.Line, p.Col, tt.line, tt.col)
			}
		})
	}
}
