# The two commands of the README:
#   make run    build, then start `coder server` on the built-in PostgreSQL
#               with a first user, the default template and a workspace
#   make test   build, then run the whole test suite
# Both install what they need when missing (Debian packages, npm modules).

SHELL := /bin/bash
GO ?= go
BIN := bin/coder
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -s -w -X main.version=$(VERSION)
GOFILES := $(shell find . -name '*.go' -not -path './node_modules/*' 2>/dev/null)
TEMPL := $(wildcard web/*.templ)
# ts_debug_websockets compiles tailscale's websocket DERP client, for
# --derp-force-websockets.
export GOFLAGS := -tags=ts_debug_websockets

.PHONY: run build test deps assets generate check-generated lint bench fuzz clean

run: build
	./scripts/dev.sh

build: $(BIN)

$(BIN): deps assets $(GOFILES) $(TEMPL) go.mod go.sum
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/coder

# deps installs the Debian packages and npm modules the build and the tests
# need, when they are missing.
deps:
	@./scripts/deps.sh

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

assets: node_modules/.package-lock.json
	node static/build.mjs

generate:
	$(GO) tool templ generate -path web

# check-generated fails when the committed templ output is stale.
check-generated:
	@$(GO) tool templ generate -path web >/dev/null
	@git diff --exit-code -- web || { echo "web/*_templ.go is stale: run 'make generate' and commit"; exit 1; }

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test: build check-generated lint
	CODER_TEST_BINARY=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 12m ./...

# fuzz runs every fuzzer of user input for FUZZTIME each.
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./sdk -run '^$$' -fuzz FuzzParseTemplate -fuzztime $(FUZZTIME)
	$(GO) test ./apps -run '^$$' -fuzz FuzzAppPath -fuzztime $(FUZZTIME)
	$(GO) test ./apps -run '^$$' -fuzz FuzzRewriteSetCookie -fuzztime $(FUZZTIME)
	$(GO) test ./apps -run '^$$' -fuzz FuzzParseAppHost -fuzztime $(FUZZTIME)
	$(GO) test ./apps -run '^$$' -fuzz FuzzWildcardLabel -fuzztime $(FUZZTIME)
	$(GO) test ./terminal -run '^$$' -fuzz FuzzParseInput -fuzztime $(FUZZTIME)
	$(GO) test ./terminal/vt -run '^$$' -fuzz FuzzTerminal -fuzztime $(FUZZTIME)
	$(GO) test ./tailnet -run '^$$' -fuzz FuzzParseDERPMap -fuzztime $(FUZZTIME)
	$(GO) test ./tailnet -run '^$$' -fuzz FuzzRegister -fuzztime $(FUZZTIME)
	$(GO) test ./agent -run '^$$' -fuzz FuzzParseProcNetTCP -fuzztime $(FUZZTIME)

bench: build
	./bench/run.sh

clean:
	rm -rf bin static/dist/*.js static/dist/*.css
