#!/usr/bin/env bash
# Throughput of the pipeline core on this machine: messages per second and each tool's
# peak memory, for mh-gen alone, a pipe relay, one ZeroMQ hop (ipc and tcp), JSON lines
# to frames and frames to JSON lines. Usage: bench/run.sh [MESSAGES]  (default 5000000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000000}
BIN=${MH_BIN:-build/tools}
FIELDS=${MH_BENCH_FIELDS:-temperature,humidity}  # about 150-byte messages, as the targets assume
[ -x "$BIN/mh-gen" ] || { echo "bench: build first (scripts/build.sh)" >&2; exit 1; }
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
GEN=("$BIN/mh-gen" --count "$N" --seed 1 --fields "$FIELDS")

now() { date +%s%N; }
peak() { awk '{printf "%.1f MiB", $1 / 1024}' "$1"; }
report() {  # report NAME START_NS END_NS [PEAK_FILE...]
  local name=$1 start=$2 end=$3; shift 3
  local seconds rate mem=""
  seconds=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", (e - s) / 1e9 }')
  rate=$(awk -v n="$N" -v s="$seconds" 'BEGIN { printf "%.2f", n / s / 1e6 }')
  for f in "$@"; do mem+="${mem:+, }$(basename "$f" .rss) $(peak "$f")"; done
  printf '%-34s %8s M msgs/s  (%s s)%s\n' "$name" "$rate" "$seconds" "${mem:+  peak: $mem}"
}
timed() { /usr/bin/time -f %M -o "$WORK/$1.rss" "${@:2}"; }

"${GEN[@]}" > "$WORK/gen.frames"
bytes=$(stat -c %s "$WORK/gen.frames")
echo "mh bench: $N messages, $((bytes / N)) bytes per frame, fields $FIELDS, $(nproc) cores"

start=$(now); timed mh-gen "${GEN[@]}" > /dev/null; end=$(now)
report "mh-gen alone" "$start" "$end" "$WORK/mh-gen.rss"

start=$(now)
timed mh-gen "${GEN[@]}" | timed mh-cat "$BIN/mh-cat" --from frames --to frames > /dev/null
end=$(now)
report "pipe relay (mh-gen | mh-cat)" "$start" "$end" "$WORK/mh-gen.rss" "$WORK/mh-cat.rss"

for transport in ipc tcp; do
  if [ $transport = ipc ]; then bind="@ipc://$WORK/hop.sock"; connect=">ipc://$WORK/hop.sock"
  else port=$((20000 + RANDOM % 20000)); bind="@tcp://127.0.0.1:$port"; connect=">tcp://127.0.0.1:$port"; fi
  timed mh-cat-recv "$BIN/mh-cat" --in "$bind" --count "$N" > /dev/null &
  receiver=$!
  start=$(now)
  timed mh-gen "${GEN[@]}" --out "$connect"
  wait $receiver
  end=$(now)
  report "one ZeroMQ hop ($transport)" "$start" "$end" "$WORK/mh-gen.rss" "$WORK/mh-cat-recv.rss"
done

"$BIN/mh-cat" --to json < "$WORK/gen.frames" > "$WORK/gen.jsonl"
echo "  (JSON lines average $(( $(stat -c %s "$WORK/gen.jsonl") / N )) bytes)"
start=$(now); timed mh-cat "$BIN/mh-cat" --from json < "$WORK/gen.jsonl" > /dev/null; end=$(now)
report "JSON lines -> frames" "$start" "$end" "$WORK/mh-cat.rss"

start=$(now); timed mh-cat "$BIN/mh-cat" --to json < "$WORK/gen.frames" > /dev/null; end=$(now)
report "frames -> JSON lines" "$start" "$end" "$WORK/mh-cat.rss"
