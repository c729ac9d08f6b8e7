# tunnelplane build, test, demo and benchmarks. `make help` lists the targets.
GO       ?= go
BIN      := bin
PKGS     := ./...
# Packages with goroutines that share memory: always run under the race detector.
RACE_PKGS := ./ring/... ./dataplane/...
FUZZTIME ?= 20s

.PHONY: all build deps test-deps test vet fmt-check unit race fuzz bench demo soak clean help

all: build

help:
	@echo "make test   - install what is missing, vet, gofmt check, all tests (race on concurrent packages)"
	@echo "make demo   - two namespaces, tunneld on each side, ping + iperf3 through the tunnel"
	@echo "make fuzz   - run every fuzz target for FUZZTIME (default $(FUZZTIME)) each"
	@echo "make bench  - hot-path Go benchmarks with -benchmem, then tunbench (root; TUNBENCH_FLAGS=... to narrow)"

deps:
	@./scripts/deps.sh

# deps plus the real peers the suite runs against (flanneld, etcd 3.6,
# kube-apiserver), built once into the peer cache.
test-deps:
	@./scripts/deps.sh --peers

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./cmd/...

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

test: test-deps vet fmt-check
	$(GO) test -count=1 -timeout 15m $(PKGS)
	$(GO) test -count=1 -race -timeout 15m $(RACE_PKGS)

fuzz:
	@./scripts/fuzz.sh $(FUZZTIME)

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./encap/ ./ring/
	$(GO) run ./cmd/tunbench $(TUNBENCH_FLAGS)

demo: deps build
	@./scripts/demo.sh

SOAK_DURATION ?= 600
soak: deps build
	@SOAK_DURATION=$(SOAK_DURATION) ./scripts/soak.sh

clean:
	rm -rf $(BIN) out
