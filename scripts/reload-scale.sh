#!/usr/bin/env bash
# Reload latency, RSS and loss with 10,000 peers (1 and 10 prefixes each):
# the scale figures in docs/BENCHMARKS.md. Root (namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
CGO_ENABLED=0 go build -o bin/tunneld ./cmd/tunneld
for per in 1 10; do
  go run ./scripts/reloadscale -tunneld bin/tunneld -peers 10000 -prefixes "$per" -reloads "${RELOADS:-10}" "$@"
done
