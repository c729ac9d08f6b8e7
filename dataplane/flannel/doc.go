// Package flannel makes tunneld a flannel node: the cluster control input
// of DESIGN.md ("Control inputs" 3), for the etcd subnet manager.
//
// It owns, for one node:
//   - reading flannel's network config (<prefix>/config: Network,
//     SubnetLen, SubnetMin/Max, Backend) and checking that its backend is
//     the one tunneld's encapsulation speaks ([ParseNetworkConfig],
//     [NetworkConfig.CheckBackend]);
//   - the node's subnet lease under <prefix>/subnets/<ip>-<len>, acquired
//     as flanneld acquires it (the lease whose PublicIP is ours is reused,
//     so a restart keeps its subnet; else a free subnet, created in a
//     transaction), published with the value flanneld writes for the
//     backend, attached to an etcd lease with a TTL and renewed before it
//     expires ([Join], [Member]);
//   - the watch on <prefix>/subnets from the listed revision, turned into
//     peer snapshots: every other lease of our backend type is a peer
//     (remote = PublicIP, prefixes = [subnet], mac = VtepMAC); bursts of
//     events give one snapshot ([Member.Run], [Peers]);
//   - subnet.env, written atomically, for flannel's CNI plugin
//     ([WriteSubnetFile]), and the route for the whole flannel Network
//     through the tunnel device ([EnsureNetworkRoute]).
//
// The lease format, subnet allocation and snapshot building are pure
// functions (lease.go, alloc.go, snapshot.go) with no I/O; etcd.go holds
// the client side. Bad data from etcd never stops the node: a malformed
// lease is logged, counted ([Stats]) and skipped; a lease of another
// backend type is logged once and counted; a lost connection keeps the
// last snapshot, reconnects with backoff and resyncs (list, then watch),
// so only peers that are really gone are dropped.
//
// What it does not own: the data plane (it hands peers to the caller), the
// device (created by the data plane with the address from the lease), and
// Kubernetes' subnet manager (not yet).
package flannel
