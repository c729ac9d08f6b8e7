#!/usr/bin/env bash
# Builds the etcd server 3.6 (the store under the kube-apiserver test peer;
# Debian's etcd-server 3.4 is too old for kube-apiserver v1.36) once into a
# cache directory outside the clone and prints the binary's path. A cached
# binary is reused.
#
# go.etcd.io/etcd/server/v3 is itself the etcd command (its main.go calls
# etcdmain.Main); its sibling modules (api, pkg, client) are required at
# the same version, so a scratch module that requires it builds it as it is.
set -euo pipefail
version=${ETCD_VERSION:-v3.6.16}
cache=${TUNNELPLANE_CACHE:-/var/cache/tunnelplane}
out="$cache/etcd-$version"
if [ -x "$out/etcd" ]; then
  echo "$out/etcd"
  exit 0
fi
mkdir -p "$out"
# One build at a time: two tests starting at once must not race.
exec 9>"$out/.lock"
flock 9
if [ -x "$out/etcd" ]; then
  echo "$out/etcd"
  exit 0
fi
work=$(mktemp -d "$cache/etcd-src.XXXXXX")
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod
cat >"$work/go.mod" <<EOF
module tunnelplane.test/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $version
EOF
cat >"$work/tools.go" <<'EOF'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
echo "etcd3.6.sh: building etcd $version into $out (about a minute, once)" >&2
start=$(date +%s)
(cd "$work" && go mod tidy -e >/dev/null 2>&1 || true
 cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3) >&2
mv "$out/etcd.tmp" "$out/etcd"
echo "etcd3.6.sh: built in $(($(date +%s) - start)) s" >&2
echo "$out/etcd"
