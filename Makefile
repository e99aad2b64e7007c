# sockguard: build, test and tooling entry points.
#
#   make build        bin/broker and bin/sgctl
#   make install      binaries to $(PREFIX)/bin, the systemd unit to
#                     /etc/systemd/system, /etc/sockguard/presets (DESTDIR
#                     respected; nothing is enabled or started)
#   make test         everything CI runs: deps, tools, proto-check, lint, unit
#                     tests, then e2e tests against a private dockerd
#   make demo         the end-to-end story of scripts/demo.sh
#   make bench        go run ./test/bench: the scenario table (test/bench/README.md)
#   make bench-profile CPU profile of the broker in process on one benchmark
#                     (BENCH=ProxyList by default), top of its own part
#   make proto        regenerate proto/ with pinned buf and plugins
#   make proto-check  fail when the committed generated code is stale
#   make proto-baseline  rebuild the buf image of the last tagged API
#   make lint         gofmt, go vet, buf lint, buf breaking, golangci-lint
#   make fuzz         run every Fuzz* target of ./policy for FUZZTIME each
#   make clean        remove build outputs (keeps the tools in .tmp/bin)
#
# Tools are installed into .tmp/bin (gitignored) at pinned versions; nothing
# is installed globally except the Debian packages of `scripts/testenv.sh deps`.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build
# Targets list their steps in order; running them in parallel would start the
# e2e tests before their binaries exist.
.NOTPARALLEL:

GO ?= go
TOOLS := $(CURDIR)/.tmp/bin
# buf finds its local plugins (protoc-gen-go, protoc-gen-go-grpc) on PATH.
export PATH := $(TOOLS):$(PATH)

BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
GRPCURL_VERSION := v1.9.3
GOLANGCI_LINT_VERSION := v2.15.0
BUF := $(TOOLS)/buf
GOLANGCI_LINT := $(TOOLS)/golangci-lint

# buf breaking compares the API with the last tagged one, from an image
# committed beside it: CI's clone may have no tags. `make proto-baseline`
# rebuilds it after a new API tag.
API_TAG := api/v1
API_BASELINE := proto/breaking/sockguard-v1.binpb

VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

FUZZTIME ?= 20s
E2E_BIN := $(CURDIR)/.tmp/e2e-bin

PREFIX ?= /usr/local
DESTDIR ?=
UNITDIR ?= /etc/systemd/system

.PHONY: all build install test deps tools unit vet fmt-check breaking golangci-lint e2e-bin demo bench bench-storm bench-connflood bench-profile proto proto-check proto-baseline lint fuzz clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/broker ./cmd/broker
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/sgctl ./cmd/sgctl

# install copies what `make build` made; the unit's ExecStart names
# $(PREFIX)/bin/broker. It never enables or starts the unit, and never
# overwrites presets in /etc/sockguard/presets.
install: build
	install -d "$(DESTDIR)$(PREFIX)/bin" "$(DESTDIR)$(UNITDIR)"
	install -d -m 0755 "$(DESTDIR)/etc/sockguard/presets"
	install -m 0755 bin/broker bin/sgctl "$(DESTDIR)$(PREFIX)/bin/"
	sed 's|/usr/local/bin/broker|$(PREFIX)/bin/broker|' examples/systemd/sockguard-broker.service \
		> "$(DESTDIR)$(UNITDIR)/sockguard-broker.service"
	chmod 0644 "$(DESTDIR)$(UNITDIR)/sockguard-broker.service"
	@echo "installed; now: systemctl daemon-reload && systemctl enable --now sockguard-broker"

# test runs the e2e suite against a private dockerd in a short /tmp dir (unix
# socket paths must stay < 108 bytes), with a registry with htpasswd auth
# beside it for the image-ownership tests. The engine is stopped and its dir
# removed whatever the tests do; make exits with the tests' status.
test: deps tools proto-check lint unit e2e-bin
	@dir=$$(mktemp -d /tmp/sg-dockerd-XXXXXX); \
	trap 'scripts/testenv.sh stop "$$dir" --rm' EXIT; \
	trap 'exit 130' INT TERM; \
	scripts/testenv.sh start "$$dir"; \
	reg=$$(scripts/testenv.sh registry "$$dir"); \
	echo "==> e2e tests against unix://$$dir/docker.sock (registry $$reg)"; \
	SOCKGUARD_E2E_DOCKER_HOST="unix://$$dir/docker.sock" \
	SOCKGUARD_E2E_REGISTRY="$$reg" \
	SOCKGUARD_BIN_DIR="$(E2E_BIN)" \
	$(GO) test -race -count=1 -v ./test/e2e/...

deps:
	@scripts/testenv.sh deps

# tools installs each pinned tool when it is missing or at another version.
tools:
	@install() { echo "==> installing $$2@$$3 into .tmp/bin"; GOBIN="$(TOOLS)" $(GO) install "$$2@$$3"; }; \
	check() { [ -x "$(TOOLS)/$$1" ] && "$(TOOLS)/$$1" --version 2>/dev/null | grep -q -- "$${3#v}$$" || install "$$@"; }; \
	check buf github.com/bufbuild/buf/cmd/buf $(BUF_VERSION); \
	check protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go $(PROTOC_GEN_GO_VERSION); \
	check protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc $(PROTOC_GEN_GO_GRPC_VERSION); \
	checkmod() { [ -x "$(TOOLS)/$$1" ] && $(GO) version -m "$(TOOLS)/$$1" 2>/dev/null | grep -q "^[[:space:]]*mod[[:space:]].*[[:space:]]$$3[[:space:]]" || install "$$@"; }; \
	checkmod grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl $(GRPCURL_VERSION); \
	checkmod golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint $(GOLANGCI_LINT_VERSION)

vet:
	$(GO) vet ./...

# unit runs every package's tests; test/e2e skips itself without a dockerd.
unit:
	$(GO) test -race ./...

# e2e-bin builds the binaries the e2e tests drive. The broker has the race
# detector, so a data race in the real daemon fails the suite (exit status
# 66); sgctl has not: a race binary sleeps 1s at exit (GORACE
# atexit_sleep_ms), and the suite runs sgctl hundreds of times.
e2e-bin:
	$(GO) build -race -ldflags "$(LDFLAGS)" -o $(E2E_BIN)/broker ./cmd/broker
	$(GO) build -ldflags "$(LDFLAGS)" -o $(E2E_BIN)/sgctl ./cmd/sgctl

demo:
	scripts/demo.sh

bench:
	$(GO) run ./test/bench $(BENCHFLAGS)

bench-storm: ; $(GO) run ./test/bench -storm $(BENCHFLAGS)
bench-connflood: ; $(GO) run ./test/bench -connflood $(BENCHFLAGS)

# bench-profile profiles one in-process benchmark of test/bench and prints
# the top of the broker's own goroutines (pprof label role=broker). The
# profile and the test binary stay in .tmp/bench-profile for pprof -peek.
BENCH ?= ProxyList
BENCHTIME ?= 5s
PROF := $(CURDIR)/.tmp/bench-profile
bench-profile:
	mkdir -p $(PROF)
	$(GO) test -c -o $(PROF)/bench.test ./test/bench/
	$(PROF)/bench.test -test.run='^$$' -test.bench='^Benchmark$(BENCH)$$' -test.benchtime=$(BENCHTIME) -test.cpuprofile $(PROF)/$(BENCH).cpu
	$(GO) tool pprof -tags $(PROF)/bench.test $(PROF)/$(BENCH).cpu
	$(GO) tool pprof -top -cum -nodecount=40 -tagfocus=role=broker $(PROF)/bench.test $(PROF)/$(BENCH).cpu
	$(GO) tool pprof -peek 'tenantHandler\)\.ServeHTTP$$' -tagfocus=role=broker $(PROF)/bench.test $(PROF)/$(BENCH).cpu

proto: tools
	$(BUF) lint
	$(BUF) generate

proto-check: proto
	@git rev-parse --is-inside-work-tree >/dev/null 2>&1 || { echo "proto-check: not a git work tree" >&2; exit 1; }; \
	untracked=$$(git ls-files --others --exclude-standard -- proto/); \
	if ! git diff --quiet --exit-code -- proto/ || [ -n "$$untracked" ]; then \
		git --no-pager diff --stat -- proto/ >&2; \
		[ -z "$$untracked" ] || printf 'untracked: %s\n' $$untracked >&2; \
		echo "generated code is stale: run make proto" >&2; \
		exit 1; \
	fi

# lint fails on the first of: unformatted code, go vet, buf lint, a
# breaking change to the tagged API, golangci-lint (config: .golangci.yml).
lint: tools fmt-check vet breaking golangci-lint
	$(BUF) lint

fmt-check:
	@files=$$(find . -name '*.go' -not -path './.tmp/*' -not -path './vendor/*'); \
	bad=$$( [ -z "$$files" ] || gofmt -l $$files ); \
	if [ -n "$$bad" ]; then echo "gofmt needed (run gofmt -w):" >&2; echo "$$bad" >&2; exit 1; fi

# breaking: FILE rules (buf.yaml), the strictest: a Go client compiled
# against sockguard.v1 must still compile, and grpcurl's JSON names hold.
# Added fields, messages, RPCs and enum values pass; a deleted, renumbered,
# renamed or retyped one fails: the self-test proves both on scratch copies.
breaking: tools
	$(BUF) breaking --against $(API_BASELINE)
	@scripts/breaking-selftest.sh $(BUF) $(API_BASELINE)

# Serial runners: several checkouts on one machine wait for each other
# instead of failing on golangci-lint's lock.
golangci-lint: tools
	$(GOLANGCI_LINT) run --allow-serial-runners ./...

# proto-baseline writes the image of the API at tag $(API_TAG), built from
# the tagged tree itself (git archive), not from the work tree.
proto-baseline: tools
	@git rev-parse -q --verify "refs/tags/$(API_TAG)" >/dev/null || { echo "no tag $(API_TAG) here (fetch tags first)" >&2; exit 1; }; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	git archive "$(API_TAG)" buf.yaml proto | tar -x -C "$$tmp"; \
	mkdir -p "$(dir $(API_BASELINE))"; \
	$(BUF) build "$$tmp" --exclude-source-info -o "$(API_BASELINE)"; \
	echo "wrote $(API_BASELINE) from $(API_TAG) ($$(git rev-parse --short "$(API_TAG)^{commit}"))"

fuzz:
	@names=$$($(GO) test -list '^Fuzz' ./policy/ | grep '^Fuzz' || true); \
	if [ -z "$$names" ]; then echo "no Fuzz targets in ./policy"; exit 0; fi; \
	for name in $$names; do \
		echo "==> fuzz $$name for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) ./policy/; \
	done

clean:
	rm -rf bin $(E2E_BIN) test/fuzz-out
