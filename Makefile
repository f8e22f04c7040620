# Banyan. `make demo` runs the main job, `make test` passes the tests; each
# installs what it needs first (Go modules; ffmpeg, and chromium for the web
# page's browser test, via apt-get when missing and running as root).

GO        ?= go
BIN       := bin
# Three binaries (README, "Three binaries"): sched, the front
# (cmd/schedfront), which hands `sched job submit` to the client helper and
# execs sched-client for the rest; sched-client, the thin client (no cgo,
# starts fast; also the helper); and banyand, the full one (server, agent,
# dev, encoder), which sched-client execs for those commands.
SCHED     := $(BIN)/sched
SCHED_CLIENT := $(BIN)/sched-client
BANYAND   := $(BIN)/banyand
# The thin client's build tags (bench/schedbuild.ThinTags): schedthin leaves
# the daemons out; grpcnotrace keeps golang.org/x/net/trace out.
THIN_TAGS := schedthin,grpcnotrace
TOOLS     := $(CURDIR)/$(BIN)/tools
# Generator versions are pinned: `make proto` output must not depend on the
# machine.
PROTOC_GEN_GO_VERSION      := v1.36.11
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
# The wire codec's generated encoders (api/wirecodec); the same version as
# the github.com/planetscale/vtprotobuf runtime that go.mod requires.
PROTOC_GEN_GO_VTPROTO_VERSION := v0.6.1-0.20240319094008-0393e58bdf10
# Packages with goroutines run under the race detector in `make test`.
# ./cmd/... comes first: go test builds and starts packages in the order
# given, and cmd/sched's end-to-end tests are the longest (about 5 of the
# phase's minutes), so they should run beside the others, not after them.
RACE_PKGS := ./cmd/... ./scheduler/... ./agent/... ./bench/simagent/... ./bench/cmd/... ./bench/cliprobe/...
PURE_PKGS := ./pool/... ./api/... ./encoder/... ./bench/sim/... ./bench/encode/... ./bench/chaos/... ./bench/peers/... ./bench/schedbuild/...

.PHONY: all build test test-deps test-short fuzz demo bench bench-soak bench-quick bench-micro bench-encode bench-peers proto lint deps corpus clean image cluster-smoke cluster-upgrade chaos

all: build

deps:
	@$(GO) mod download
	@scripts/apt-install.sh ffmpeg

# The web page's browser test drives Debian's chromium.
test-deps: deps
	@scripts/apt-install.sh chromium

build: deps
	$(GO) build -o $(BANYAND) ./cmd/sched
	CGO_ENABLED=0 $(GO) build -tags $(THIN_TAGS) -trimpath -o $(SCHED_CLIENT) ./cmd/sched
	CGO_ENABLED=0 $(GO) build -trimpath -o $(SCHED) ./cmd/schedfront

# The media corpus (encoder/corpus): generated sources with real-world
# traits, cached by recipe, and real files from Debian packages, unpacked
# (not installed) under the cache. Without network the tests run on the
# generated files alone.
corpus: deps
	@$(GO) run ./encoder/corpus/cmd/corpusgen >/dev/null
	@$(GO) run ./encoder/corpus/cmd/corpusgen -list -debian default >/dev/null || \
		echo "corpus: the Debian packages with real media files could not be fetched; tests use the generated files only" >&2

# go vet of the thin build's files (its tests are the full build's).
VET_THIN = cd cmd/sched && $(GO) vet -tags $(THIN_TAGS) $$($(GO) list -tags $(THIN_TAGS) -f '{{join .GoFiles " "}}' .)

test: test-deps corpus
	$(GO) vet ./...
	$(VET_THIN)
	$(GO) test -count=1 -timeout 10m $(PURE_PKGS)
	$(GO) test -count=1 -race -timeout 12m $(RACE_PKGS)

# Native Go fuzz targets, as PACKAGE:TARGET. `make test` runs their seed
# corpora (f.Add seeds and testdata/fuzz/TARGET/); `make fuzz` fuzzes each
# for FUZZTIME, one target at a time (-fuzz takes one target per package).
FUZZTIME     ?= 10m
FUZZPARALLEL ?= $(shell nproc 2>/dev/null || echo 1)
FUZZ_TARGETS := ./cmd/sched/jobfile:FuzzParse ./cmd/sched:FuzzParseManifest \
	./encoder:FuzzParseLadder ./encoder:FuzzProbeParsers \
	./scheduler/state:FuzzExpansion ./scheduler/state:FuzzApply \
	./scheduler/server:FuzzRestore ./scheduler/server:FuzzFSMApply

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -parallel $(FUZZPARALLEL) $$pkg; \
	done

# Quick inner-loop run without the race detector.
test-short: deps
	$(GO) test -count=1 -short ./...

demo: build
	@scripts/demo.sh

# The farm-scale benchmarks on a real cluster (bench/README.md): three
# `sched server` processes, agents in processes of their own, every
# scenario 3 times on a fresh cluster (medians, min and max): results as a
# table and JSON under bench/results/ (latest.json).
bench: deps
	$(GO) run ./bench/cmd/banyan-bench -runs 3

# Retention soak: a simulated week at a million tasks a day through the
# real state machine; prints the state's size every 12 simulated hours.
bench-soak: deps
	$(GO) run ./bench/cmd/banyan-sim bench/sim/testdata/soak-week.yaml | tee bench/results/soak-week.txt

# The same, scaled down to run in a few minutes.
bench-quick: deps
	$(GO) run ./bench/cmd/banyan-bench -quick

# Plain vs chunked encode of one ladder on this machine: bench/results/encode.json.
bench-encode: deps
	$(GO) run ./bench/encode/cmd/encodebench -repeat 3

# Banyan against Slurm on this machine, in one run (bench/README.md):
# installs Debian's slurm-wlm and munge, and Grid Engine (the second
# peer), runs a private Slurm on loopback, a private
# Grid Engine cell in a network namespace of its own and `sched dev`,
# writes bench/results/peers.json and peers.md and the ratios under "peers"
# in latest.json. Needs root.
bench-peers: deps
	@scripts/install-slurm.sh
	@scripts/install-gridengine.sh
	$(GO) run ./bench/cmd/banyan-peers

# Micro-benchmarks of the pure placement and queue code.
bench-micro: deps
	$(GO) test -run '^$$' -bench . -benchmem ./scheduler/placement/ ./scheduler/queue/

# The fault harness (bench/chaos): 3 servers and 3 agents as processes,
# a workload, faults in rounds; exits non-zero if an acknowledged job was
# lost, renumbered or duplicated. As root it builds its own network
# namespaces (partitions) and tmpfs data dirs (disk full).
CHAOS_ROUNDS ?= 15
chaos: build
	$(GO) build -o $(BIN)/chaos ./bench/chaos/cmd/chaos
	$(BIN)/chaos -sched $(SCHED) -rounds $(CHAOS_ROUNDS)

proto:
	@command -v protoc >/dev/null 2>&1 || scripts/apt-install.sh protobuf-compiler
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	GOBIN=$(TOOLS) $(GO) install github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto@$(PROTOC_GEN_GO_VTPROTO_VERSION)
	PATH=$(TOOLS):$$PATH protoc -I . --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		--go-vtproto_out=. --go-vtproto_opt=paths=source_relative,features=marshal+unmarshal+size \
		api/banyanv1/banyan.proto api/banyanv1/operator.proto api/banyanv1/logs.proto
	PATH=$(TOOLS):$$PATH protoc -I . --go_out=. --go_opt=paths=source_relative \
		--go-vtproto_out=. --go-vtproto_opt=paths=source_relative,features=marshal+unmarshal+size \
		scheduler/fsmpb/fsm.proto

# A FROM-scratch image of sched (static, with busybox), built without pulls.
image:
	deploy/docker/build.sh

# Three servers and two agents in containers: run a job, stop the leader,
# check a new one is elected and runs another.
cluster-smoke:
	scripts/cluster-smoke.sh

# Rolling upgrade of that cluster from the release of the fixture-v1 data
# dir (or BANYAN_UPGRADE_FROM) to this tree, one server at a time, then the
# agents, while a job runs: it keeps serving, the job succeeds, old jobs stay.
cluster-upgrade:
	@scripts/apt-install.sh jq
	scripts/cluster-upgrade.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(VET_THIN)

clean:
	rm -rf $(BIN) .banyan-dev demo-out
