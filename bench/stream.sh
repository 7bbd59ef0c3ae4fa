#!/usr/bin/env bash
# mh-stream throughput. MQTT at QoS 0 from a local mosquitto: N JSON payloads (from mh-gen,
# about 200 bytes each) published by build/bench/mqtt_publish (libmosquitto, as fast as the
# broker takes them; mosquitto_pub -l tops out near 30k/s on its own), received by mh-stream
# and counted by mh-cat --count. mosquitto_sub on the same publication is the baseline: the
# ceiling of this broker and publisher on this machine. Then the same payloads as a file
# followed by mh-stream file.
# Usage: bench/stream.sh [MESSAGES]  (default 200000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
BIN=${MH_BIN:-build/tools}
PUBLISH=${MH_BENCH_PUBLISH:-build/bench/mqtt_publish}
[ -x "$BIN/mh-stream" ] && [ -x "$PUBLISH" ] || { echo "bench: build first (scripts/build.sh)" >&2; exit 1; }
WORK=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$WORK"' EXIT

"$BIN/mh-gen" --count "$N" --seed 1 --fields temperature,humidity | "$BIN/mh-cat" --to json > "$WORK/payloads.jsonl"
echo "mh-stream bench: $N payloads of $(( $(stat -c %s "$WORK/payloads.jsonl") / N )) bytes, QoS 0, $(nproc) cores"

# A free port (mosquitto cannot take port 0); no queue limit, so QoS 0 is not dropped.
for attempt in 1 2 3 4 5; do
  PORT=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nuser root\nmax_queued_messages 0\n' "$PORT" > "$WORK/m.conf"
  mosquitto -c "$WORK/m.conf" > "$WORK/m.log" 2>&1 &
  BROKER=$!
  for _ in $(seq 200); do
    grep -q "listen socket on port" "$WORK/m.log" && break
    kill -0 $BROKER 2>/dev/null || break
    sleep 0.02
  done
  grep -q "listen socket on port" "$WORK/m.log" && break
  kill $BROKER 2>/dev/null || true
done
PIDS+=("$BROKER")

now() { date +%s%N; }
report() {  # report NAME START END RECEIVED
  awk -v name="$1" -v s="$2" -v e="$3" -v n="$4" -v total="$N" 'BEGIN {
    t = (e - s) / 1e9; printf "%-44s %9.0f msgs/s  (%d of %d in %.2f s)\n", name, n / t, n, total, t }'
}

# mosquitto_sub alone: the ceiling.
mosquitto_sub -p "$PORT" -t 'bench/#' -C "$N" > "$WORK/sub.out" &
SUB=$!; PIDS+=("$SUB")
sleep 0.5  # mosquitto_sub does not say when it has subscribed
start=$(now)
"$PUBLISH" "$PORT" bench/s1 "$WORK/payloads.jsonl"
timeout 120 tail --pid=$SUB -f /dev/null || kill $SUB
end=$(now)
report "mqtt_publish | mosquitto_sub" "$start" "$end" "$(wc -l < "$WORK/sub.out")"

# mh-stream: payloads -> frames, counted by mh-cat. Its CPU time (from /proc) gives a figure
# that depends less on what else the machine is doing than wall-clock rate does.
mkfifo "$WORK/pipe"
"$BIN/mh-cat" --count "$N" < "$WORK/pipe" > "$WORK/stream.frames" &
COUNTER=$!; PIDS+=("$COUNTER")
"$BIN/mh-stream" mqtt --broker "mqtt://127.0.0.1:$PORT" --topic 'bench/+' --source-level 1 2> "$WORK/stream.log" \
  > "$WORK/pipe" &
STREAM=$!; PIDS+=("$STREAM")
for _ in $(seq 500); do grep -q "subscribed" "$WORK/stream.log" && break; sleep 0.02; done
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_before=$(cpu_ticks $STREAM)
start=$(now)
"$PUBLISH" "$PORT" bench/s1 "$WORK/payloads.jsonl"
timeout 120 tail --pid=$COUNTER -f /dev/null || true
end=$(now)
ticks=$(( $(cpu_ticks $STREAM) - ticks_before ))
kill $STREAM 2>/dev/null || true
received=$("$BIN/mh-cat" --to json < "$WORK/stream.frames" | wc -l)
report "mqtt_publish | mh-stream mqtt | mh-cat" "$start" "$end" "$received"
awk -v n="$received" -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN {
  s = t / hz; if (s > 0) printf "%-44s %9.0f msgs per CPU second  (%.2f s CPU)\n", "mh-stream mqtt alone", n / s, s }'

# mh-stream file: the same payloads as a JSON-lines file, followed from its start.
mkfifo "$WORK/pipe2"
"$BIN/mh-cat" --count "$N" < "$WORK/pipe2" > /dev/null &
COUNTER=$!; PIDS+=("$COUNTER")
start=$(now)
"$BIN/mh-stream" file --path "$WORK/payloads.jsonl" 2> "$WORK/file.log" > "$WORK/pipe2" &
STREAM=$!; PIDS+=("$STREAM")
timeout 120 tail --pid=$COUNTER -f /dev/null || true
end=$(now)
kill $STREAM 2>/dev/null || true
report "mh-stream file (JSON lines) | mh-cat" "$start" "$end" "$N"
