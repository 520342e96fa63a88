# The two commands of the README: `make demo` and `make test`.
BUILD ?= build
CMAKE_FLAGS ?=
CTEST_FLAGS ?=

.PHONY: all setup configure build demo test test-unit bench clean

all: build

setup:
	./scripts/setup

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

configure: $(BUILD)/build.ninja

build: setup configure
	cmake --build $(BUILD)

# Builds, then runs every test (unit, root, slow) with ctest.
test: build
	cd $(BUILD) && ctest --output-on-failure -j$$(nproc) $(CTEST_FLAGS)

# The tests that need neither root nor kernel features.
test-unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit $(CTEST_FLAGS)

demo: build
	./scripts/demo $(BUILD)

bench: build
	./bench/cold_run.sh $(BUILD)
	./bench/pool_run.sh $(BUILD)

clean:
	rm -rf $(BUILD)
