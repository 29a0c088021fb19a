#!/usr/bin/env bash
# Runs every test of citywatch. Installs what the tests need first. Run from anywhere:
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Real servers the tests start on free ports: Mosquitto (MQTT) and VictoriaMetrics (which
# speaks the InfluxDB v2 write API); OpenSSL makes the test CAs and certificates (TLS to the
# broker, https webhooks); a real browser for the control-room page (Chromium and
# its WebDriver, with a CJK font so its screenshots are readable).
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk" || missing+=(fonts-wqy-zenhei)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages) for the end-to-end tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

cargo test --workspace --locked
# The API against its OpenAPI document (schemathesis, from PyPI, in target/schemathesis).
bash scripts/openapi-check.sh
