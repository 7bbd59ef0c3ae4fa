#!/usr/bin/env bash
# One command on a fresh Debian bookworm machine: installs what is missing, builds, and runs
# the demo. First the cold-chain channel of examples/cold-chain-gateways.toml under mh-route
# up for about half a minute: simulated gateways over TLS with tokens, a store, per-minute
# aggregates, boundary alerts to a webhook and a command back to a gateway; then the tools
# one by one: a pipeline with anomalies across a ZeroMQ hop, store queries, detectors, JSON,
# Cap'n Proto, and the speed of a pipe.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
export PATH="$PWD/build/tools:$PATH"
run=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT
seconds=${MH_DEMO_SECONDS:-30}

# wait_for DEADLINE_S COMMAND...: polls until COMMAND succeeds; fails past the deadline.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

channel=$run/channel
echo
echo "== The cold-chain channel (examples/cold-chain-gateways.toml), run by mh-route for ${seconds} s:"
echo "   12 sensors behind 3 gateways (mh-gen) and a cold room whose door is open (a gateway"
echo "   that speaks MQTT with mosquitto_pub) send over TLS with tokens to mh-endpoint; readings"
echo "   are stored (mh-store), aggregated per minute (mh-aggregate) and checked against 8 °C"
echo "   (mh-filter); alerts go to mh-notify, which calls a webhook and sends the command"
echo "   cool_down back to the gateway, where the cold room's controller (mh-stream mqtt) gets it =="
python3 examples/webhook-receiver.py --secret-file "$channel/hook.key" --log "$run/webhook.jsonl" 2> "$run/webhook.log" &
pids+=($!)
wait_for 10 grep -qs 'listening on' "$run/webhook.log" || { cat "$run/webhook.log" >&2; exit 69; }
hook_port=$(grep -oE '[0-9]+$' "$run/webhook.log" | head -1)
# The gateways send for all but the last few seconds, then stop by themselves (mh-gen waits
# for the endpoint's acknowledgement of every reading); SIGTERM then drains the channel.
send=$((seconds > 8 ? seconds - 4 : 4))
examples/cold-chain-setup.sh --hook-url "http://127.0.0.1:$hook_port/hooks/mh" \
  --readings $((24 * send)) --cold-room-readings $((send / 2)) "$channel"
manifest=$channel/cold-chain-gateways.toml
mh-route graph --text "$manifest" | sed -n '1,2p'
mh-route up "$manifest" --runtime-dir "$run/rt" 2> "$run/up.log" &
up=$!
pids+=($up)
SECONDS=0
status() { mh-route status "$manifest" --runtime-dir "$run/rt" --interval 1; }
for at in $((seconds / 3)) $((seconds - 4)); do
  while [ $SECONDS -lt $at ]; do sleep 0.2; done
  echo
  echo "-- live, after ${SECONDS} s: messages per second and totals per process (mh-route status) --"
  status > "$run/status.txt" || true
  cat "$run/status.txt"
  restarted=$(awk 'NR > 2 && $4 > 0 { printf "%s%s", sep, $1; sep = ", " }' "$run/status.txt")
  [ -z "$restarted" ] || [ "$at" -ne $((seconds / 3)) ] || echo "   (restarted by mh-route: $restarted, which started before the endpoint listened)"
  echo "   webhook calls so far: $(grep -c '^webhook: signed' "$run/webhook.log" || true)," \
       "commands at the cold room's controller: $(mh-cat --to json < "$channel/controller.frames" 2>/dev/null | wc -l)"
done
while [ $SECONDS -lt "$seconds" ]; do sleep 0.2; done
fleet_done() { [ "$(awk -F'\t' '$1 == "fleet" { print $3 }' "$run/rt/processes.tsv")" = exited ]; }
wait_for 30 fleet_done || echo "demo: the gateways are still sending; stopping them with the channel" >&2
echo
echo "-- SIGTERM: mh-route drains the channel from the sources down --"
kill -TERM $up
wait_for 60 bash -c "! kill -0 $up 2>/dev/null" || { echo "demo: the channel did not drain in 60 s" >&2; kill -KILL $up; }
wait $up && echo "drained: $(grep -c 'it took in all' "$run/up.log") stages stopped once they had taken in everything their upstream sent"
status | sed -n '1p;2p;/^ingest\|^check \|^minute\|^archive\|^notify/p'

echo
echo "== The per-minute aggregates, from the archive (the last minute closed at the drain) =="
mh-store query --db "$channel/archive" --where 'kind == "aggregate"' --format json \
  | jq -r '"\(.window_start / 1e9 | floor | strftime("%H:%M"))-\(.window_end / 1e9 | floor | strftime("%H:%M"))  \(.source | . + " " * (13 - length))  n=\(.count)  mean \(.mean_t * 100 | round / 100) °C  min \(.min_t * 100 | round / 100)  max \(.max_t * 100 | round / 100)"' \
  | sort | head -40

echo
echo "== The alerts (mh-filter --alert 'too_warm=temperature > 8'), per sensor =="
mh-store query --db "$channel/archive" --where 'kind == "alert"' --format json \
  | jq -r '"\(.gateway) \(.source)"' | sort | uniq -c | awk '{ printf "  %4d alerts  %s %s\n", $1, $2, $3 }'
mh-store query --db "$channel/archive" --where 'kind == "alert" and gateway != "cold-room"' --format json --limit 5 \
  | jq -r '"  \(.time / 1e9 | floor | strftime("%H:%M:%S"))  \(.source) on \(.gateway): \(.temperature * 100 | round / 100) °C (\(.rule): \(.expr))"'

echo
echo "== The webhook calls received (mh-notify: once per incident, again every 10 s while it lasts,"
echo "   and when it resolves; each signed with HMAC-SHA256, checked by the receiver) =="
grep '^webhook: ' "$run/webhook.log" | sed 's/^/  /'

echo
echo "== The commands back to the gateways, and what became of each (messages of kind"
echo "   command-status from mh-endpoint, in the archive): the fleet's gateways (mh-gen"
echo "   --answer-commands) acknowledge theirs; the cold room's controller (mh-stream mqtt, logged"
echo "   in as the gateway cold-room, subscribed to commands/cold-room/#) receives its own =="
mh-store query --db "$channel/archive" --where 'kind == "command-status"' --format json \
  | jq -r '"  \(.time / 1e9 | floor | strftime("%H:%M:%S"))  \(.command) for \(.source) on \(.gateway): \(.status)\(if .protocol then " (\(.protocol))" else "" end)\(if .reply then ", reply: \(.reply.result)" else "" end)  [\(.correlation_id[-12:])]"' \
  | head -24
echo "  received by the cold room's controller:"
mh-cat --to json < "$channel/controller.frames" \
  | jq -r '"  \(.ingested / 1e9 | floor | strftime("%H:%M:%S"))  \(.command) for \(.source) (\(.state), incident \(.incident))"'

echo
echo "== More: the tools one by one =="
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
