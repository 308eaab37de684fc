# Site sync gateway. `make help` lists the targets.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO      ?= go
PKGS    ?= ./...
FUZZTIME ?= 30s
# The receiver's tests need Debian's python3-btrees, python3-persistent, python3-transaction.
PYTHON  ?= /usr/bin/python3

.DEFAULT_GOAL := help

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-zA-Z_-]*:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build bin/gateway and bin/erp5sim
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.Version=$(VERSION)" -o bin/gateway ./cmd/gateway
	@if [ -d cmd/erp5sim ]; then CGO_ENABLED=0 $(GO) build -trimpath -o bin/erp5sim ./cmd/erp5sim; fi

deps: ## Install what the tests need (Debian's chromium for the browser tests)
	@scripts/install-test-deps

test: deps ## Run every test: vet, Go tests (browser tests included), the ERP5 receiver's Python tests
	$(GO) vet $(PKGS)
	CGO_ENABLED=0 $(GO) test -count=1 -shuffle=on -timeout 15m $(PKGS)
	@if [ -d erp5 ]; then $(PYTHON) -m unittest discover -s erp5; fi

race: ## Run the pure packages' tests under the race detector
	$(GO) test -race -count=1 . ./query/... ./policy/...

bench: ## Run the benchmarks (medians: use -count and benchstat)
	$(GO) test -run '^$$' -bench . -benchmem -count 5 $(PKGS)

fuzz: ## Run each fuzz target for FUZZTIME (default 30s)
	@scripts/fuzz-all $(FUZZTIME)

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet $(PKGS)

screenshots: ## Regenerate docs/screenshots/ from the browser tests
	GATEWAY_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run '^(TestWebApp|TestStatus_Page|TestStory_Chromium|TestStory_Firefox)$$' ./cmd/gateway/

demo: build ## Run the gateway with the ERP5 double and a simulated satellite link
	bin/gateway demo

clean: ## Remove build output
	rm -rf bin

.PHONY: help build deps test race bench fuzz lint screenshots demo clean
