#!/usr/bin/env bash
# mh-store: append then query gives back what went in (as JSON, by source, by expression),
# replays store nothing new, bad options and a missing store fail clearly, barriers are
# confirmed after their commit, and a writer killed with SIGKILL leaves a sound store
# holding a prefix of its input.
source "$(dirname "$0")/lib.sh"

begin "append then query gives back the stream in time order"
mh-gen --count 20000 --seed 4 > gen.frames
mh-store append --db D < gen.frames; code=$?
expect_eq "append exit code" 0 "$code"
mh-cat --to json < gen.frames | jq -c -s 'sort_by(.time)[]' > expected.jsonl
# jq writes 46.0 as 46: both sides go through it.
mh-store query --db D --format json > raw.jsonl; code=$?
expect_eq "query exit code" 0 "$code"
jq -c . raw.jsonl > queried.jsonl
expect_files_equal "query --format json" expected.jsonl queried.jsonl
mh-store query --db D > queried.frames
expect_files_equal "frames byte for byte (mh-gen writes in time order)" gen.frames queried.frames

begin "source, time and expression queries agree with jq"
jq -c 'select(.source == "sensor-000007")' expected.jsonl > source.jsonl
mh-store query --db D --source sensor-000007 --format json | jq -c . > got.jsonl
expect_eq "messages of one source" 2000 "$(wc -l < got.jsonl)"
expect_files_equal "--source" source.jsonl got.jsonl
from=$(sed -n 5000p expected.jsonl | jq .time); to=$(sed -n 6000p expected.jsonl | jq .time)
jq -c "select(.time >= $from and .time < $to)" expected.jsonl > range.jsonl
mh-store query --db D --from "$from" --to "$to" --format json | jq -c . > got.jsonl
expect_files_equal "--from/--to (integer ns)" range.jsonl got.jsonl
jq -c 'select(.temperature > 22.5 and .source != "sensor-000001")' expected.jsonl > where.jsonl
mh-store query --db D --where 'temperature > 22.5 and source != "sensor-000001"' --format json | jq -c . > got.jsonl
expect_files_equal "--where" where.jsonl got.jsonl
expect_eq "--limit" 3 "$(mh-store query --db D --limit 3 --format text | wc -l)"
expect_eq "--from a relative time: nothing from 2026 is in the future" "" \
  "$(mh-store query --db D --from -1h --format json)"

begin "progress on stderr: forced on, forced off, and off by default when stderr is no terminal"
mh-store query --db D --format json --progress 2> progress.txt | (sleep 1; cat) > /dev/null
expect_contains "the final line counts everything" "mh-store: query: 20000 messages of 20000 (100.0%)" \
  "$(tail -n 1 progress.txt)"
expect_contains "with a rate" "msgs/s" "$(tail -n 1 progress.txt)"
expect_contains "and the time elapsed" "s elapsed" "$(tail -n 1 progress.txt)"
# The reader above starts a second late: the export waits on the full pipe, then reports.
[ "$(grep -c 'mh-store: query:' progress.txt)" -ge 2 ] && pass || fail "no report while it ran: $(cat progress.txt)"
mh-store query --db D --source sensor-000004 --progress 2> progress.txt > /dev/null
expect_contains "no total for a source query" "mh-store: query: 2000 messages," "$(cat progress.txt)"
mh-store tail --db D --progress 2> progress.txt > /dev/null
expect_contains "tail too" "mh-store: tail: 20000 messages of 20000" "$(cat progress.txt)"
mh-store query --db D 2> progress.txt > /dev/null
expect_eq "nothing when stderr is a file" "" "$(cat progress.txt)"
if command -v script > /dev/null; then
  script -qc "mh-store query --db D --no-progress > /dev/null" /dev/null > tty.txt
  expect_eq "--no-progress on a terminal" "" "$(cat tty.txt)"
  script -qc "mh-store query --db D > /dev/null" /dev/null > tty.txt
  expect_contains "on by default on a terminal" "20000 messages of 20000" "$(cat tty.txt)"
fi
mh-store query --db D --progress --no-progress 2> err.txt; expect_eq "both" 64 "$?"

begin "stat and check"
expect_contains "message count" "messages   20000" "$(mh-store stat --db D)"
expect_eq "stat --json" '20000 10 "2026-01-01T00:00:00Z"' \
  "$(mh-store stat --db D --json | jq -r '"\(.messages) \(.sources) \"\(.first)\""')"
out=$(mh-store check --db D); code=$?
expect_eq "check exit code" 0 "$code"
expect_contains "check says" "sound: 20000 messages" "$out"

begin "a replay stores nothing new"
err=$(mh-store append --db D < gen.frames 2>&1); code=$?
expect_eq "exit code" 0 "$code"
expect_contains "duplicates are reported" "skipped 20000 messages already stored" "$err"
expect_eq "count unchanged" 20000 "$(mh-store stat --db D --json | jq .messages)"

begin "retain deletes the oldest, by size, and leaves a sound store"
cp -r D R
half=$(( $(mh-store stat --db R --json | jq .bytes) / 2 ))
mh-store retain --db R --max-size "$half" 2> retain.err; code=$?
expect_eq "exit code" 0 "$code"
expect_contains "says what it deleted" "deleted" "$(cat retain.err)"
[ "$(mh-store stat --db R --json | jq .bytes)" -le "$half" ] && pass || fail "store still over $half bytes"
kept=$(mh-store stat --db R --json | jq .messages)
expect_eq "the newest are kept" "$(tail -n "$kept" expected.jsonl | jq -r .id)" \
  "$(mh-store query --db R --format json | jq -r .id)"
mh-store check --db R > /dev/null; expect_eq "check after retain" 0 "$?"
mh-store retain --db R --max-age 1d > /dev/null 2>&1; expect_eq "all of 2026-01-01 is older than a day" 0 "$(mh-store stat --db R --json | jq .messages)"
mh-store retain --db R 2> err.txt; expect_eq "retain without a limit" 64 "$?"
mh-store append --db A --retain-size "$half" < gen.frames; expect_eq "append with a retention" 0 "$?"
[ "$(mh-store stat --db A --json | jq .bytes)" -le "$half" ] && pass || fail "append left more than $half bytes"
mh-store check --db A > /dev/null; expect_eq "check after append with a retention" 0 "$?"
mh-store append --db A --retain-age never < /dev/null 2> err.txt; expect_eq "bad --retain-age" 64 "$?"
mh-store retain --db R --max-age soon 2> err.txt; expect_eq "bad --max-age" 64 "$?"
expect_contains "names the value" "soon" "$(cat err.txt)"

begin "tail: history in the order it came, then what is appended"
mh-store tail --db D > tailed.frames; expect_eq "tail exit" 0 "$?"
expect_files_equal "all of it, in id order (mh-gen's order)" gen.frames tailed.frames
mh-gen --count 3000 --seed 11 > more.frames
mh-cat --to json < more.frames > more.jsonl
mh-store append --db F < /dev/null  # an empty store to follow
mh-store tail --db F --follow --format json --log-level debug > followed.jsonl 2> follow.err &
follower=$!; BACKGROUND_PIDS+=($follower)
wait_until 10 grep -q "following from the first message" follow.err || fail "the follower did not start: $(cat follow.err)"
mh-cat --count 1000 < more.frames | mh-store append --db F
wait_until 10 bash -c "[ \$(wc -l < followed.jsonl) -ge 1000 ]" || fail "the follower never saw the first 1000"
mh-store append --db F < more.frames 2> /dev/null  # the first 1000 again (skipped) and 2000 new
wait_until 10 bash -c "[ \$(wc -l < followed.jsonl) -ge 3000 ]" || fail "the follower never saw all 3000"
kill -TERM $follower; wait_pid_exit 10 $follower
expect_eq "follower exit on SIGTERM" 0 "$EXIT_CODE"
expect_files_equal "followed: every message once, in order" more.jsonl followed.jsonl
expect_eq "--from a time after everything: nothing" "" "$(mh-store tail --db D --from 2030-01-01T00:00:00Z --format json)"

begin "tail --speed keeps event-time gaps, scaled"
mh-gen --count 9 --sources 1 --interval 250ms --seed 2 | mh-store append --db S
start=$(date +%s%N)
mh-store tail --db S --speed 4 --format json > paced.jsonl
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
expect_eq "all replayed" 9 "$(wc -l < paced.jsonl)"
# 8 gaps of 250 ms at 4x: at least 500 ms (an upper bound would only measure the machine).
[ "$elapsed_ms" -ge 480 ] && pass || fail "replay took ${elapsed_ms} ms, expected at least 500"
mh-store tail --db S --speed -1 2> err.txt; expect_eq "negative speed" 64 "$?"

begin "bad options exit 64"
mh-store query 2> err.txt; expect_eq "no --db" 64 "$?"
mh-store append --db D --sync sometimes < /dev/null 2> err.txt; expect_eq "bad --sync" 64 "$?"
mh-store frobnicate --db D 2> err.txt; expect_eq "unknown subcommand" 64 "$?"
mh-store query --db D --where 'temperature >' 2> err.txt; expect_eq "bad --where" 64 "$?"
expect_contains "the expression is shown" "temperature >" "$(cat err.txt)"
mh-store query --db D --from yesterday 2> err.txt; expect_eq "bad --from" 64 "$?"
mh-store append --db D --max-size lots < /dev/null 2> err.txt; expect_eq "bad --max-size" 64 "$?"

begin "a missing store exits 74 and says how to make one"
mh-store query --db nowhere 2> err.txt; code=$?
expect_eq "exit code" 74 "$code"
expect_contains "message" "no store at 'nowhere'" "$(cat err.txt)"
mh-store check --db nowhere 2> /dev/null; expect_eq "check" 74 "$?"

begin "barriers are confirmed after their commit, and not stored"
printf '%s\n' '{"id":"019b76da-a800-7000-a4f1-d71bb64f0f29","time":1,"source":"a"}' \
  '{"$barrier":5,"time":2}' '{"source":"no-id"}' > barrier.jsonl
mh-cat --from json < barrier.jsonl | mh-store append --db B --confirm confirmed.frames --log-level debug 2> err.txt
expect_eq "exit code" 0 "$?"
expect_eq "the barrier comes back" '{"$barrier":5,"time":2}' "$(mh-cat --to json < confirmed.frames)"
expect_contains "logged at debug" "barrier 5 committed" "$(cat err.txt)"
expect_contains "a message without an id is refused with a hint" "ids are assigned at ingestion" "$(cat err.txt)"
expect_eq "one message stored" 1 "$(mh-store stat --db B --json | jq .messages)"

begin "a full store stops appending with exit 74 and keeps what it committed"
mh-store append --db F --max-size 1M --batch 100 < gen.frames 2> err.txt; code=$?
expect_eq "exit code" 74 "$code"
expect_contains "says so" "is full" "$(cat err.txt)"
mh-store check --db F > /dev/null; expect_eq "still sound" 0 "$?"
stored=$(mh-store stat --db F --json | jq .messages)
expect_eq "whole batches only" 0 "$((stored % 100))"

begin "SIGKILL during append leaves a sound store holding a prefix of the input"
mh-gen --count 200000 --seed 9 --interval 500us | mh-cat --to json | jq -r .id > reference.ids
has_messages() { [ "$(mh-store stat --db K --json 2>/dev/null | jq .messages)" -gt "$1" ] 2>/dev/null; }
previous=0
for round in 1 2 3; do
  mh-gen --rate 20000 --count 200000 --seed 9 | mh-store append --db K --sync commit 2> /dev/null &
  pid=$!
  # Past what earlier rounds stored (replayed ids are skipped), then a little more.
  wait_until 20 has_messages "$previous" || fail "round $round: nothing new committed in 20 s"
  sleep 0.2
  kill -9 "$pid"; wait "$pid" 2> /dev/null
  mh-store check --db K > check.txt; code=$?
  expect_eq "round $round: check exit code" 0 "$code"
  mh-store query --db K --format json | jq -r .id > stored.ids
  count=$(wc -l < stored.ids)
  [ "$count" -gt "$previous" ] && pass || fail "round $round: $count stored, $previous before"
  head -n "$count" reference.ids > prefix.ids
  expect_files_equal "round $round: a prefix of the input" prefix.ids stored.ids
  previous=$count
done
mh-gen --count 200000 --seed 9 --interval 500us | mh-store append --db K 2> /dev/null
expect_eq "a final replay completes the store" 200000 "$(mh-store stat --db K --json | jq .messages)"
mh-store check --db K > /dev/null; expect_eq "and it is sound" 0 "$?"

finish
