#!/usr/bin/env bash
# test.sh: what `make test` runs. Builds, starts the local services (stopping afterwards those it
# started, also when tests fail), runs every ctest label against the real Kafka and PostgreSQL,
# then the service-free tests again under ASan+UBSan. Exit status: ctest's.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
jobs=$(nproc)

echo "== build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"

started=0
if ! scripts/services.sh status >/dev/null 2>&1; then
  started=1
fi
cleanup() { if [[ $started -eq 1 ]]; then echo "== services down"; scripts/services.sh down || true; fi; }
trap cleanup EXIT
echo "== services up"
scripts/services.sh up
eval "$(scripts/services.sh env)"

rc=0
echo "== tests (unit, cli, integration)"
(cd build && ctest --output-on-failure -j"$jobs") || rc=$?

echo "== build with ASan+UBSan"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DDW_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
echo "== tests under ASan+UBSan (unit, cli)"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest -L 'unit|cli' --output-on-failure -j"$jobs") || rc=$?

exit $rc
