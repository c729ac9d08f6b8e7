package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runTunneld(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(tunneldBin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("encap:\n  type: gre\n  key: 7\nunderlay:\n  local: 10.99.0.1\npeers:\n  - remote: 10.99.0.2\n    prefixes: [10.200.0.2/32]\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("encap:\n  type: vxlan\n  vni: 99999999\nunderlay:\n  local: 10.99.0.1\n  colour: blue\npeers:\n  - remote: not-an-ip\n"), 0o644)

	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{"version", []string{"--version"}, 0, []string{"tunneld "}},
		{"check good", []string{"--check-config", "--config", good}, 0, []string{"ok", "gre", "mtu 1472"}},
		{"check bad lists every problem with its line", []string{"--check-config", "--config", bad}, 1,
			[]string{"bad.yaml:3:", "vni", "bad.yaml:6:", "colour", "bad.yaml:8:", "remote"}},
		{"print effective config", []string{"--print-config", "--config", good}, 0, []string{"type: gre", "key: 7", "mtu: 1472", "ttl: 64", "listen: 127.0.0.1:9109"}},
		{"missing file", []string{"--check-config", "--config", filepath.Join(dir, "nope.yaml")}, 1, []string{"nope.yaml"}},
		{"unknown flag", []string{"--frobnicate"}, 2, []string{"flag provided but not defined"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runTunneld(t, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\n%s", code, tc.wantCode, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
