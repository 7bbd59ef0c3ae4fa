#!/usr/bin/env bash
# mh-aggregate throughput: frames from a file and from mh-gen through tumbling windows per
# source (count, mean, max, p99 over 10,000 sources), the same with a detector and with
# --state, and end to end on JSON lines side by side with Miller's stats1 on the same windows.
# Usage: bench/aggregate.sh [MESSAGES] [JSON_LINES]   (defaults 2000000 and 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000000}
LINES=${2:-1000000}
SOURCES=${MH_BENCH_SOURCES:-10000}
BIN=${MH_BIN:-build/tools}
[ -x "$BIN/mh-aggregate" ] || { echo "bench: build first (scripts/build.sh)" >&2; exit 1; }
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
AGG=(--window 10s --by source --agg 'count(), mean(temperature), max(temperature), p99(temperature)')
GEN=("$BIN/mh-gen" --seed 1 --sources "$SOURCES" --fields temperature,humidity)

now() { date +%s%N; }
cpu() { awk '{print $1 + $2}' "$1"; }  # user + system seconds of one timed command
report() {  # report NAME COUNT START_NS END_NS [TIME_FILE]
  local seconds rate cpu_note=""
  seconds=$(awk -v s="$3" -v e="$4" 'BEGIN { printf "%.3f", (e - s) / 1e9 }')
  rate=$(awk -v n="$2" -v s="$seconds" 'BEGIN { printf "%.2f", n / s / 1e6 }')
  if [ -n "${5:-}" ]; then
    cpu_note=$(awk -v n="$2" -v c="$(cpu "$5")" 'BEGIN { printf "  (CPU %.2f s: %.2f M msgs per CPU second)", c, n / c / 1e6 }')
  fi
  printf '%-44s %7s M msgs/s  (%s s)%s\n' "$1" "$rate" "$seconds" "$cpu_note"
}
timed() { /usr/bin/time -f '%U %S' -o "$WORK/$1.time" "${@:2}"; }

"${GEN[@]}" --count "$N" > "$WORK/gen.frames"
echo "mh-aggregate bench: $N messages from $SOURCES sources, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"

start=$(now); timed agg "$BIN/mh-aggregate" "${AGG[@]}" < "$WORK/gen.frames" > "$WORK/out.frames"; end=$(now)
report "file | mh-aggregate (count, mean, max, p99)" "$N" "$start" "$end" "$WORK/agg.time"
windows=$("$BIN/mh-cat" --to json < "$WORK/out.frames" | wc -l)
echo "  ($windows aggregate messages)"

start=$(now); "${GEN[@]}" --count "$N" | timed agg "$BIN/mh-aggregate" "${AGG[@]}" > /dev/null; end=$(now)
report "mh-gen | mh-aggregate" "$N" "$start" "$end" "$WORK/agg.time"

start=$(now)
timed agg "$BIN/mh-aggregate" "${AGG[@]}" --detect 'zscore(temperature) > 6' --detect 'silence(30s)' \
  < "$WORK/gen.frames" > /dev/null
end=$(now)
report "  + zscore and silence detectors" "$N" "$start" "$end" "$WORK/agg.time"

start=$(now)
timed agg "$BIN/mh-aggregate" "${AGG[@]}" --state "$WORK/state" --state-every 1s < "$WORK/gen.frames" > /dev/null
end=$(now)
report "  + --state (snapshot every second)" "$N" "$start" "$end" "$WORK/agg.time"

start=$(now)
timed agg "$BIN/mh-aggregate" --window 10s --hop 2s --by source --agg 'count(), mean(temperature)' \
  < "$WORK/gen.frames" > /dev/null
end=$(now)
report "hopping 10s every 2s (5 windows each)" "$N" "$start" "$end" "$WORK/agg.time"

# End to end on JSON lines, against Miller's stats1 over the same windows.
"${GEN[@]}" --count "$LINES" | "$BIN/mh-cat" --to json > "$WORK/in.jsonl"
echo "JSON lines: $LINES, $(( $(stat -c %s "$WORK/in.jsonl") / LINES )) bytes each"
start=$(now)
"$BIN/mh-cat" --from json < "$WORK/in.jsonl" | "$BIN/mh-aggregate" "${AGG[@]}" | "$BIN/mh-cat" --to json > "$WORK/mh.jsonl"
end=$(now)
mh_ns=$((end - start))
report "mh-cat | mh-aggregate | mh-cat (JSON)" "$LINES" "$start" "$end"
if command -v mlr > /dev/null; then
  start=$(now)
  mlr --ijsonl --ojsonl put '$w = $time // 10000000000' then stats1 -a count,mean,max,p99 -f temperature -g source,w \
    < "$WORK/in.jsonl" > "$WORK/mlr.jsonl"
  end=$(now)
  report "mlr stats1 (JSON)" "$LINES" "$start" "$end"
  echo "  same windows: mh $(wc -l < "$WORK/mh.jsonl"), Miller $(wc -l < "$WORK/mlr.jsonl");" \
       "mh is $(awk -v a="$((end - start))" -v b="$mh_ns" 'BEGIN { printf "%.1f", a / b }')x faster"
else
  echo "mlr stats1: skipped (install Miller: apt-get install miller)"
fi
