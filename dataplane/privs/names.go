package privs

import (
	"strconv"
	"strings"
)

// names of the capabilities, indexed by number (see capabilities(7)).
var names = [...]string{
	"cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner", "cap_fsetid",
	"cap_kill", "cap_setgid", "cap_setuid", "cap_setpcap", "cap_linux_immutable",
	"cap_net_bind_service", "cap_net_broadcast", "cap_net_admin", "cap_net_raw", "cap_ipc_lock",
	"cap_ipc_owner", "cap_sys_module", "cap_sys_rawio", "cap_sys_chroot", "cap_sys_ptrace",
	"cap_sys_pacct", "cap_sys_admin", "cap_sys_boot", "cap_sys_nice", "cap_sys_resource",
	"cap_sys_time", "cap_sys_tty_config", "cap_mknod", "cap_lease", "cap_audit_write",
	"cap_audit_control", "cap_setfcap", "cap_mac_override", "cap_mac_admin", "cap_syslog",
	"cap_wake_alarm", "cap_block_suspend", "cap_audit_read", "cap_perfmon", "cap_bpf",
	"cap_checkpoint_restore",
}

// Name returns the name of capability c ("cap_net_admin"), or "cap_N" for a
// number this package does not know.
func Name(c uintptr) string {
	if c < uintptr(len(names)) {
		return names[c]
	}
	return "cap_" + strconv.FormatUint(uint64(c), 10)
}

// Format lists the capabilities in mask by name, comma-separated
// ("cap_net_admin,cap_net_raw"), or "none".
func Format(mask uint64) string {
	var b strings.Builder
	for c := uintptr(0); c < 64; c++ {
		if mask&(1<<c) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(Name(c))
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}
