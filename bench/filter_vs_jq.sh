#!/usr/bin/env bash
# mh-filter side by side with jq and Miller on the same JSON lines, measured end to end
# (JSON in, the same filter, JSON out), then on frames over a pipe, with and without a
# computed field. The targets: >= 10x jq, >= 30x Miller, >= 2 M msgs/s over a pipe.
#
#   bench/filter_vs_jq.sh [LINES] [FRAMES]    (defaults 1000000 and 5000000)
#
# Needs jq and Miller (Debian package miller: installed here when missing and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-1000000}
FRAMES=${2:-5000000}
BIN=${MH_BIN:-build/tools}
# One filter, as each tool writes it.
MH_EXPR='temperature > 23 and humidity < 50'
JQ_EXPR='select(.temperature > 23 and .humidity < 50)'
# shellcheck disable=SC2016  # Miller's field names, not the shell's
MLR_EXPR='$temperature > 23 && $humidity < 50'
SET='temperature_f=round(temperature * 9 / 5 + 32, 1)'

for tool in mh-gen mh-cat mh-filter; do
  [ -x "$BIN/$tool" ] || { echo "bench: $BIN/$tool not found: build first (scripts/build.sh) or set MH_BIN" >&2; exit 1; }
done
command -v jq > /dev/null || { echo "bench: jq not found: apt-get install jq" >&2; exit 1; }
if ! command -v mlr > /dev/null && [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq miller > /dev/null 2>&1 ||
    { apt-get update -qq > /dev/null 2>&1 && apt-get install -y -qq miller > /dev/null 2>&1; } || true
fi
if command -v mlr > /dev/null; then
  # Miller 6 reads and writes JSON lines as such; older ones need JSON with one record a line.
  if mlr --ijsonl --ojsonl -n cat > /dev/null 2>&1; then MLR_FORMAT=(--ijsonl --ojsonl)
  else MLR_FORMAT=(--ijson --ojson --jvstack=false); fi
else
  echo "bench: Miller (mlr) not found, its line is skipped: apt-get install miller (as root)" >&2
fi

WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
now() { date +%s%N; }
seconds() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.3f", (e - s) / 1e9 }'; }
per_second() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.2f", n / s / 1e6 }'; }

"$BIN/mh-gen" --count "$LINES" --seed 1 | "$BIN/mh-cat" --to json > "$WORK/in.jsonl"
echo "filter bench: $LINES JSON lines of $(($(stat -c %s "$WORK/in.jsonl") / LINES)) bytes," \
     "filter '$MH_EXPR', $(nproc) cores"

declare -A rate took
# run RUNS NAME COMMAND...: times COMMAND < in.jsonl > NAME.out RUNS times; the median counts.
# mh's quarter of a second swings with the scheduler far more than Miller's nine seconds,
# which average out within the run: mh is timed 5 times, jq and Miller once.
run() {
  local runs=$1 name=$2 start end times=(); shift 2
  for _ in $(seq 1 "$runs"); do
    # Each run writes a new file, as the one run of jq and Miller does: truncating the last
    # run's 73 MB, still being written back, costs the next run up to a fifth of its time.
    rm -f "$WORK/$name.out"
    sync  # and none of the earlier writes is still being written back while it runs
    start=$(now); "$@" < "$WORK/in.jsonl" > "$WORK/$name.out"; end=$(now)
    times+=("$(seconds "$start" "$end")")
  done
  took[$name]=$(printf '%s\n' "${times[@]}" | sort -n | awk '{ t[NR] = $1 } END { print t[int((NR + 1) / 2)] }')
  rate[$name]=$(per_second "$LINES" "${took[$name]}")
  [ "$runs" -gt 1 ] && echo "  $name runs: ${times[*]} s (median ${took[$name]})"
  return 0
}
mh_pipeline() { "$BIN/mh-cat" --from json | "$BIN/mh-filter" "$MH_EXPR" | "$BIN/mh-cat" --to json; }

run 5 mh mh_pipeline
run 1 jq jq -c "$JQ_EXPR"
tools=(mh jq)
if command -v mlr > /dev/null; then
  run 1 mlr mlr "${MLR_FORMAT[@]}" filter "$MLR_EXPR"
  tools+=(mlr)
fi

# The same answer from each: as many lines, and from mh and jq the same ids in the same order
# (the first key of each line, so the 4th field split on quotes).
passed=$(wc -l < "$WORK/mh.out")
for tool in "${tools[@]}"; do
  n=$(wc -l < "$WORK/$tool.out")
  [ "$n" = "$passed" ] || { echo "bench: $tool passed $n lines, mh $passed: not the same filter" >&2; exit 1; }
done
if ! cmp -s <(cut -d'"' -f4 "$WORK/mh.out") <(cut -d'"' -f4 "$WORK/jq.out"); then
  echo "bench: mh and jq passed different messages" >&2; exit 1
fi
echo "  $passed lines pass ($(awk -v p="$passed" -v n="$LINES" 'BEGIN { printf "%.0f", 100 * p / n }')%), the same from every tool"

describe() {
  case $1 in
    mh) echo "mh-cat --from json | mh-filter | mh-cat --to json" ;;
    jq) echo "jq -c 'select(...)'" ;;
    mlr) echo "mlr ${MLR_FORMAT[*]} filter" ;;
  esac
}
for tool in "${tools[@]}"; do
  line=$(printf '%-52s %7s M lines/s  (%s s)' "$(describe "$tool")" "${rate[$tool]}" "${took[$tool]}")
  if [ "$tool" != mh ]; then
    line+=$(awk -v a="${took[$tool]}" -v b="${took[mh]}" 'BEGIN { printf "  mh is %.1fx faster", a / b }')
  fi
  echo "$line"
done

# Frames over a pipe: the filter alone, then with a computed field; mh-gen alone for scale.
# shellcheck disable=SC2054  # a comma list for --fields
GEN=("$BIN/mh-gen" --count "$FRAMES" --seed 1 --fields temperature,humidity)
frames() {  # frames NAME COMMAND...
  local name=$1 start end s; shift
  start=$(now); "$@"; end=$(now)
  s=$(seconds "$start" "$end")
  printf '%-52s %7s M msgs/s   (%s s)\n' "$name" "$(per_second "$FRAMES" "$s")" "$s"
}
echo "frames: $FRAMES messages, fields temperature,humidity"
gen_frames() { "${GEN[@]}" > /dev/null; }
frames "mh-gen alone" gen_frames
filter_frames() { "${GEN[@]}" | "$BIN/mh-filter" "$MH_EXPR" > /dev/null; }
frames "mh-gen | mh-filter EXPR" filter_frames
set_frames() { "${GEN[@]}" | "$BIN/mh-filter" "$MH_EXPR" --set "$SET" > /dev/null; }
frames "mh-gen | mh-filter EXPR --set temperature_f=..." set_frames
