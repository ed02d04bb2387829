# Thin wrapper around CMake. The two commands a newcomer needs:
#   make demo   install what is missing, build, run the crash-detection demo
#   make test   install what is missing, build, run every test
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build demo lint test test-asan bench install clean

all: build

deps:
	@scripts/install-deps.sh build

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

demo: build
	$(BUILD)/luastream run examples/crash_detection.lua

# luacheck on the Lua code (.luacheckrc) and cppcheck on the C runtime.
lint:
	@scripts/install-deps.sh test
	luacheck --no-color -q lua examples tests/lua tests/e2e/scripts
	cppcheck --quiet --enable=warning,performance,portability --std=c11 --inline-suppr \
	  -D_GNU_SOURCE -I runtime --error-exitcode=1 runtime

# The linters, unit tests and Lua specs under AddressSanitizer +
# UndefinedBehaviorSanitizer with leak detection, then everything (unit, specs,
# end-to-end on the dev broker) on the release build.
test: lint
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLS_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1 ctest --test-dir $(ASAN_BUILD) --output-on-failure -R '^(unit|lua)\.'
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)
	ctest --test-dir $(BUILD) --output-on-failure

bench:
	@scripts/install-deps.sh bench
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)
	tests/bench/run.sh

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

# ---- gateways (docs/edge.md) ------------------------------------------------
# arm64: a cross build with Debian's aarch64 toolchain and arm64 multiarch
# libraries; its unit tests and specs run under qemu-user. deb: Debian packages
# for amd64 and arm64 (CPack), tested by scripts/test-deb.sh in a clean root.
ARM64_BUILD ?= build-arm64
DEB_BUILD   ?= build-deb

.PHONY: arm64 test-arm64 deb test-deb

arm64:
	@scripts/install-deps.sh arm64
	@cmake -S . -B $(ARM64_BUILD) -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
	  -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
	@cmake --build $(ARM64_BUILD) -j$(JOBS)
	@ls -l $(ARM64_BUILD)/luastream

test-arm64: arm64
	scripts/test-arm64.sh $(ARM64_BUILD)

deb: arm64
	@scripts/install-deps.sh deb
	@cmake -S . -B $(DEB_BUILD) -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
	@cmake --build $(DEB_BUILD) -j$(JOBS) --target luastream
	cd $(DEB_BUILD) && cpack -G DEB
	cd $(ARM64_BUILD) && cpack -G DEB
	@ls -l $(DEB_BUILD)/luastream_*_amd64.deb $(ARM64_BUILD)/luastream_*_arm64.deb

test-deb: deb
	scripts/test-deb.sh $(DEB_BUILD)/luastream_*_amd64.deb $(ARM64_BUILD)/luastream_*_arm64.deb

# systemd as PID 1 (podman) in a clean Debian 12 root running the amd64
# package's unit: READY=1, the watchdog's kill and restart, reload, stop.
.PHONY: test-systemd
test-systemd: deb
	@scripts/install-deps.sh container
	scripts/test-systemd.sh $(DEB_BUILD)/luastream_*_amd64.deb
