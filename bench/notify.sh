#!/usr/bin/env bash
# mh-notify throughput: messages per second through --when (few match: the input path),
# notifications per second to --out (every alert its own incident: the engine, LMDB
# commits and the --out worker), and notifications per second to --exec (a process each).
# Usage: bench/notify.sh [MESSAGES] [EXEC_NOTIFICATIONS]   (defaults 2000000 and 500)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000000}
E=${2:-500}
BIN=${MH_BIN:-build/tools}
[ -x "$BIN/mh-notify" ] || { echo "bench: build first (cmake --build build --target mh-notify mh-gen mh-filter mh-cat)" >&2; exit 1; }
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
now() { date +%s%N; }
rate() { awk -v n="$1" -v s="$2" -v e="$3" 'BEGIN { printf "%.0f", n / ((e - s) / 1e9) }'; }
secs() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.2f", (e - s) / 1e9 }'; }

"$BIN/mh-gen" --count "$N" --seed 1 --sources 1000 --fields temperature,humidity > "$WORK/gen.frames"
echo "mh-notify bench: $N messages, $(nproc) cores"

# 1. --when on every message; a handful of incidents (one per hot source).
start=$(now)
"$BIN/mh-notify" --when 'temperature > 26' --key source --out "$WORK/few.frames" --state "$WORK/s1" \
  < "$WORK/gen.frames"
end=$(now)
told=$("$BIN/mh-cat" --to json < "$WORK/few.frames" | wc -l)
printf '%-44s %10s msgs/s  (%s s, %s notifications)\n' "--when over every message, --out" \
  "$(rate "$N" "$start" "$end")" "$(secs "$start" "$end")" "$told"

# 2. Every matching message its own incident (--key id): notifications per second to --out.
"$BIN/mh-filter" 'temperature > 24' < "$WORK/gen.frames" > "$WORK/hot.frames"
M=$("$BIN/mh-cat" --to json < "$WORK/hot.frames" | wc -l)
start=$(now)
"$BIN/mh-notify" --when true --key id --resolve-after 1h --max-pending 100000000 --out "$WORK/all.frames" --state "$WORK/s2" < "$WORK/hot.frames"
end=$(now)
told=$("$BIN/mh-cat" --to json < "$WORK/all.frames" | wc -l)
[ "$told" -eq "$M" ] || { echo "bench: expected $M notifications, got $told" >&2; exit 1; }
printf '%-44s %10s notifications/s  (%s s, %s)\n' "one incident per message, --out" \
  "$(rate "$told" "$start" "$end")" "$(secs "$start" "$end")" "$told"

# 3. --exec: a shell and a process per notification.
"$BIN/mh-cat" --to json < "$WORK/hot.frames" | head -n "$E" | "$BIN/mh-cat" --from json > "$WORK/some.frames"
start=$(now)
"$BIN/mh-notify" --when true --key id --exec 'cat > /dev/null' --state "$WORK/s3" < "$WORK/some.frames"
end=$(now)
printf '%-44s %10s notifications/s  (%s s, %s)\n' "one incident per message, --exec 'cat'" \
  "$(rate "$E" "$start" "$end")" "$(secs "$start" "$end")" "$E"
