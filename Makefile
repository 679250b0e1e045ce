# customstream: make run starts everything; make test runs every test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
BIN     := bin/customstream

.PHONY: build run test test-unit test-faults lint bench bench-go bench-transfer clean test-tools

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/customstream

# Web and worker in one process, with an embedded Redis: nothing to install.
run: build
	CUSTOMSTREAM_ADDR=$${CUSTOMSTREAM_ADDR:-:8000} CUSTOMSTREAM_DATA_DIR=$${CUSTOMSTREAM_DATA_DIR:-./data} ./$(BIN) all

# Every test, including the integration tests that start real processes
# against a real redis-server, signature checks with gpgv, and the browser
# test with headless chromium (all three installed here when missing and
# root). Test artifacts, the browser test's screenshots, are kept in
# test-output/_artifacts/; their directory is printed at the end.
ARTIFACTS := $(CURDIR)/test-output

test: test-tools
	@rm -rf $(ARTIFACTS) && mkdir -p $(ARTIFACTS)
	@status=0; $(GO) test -race -count=1 -artifacts -outputdir $(ARTIFACTS) ./... || status=$$?; \
	for d in $(ARTIFACTS)/_artifacts/*/; do [ -d "$$d" ] && echo "Test artifacts (browser screenshots): $$d"; done; \
	exit $$status

# Fault tests (build tag faults): processes killed mid-publish and with
# jobs queued, a nearly full data directory (a tmpfs: needs root), and load
# while an upload and a mirror run. Without -race: the load test measures the
# server, not a race-instrumented client; -v prints its figures.
test-faults: test-tools
	$(GO) test -tags faults -count=1 -v -run '^TestFault' ./cmd/customstream/

# Unit tests only: no processes, no redis-server.
test-unit:
	$(GO) test -short -count=1 ./...

test-tools:
	@scripts/ensure-test-tools

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags faults ./cmd/customstream/

# Every target of issue 7 measured beside nginx, wrk, curl and sha256sum in
# one run (nginx and wrk installed with apt-get when missing and root, on
# loopback, stopped by PID): a markdown table of ratios on stdout, for
# docs/BENCHMARKS.md. BENCH_QUICK=1 for smaller sizes, BENCH_ONLY=upload,serving
# for some sections. Never part of make test.
bench:
	$(GO) run ./cmd/customstream-bench

# The Go micro-benchmarks (catalog filter, file serving, filter expressions).
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# A 1 GiB air-gap export and import (throughput, peak RSS).
bench-transfer:
	scripts/bench-transfer 1024

clean:
	rm -rf bin test-output

# Every Go fuzz target for a short while (FUZZTIME, default 15s each).
.PHONY: fuzz
fuzz:
	@scripts/fuzz
