package config

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that a failure is an *Error
// with positioned problems, and that a success is a Config that validates,
// keeps its MTU budget and survives Marshal and Parse unchanged. Seeds are
// in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || len(e.Problems) == 0 {
				t.Fatalf("error %v (%T) is not an *Error with problems", err, err)
			}
			for _, p := range e.Problems {
				if p.Line < 1 || p.Col < 0 || p.Msg == "" {
					t.Fatalf("problem %+v lacks a position or a message", p)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v\n--- input:\n%s", err, data)
		}
		if c.Device.MTU+c.Overhead() > c.Underlay.MTU {
			t.Fatalf("device mtu %d + overhead %d > underlay mtu %d", c.Device.MTU, c.Overhead(), c.Underlay.MTU)
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		c2, err := Parse("marshaled.yaml", out)
		if err != nil {
			t.Fatalf("Parse(Marshal(c)): %v\n--- input:\n%s\n--- marshaled:\n%s", err, data, out)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the config\n got %+v\nwant %+v", c2, c)
		}
	})
}
