#!/usr/bin/env bash
# Runs every test of citywatch. Installs what the tests need first (Mosquitto: the end-to-end
# tests start their own broker on a free port). Run from anywhere: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  echo "installing mosquitto (Debian package) for the end-to-end tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
fi
export PATH="$PATH:/usr/sbin"

cargo test --workspace --locked
