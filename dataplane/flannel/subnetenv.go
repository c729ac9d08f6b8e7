package flannel

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
)

// SubnetEnv is the content of subnet.env as flanneld writes it for the
// etcd subnet manager: the network, the node's subnet as its first
// address (10.244.1.1/24: the address flannel's CNI plugin gives the
// bridge), the device MTU, and whether flannel masquerades.
func SubnetEnv(network, subnet netip.Prefix, mtu int, ipMasq bool) []byte {
	first := netip.PrefixFrom(subnet.Addr().Next(), subnet.Bits())
	return fmt.Appendf(nil, "FLANNEL_NETWORK=%s\nFLANNEL_SUBNET=%s\nFLANNEL_MTU=%d\nFLANNEL_IPMASQ=%t\n", network, first, mtu, ipMasq)
}

// WriteSubnetFile writes data to path atomically: to a temporary file in
// the same directory, synced, then renamed over path, so that a reader
// (flannel's CNI plugin) sees the old file or the new one, never half of
// one. The directory is created if missing. The file is 0644.
func WriteSubnetFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("subnet file: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("subnet file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing to remove
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("subnet file %s: %w", path, err)
	}
	return nil
}
