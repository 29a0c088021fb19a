#!/usr/bin/env bash
# Runs every test of citywatch. Installs what the tests need first. Run from anywhere:
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Real servers the tests start on free ports: Mosquitto (MQTT) and VictoriaMetrics (which
# speaks the InfluxDB v2 write API).
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages) for the end-to-end tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

cargo test --workspace --locked
