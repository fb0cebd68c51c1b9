# meshca — build, run and test.
#
#   make run     the service on embedded defaults (dev root in ./.meshca, no cluster)
#   make test    unit, integration and end-to-end tests (builds test binaries once)
#   make bench   benchmarks, reported as ratios against a baseline of the same run
#
# Test dependencies (kube-apiserver, etcd, Vault) are built from the Go module
# proxy and cached by version outside the checkout, in $(MESHCA_CACHE),
# reached through the git-ignored bin/ directory.

SHELL        := /bin/bash
GO           ?= go
BIN          := bin
MESHCA       := $(BIN)/meshca
MESHCA_CACHE ?= $(HOME)/.cache/meshca
RUN_DIR      ?= .meshca
LISTEN       ?= 127.0.0.1:15012
OPS_LISTEN   ?= 127.0.0.1:15014
FUZZTIME     ?= 10s
LONG_FUZZTIME ?= 5m
# Unit packages run under the race detector.
# Every package of the module except the e2e/environment tests under test/
# (run by test-e2e): a new package is tested without being listed here.
UNIT_PKGS     = $(shell $(GO) list ./... | grep -v '/meshca/test/')
# Fuzz targets: package and function.
FUZZ_TARGETS := ./ca/policy:FuzzParseCSR ./ca/config:FuzzParse ./ca/certenc:FuzzPreTBS ./ca/identity:FuzzParse
FUZZ_TARGETS += ./ca/certenc:FuzzParseCertificate
FUZZ_TARGETS += ./crl:FuzzBuild

export MESHCA_CACHE

.PHONY: all build run demo-status test test-unit test-rules test-e2e fuzz fuzz-short testbin deps lint bench bench-csr clean image test-image

all: build

build:
	$(GO) build -o $(MESHCA) ./cmd/meshca

## run: start meshca serve on the embedded defaults; creates a dev CA on first use.
run: build
	@if [ ! -f $(RUN_DIR)/root-cert.pem ]; then $(MESHCA) init --dir $(RUN_DIR); fi
	@echo "meshca: gRPC signing API on $(LISTEN), health and metrics on http://$(OPS_LISTEN)/readyz and /metrics"
	@echo "meshca: mesh root for clients: $(RUN_DIR)/root-cert.pem (sign a CSR offline: $(MESHCA) sign --dir $(RUN_DIR) --csr FILE --identity spiffe://cluster.local/ns/NS/sa/SA)"
	$(MESHCA) serve --dir $(RUN_DIR) --listen $(LISTEN) --ops-listen $(OPS_LISTEN) --log-format text

## demo-status: start meshca serve on a temporary CA (embedded defaults), run
## meshca status against it and stop it: the README's "meshca status" demo.
demo-status: build
	@MESHCA=$(MESHCA) bash test/tools/demo-status.sh

## deps: tools the tests call (openssl; strace, which observes fsync order;
## promtool, which tests the PrometheusRule; softhsm2-util, the SoftHSM2 PKCS#11 token
## test/hsmenv creates; gcc, for the cgo build of make test-image; PostgreSQL's initdb,
## for test/pgenv) from Debian when missing.
## Each entry is a command, or command:package when the Debian package has another name.
## A command is found on PATH or in /usr/lib/postgresql/*/bin (Debian's server binaries).
DEBIAN_TOOLS := openssl strace promtool:prometheus softhsm2-util:softhsm2 gcc
DEBIAN_TOOLS += initdb:postgresql

deps:
	@missing=""; for t in $(DEBIAN_TOOLS); do cmd=$${t%%:*}; pkg=$${t##*:}; command -v $$cmd >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/$$cmd" >/dev/null || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing (Debian)"; apt-get update -qq && apt-get install -y -qq $$missing; fi

## testbin: build kube-apiserver, etcd, Vault and istiod's Kubernetes RA (for the CSR e2e test),
## Helm and prometheus-operator's CRDs (for the chart tests) once per version into $(MESHCA_CACHE).
testbin:
	@bash test/tools/testbin.sh

## test: everything CI runs.
test: deps testbin lint test-unit test-rules test-e2e test-image fuzz-short

test-unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)

## test-rules: the PrometheusRule's groups pass `promtool check rules`, and
## every alert passes its `promtool test rules` cases (deploy/prometheus/tests).
## The groups are the rule's spec, which is its last top-level key (checked
## by the Go test in deploy/prometheus), de-indented.
PROM_RULES := deploy/prometheus/meshca-rules.yaml
PROM_TESTS := deploy/prometheus/tests

test-rules:
	@command -v promtool >/dev/null || { echo "promtool is missing: run 'make deps' (Debian package prometheus)"; exit 1; }
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  sed -n '/^spec:/,$$p' $(PROM_RULES) | tail -n +2 | sed 's/^  //' > $$tmp/meshca-rules.groups.yaml; \
	  cp $(PROM_TESTS)/*.yaml $$tmp/; \
	  promtool check rules $$tmp/meshca-rules.groups.yaml; \
	  cd $$tmp && promtool test rules $$(cd $(CURDIR)/$(PROM_TESTS) && ls *.yaml)

test-e2e:
	$(GO) test -count=1 -timeout 30m ./test/...

## image: the container image (Dockerfile) when a container engine answers here
## (docker, else buildah). None runs on the development machines: CI builds
## and pushes the image elsewhere, and make test checks the build stage (test-image).
IMAGE ?= meshca:dev

image:
	@if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then docker build -t $(IMAGE) .; \
	elif command -v buildah >/dev/null 2>&1; then buildah bud -t $(IMAGE) .; \
	else echo "image: no container engine here (docker info fails, no buildah): the image is built in CI elsewhere; 'make test-image' checks the Dockerfile's build stage"; fi

## test-image: the Dockerfile's build stage without an engine: its go build line
## run verbatim, the binary checked (cgo with PKCS#11, glibc only), the stages'
## Go and Debian versions and USER (test/image; a cold cgo build of every
## dependency outlasts go test's default 10 minutes on 2 cores).
test-image:
	$(GO) test -count=1 -tags imagecheck -timeout 30m ./test/image

## fuzz-short: each fuzz target for $(FUZZTIME) (part of make test).
fuzz-short:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "fuzz $$fn in $$pkg for $(FUZZTIME)"; \
	  bash test/tools/fuzz.sh $(GO) $$pkg $$fn $(FUZZTIME); done

## fuzz: each fuzz target for $(LONG_FUZZTIME).
fuzz:
	@$(MAKE) --no-print-directory fuzz-short FUZZTIME=$(LONG_FUZZTIME)

## lint: go.mod tidiness (go mod tidy -e), gofmt, go vet, and staticcheck when it installs from the module proxy.
lint:
	@if ! $(GO) mod tidy -e -diff >/dev/null 2>&1; then echo "go.mod/go.sum are not tidy: run 'go mod tidy -e'"; $(GO) mod tidy -e -diff; exit 1; fi
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 -version >/dev/null 2>&1; then \
	  $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...; \
	else echo "staticcheck unavailable from the module proxy; skipped"; fi

## bench: benchmarks with ratios against a same-run baseline (not timed tests),
## ending with the peer table against istiod's own CA. istiod's CA, and
## kube-apiserver and etcd for the revocation-latency and CSR API scenarios,
## are built once and cached like the test binaries.
## BENCH_FLAGS passes flags, e.g. BENCH_FLAGS='-peer=only -peer-rounds=5'.
bench:
	@bash test/tools/testbin.sh istiod
	@bash test/tools/testbin.sh k8s
	$(GO) run ./test/bench $(BENCH_FLAGS)

## bench-csr: only the CSR API scenario of make bench (1000 CertificateSigningRequests
## created at once, meshca serve and a real apiserver; target: the last signed in < 60 s).
bench-csr:
	@bash test/tools/testbin.sh k8s
	$(GO) run ./test/bench -csr=only

clean:
	rm -rf $(BIN)
