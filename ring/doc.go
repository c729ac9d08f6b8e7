// Package ring owns the data plane's hand-over structures: bounded
// lock-free rings with batch operations and the packet buffer pool.
//
// ring imports nothing of the project.
package ring
