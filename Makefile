# dwfleet: the two commands a newcomer needs, and a few for every day.
#   make test    install what is missing, build, start Kafka + PostgreSQL, run the whole suite
#                (unit, cli and integration tests, then the unit and cli tests again under
#                ASan+UBSan), stop the services it started
#   make demo    install what is missing, build, start the services and show the main job on the
#                emulators: initial sync F&O -> Dataverse, a live change each way, a summary
#                (DEMO_CUSTOMERS=50000, DEMO_KEEP=1 leaves it running; see scripts/demo.sh --help)
#   make build   configure and build into build/ (binaries in build/bin/)
#   make unit    build and run the tests that need no services
#   make asan    build into build-asan/ with ASan+UBSan and run the unit and cli tests
#   make services-up / services-down / services-status
#   make fuzz    run every libFuzzer target for a minute (FUZZ_SECONDS=60)
#   make format  clang-format every C file in place
JOBS ?= $(shell nproc)
BUILD_TYPE ?= RelWithDebInfo

.PHONY: all setup build test demo unit asan fuzz services-up services-down services-status format clean

all: build

setup:
	@scripts/setup.sh

build: setup
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null
	@cmake --build build -j$(JOBS)

test: setup
	@scripts/test.sh

demo:
	@scripts/demo.sh

unit: build
	@cd build && ctest -L 'unit|cli' --output-on-failure

asan: setup
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DDW_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j$(JOBS)
	@cd build-asan && ctest -L 'unit|cli' --output-on-failure

FUZZ_SECONDS ?= 60
fuzz: setup
	@tests/fuzz/run.sh $(FUZZ_SECONDS)

services-up:
	@scripts/services.sh up

services-down:
	@scripts/services.sh down

services-status:
	@scripts/services.sh status

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan
