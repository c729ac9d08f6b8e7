#!/usr/bin/env bash
# Builds the real flanneld (a test peer for dataplane/flannel) once into a
# cache directory outside the clone and prints the binary's path. A cached
# binary is reused.
#
# The Go module proxy serves flannel's module but not one dependency of its
# tencentvpc backend, so the build takes a copy of the module source and
# drops that one backend's import from main.go. No flannel code is kept in
# this repository.
set -euo pipefail
version=${FLANNEL_VERSION:-v0.28.10}
cache=${TUNNELPLANE_CACHE:-/var/cache/tunnelplane}
out="$cache/flanneld-$version"
if [ -x "$out/flanneld" ]; then
  echo "$out/flanneld"
  exit 0
fi
mkdir -p "$out"
# One build at a time: two tests starting at once must not race.
exec 9>"$out/.lock"
flock 9
if [ -x "$out/flanneld" ]; then
  echo "$out/flanneld"
  exit 0
fi
work=$(mktemp -d "$cache/flannel-src.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
# Outside any module, so that the clone's go.mod and go.sum stay untouched.
src=$(cd "$work" && GOFLAGS= go mod download -json "github.com/flannel-io/flannel@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$src" ] || [ ! -f "$src/main.go" ]; then
  echo "flanneld.sh: go mod download gave no source directory for flannel $version" >&2
  exit 1
fi
cp -r "$src/." "$work/"
chmod -R u+w "$work"
sed -i '\#"github.com/flannel-io/flannel/pkg/backend/tencentvpc"#d' "$work/main.go"
echo "flanneld.sh: building flanneld $version into $out (a few minutes, once)" >&2
(cd "$work" && GOFLAGS=-mod=mod CGO_ENABLED=1 go build -trimpath -o "$out/flanneld.tmp" \
  -ldflags "-X github.com/flannel-io/flannel/pkg/version.Version=$version" . ) >&2
mv "$out/flanneld.tmp" "$out/flanneld"
echo "$out/flanneld"
