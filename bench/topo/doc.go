// Package topo builds the network-namespace topologies that the integration
// tests, the tunbench harness and `make demo` run on, and always tears them
// down again.
//
// What the package owns:
//
//   - Named network namespaces it creates itself (prefix "tp-" plus a per-run
//     suffix, bind-mounted under /run/netns so that `ip netns exec` and setns
//     work from other processes). It never looks at, reuses or deletes a
//     namespace it did not create.
//   - The veth pairs between them (the "wire"), their underlay addresses in
//     10.99.0.0/24 and fd99::/64, MTU and offload settings.
//   - Kernel vxlan devices programmed the way flannel programs a node
//     (nolearning, fixed MAC, permanent all-zero FDB entry towards the remote
//     VTEP, permanent neighbour entry for the peer), used as the kernel peer
//     in interop tests and as the kernel baseline in benchmarks.
//   - Small traffic and observation helpers: ping inside a namespace and an
//     AF_PACKET capture for tests that decode underlay bytes themselves.
//
// Teardown: NewPair and NewNS register Close with tb.Cleanup, so the
// namespaces go away even when the test (or a subtest) fails. Build and
// BuildNS are the same for non-test callers, who must call Close. Close kills
// processes started through NS.Command, deletes the veth pair and unmounts
// the namespaces; deleting a namespace removes every link inside it.
//
// Safety: every address this package configures lies in the project's ranges
// (underlay 10.99.0.0/24 and fd99::/64, overlays 10.200.0.0/16 and
// fd00:200::/64), and Ping refuses any destination outside them.
//
// Threads: a network namespace is a property of an OS thread. NS.Do runs its
// function on a dedicated goroutine locked to a thread that is switched into
// the namespace; that thread is never handed back to the Go scheduler (the
// runtime discards it when the goroutine ends), so no other goroutine can
// ever run in the wrong namespace. Goroutines started inside fn do NOT run in
// the namespace, but sockets created inside fn stay in it and may be used from
// any goroutine afterwards.
//
// Everything except RequireRoot needs Linux and root (CAP_SYS_ADMIN and
// CAP_NET_ADMIN); on other systems the constructors return ErrUnsupported.
package topo
