// Package stats holds the data plane's counters, histograms and drop
// reasons, and the plain snapshots they are read into.
//
// It is a leaf: it imports only encap (whose drop reasons the first Drop
// values mirror) and the standard library, so every other data-plane
// package may count into it. The counters are written by the pipeline
// stages, once per batch; readers (the Prometheus collector in
// cmd/tunneld, logs, tests) load them. Nothing here knows Prometheus.
package stats
