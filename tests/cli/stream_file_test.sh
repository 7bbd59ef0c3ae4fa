#!/usr/bin/env bash
# mh-stream file: a file followed like tail -F. Lines appended arrive; a rotated file is read
# to its end before the new one; a truncated file is read again from its start; a half
# written line waits for its newline; a restart (also after a rotation while stopped) neither
# loses nor repeats a line; CSV keeps its header across restarts.
source "$(dirname "$0")/lib.sh"

# start_stream NAME ARGS...: mh-stream file in the background, its JSON in NAME.jsonl
start_stream() {
  local name=$1; shift
  mh-stream file --poll 20ms "$@" 2> "$name.log" > >(mh-cat --to json --time rfc3339 > "$name.jsonl") &
  STREAM_PID=$!
  BACKGROUND_PIDS+=("$STREAM_PID")
}
stop_stream() {
  kill -TERM "$STREAM_PID"; wait_pid_exit 20 "$STREAM_PID"
  expect_eq "SIGTERM ends it with 0" 0 "$EXIT_CODE"
}
lines() { [ -f "$1" ] && wc -l < "$1" || echo 0; }
has_lines() { [ "$(lines "$1")" -ge "$2" ]; }
seen() { cat "$@" | jq -r '.n' | tr '\n' ' ' | sed 's/ $//'; }
emit() { for n in "$@"; do printf '{"source":"s","n":%s}\n' "$n"; done; }

begin "lines appended arrive, a half-written line waits for its newline"
emit 1 2 3 > app.log
start_stream a --path app.log --position-file app.pos
wait_until 20 has_lines a.jsonl 3 || fail "3 lines expected, got $(lines a.jsonl): $(cat a.log)"
printf '{"source":"s",' >> app.log
emit 4 >> /dev/null
printf '"n":4}\n' >> app.log
emit 5 >> app.log
wait_until 20 has_lines a.jsonl 5 || fail "5 lines expected, got $(lines a.jsonl)"
expect_eq "in order" "1 2 3 4 5" "$(seen a.jsonl)"

begin "rotation: the old file is read to its end, then the new one from its start"
mv app.log app.log.1
emit 6 >> app.log.1            # the writer has not reopened yet
printf '{"source":"s","n":7}' >> app.log.1   # and its last line has no newline
emit 8 9 > app.log
wait_until 20 has_lines a.jsonl 9 || fail "9 lines expected, got $(lines a.jsonl): $(cat a.log)"
expect_eq "in order across the rotation" "1 2 3 4 5 6 7 8 9" "$(seen a.jsonl)"
expect_contains "rotation logged" "was rotated: following the new file" "$(cat a.log)"

begin "truncation: read again from the start"
: > app.log
emit 10 >> app.log
wait_until 20 has_lines a.jsonl 10 || fail "10 lines expected, got $(lines a.jsonl): $(cat a.log)"
expect_eq "after the truncation" "10" "$(tail -n 1 a.jsonl | jq -r .n)"
expect_contains "truncation logged" "was truncated" "$(cat a.log)"

begin "restart in the middle: nothing lost, nothing repeated"
stop_stream
emit 11 12 >> app.log
start_stream b --path app.log --position-file app.pos
emit 13 >> app.log
wait_until 20 has_lines b.jsonl 3 || fail "3 lines expected, got $(lines b.jsonl): $(cat b.log)"
stop_stream
expect_eq "second run" "11 12 13" "$(seen b.jsonl)"

begin "rotated while stopped: the old file is found by its inode and finished first"
emit 14 >> app.log
mv app.log app.log.2
emit 15 > app.log
start_stream c --path app.log --position-file app.pos
wait_until 20 has_lines c.jsonl 2 || fail "2 lines expected, got $(lines c.jsonl): $(cat c.log)"
stop_stream
expect_eq "third run" "14 15" "$(seen c.jsonl)"
expect_eq "every line exactly once" "$(seq 1 15 | tr '\n' ' ' | sed 's/ $//')" "$(seen a.jsonl b.jsonl c.jsonl)"

begin "the position file is whole: device, inode, offset"
expect_eq "position" "$(stat -c '%d %i %s' app.log)" "$(cat app.pos)"

begin "CSV: header per file, typed cells, the header read again after a restart"
printf 'time,source,temperature,status\n2026-11-26T10:00:00Z,s1,21.5,ok\n' > m.csv
start_stream d --path m.csv --format csv --position-file m.pos --kind reading
wait_until 20 has_lines d.jsonl 1 || fail "1 row expected: $(cat d.log)"
stop_stream
printf '2026-11-26T10:00:01Z,s2,22,warm\nbad,row\n' >> m.csv
start_stream e --path m.csv --format csv --position-file m.pos --kind reading
wait_until 20 has_lines e.jsonl 1 || fail "1 row expected after the restart: $(cat e.log)"
wait_until 20 grep -q "1 cells\|2 cells" e.log || fail "bad row not logged: $(cat e.log)"
stop_stream
expect_eq "first row" '{"time":"2026-11-26T10:00:00Z","source":"s1","kind":"reading","temperature":21.5,"status":"ok"}' \
  "$(jq -c 'del(.id, .ingested)' d.jsonl)"
expect_eq "second row" 's2 22 warm' "$(jq -r '"\(.source) \(.temperature) \(.status)"' e.jsonl)"
expect_contains "bad row counted" "(1 records rejected)" "$(cat e.log)"

begin "--time-key and --source-key on file lines"
printf '{"dev":"d1","ts":1700000000123,"v":1}\n' > keys.log
start_stream k --path keys.log --source-key dev --time-key ts --time-unit ms
wait_until 20 has_lines k.jsonl 1 || fail "1 line expected: $(cat k.log)"
stop_stream
expect_eq "mapped" '"d1" 1' "$(jq -c '.source, .v' k.jsonl | tr '\n' ' ' | sed 's/ $//')"
expect_eq "time in ms" '"2023-11-14T22:13:20.123Z"' "$(jq -c .time k.jsonl)"

begin "the mapping is mh-cat's: the same lines give the same messages (but for id and times)"
cat > input-shapes.txt <<'LINES'
{"source":"s1","kind":"telemetry","temperature":21.5,"count":7,"ok":true,"status":"fine"}
{"source":"s2","motor":{"rpm":1200,"temp":{"c":40.5}},"tags":["a","b"],"nothing":null}
{"source":"s3","text":"gr\u00fc\u00dfe \ud83d\ude00","big":123456789012345678901234,"f":1e300,"body":"raw bytes"}
{"source":"s4","body":{"base64":"AAEC/w=="}}
LINES
mh-cat --from json --to json --time rfc3339 < input-shapes.txt | jq -c 'del(.id, .ingested, .time)' > by-cat.jsonl
start_stream shapes --path input-shapes.txt
wait_until 20 has_lines shapes.jsonl 4 || fail "4 lines expected: $(cat shapes.log)"
stop_stream
jq -c 'del(.id, .ingested, .time)' shapes.jsonl > by-stream.jsonl
expect_files_equal "same messages" by-cat.jsonl by-stream.jsonl

begin "a file that is not there yet is waited for"
start_stream w --path late.log
wait_until 20 grep -q "waiting for 'late.log'" w.log || fail "not waiting: $(cat w.log)"
emit 1 > late.log
wait_until 20 has_lines w.jsonl 1 || fail "late file not read: $(cat w.log)"
stop_stream

finish
