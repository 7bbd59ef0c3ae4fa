#!/usr/bin/env bash
# mh-store on this machine: append with group commit (no sync, and fsync per commit),
# a full export, a source query among 10,000 sources (and how much of the store it read),
# and sqlite3 importing the same messages as CSV in one transaction, side by side.
# Each line gives the wall-clock rate and, in brackets, the rate per CPU second the tool
# itself used (user + system): on a machine shared with other work the wall clock
# measures the neighbours too, the CPU time only the tool.
# Usage: bench/store.sh [MESSAGES]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
BIN=${MH_BIN:-build/tools}
[ -x "$BIN/mh-store" ] || { echo "bench: build first (scripts/build.sh)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
if ! command -v sqlite3 >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq sqlite3 >/dev/null 2>&1 || true; fi
fi
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
exec 3>&1  # rate lines, also from commands whose output goes to /dev/null

# timed LABEL COMMAND... (stdin and stdout as given): prints the rate line, sets WALL_NS.
timed() {
  local label=$1; shift
  local start end
  start=$(date +%s%N)
  /usr/bin/time -f '%U %S' -o "$WORK/cpu" "$@"
  end=$(date +%s%N)
  WALL_NS=$((end - start))
  awk -v n="$N" -v ns="$WALL_NS" -v label="$label" '{ cpu = $1 + $2 }
    END { printf "%-48s %6.2f M msgs/s  (%.3f s)  [cpu %.2f s: %.2f M msgs/s]\n", label,
          n / (ns / 1e9) / 1e6, ns / 1e9, cpu, (cpu > 0 ? n / cpu / 1e6 : 0) }' "$WORK/cpu" >&3
}

"$BIN/mh-gen" --count "$N" --seed 1 --sources 10000 --fields temperature,humidity > "$WORK/in.frames"
echo "store bench: $N messages, $(( $(stat -c %s "$WORK/in.frames") / N )) bytes per frame, 10000 sources," \
     "$(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"

timed "append --sync none" "$BIN/mh-store" append --db "$WORK/nosync" --sync none --log-level warn < "$WORK/in.frames"
sync  # each timed run starts with no dirty pages of another: ext4 would flush them in its fsyncs
timed "append --sync commit (fsync per group commit)" \
  "$BIN/mh-store" append --db "$WORK/sync" --sync commit --log-level warn < "$WORK/in.frames"
append_sync_ns=$WALL_NS
cp "$WORK/cpu" "$WORK/cpu.append"
timed "query: full export by time" "$BIN/mh-store" query --db "$WORK/sync" > /dev/null
from=$("$BIN/mh-store" stat --db "$WORK/sync" --json | jq -r .first)
timed "query --from/--to (all of it, as a time range)" \
  "$BIN/mh-store" query --db "$WORK/sync" --from "$from" --to now > /dev/null

start=$(date +%s%N)
got=$("$BIN/mh-store" query --db "$WORK/sync" --source sensor-004242 --log-level debug 2>&1 >/dev/null)
end=$(date +%s%N)
entries=$(grep -o 'read [0-9]* index entries' <<< "$got" | grep -o '[0-9]*')
printf '%-48s %.1f ms, read %s index entries of %s\n' "query --source (one of 10000)" \
  "$(awk -v ns=$((end - start)) 'BEGIN { print ns / 1e6 }')" "${entries:-?}" "$N"

if command -v sqlite3 >/dev/null; then
  "$BIN/mh-cat" --to csv < "$WORK/in.frames" > "$WORK/in.csv"
  sqlite3 "$WORK/side.db" 'CREATE TABLE m (id TEXT PRIMARY KEY, time INTEGER, ingested INTEGER, source TEXT,
                           gateway TEXT, kind TEXT, temperature REAL, humidity REAL);
                           CREATE INDEX m_source ON m (source, time);'
  tail -n +2 "$WORK/in.csv" > "$WORK/rows.csv"
  sync
  printf '.mode csv\nBEGIN;\n.import %s m\nCOMMIT;\n' "$WORK/rows.csv" > "$WORK/import.sql"
  timed "sqlite3 .import of the same CSV, one transaction" sqlite3 "$WORK/side.db" < "$WORK/import.sql"
  sqlite_ns=$WALL_NS
  awk -v a="$append_sync_ns" -v s="$sqlite_ns" \
    'BEGIN { printf "mh-store append (fsync per commit) is %.1fx faster than sqlite3 by the wall clock", s / a }'
  paste "$WORK/cpu.append" "$WORK/cpu" | awk '{ printf ", %.1fx by CPU time\n", ($3 + $4) / ($1 + $2) }'
else
  echo "sqlite3 not installed: apt-get install sqlite3 for the side-by-side line"
fi
