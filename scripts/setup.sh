#!/usr/bin/env bash
# setup.sh: install what dwfleet's build and tests need, from Debian's packages. Idempotent: when
# everything is present it prints nothing and returns at once. Needs root (or sudo) to install.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  librdkafka-dev libcurl4-openssl-dev libjansson-dev libpq-dev libcriterion-dev libmicrohttpd-dev
  libssl-dev libjemalloc-dev
  postgresql postgresql-client openjdk-17-jre-headless maven kcat
  curl ca-certificates procps
  clang libclang-rt-14-dev clang-format
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "setup: installing ${missing[*]}" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "setup: these packages are missing and I am not root (no sudo either): ${missing[*]}" >&2
    echo "setup: install them with: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get update -qq >"$log" 2>&1; then
  echo "setup: apt-get update failed:" >&2; tail -20 "$log" >&2; exit 1
fi
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
  echo "setup: apt-get install ${missing[*]} failed:" >&2; tail -30 "$log" >&2; exit 1
fi
echo "setup: done" >&2
