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
echo "== A channel: 12 sensors behind 2 gateways send 24 readings a second (5% anomalies,"
echo "   labelled) over a ZeroMQ socket; mh-filter adds Fahrenheit and raises an alert above"
echo "   26 °C; everything is kept in an LMDB store and printed for people =="
mh-cat --in "@ipc://$run/ingest.sock" --count 72 \
  | mh-filter --set 'temperature_f=round(temperature * 9 / 5 + 32, 1)' \
              --alert 'too_warm=temperature > 26' \
  | tee >(mh-store append --db "$run/history") \
  | mh-cat --to text &
channel=$!
mh-gen --sources 12 --gateways 2 --rate 24 --count 72 --anomalies 0.05 --label-anomalies \
       --out ">ipc://$run/ingest.sock"
wait $channel
while pgrep -f "mh-store append --db $run/history" >/dev/null; do sleep 0.1; done

echo
echo "== What the store holds, and the alerts in it, asked with an expression =="
mh-store stat --db "$run/history"
mh-store query --db "$run/history" --where 'kind == "alert"' --format json --time-format rfc3339

echo
echo "== A minute per sensor, as people read it: mean, max and p99 of temperature per source,"
echo "   and the anomalies found by the detectors (z-score spikes, stuck and silent sensors) =="
mh-gen --sources 4 --count 960 --seed 3 --anomalies 0.01 \
  | mh-aggregate --window 1m --by source --agg 'count(), mean(temperature) as mean_t, max(temperature), p99(temperature)' \
                 --detect 'zscore(temperature) > 6' --detect 'stuck(temperature, 30s)' --detect 'silence(30s)' \
  | mh-cat --to text

echo
echo "== The same kind of channel as a manifest: checked and drawn by mh-route =="
mh-route check examples/cold-chain.toml
mh-route graph --text examples/cold-chain.toml

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
