#!/usr/bin/env bash
# What running a channel under mh-route costs: the same three tools (mh-gen -> mh-filter ->
# mh-cat) as a shell pipeline, under mh-route up (two ipc hops, drained by counts), and with
# the filter in two replicas. Wall clock from start to the end of the drain; messages/s.
# Usage: bench/route.sh [MESSAGES]  (default 2000000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000000}
BIN=$(cd "${MH_BIN:-build/tools}" && pwd)
[ -x "$BIN/mh-route" ] || { echo "bench: build first (scripts/build.sh)" >&2; exit 1; }
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
export PATH="$BIN:$PATH"
FILTER="temperature > 21"

now() { date +%s%N; }
report() {  # report NAME START_NS END_NS
  awk -v name="$1" -v n="$N" -v s="$2" -v e="$3" \
    'BEGIN { t = (e - s) / 1e9; printf "%-40s %8.2f M msgs/s  (%.3f s)\n", name, n / t / 1e6, t }'
}
manifest() {  # manifest REPLICAS
  cat > "$WORK/bench.toml" <<TOML
[channel]
name = "bench"
[stage.gen]
run = "mh-gen --count $N --seed 1 --fields temperature,humidity"
[stage.filter]
run = ["mh-filter", "$FILTER"]
from = ["gen"]
replicas = $1
[stage.sink]
run = "mh-cat --out /dev/null"
from = ["filter"]
TOML
}

echo "mh-route bench: $N messages, filter '$FILTER', $(nproc) cores"
start=$(now)
mh-gen --count "$N" --seed 1 --fields temperature,humidity | mh-filter "$FILTER" | mh-cat > /dev/null
end=$(now)
report "shell pipeline" "$start" "$end"

for replicas in 1 2; do
  manifest $replicas
  start=$(now)
  mh-route up "$WORK/bench.toml" --runtime-dir "$WORK/run" --log-level warn 2> "$WORK/up.err" \
    || { cat "$WORK/up.err" >&2; exit 1; }
  end=$(now)
  report "mh-route up, filter x$replicas (ipc)" "$start" "$end"
done
