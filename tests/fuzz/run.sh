#!/usr/bin/env bash
# run.sh: build every libFuzzer target with clang (ASan + UBSan + libFuzzer) and run each for a
# short time from its seed corpus. ctest runs this as `fuzz_smoke` (label fuzz); by hand:
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
# Exit 0: no crash; 1: a target crashed or failed to build (its output and the crashing input are
# printed); 77: clang with libFuzzer is not installed (ctest reports the test as skipped).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
seconds=${1:-${DW_FUZZ_SECONDS:-10}}
shift || true
out=${DW_FUZZ_DIR:-$root/build/fuzz}

if ! command -v clang >/dev/null 2>&1; then
  echo "fuzz: clang is not installed; skipping (scripts/setup.sh installs it)"
  exit 77
fi
if ! echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n){(void)d;(void)n;return 0;}' |
     clang -x c -fsanitize=fuzzer - -o /dev/null 2>/dev/null; then
  echo "fuzz: clang cannot link libFuzzer (libclang-rt-*-dev missing?); skipping"
  exit 77
fi

mkdir -p "$out/obj"
cflags=(-g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
        -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -DDW_VERSION=\"fuzz\"
        -DDW_GIT_REV=\"fuzz\" -DDW_DEFAULT_SCHEMAS_DIR=\"$root/schemas\"
        -I"$root/common" -I"$root/emulators/dw-emulator" -I"$root/workers/writer"
        $(pkg-config --cflags rdkafka libcurl jansson libpq libmicrohttpd libcrypto))
libs=($(pkg-config --libs rdkafka libcurl jansson libpq libmicrohttpd libcrypto) -lpthread -lm)

# name | sources besides the target | corpus folders | dictionary | max_len
targets=(
  "fuzz_filter|common|tests/fuzz/corpus/filter|tests/fuzz/filter.dict|4096"
  "fuzz_map_load|common tests/fuzz/fuzz_maps.c|schemas/maps tests/maps/valid tests/maps/invalid|tests/fuzz/map.dict|16384"
  "fuzz_mapper|common tests/fuzz/fuzz_maps.c|tests/fuzz/corpus/mapper|tests/fuzz/mapper.dict|8192"
  "emu/fuzz_emu_odata|common emulators/dw-emulator/emu_odata.c|tests/fuzz/emu/corpus_odata||4096"
  "emu/fuzz_emu_batch|common emulators/dw-emulator/emu_batch.c|tests/fuzz/emu/corpus_batch||65536"
  "fuzz_writer_json|common workers/writer/writer_json.c|tests/fuzz/corpus/writer_json||8192"
  "fuzz_json_load|common|tests/fuzz/corpus/json_load||8192"
)

# The common library once, instrumented (recompiled only when a source is newer).
common_objs=()
for src in "$root"/common/dw_*.c; do
  obj="$out/obj/$(basename "${src%.c}").o"
  if [[ ! -f $obj || $src -nt $obj || -n $(find "$root/common" -name '*.h' -newer "$obj" -print -quit) ]]; then
    clang "${cflags[@]}" -c "$src" -o "$obj" || { echo "fuzz: cannot compile $src"; exit 1; }
  fi
  common_objs+=("$obj")
done

failed=0
ran=0
for spec in "${targets[@]}"; do
  IFS='|' read -r name extra corpora dict maxlen <<<"$spec"
  src="$root/tests/fuzz/$name.c"
  base=$(basename "$name")
  if [[ $# -gt 0 && ! " $* " =~ " $base " ]]; then continue; fi
  [[ -f $src ]] || { echo "fuzz: $base: no $src yet, not run"; continue; }
  srcs=("$src")
  objs=()
  for e in $extra; do
    if [[ $e == common ]]; then objs+=("${common_objs[@]}"); else srcs+=("$root/$e"); fi
  done
  bin="$out/$base"
  if ! clang "${cflags[@]/fuzzer-no-link/fuzzer}" "${srcs[@]}" "${objs[@]}" "${libs[@]}" -o "$bin" 2>"$out/$base.build.log"; then
    echo "fuzz: $base: build failed"; cat "$out/$base.build.log"; failed=1; continue
  fi
  corpus="$out/$base.corpus"
  rm -rf "$corpus"; mkdir -p "$corpus"
  for c in $corpora; do
    [[ -d $root/$c ]] && find "$root/$c" -maxdepth 1 -type f -exec cp -t "$corpus" {} +
  done
  args=(-max_total_time="$seconds" -max_len="$maxlen" -timeout=10 -rss_limit_mb=2048
        -artifact_prefix="$out/$base-" -print_final_stats=1)
  [[ -n $dict ]] && args+=(-dict="$root/$dict")
  if "$bin" "${args[@]}" "$corpus" >"$out/$base.log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/$base.log" | grep -o '[0-9]*$')
    echo "fuzz: $base: ok, ${runs:-?} runs in ${seconds}s"
    ran=$((ran + 1))
  else
    echo "fuzz: $base: FAILED"; tail -60 "$out/$base.log"
    ls "$out/$base-"* 2>/dev/null | sed 's/^/fuzz: crashing input: /'
    failed=1
  fi
done
echo "fuzz: $ran target(s) ran clean"
exit $failed
