#!/usr/bin/env bash
# Installs the Debian bookworm packages mh needs to build, test and demo.
# Idempotent: asks apt only for what is missing, and says nothing when all is there.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  capnproto libcapnp-dev libzmq3-dev liblmdb-dev libfmt-dev libcli11-dev
  libssl-dev libgtest-dev libsimdjson-dev libre2-dev
  libtomlplusplus-dev        # manifests, gateway registry
  libcurl4-openssl-dev       # HTTP(S) and SMTP clients (mh-notify, mh-stream)
  libmosquitto-dev           # MQTT client of external brokers (mh-stream)
  openssl curl mosquitto mosquitto-clients   # real clients and a real broker in tests
  clang libclang-rt-14-dev   # libFuzzer targets
  jq                         # test oracles
  libxml2-utils              # xmllint: SVG output parses as XML (mh-store plot)
  time                       # peak memory in bench/run.sh
  iproute2                   # ip netns: hosts as network namespaces (route_netns_test)
  python3                    # the demo's webhook receiver (examples/webhook-receiver.py), free ports
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root or install them" >&2
  exit 69
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
