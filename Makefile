# The two commands of the README: `make demo` and `make test`.
BUILD ?= build
CMAKE_FLAGS ?=
CTEST_FLAGS ?=

.PHONY: all setup configure build demo test test-unit bench load soak clean

all: build

setup:
	./scripts/setup

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

configure: $(BUILD)/build.ninja

build: setup configure
	cmake --build $(BUILD)

# Builds, then runs every test (unit, root, slow) with ctest. A test that
# hangs fails after 10 minutes (--timeout; ctest's own default is 25), so a
# hang cannot eat CI's whole budget.
test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 600 -j$$(nproc) $(CTEST_FLAGS)

# The tests that need neither root nor kernel features.
test-unit: build
	cd $(BUILD) && ctest --output-on-failure --timeout 600 -L unit $(CTEST_FLAGS)

demo: build
	./scripts/demo $(BUILD)

bench: build
	./bench/cold_run.sh $(BUILD)
	$(BUILD)/uid_slots_bench
	# Bounded, so that a stalled transfer cannot hold the rest of the bench.
	timeout 900 $(BUILD)/net_bench || echo "net_bench: failed or timed out"
	./bench/pool_run.sh $(BUILD)
	./bench/live_run.py $(BUILD)
	./bench/e2b_sdk.mjs $(BUILD)
	./bench/code_interpreter.mjs $(BUILD)

# 1 to 1000 concurrent clients against one daemon (docs/reliability.md).
load: build
	./bench/load_run.sh $(BUILD)

# 20,000 runs at concurrency 8; fails on any failed run or any growth in the
# daemon's fds or threads, host mounts or cgroups.
soak: build
	LEVELS=8,8 RUNS=1250 OUT=bench-soak ./bench/load_run.sh $(BUILD)

clean:
	rm -rf $(BUILD)

# --- Sanitizers and fuzzing (README.md, "Fuzzing and sanitizers") ------------
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
# Reports of every sanitized process, the daemon included (its stderr is not
# the test's), are written here; any report fails test-asan.
SAN_REPORTS = $(abspath $(ASAN_BUILD))/sanitizer-reports

.PHONY: test-asan test-tsan fuzz fuzz-ci fuzz-merge

$(ASAN_BUILD)/build.ninja:
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DWB_SANITIZE=address,undefined $(CMAKE_FLAGS)

# Everything the tests below need (CMakeLists.txt, wb_unit_tests), all but
# the static agent and probe built with ASan+UBSan; runs the unit tests and
# the daemon e2e tests (PoolTest, socket activation, the HTTP API through
# curl, live sandboxes) under them.
test-asan: setup $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) --target wb_unit_tests pool_test activation_test live_test live_ops_test
	rm -rf $(SAN_REPORTS) && mkdir -p $(SAN_REPORTS)
	cd $(ASAN_BUILD) || exit 1; \
	  export ASAN_OPTIONS=log_path=$(SAN_REPORTS)/asan:detect_leaks=1 \
	         UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1; \
	  rc=0; \
	  ctest --output-on-failure --timeout 600 -j$$(nproc) -L unit $(CTEST_FLAGS) || rc=1; \
	  ctest --output-on-failure --timeout 600 -R '^(PoolTest\.|ActivationTest\.|LiveTest\.|LiveOpsTest\.|http_api_test$$)' $(CTEST_FLAGS) || rc=1; \
	  if [ -n "$$(ls -A $(SAN_REPORTS))" ]; then \
	    echo "test-asan: sanitizer reports in $(SAN_REPORTS):"; cat $(SAN_REPORTS)/*; rc=1; \
	  fi; \
	  exit $$rc

# The daemon's concurrency tests (the e2e tests and the soak test) under
# ThreadSanitizer, in a build of its own.
TSAN_BUILD ?= build-tsan
TSAN_REPORTS = $(abspath $(TSAN_BUILD))/sanitizer-reports

$(TSAN_BUILD)/build.ninja:
	cmake -S . -B $(TSAN_BUILD) -G Ninja -DWB_SANITIZE=thread $(CMAKE_FLAGS)

test-tsan: setup $(TSAN_BUILD)/build.ninja
	cmake --build $(TSAN_BUILD) --target pool_test pool_soak_test
	rm -rf $(TSAN_REPORTS) && mkdir -p $(TSAN_REPORTS)
	cd $(TSAN_BUILD) || exit 1; \
	  export TSAN_OPTIONS=log_path=$(TSAN_REPORTS)/tsan:second_deadlock_stack=1; \
	  rc=0; \
	  ctest --output-on-failure --timeout 600 -R '^(PoolTest|PoolSoakTest)\.' $(CTEST_FLAGS) || rc=1; \
	  if [ -n "$$(ls -A $(TSAN_REPORTS))" ]; then \
	    echo "test-tsan: sanitizer reports in $(TSAN_REPORTS):"; cat $(TSAN_REPORTS)/*; rc=1; \
	  fi; \
	  exit $$rc

# libFuzzer targets (fuzz/), built with clang in $(FUZZ_BUILD); each runs
# FUZZ_SECONDS on its seed corpus. A crash fails the run; see fuzz/run.
fuzz: setup
	./fuzz/run --build $(FUZZ_BUILD) --seconds $(FUZZ_SECONDS)

# What CI runs: the same, 30 s per target.
fuzz-ci: setup
	./fuzz/run --build $(FUZZ_BUILD) --seconds 30

# Adds to fuzz/corpus/ the inputs found by earlier runs that reach new
# coverage (review and commit them, or not).
fuzz-merge:
	./fuzz/run --build $(FUZZ_BUILD) --merge

# --- Formatting (.clang-format; CI runs format-check) ---------------------------
.PHONY: format format-check
# One version: another clang-format formats some constructs differently.
CLANG_FORMAT ?= clang-format-14
FORMAT_FILES = git ls-files '*.cc' '*.h'

format:
	$(FORMAT_FILES) | xargs $(CLANG_FORMAT) -i

format-check: setup
	$(FORMAT_FILES) | xargs $(CLANG_FORMAT) --dry-run --Werror
