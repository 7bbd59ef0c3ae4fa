#!/usr/bin/env bash
# mh-aggregate --state: SIGTERM mid-stream and a restart give the windows of an
# uninterrupted run; after kill -9 the snapshot of the last barrier loads and, fed what
# followed the barrier, gives the same windows again; snapshots on an interval; a corrupt
# or incompatible state is exit 78 naming --reset-state.
source "$(dirname "$0")/lib.sh"

OPTS=(--window 10s --by source --agg 'count(), sum(temperature), min(temperature), p99(temperature), distinct(humidity), last(battery)'
      --detect 'zscore(temperature) > 4' --detect 'silence(5s)')
mh-gen --count 4000 --seed 8 --sources 10 --anomalies 0.002 | mh-cat --to json > gen.jsonl
head -n 2000 gen.jsonl | mh-cat --from json > part1.frames
tail -n +2001 gen.jsonl | mh-cat --from json > part2.frames
mh-cat --from json < gen.jsonl | mh-aggregate "${OPTS[@]}" | mh-cat --to json | jq -c 'del(.ingested)' > reference.jsonl
[ "$(wc -l < reference.jsonl)" -gt 50 ] && pass || fail "too few reference windows"
[ "$(grep -c '"kind":"alert"' reference.jsonl)" -gt 0 ] && pass || fail "no alert in the reference run"

# start_fed NAME ARGS...: runs mh-aggregate on a fifo held open by fd 7, metrics on a free port.
start_fed() {
  local name=$1; shift
  rm -f "$name.fifo"; mkfifo "$name.fifo"
  mh-aggregate "$@" --in "$name.fifo" --metrics 127.0.0.1:0 > "$name.frames" 2> "$name.err" &
  PID=$!; BACKGROUND_PIDS+=("$PID")
  exec 7> "$name.fifo"
  wait_until 10 grep -q 'metrics on port' "$name.err" || fail "no metrics port: $(cat "$name.err")"
  PORT=$(grep -o 'metrics on port [0-9]*' "$name.err" | grep -o '[0-9]*$')
}
counter_is() { scrape_metrics "$PORT" m.txt && grep -q "^$1 $2\$" m.txt; }

begin "SIGTERM mid-stream, restart: the same windows as one run"
start_fed a "${OPTS[@]}" --state st
cat part1.frames >&7
wait_until 20 counter_is mh_messages_in_total 2000 || fail "part 1 not consumed: $(grep mh_messages m.txt)"
kill -TERM "$PID"
wait_pid_exit 20 "$PID"
exec 7>&-
expect_eq "exit code after SIGTERM" 0 "$EXIT_CODE"
expect_contains "says what it saved" "open windows of 10 groups saved to st" "$(cat a.err)"
mh-aggregate "${OPTS[@]}" --state st < part2.frames > b.frames 2> b.err; code=$?
expect_eq "restart exit code" 0 "$code"
expect_contains "restored" "restored state from st" "$(cat b.err)"
cat a.frames b.frames | mh-cat --to json | jq -c 'del(.ingested)' > resumed.jsonl
expect_files_equal "windows and alerts, in order" reference.jsonl resumed.jsonl

begin "kill -9 after a barrier: the barrier's snapshot loads, and replay from it matches"
rm -rf st
{ head -n 2000 gen.jsonl; echo '{"$barrier":1,"time":1}'; sed -n '2001,2600p' gen.jsonl; } | mh-cat --from json > upto.frames
start_fed k "${OPTS[@]}" --state st --state-every 1h
cat upto.frames >&7
wait_until 20 counter_is mh_messages_in_total 2601 || fail "input not consumed: $(grep mh_messages m.txt)"
expect_eq "one snapshot, at the barrier" 1 "$(grep '^mh_aggregate_snapshots_total' m.txt | grep -o '[0-9]*$')"
kill -9 "$PID"
wait "$PID" 2>/dev/null
exec 7>&-
mh-aggregate "${OPTS[@]}" --state st < part2.frames > r.frames 2> r.err; code=$?
expect_eq "restart exit code" 0 "$code"
expect_contains "loaded the barrier's snapshot" "restored state from st (barrier 1," "$(cat r.err)"
# What the killed run wrote up to the barrier, then what the restarted one wrote.
mh-cat --to json < k.frames | sed '/"\$barrier":1/q' | grep -v '"\$barrier"' > before.jsonl
cat before.jsonl <(mh-cat --to json < r.frames) | jq -c 'del(.ingested)' > replayed.jsonl
expect_files_equal "windows and alerts, in order" reference.jsonl replayed.jsonl

begin "snapshots on an interval"
rm -rf st2
start_fed i --window 1h --state st2 --state-every 100ms
mh-gen --count 100 --seed 1 >&7
snapshots_at_least_2() { scrape_metrics "$PORT" m.txt && [ "$(grep '^mh_aggregate_snapshots_total' m.txt | grep -o '[0-9]*$')" -ge 2 ]; }
wait_until 20 snapshots_at_least_2 && pass || fail "no interval snapshots: $(grep snapshots m.txt)"
exec 7>&-
wait_pid_exit 20 "$PID"
expect_eq "exit code" 0 "$EXIT_CODE"

begin "incompatible or corrupt state: exit 78 naming --reset-state"
mh-aggregate --window 1m --state st < /dev/null 2> err.txt; code=$?
expect_eq "other options: exit" 78 "$code"
expect_contains "other options: says so" "saved with other --window" "$(cat err.txt)"
expect_contains "other options: the way out" "--reset-state" "$(cat err.txt)"
mkdir -p bad && head -c 65536 /dev/urandom > bad/data.mdb
mh-aggregate "${OPTS[@]}" --state bad < /dev/null 2> err.txt; code=$?
expect_eq "garbage file: exit" 78 "$code"
expect_contains "garbage file: the way out" "--reset-state" "$(cat err.txt)"
mh-aggregate "${OPTS[@]}" --state bad --reset-state < part1.frames > /dev/null 2> err.txt; code=$?
expect_eq "--reset-state starts over" 0 "$code"
mh-aggregate "${OPTS[@]}" --state bad < /dev/null 2> err.txt; code=$?
expect_eq "and the new state loads" 0 "$code"
mh-aggregate --window 1m --reset-state < /dev/null 2> err.txt; code=$?
expect_eq "--reset-state without --state" 64 "$code"

finish
