#!/usr/bin/env bash
# Installs what the tests, the demo and the harness need, only when missing.
set -euo pipefail
need=()
command -v iperf3  >/dev/null 2>&1 || need+=(iperf3)
command -v ethtool >/dev/null 2>&1 || need+=(ethtool)
command -v ping    >/dev/null 2>&1 || need+=(iputils-ping)
command -v ip      >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing ${need[*]}; install them (apt-get install -y ${need[*]}) or run as root" >&2
  else
    echo "deps: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi
go mod download
