// Package privs lowers tunneld's privileges once its setup is done.
//
// tunneld needs root-like powers only for a few things: creating the TUN/TAP
// device and programming its addresses and routes over netlink
// (CAP_NET_ADMIN), and opening raw IP sockets for IPIP, SIT and GRE
// (CAP_NET_RAW). After setup it still needs CAP_NET_ADMIN for live peer
// changes (SIGHUP adds and removes routes) and for removing the device at exit,
// and CAP_NET_RAW stays harmless to keep. Everything else (CAP_SYS_ADMIN,
// CAP_DAC_OVERRIDE, CAP_CHOWN, CAP_SYS_MODULE, ...) is dead weight that an
// attacker who compromised the packet parsers could use. Drop removes it.
//
// Linux capabilities are per thread, and a Go program runs on many threads.
// Drop therefore uses syscall.AllThreadsSyscall, which the Go runtime only
// supports in binaries without cgo: in a cgo binary Drop returns ErrCgo and
// changes nothing. Build tunneld with CGO_ENABLED=0 (it needs no C).
package privs
