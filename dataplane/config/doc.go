// Package config owns tunneld's configuration file: its YAML schema, the
// defaults, and every rule a configuration must satisfy before the data
// plane sees it. It turns bytes into a validated [Config] or an [*Error]
// that lists all problems at once, each with its file:line:col and a path
// such as "peers[1].remote", so that an operator fixes a file in one pass.
//
// The package also owns two small facts both ends of a tunnel must agree
// on: the encapsulation overhead ([Config.Overhead]), from which the
// device MTU is derived, and the default VTEP MAC of a node ([DefaultMAC]).
//
// [Config.Validate] applies the same rules to a Config built in code, and
// [Config.Marshal] writes the effective configuration back as YAML that
// Parse reads into an equal Config.
//
// Three keys select how the configuration is carried out rather than what
// is on the wire: encap.preset (a named set of defaults matching flannel or
// Calico, see [Presets]; explicit keys override it, a contradicting type is
// an error), backend (userspace, the default; kernel; auto) and peers_from
// (config, the default; routes: also learn peers from the kernel routes on
// the device, see package dataplane/routes). Resolving backend against the
// running kernel is package dataplane/kernel's job.
//
// It does not touch the system: it creates no devices, opens no sockets and
// resolves no names. A null value (`mtu:` or `mtu: ~`) means "not set" and
// takes the default; to disable the metrics server write `listen: ""`.
//
// Scalars are typed strictly: `mtu: "1450"` is a string, not a number, and
// `checksum: yes` is a string, not a boolean (YAML 1.2).
package config
