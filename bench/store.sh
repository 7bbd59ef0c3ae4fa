#!/usr/bin/env bash
# mh-store on this machine: append with group commit (no sync, and fsync per commit),
# a full export, a source query among 10,000 sources (and how much of the store it read),
# and sqlite3 importing the same messages as CSV in one transaction, side by side.
# Usage: bench/store.sh [MESSAGES]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
BIN=${MH_BIN:-build/tools}
[ -x "$BIN/mh-store" ] || { echo "bench: build first (scripts/build.sh)" >&2; exit 1; }
if ! command -v sqlite3 >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq sqlite3 >/dev/null 2>&1 || true; fi
fi
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT

now() { date +%s%N; }
rate() { awk -v n="$1" -v ns="$2" 'BEGIN { printf "%6.2f M msgs/s  (%.3f s)", n / (ns / 1e9) / 1e6, ns / 1e9 }'; }

"$BIN/mh-gen" --count "$N" --seed 1 --sources 10000 --fields temperature,humidity > "$WORK/in.frames"
echo "store bench: $N messages, $(( $(stat -c %s "$WORK/in.frames") / N )) bytes per frame, 10000 sources, $(nproc) cores"

start=$(now); "$BIN/mh-store" append --db "$WORK/nosync" --sync none --log-level warn < "$WORK/in.frames"; end=$(now)
printf '%-44s %s\n' "append --sync none" "$(rate "$N" $((end - start)))"
start=$(now); "$BIN/mh-store" append --db "$WORK/sync" --sync commit --log-level warn < "$WORK/in.frames"; end=$(now)
append_sync_ns=$((end - start))
printf '%-44s %s\n' "append --sync commit (fsync per group commit)" "$(rate "$N" "$append_sync_ns")"

start=$(now); "$BIN/mh-store" query --db "$WORK/sync" > /dev/null; end=$(now)
printf '%-44s %s\n' "query: full export by time" "$(rate "$N" $((end - start)))"

start=$(now)
got=$("$BIN/mh-store" query --db "$WORK/sync" --source sensor-004242 --log-level debug 2>&1 >/dev/null)
end=$(now)
entries=$(grep -o 'read [0-9]* index entries' <<< "$got" | grep -o '[0-9]*')
printf '%-44s %.1f ms, read %s index entries of %s\n' "query --source (one of 10000)" \
  "$(awk -v ns=$((end - start)) 'BEGIN { print ns / 1e6 }')" "${entries:-?}" "$N"

if command -v sqlite3 >/dev/null; then
  "$BIN/mh-cat" --to csv < "$WORK/in.frames" > "$WORK/in.csv"
  sqlite3 "$WORK/side.db" 'CREATE TABLE m (id TEXT PRIMARY KEY, time INTEGER, ingested INTEGER, source TEXT,
                           gateway TEXT, kind TEXT, temperature REAL, humidity REAL);
                           CREATE INDEX m_source ON m (source, time);'
  tail -n +2 "$WORK/in.csv" > "$WORK/rows.csv"
  start=$(now)
  sqlite3 "$WORK/side.db" <<SQL
.mode csv
BEGIN;
.import $WORK/rows.csv m
COMMIT;
SQL
  end=$(now)
  sqlite_ns=$((end - start))
  printf '%-44s %s\n' "sqlite3 .import of the same CSV, one transaction" "$(rate "$N" "$sqlite_ns")"
  awk -v a="$append_sync_ns" -v s="$sqlite_ns" \
    'BEGIN { printf "mh-store append (fsync per commit) is %.1fx faster than sqlite3\n", s / a }'
else
  echo "sqlite3 not installed: apt-get install sqlite3 for the side-by-side line"
fi
