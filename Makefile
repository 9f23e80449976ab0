# mynet — build, test, demo.
#
#   make build   bin/mynet
#   make test    the whole suite (installs what it needs; run as root)
#   make bench   benchmarks
#   make demo    README quick start against the local Docker engine

GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)

.PHONY: all build test setup vet unit integration bench demo clean

all: build

build:
	$(GO) build -o bin/mynet .

# One command for everything; make stops at the first failing step.
test:
	bash integration/setup.sh
	$(GO) vet ./...
	$(GO) vet -tags integration ./integration/...
	$(GO) test -race -count=1 ./...
	$(GO) test -race -count=1 -tags integration -timeout 40m ./integration/...

setup:
	bash integration/setup.sh

vet:
	$(GO) vet ./...
	$(GO) vet -tags integration ./integration/...

unit:
	$(GO) test -race -count=1 ./...

integration:
	$(GO) test -race -count=1 -tags integration -timeout 40m ./integration/...

bench:
	$(GO) test -run xxx -bench . ./...

demo:
	bash integration/demo.sh

clean:
	rm -rf bin
