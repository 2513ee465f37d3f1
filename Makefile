# intake — the front door. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
BIN       := $(CURDIR)/bin
STACK     := deploy/local/stack.sh
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/intakehq/intake/internal/cli.Version=$(VERSION)
SQLC_VERSION := v1.31.1
STATICCHECK_VERSION := v0.8.2
TEST_TIMEOUT ?= 18m
FAULTS_TIMEOUT ?= 90m

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z0-9_\/-]+:.*?## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: up
up: ## Start the local stack (PostgreSQL, Redis, MinIO, kumo, toxiproxy); builds MinIO/kumo/toxiproxy into bin/ the first time.
	@$(STACK) up

.PHONY: down
down: ## Stop MinIO, kumo and toxiproxy (PostgreSQL and Redis belong to the machine).
	@$(STACK) down

.PHONY: status
status: ## Show which local services answer.
	@$(STACK) status

.PHONY: build
build: ## Build the static intake binary into bin/intake (what the image contains).
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/intake ./cmd/intake

.PHONY: run
run: up build ## Bring the stack up and run `intake run` with the local configuration.
	@echo "==> intake run against the local stack:"; $(STACK) env | sed 's/SECRET_ACCESS_KEY=.*/SECRET_ACCESS_KEY=****/; s/INGRESS_TOKEN=.*/INGRESS_TOKEN=****/; s/^/    /'
	@echo "==> WARNING: the API key 'local-dev-key-not-secret' (owner 'dev') is written in this repository. Never use it outside your machine."
	@echo "==> API on http://127.0.0.1:8080; /metrics, detailed /readyz and /debug/pprof/ on http://127.0.0.1:8082; tables in schema intake of database intake"
	@set -a; eval "$$($(STACK) env)"; set +a; \
	  INTAKE_MIGRATE=true INTAKE_API_KEYS='local-dev-key-not-secret=dev' INTAKE_API_CORS_ORIGINS='*' \
	  INTAKE_DB_SCHEMA=intake INTAKE_ADMIN_LISTEN_ADDR=127.0.0.1:8082 INTAKE_ADMIN_PPROF=true INTAKE_WEBHOOK_ALLOW_PRIVATE=true exec $(BIN)/intake run

.PHONY: browser
browser: ## Install what the API's browser test and benchmark need (Chromium, npm packages); idempotent.
	@deploy/local/browser.sh

.PHONY: test
test: up browser ## Bring the stack up and run every test (race detector on, real servers).
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(GO) test -count=1 -run '$(ALLOC_TESTS)' $(ALLOC_PKGS)

# The tests that count allocations skip themselves under -race (internal/race: its instrumentation
# allocates); `make test` runs them once more without it. A new one goes in both lists.
ALLOC_TESTS := Alloc|OffTheHeap|GrowsOnce
ALLOC_PKGS := ./internal/api ./internal/store ./internal/telemetry ./internal/ctxval

.PHONY: faults
faults: up ## Run the fault suite at full length (real intake processes, toxiproxy, kill -9; stops by itself) and print its table.
	INTAKE_FAULTS=full INTAKE_FAULTS_REPORT=$(CURDIR)/internal/faults/RESULTS.md \
	  $(GO) test -count=1 -v -timeout $(FAULTS_TIMEOUT) ./internal/faults/

.PHONY: test/unit
test/unit: ## Run only the tests that need no servers (-short).
	$(GO) test -race -short -count=1 ./...

.PHONY: bench
bench: up browser ## Run the benchmarks (Go benchmarks and load scripts), one package at a time so they do not share the cores.
	$(GO) test -p 1 -run '^$$' -bench . -benchmem -count=1 -timeout 30m ./...

.PHONY: lint
lint: ## go vet, staticcheck and gofmt.
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

$(BIN)/sqlc:
	GOBIN=$(BIN) $(GO) install github.com/sqlc-dev/sqlc/cmd/sqlc@$(SQLC_VERSION)

.PHONY: generate
generate: $(BIN)/sqlc ## Regenerate the query code from internal/store/{migrations,queries}.
	$(BIN)/sqlc generate

.PHONY: verify
verify: $(BIN)/sqlc ## Check that generated code is up to date.
	$(BIN)/sqlc diff

.PHONY: image
image: ## Build the container image (needs a Docker engine).
	docker build -f deploy/Dockerfile --build-arg VERSION=$(VERSION) -t intake:$(VERSION) .

.PHONY: clean
clean: ## Remove build outputs (keeps the cached MinIO/kumo/toxiproxy binaries).
	rm -f $(BIN)/intake $(BIN)/intake-bootstrap
