# bindwatch — see README.md. `make` builds; `make test` runs every test
# (unit, real-kernel integration as root, and the qemu kernel matrix).

SHELL   := /bin/bash
GO      ?= go
CLANG   ?= clang-19
BINARY  ?= bindwatch
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# Packages whose integration tests also run inside the qemu kernel matrix:
# VM_TEST_PKGS once per backend (they trace), VM_ONCE_PKGS once per kernel.
# PKG=REGEXP runs only those tests, PKG!REGEXP all but those: the guest is
# a bare busybox, and tests that need python3, ss or iproute2's netns run
# on the host only. cmd/bindwatch's tests drive the real binary.
VM_CMD_TRACING := ^(TestRunTracesOnlyItsTree|TestRunExitStatus|TestRunForwardsSIGTERM|TestJSONOutputMatchesSchema|TestDoctor|TestRecoveredCountsRefusedConnections|TestReleasedResetsUnknownWhenQueueMayMigrate)$$
VM_CMD_ONCE := ^(TestWhoNamesTheHolder|TestCommandsOpenTheTracersIterators|TestFree(RefusesItsParent|RefusesItsGrandparent|RefusesItself|TimeWaitIsExplained|JSONRefusesItsParent|JSONTimeWait|UsageErrors)|TestWaitFree(ReturnsWhenHolderExits|TimeWait|BindsOncePerChange|JSONReturnsWhenHolderExits))$$
VM_RESOLVE_SKIP := ^(TestCauseManagers|TestWhoAgreesWithSS|TestResolveRealServers)$$
VM_TEST_PKGS ?= ./internal/tracer,./internal/watch,./internal/vmtest/testdata/smoke,./cmd/bindwatch=$(VM_CMD_TRACING),./internal/corpus=^(TestGoServer|TestConnectFirst)$$
VM_ONCE_PKGS ?= ./internal/resolve!$(VM_RESOLVE_SKIP),./internal/host=^TestRaiseMemlock$$,./internal/diagnose,./internal/iterload,./internal/deploy,./cmd/bindwatch=$(VM_CMD_ONCE)
TEST_LOG := .cache/test.log

.PHONY: image dist vmtest-arm64 all build man generate check-generated vmlinux test deps gotest gorace fuzz vmtest bench mutate lint fmt clean

all: build

# Every binary is static (no dynamic loader or libc at start: ~2 ms of each
# one-shot command, and the same file runs FROM scratch) and leaves out
# urfave/cli's man-page and markdown generator, which bindwatch never calls
# (its init alone costs ~0.5 ms). User names come from /etc/passwd.
GOBUILD := CGO_ENABLED=0 $(GO) build -tags urfave_cli_no_docs

build:
	$(GOBUILD) -ldflags "-X main.version=$(VERSION)" -o $(BINARY) ./cmd/bindwatch

# The man page, made from the command definitions by the binary itself
# (cmd/bindwatch's TestManPage fails when the checked-in page differs).
man: build
	./$(BINARY) man > docs/bindwatch.1

# The container image (Containerfile): the static binary FROM scratch, as
# localhost/bindwatch:$(VERSION) and localhost/bindwatch:dev.
IMAGE ?= localhost/bindwatch
image:
	@mkdir -p .cache/image
	$(GOBUILD) -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o .cache/image/bindwatch ./cmd/bindwatch
	podman build -q -f Containerfile --build-arg VERSION=$(VERSION) -t $(IMAGE):$(VERSION) -t $(IMAGE):dev .cache/image

# Release files in dist/: static binaries for amd64 and arm64 with the
# version stamped, the image saved as an archive, and their SHA-256 sums.
DIST_ARCHES ?= amd64 arm64
dist: image
	rm -rf dist && mkdir -p dist
	for arch in $(DIST_ARCHES); do \
		GOARCH=$$arch $(GOBUILD) -trimpath -ldflags "-s -w -X main.version=$(VERSION)" \
			-o dist/$(BINARY)-$(VERSION)-linux-$$arch ./cmd/bindwatch || exit 1; \
	done
	podman save -q --format oci-archive -o dist/$(BINARY)-$(VERSION)-image.tar $(IMAGE):$(VERSION)
	cd dist && sha256sum -- * > SHA256SUMS

# Regenerate the BPF objects and their Go bindings (needs clang-19).
generate:
	$(GO) generate ./...

# The committed *_bpfel.{go,o} must be what the committed C compiles to.
# Bindings are compared byte for byte; objects by meaning (samebpf), because
# clang numbers BTF forward declarations differently from another checkout
# path. A regenerated object that means the same is put back as committed.
check-generated:
	@if ! command -v $(CLANG) >/dev/null; then echo "check-generated: $(CLANG) not installed, skipping the freshness check"; exit 0; fi; \
	$(MAKE) --no-print-directory generate || exit 1; \
	stale=0; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	for f in $$(git diff --name-only -- '*_bpfel.go' '*_bpfel.o'); do \
		case $$f in \
		*.o) git show ":$$f" > "$$tmp/committed.o" && \
			if $(GO) run ./internal/tools/samebpf "$$tmp/committed.o" "$$f"; then git checkout -- "$$f"; else stale=1; fi ;; \
		*) git diff --stat -- "$$f"; stale=1 ;; \
		esac; \
	done; \
	if [ $$stale = 1 ]; then echo "check-generated: the committed BPF objects are stale: run 'make generate' and commit the result"; exit 1; fi

# vmlinux.h from the running kernel's BTF (CO-RE makes one header fit all).
vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h

# Every test. As root, BPF tests load real programs into this kernel; with
# BINDWATCH_REQUIRE_BPF=1 (CI) a skipped test is a failure. `deps` first
# installs what the tests use (as root; it says what it installs).
test: deps
	@$(MAKE) --no-print-directory lint check-generated gotest gorace fuzz vmtest

deps:
	@bash scripts/test-deps.sh

gotest:
	@mkdir -p .cache
	@echo "go test -count=1 -v ./... (full log: $(TEST_LOG))"
	@$(GO) test -count=1 -v -timeout 15m ./... 2>&1 | tee $(TEST_LOG) | grep -E '^(ok|FAIL|--- FAIL|--- SKIP|panic:|\s+\S+_test\.go:)' ; \
	status=$${PIPESTATUS[0]}; \
	if [ "$$status" != 0 ]; then echo "gotest: what failed:"; grep -E -- '^\s*--- FAIL|^FAIL|^panic:' $(TEST_LOG) | tail -n 40; \
		echo "gotest: go test failed (full log: $(TEST_LOG))"; exit $$status; fi; \
	if [ "$$BINDWATCH_REQUIRE_BPF" = 1 ] && grep -q -- '--- SKIP' $(TEST_LOG); then \
		echo "gotest: tests were skipped but BINDWATCH_REQUIRE_BPF=1 requires every test to run:"; \
		grep -B1 -A2 -- '--- SKIP' $(TEST_LOG); exit 1; \
	fi; \
	echo "$$(grep -c -- '--- PASS' $(TEST_LOG)) passed, $$(grep -c -- '--- FAIL' $(TEST_LOG)) failed, $$(grep -c -- '--- SKIP' $(TEST_LOG)) skipped"

# The packages with goroutines of their own (syslog's sender, the metrics
# server, the incident reader, the session's pipeline and its iterator
# sharing, free's waits, the
# resolver's background load, iterload's kernel BTF index built beside
# the object's parse, the tracer's reader and linger timers, the
# netns and lockdown helpers' threads) again under the race detector
# (needs cgo: gcc, from test-deps). Measured on 6.18 as root: resolve 46 s,
# tracer 5 s, host 1 s under -race.
RACE_PKGS := ./internal/sink ./internal/incident ./internal/deploy ./internal/watch ./internal/resolve ./internal/iterload ./internal/tracer ./internal/host
gorace:
	@echo "go test -race $(RACE_PKGS)"
	@CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)

# iterload's BTF reader parses the kernel's bytes: fuzzed for a bounded
# time (FUZZTIME) from seeds cut from this kernel's BTF; a failing input
# lands in internal/iterload/testdata/fuzz and is a test from then on.
FUZZTIME ?= 20s
fuzz:
	@echo "go test -fuzz FuzzKernelBTF -fuzztime $(FUZZTIME) ./internal/iterload"
	@$(GO) test -run '^$$' -fuzz '^FuzzKernelBTF$$' -fuzztime $(FUZZTIME) ./internal/iterload

# Boot Debian kernels under qemu and run the integration tests in each.
# VM_FLAGS narrows it while developing: VM_FLAGS='-kernels 6.12 -backends fentry'.
# The per-kernel limit is for a hung guest: 5.10 took 19 of 20 minutes
# alone on 2 cores (2026-12-06), so it is 30.
vmtest:
	$(GO) run ./internal/vmtest -pkgs '$(VM_TEST_PKGS)' -once-pkgs '$(VM_ONCE_PKGS)' -timeout 30m $(VM_FLAGS)

# The tracer's integration tests in Debian's arm64 kernel (6.1), under
# qemu-system-aarch64 with TCG: the arm64 BPF object, built with
# bpf/arch.h, loaded and run by every backend that kernel has (kprobe,
# tracepoint). Emulated arm64 is slow, so only the tracing packages,
# without the ephemeral-port collision test (left out when it needed
# iproute2; it uses nsenter now, not yet tried here) and the storm
# (147,456 failing binds: 11-45 s per backend in emulated x86-64).
vmtest-arm64:
	$(GO) run ./internal/vmtest -arch arm64 -pkgs './internal/tracer,./internal/watch!^(TestEphemeralCollisionReported|TestUnprivilegedKeyStorm)$$' -once-pkgs './internal/iterload,./internal/resolve=^TestOwnerVariantsAgree$$' -timeout 45m $(VM_FLAGS)

# Speed targets (README): ns per bind() untraced vs traced, failing and
# succeeding, on this kernel and for every backend in each qemu kernel
# (emulated: compare ratios, not nanoseconds); `who` against ss, fuser and
# lsof with ~50,000 open fds.
bench: build
	BINDWATCH_BIN=$(CURDIR)/$(BINARY) $(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 20m ./internal/bench/ ./internal/resolve/
	$(GO) run ./internal/vmtest -pkgs ./internal/bench -bench . -timeout 15m

# Mutation testing (README, "Mutation testing"): gremlins (a Go tool
# dependency in go.mod, `go tool gremlins`) changes the pure packages'
# code one small mutant at a time and runs that package's tests against
# each; a mutant the tests still pass on "lived". Each package must kill
# at least MUTATE_EFFICACY percent of its covered mutants (gremlins' test
# efficacy, killed / (killed + lived)), read from gremlins' summary: its
# --threshold-efficacy flag is ignored in v0.6.0 (viper hands the float
# flag over as a string). sink is measured on its forms only (sink.go,
# ecs.go, fit.go): its outputs' files are left out; incident without
# html.go (the report page, whose drawing cmd/bindwatch's tests check in
# a real browser, which gremlins does not run), reported apart in the
# README. Slow (one test run
# per mutant: about an hour for all five on 2 shared cores), so not part
# of `make test`. One worker; a mutant whose tests take MUTATE_TIMEOUT
# times as long as the unmutated run is "timed out" (GOFLAGS=-count=1: a
# cached unmutated run would time every mutant out). MUTATE_PKGS narrows
# it: MUTATE_PKGS=./internal/redact make mutate.
MUTATE_PKGS ?= ./internal/events ./internal/redact ./internal/diagnose ./internal/incident ./internal/sink
MUTATE_EFFICACY ?= 85
MUTATE_TIMEOUT ?= 10
MUTATE_EXCLUDE_sink := -E '(file|syslog|metrics|metricsconn|compress|loss)\.go$$'
MUTATE_EXCLUDE_incident := -E 'html\.go$$'
mutate:
	@mkdir -p .cache/mutate; fail=; \
	for pkg in $(MUTATE_PKGS); do \
		name=$$(basename $$pkg); log=.cache/mutate/$$name.log; \
		case $$name in sink) exclude="$(MUTATE_EXCLUDE_sink)";; incident) exclude="$(MUTATE_EXCLUDE_incident)";; *) exclude=;; esac; \
		echo "gremlins unleash $$pkg (log: $$log)"; \
		eval GOFLAGS=-count=1 $(GO) tool gremlins unleash --workers 1 --timeout-coefficient $(MUTATE_TIMEOUT) \
			-o .cache/mutate/$$name.json $$exclude $$pkg > $$log 2>&1; status=$$?; \
		grep -E '^ *LIVED|^(Killed|Timed out|Test efficacy|Mutator coverage):' $$log; \
		eff=$$(sed -n 's/^Test efficacy: \([0-9.]*\)%.*/\1/p' $$log); \
		if [ $$status != 0 ] || [ -z "$$eff" ]; then fail="$$fail $$pkg"; echo "mutate: $$pkg: gremlins failed (status $$status): see $$log"; \
		elif ! awk -v e="$$eff" -v min=$(MUTATE_EFFICACY) 'BEGIN { exit !(e >= min) }'; then \
			fail="$$fail $$pkg"; echo "mutate: $$pkg: test efficacy $$eff% is below $(MUTATE_EFFICACY)%: add tests that kill the LIVED mutants above"; \
		fi; \
	done; \
	if [ -n "$$fail" ]; then echo "mutate: failed:$$fail"; exit 1; fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfel.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

fmt:
	gofmt -w $$(git ls-files '*.go' | grep -v '_bpfel.go$$')

clean:
	rm -f $(BINARY)
	rm -rf dist
