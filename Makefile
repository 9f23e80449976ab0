# mynet — build, test, demo.
#
#   make build   bin/mynet
#   make test    the whole suite (installs what it needs; run as root)
#   make blackbox  the built binary in fresh network namespaces, no Docker needed
#   make bench   benchmarks
#   make demo    README quick start against the local Docker engine
#   make demo-stop  stop the mynet that make demo left running

GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)

.PHONY: all build test setup vet unit blackbox fuzz fuzz-corpus uml integration integration-engine multihost bench demo demo-stop plugin plugin-rootfs plugin-test soak clean

all: build

build:
	$(GO) build -o bin/mynet .

# One command for everything; make stops at the first failing step.
test:
	MYNET_ENGINE_VERSION=$(ENGINE_VERSION) bash integration/setup.sh
	$(GO) vet ./...
	$(GO) vet -tags integration ./integration/...
	bash -n integration/bench/bench.sh
	bash -n integration/bench/scale.sh
	bash -n integration/bench/lib.sh
	$(GO) test -race -count=1 ./...
	$(MAKE) fuzz
	$(MAKE) uml
	$(GO) test -race -count=1 -p 1 -tags integration -timeout 40m -skip '$(ENGINE28_ONLY)' ./integration/...
	$(MAKE) integration-engine

# Kernel tests that need ipvlan, dummy and 802.1q links or SCTP, which this
# host's kernel lacks: the same Go tests (the driver's built with -tags umltest) run inside
# Debian's user-mode Linux kernel (no -race there: the race runtime does not
# start under UML).
uml:
	bash integration/uml/selftest.sh
	CGO_ENABLED=0 $(GO) test -c -tags umltest -o bin/driver-uml.test ./driver/
	bash integration/uml/run.sh bin/driver-uml.test -test.v -test.run 'UML'
	CGO_ENABLED=0 $(GO) test -c -o bin/ports-uml.test ./driver/ports/
	MYNET_REQUIRE_SCTP=1 UML_MODULES="ipv6 sctp" bash integration/uml/run.sh bin/ports-uml.test -test.v -test.run '^TestSCTP$$'

setup:
	MYNET_ENGINE_VERSION=$(ENGINE_VERSION) bash integration/setup.sh

vet:
	$(GO) vet ./...
	$(GO) vet -tags integration ./integration/...

unit:
	$(GO) test -race -count=1 ./...

# The black-box tests of the binary (hostile requests, capabilities,
# signals, inspection commands, metrics); part of unit.
blackbox:
	$(GO) test -race -count=1 ./blackbox/

# Tests of what only Docker 28 has (--ipv4=false): they fail on an older
# engine, so the host's 20.10 run leaves them to integration-engine.
ENGINE28_ONLY = ^TestDocker28IPv6Only$$

integration:
	$(GO) test -race -count=1 -p 1 -tags integration -timeout 40m -skip '$(ENGINE28_ONLY)' ./integration/...

# The engine-facing suite once more, against Docker Engine $(ENGINE_VERSION)
# (built by integration/setup.sh from the Go module proxy) running in its own
# network and mount namespaces, with that release's client. The soak test
# runs on the host's engine only.
ENGINE_VERSION ?= 28.5.2
ENGINE_DIR ?= /var/cache/mynet/dockerd-$(ENGINE_VERSION)
integration-engine:
	MYNET_IT_DOCKERD=$(ENGINE_DIR)/dockerd MYNET_IT_DOCKER=$(ENGINE_DIR)/docker \
		$(GO) test -race -count=1 -tags integration -timeout 40m -skip '^TestSoak$$' ./integration/

# Three simulated hosts with their own dockerd and mynet --cluster, a real
# etcd on their underlay (integration/multihost; about 4 minutes). Also part
# of `make integration` and `make test`.
multihost: setup
	$(GO) test -race -count=1 -tags integration -timeout 20m -v ./integration/multihost/

# Each fuzz target for a bounded number of executions, about 10 s each here
# (FUZZTIME=30s or FUZZTIME=1000x overrides all). Counts, not durations: Go
# 1.26's fuzz coordinator can fail a duration run with a spurious "context
# deadline exceeded" when a loaded machine starves its workers at the
# deadline (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?=
fuzz:
	$(GO) test -run xxx -fuzz '^FuzzIPAMRequests$$' -fuzztime $(or $(FUZZTIME),20000x) ./server/
	$(GO) test -run xxx -fuzz '^FuzzAllocator$$' -fuzztime $(or $(FUZZTIME),15000x) ./ipam/
	$(GO) test -run xxx -fuzz '^FuzzAddrSet$$' -fuzztime $(or $(FUZZTIME),150000x) ./ipam/
	$(GO) test -run xxx -fuzz '^FuzzParsePortMap$$' -fuzztime $(or $(FUZZTIME),200000x) ./driver/ports/
	$(GO) test -run xxx -fuzz '^FuzzNetworkOptions$$' -fuzztime $(or $(FUZZTIME),60000x) ./driver/

# Copy a few of the inputs `make fuzz` found (Go keeps them in GOCACHE) into
# each package's testdata/fuzz/<Target>/, so plain `go test` replays them and
# they live in git: FUZZKEEP per target, spread over input sizes, added to
# what is there. The module root is left out (its top level is fixed).
FUZZKEEP ?= 30
fuzz-corpus:
	cache=$$($(GO) env GOCACHE)/fuzz/$$($(GO) list -m); \
	for src in $$(find $$cache -mindepth 2 -type d -name 'Fuzz*'); do \
		target=$${src##*/}; pkg=$${src%/*}; pkg=$${pkg#$$cache/}; \
		grep -qs "^func $$target(" $$pkg/*_test.go || continue; \
		mkdir -p $$pkg/testdata/fuzz/$$target; \
		n=$$(ls $$src | wc -l); step=$$(( n / $(FUZZKEEP) + 1 )); \
		ls -S $$src | awk -v s=$$step 'NR % s == 1' | head -n $(FUZZKEEP) | \
			while read f; do cp -n $$src/$$f $$pkg/testdata/fuzz/$$target/; done; \
		echo "$$pkg/testdata/fuzz/$$target: $$(ls $$pkg/testdata/fuzz/$$target | wc -l) inputs"; \
	done

# Go benchmarks, then the same work timed on mynet and Docker's own drivers
# side by side (integration/bench/bench.sh; BENCH_QUICK=1 for a short run),
# then `docker rm -f` of 20 containers and `docker network rm` on Docker's
# bridge and on mynet, on the host's engine and on Docker $(ENGINE_VERSION)
# (integration/teardown_bench_test.go, BENCH_TEARDOWN_* knobs),
# then the multi-host table: mynet vxlan against Docker's overlay on three
# simulated hosts (integration/multihost/bench_test.go, BENCH_MH_* knobs),
# then one mynet fed 1,000 networks and 5,000 endpoints without Docker
# (integration/bench/scale.sh, SCALE_* knobs).
# bench.sh runs the driver's scale benchmarks itself (into its table); the
# lock keeps it apart from integration runs on a shared machine.
bench: setup
	$(GO) test -run xxx -bench . -skip 'NetworkCreateDelete|EndpointCreateDelete' -benchmem ./...
	flock /tmp/mynet-it.lock bash integration/bench/bench.sh
	flock /tmp/mynet-it.lock $(GO) test -count=1 -tags integration -run '^$$' -bench '^BenchmarkTeardown$$' -benchtime 1x -timeout 30m ./integration/
	MYNET_IT_DOCKERD=$(ENGINE_DIR)/dockerd MYNET_IT_DOCKER=$(ENGINE_DIR)/docker \
		flock /tmp/mynet-it.lock $(GO) test -count=1 -tags integration -run '^$$' -bench '^BenchmarkTeardown$$' -benchtime 1x -timeout 30m ./integration/
	$(GO) test -count=1 -tags integration -run '^$$' -bench '^BenchmarkMultiHost$$' -benchtime 1x -timeout 30m ./integration/multihost/
	flock /tmp/mynet-it.lock bash integration/bench/scale.sh

demo:
	bash integration/demo.sh

demo-stop:
	bash integration/demo.sh --stop

# Managed plugin mynet:latest in the local engine, no registry needed; run
# again to upgrade it in place (integration/plugin/README.md).
plugin:
	GO=$(GO) bash integration/plugin/build.sh --replace

# The plugin directory (config.json + rootfs/) without creating the plugin.
plugin-rootfs:
	rm -rf bin/plugin
	GO=$(GO) bash integration/plugin/build.sh --no-create --dir bin/plugin

# The soak test in its long form: SOAK_ROUNDS rounds of container churn with
# a fault each, the managed plugin included (integration/soak_test.go). The
# short form (one round per fault kind) runs in `make test`.
SOAK_ROUNDS ?= 30
soak: setup
	SOAK_ROUNDS=$(SOAK_ROUNDS) SOAK_MANAGED=1 $(GO) test -race -count=1 -tags integration -run '^TestSoak$$' -v -timeout 120m ./integration/

plugin-test:
	$(GO) test -race -count=1 -tags integration -run 'TestPlugin' -v -timeout 40m ./integration/

clean:
	rm -rf bin
