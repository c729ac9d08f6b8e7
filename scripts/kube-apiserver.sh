#!/usr/bin/env bash
# Builds the real kube-apiserver (a test peer for flannel's Kubernetes
# subnet manager) once into a cache directory outside the clone and prints
# the binary's path. A cached binary is reused.
#
# k8s.io/kubernetes is not meant to be required as a module: its go.mod
# requires each staging module (k8s.io/api, k8s.io/client-go, ...) at
# v0.0.0 and replaces it with ./staging/src/..., and a dependency's
# replaces do not apply. So the build is a scratch module in a temporary
# directory that requires k8s.io/kubernetes and replaces every module its
# go.mod requires at exactly v0.0.0 with the same module at the matching
# v0.MINOR.PATCH tag (31 of them for v1.36.3), all from the Go module
# proxy. No Kubernetes code is kept in this repository.
set -euo pipefail
version=${KUBE_VERSION:-v1.36.3}
staging=v0.${version#v1.} # v1.36.3 -> v0.36.3
cache=${TUNNELPLANE_CACHE:-/var/cache/tunnelplane}
out="$cache/kube-apiserver-$version"
if [ -x "$out/kube-apiserver" ]; then
  echo "$out/kube-apiserver"
  exit 0
fi
mkdir -p "$out"
# One build at a time: two tests starting at once must not race.
exec 9>"$out/.lock"
flock 9
if [ -x "$out/kube-apiserver" ]; then
  echo "$out/kube-apiserver"
  exit 0
fi
work=$(mktemp -d "$cache/kube-src.XXXXXX")
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod
gomod=$(cd "$work" && GOFLAGS= go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
if [ -z "$gomod" ] || [ ! -f "$gomod" ]; then
  echo "kube-apiserver.sh: go mod download gave no go.mod for k8s.io/kubernetes $version" >&2
  exit 1
fi
# The staging modules: required at exactly v0.0.0 (k8s.io/utils and
# k8s.io/kube-openapi carry real pseudo-versions and stay as they are).
mapfile -t mods < <(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod" | sort -u)
if [ ${#mods[@]} -eq 0 ]; then
  echo "kube-apiserver.sh: no k8s.io module at v0.0.0 in $gomod" >&2
  exit 1
fi
{
  echo "module tunnelplane.test/kube-apiserver"
  echo
  echo "go $(awk '$1 == "go" {print $2; exit}' "$gomod")"
  echo
  echo "require k8s.io/kubernetes $version"
  echo
  echo "replace ("
  for m in "${mods[@]}"; do
    echo "	$m => $m $staging"
  done
  echo ")"
} >"$work/go.mod"
# A file that imports the command, so that go mod tidy keeps what it needs.
cat >"$work/tools.go" <<'EOF'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
EOF
echo "kube-apiserver.sh: building kube-apiserver $version (${#mods[@]} staging modules at $staging) into $out (about 6 minutes, once)" >&2
start=$(date +%s)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  minor=${version#v1.}
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor%%.*} -X $pkg.gitTreeState=clean"
done
(cd "$work" && go mod tidy -e >/dev/null 2>&1 || true
 cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver) >&2
mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
echo "kube-apiserver.sh: built in $(($(date +%s) - start)) s" >&2
echo "$out/kube-apiserver"
