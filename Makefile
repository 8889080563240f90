# peapod — a CRI runtime for containerd.
#   make build        build bin/peapod and bin/peapod-io
#   make run          start peapod (and what it needs) ready for crictl
#   make test         unit + integration + conformance tests (what CI runs)
#   make kubelet      the kubelet end-to-end suite, peapod beside containerd's CRI
#   make node-conformance   Kubernetes node conformance, peapod beside containerd's CRI
#                           (make test runs the subset in conformance/node-conformance-ci.txt)
#   make bench        benchmarks, peapod beside containerd's built-in CRI
#   make lint         gofmt + go vet
#   make clean        remove build outputs

GO        ?= go
export GOTOOLCHAIN := local
export GOFLAGS     := -mod=mod
PKG       := github.com/peapod-cri/peapod
VERSION   ?= $(shell git describe --tags --match 'v*' 2>/dev/null || echo v0.1.0-dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS   := -X $(PKG)/version.Version=$(VERSION) -X $(PKG)/version.Revision=$(REVISION)
# Which lab containerds the integration tests run against, in turn.
INTEGRATION_CONTAINERD ?= 2.4 1.6

.PHONY: all build run test test-unit test-integration conformance kubelet node-conformance node-conformance-ci bench lint clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/peapod ./cmd/peapod
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o bin/peapod-io ./cmd/peapod-io

run:
	bash conformance/up.sh

test: lint test-unit test-integration conformance kubelet node-conformance-ci

test-unit:
	$(GO) test -count=1 ./...

test-integration: build
	bash conformance/prepare.sh
	set -e; for t in $(INTEGRATION_CONTAINERD); do \
		echo "== integration tests on containerd $$t"; \
		bash conformance/integration.sh $$t; \
	done

conformance: build
	bash conformance/run.sh

kubelet: build
	bash conformance/kubelet.sh

node-conformance: build
	bash conformance/node-conformance.sh

node-conformance-ci: build
	bash conformance/node-conformance.sh --subset ci

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	bash conformance/bench.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	$(GO) vet -tags kubelet ./conformance/kubelet

clean:
	rm -rf bin
