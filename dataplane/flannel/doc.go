// Package flannel makes tunneld a flannel node: the cluster control input
// of DESIGN.md ("Control inputs" 3), for both of flannel's subnet
// managers, etcd ([Join], [Member]) and Kubernetes ([JoinKube],
// [KubeMember]).
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
// With the Kubernetes subnet manager (kube.go) the node's subnet is its
// Node's spec.podCIDR(s), its lease the annotations flanneld publishes
// (flannel.alpha.coreos.com/backend-type, backend-data, public-ip,
// kube-subnet-manager: PATCHed on nodes/status, the only write flanneld's
// RBAC grants), and its peers the other Nodes' annotations, read through a
// client-go informer ([NodeLease] parses one Node). Once the device is up,
// Run sets the Node's NetworkUnavailable condition to False as flanneld
// does. A Node deleted or stripped of its annotations drops its peer; a
// Node whose annotations do not parse is logged, counted and keeps its
// last good lease; while the API server is away the informer keeps the
// last state and lists again when it returns. The VtepMAC already
// published is reused unless device.mac is set, so the other nodes'
// neighbour entries survive a restart or a switch from flanneld.
//
// Shared by both: the debouncer that turns bursts into one snapshot, the
// retry with backoff, the once-per-lease log of ignored leases
// (debounce.go).
//
// What it does not own: the data plane (it hands peers to the caller) and
// the device (created by the data plane with the address from the lease).
package flannel
