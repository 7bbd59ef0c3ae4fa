#!/usr/bin/env bash
# One command on a fresh Debian bookworm machine: installs what is missing, builds, and
# runs the demo channel end to end: simulated sensors behind two gateways, with injected
# anomalies, across a ZeroMQ hop, printed for people, then as JSON, then at full speed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
export PATH="$PWD/build/tools:$PATH"
run=$(mktemp -d); trap 'rm -rf "$run"' EXIT

echo
echo "== 12 sensors behind 2 gateways, 24 readings a second, 5% anomalies (labelled),"
echo "   sent by mh-gen over a ZeroMQ socket to mh-cat, which prints them for people =="
mh-cat --in "@ipc://$run/ingest.sock" --count 72 --to text &
receiver=$!
mh-gen --sources 12 --gateways 2 --rate 24 --count 72 --anomalies 0.05 --label-anomalies \
       --out ">ipc://$run/ingest.sock"
wait $receiver

echo
echo "== the same kind of message as JSON, the way HTTP and MQTT payloads carry it =="
mh-gen --count 2 --seed 1 | mh-cat --to json --time rfc3339

echo
echo "== and as Cap'n Proto sees the frame =="
mh-gen --count 1 --seed 1 | capnp decode lib/schema/message.capnp Message

echo
echo "== speed: one million messages through a pipe relay =="
start=$(date +%s%N)
mh-gen --count 1000000 --seed 1 | mh-cat > /dev/null
end=$(date +%s%N)
awk -v ns=$((end - start)) 'BEGIN { printf "1000000 messages in %.2f s: %.2f M messages/s\n", ns / 1e9, 1e6 / (ns / 1e9) / 1e6 }'
