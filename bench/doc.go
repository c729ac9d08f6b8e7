// Package bench is the harness library: network-namespace topologies,
// traffic runners and kernel baselines, shared by tunbench and by the
// integration tests.
package bench
