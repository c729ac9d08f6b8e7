#!/usr/bin/env bash
# Installs what the tests, the demo and the harness need, only when missing.
set -euo pipefail
need=()
command -v iperf3  >/dev/null 2>&1 || need+=(iperf3)
command -v ethtool >/dev/null 2>&1 || need+=(ethtool)
command -v ping    >/dev/null 2>&1 || need+=(iputils-ping)
command -v ip      >/dev/null 2>&1 || need+=(iproute2)
# The flannel tests' real peers: etcd, and flanneld (built with cgo below),
# which programs iptables in its namespace.
command -v etcd     >/dev/null 2>&1 || need+=(etcd-server)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v gcc      >/dev/null 2>&1 || need+=(gcc libc6-dev)
# The Calico test's routing daemon (BIRD 2, as Calico runs it).
command -v bird     >/dev/null 2>&1 || need+=(bird2)
# The harness's Open vSwitch scenario (userspace datapath, run per
# namespace by bench/ovs.go; no kernel module).
command -v ovs-vswitchd >/dev/null 2>&1 || need+=(openvswitch-switch)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing ${need[*]}; install them (apt-get install -y ${need[*]}) or run as root" >&2
  else
    echo "deps: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The package starts a system etcd on the host; the tests run their own
    # in a namespace and need none.
    if [[ " ${need[*]} " == *" etcd-server "* ]] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
    if [[ " ${need[*]} " == *" bird2 "* ]] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now bird >/dev/null 2>&1 || true
    fi
    if [[ " ${need[*]} " == *" openvswitch-switch "* ]] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now openvswitch-switch >/dev/null 2>&1 || true
    fi
  fi
fi
go mod download
# flanneld for the flannel interop tests, and etcd 3.6 + kube-apiserver
# v1.36.3 for the Kubernetes subnet manager's (bench/kubeapi): built once
# into the cache (${TUNNELPLANE_CACHE:-/var/cache/tunnelplane}); the first
# time takes minutes (kube-apiserver about 5-6 on two CPUs), then nothing.
# Only the test suite needs them (`deps.sh --peers`, from make test): the
# demo and the harness do not wait for these builds.
if [ "${1:-}" = "--peers" ] && [ "$(id -u)" -eq 0 ]; then
  "$(dirname "$0")/flanneld.sh" >/dev/null
  "$(dirname "$0")/etcd3.6.sh" >/dev/null
  "$(dirname "$0")/kube-apiserver.sh" >/dev/null
fi
