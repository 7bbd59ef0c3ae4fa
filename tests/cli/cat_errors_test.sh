#!/usr/bin/env bash
# mh-cat on broken input and bad options: a clear message, the right exit code, and
# nothing accepted before the break lost.
source "$(dirname "$0")/lib.sh"

# Three good frames from JSON, to damage in various ways.
printf '%s\n' '{"source":"s1","time":1,"kind":"telemetry","t":1.5}' \
              '{"source":"s2","time":2,"kind":"telemetry","t":2.5}' \
              '{"source":"s3","time":3,"kind":"telemetry","t":3.5}' > good.jsonl
mh-cat --from json < good.jsonl > good.frames
size=$(stat -c %s good.frames)

begin "truncated stream: earlier frames delivered, exit 65, offset named"
head -c $((size - 8)) good.frames > truncated.frames
mh-cat --to json < truncated.frames > out.jsonl 2> err.txt; code=$?
expect_eq "exit code" 65 "$code"
expect_eq "messages before the break" 2 "$(wc -l < out.jsonl)"
expect_contains "message" "mh-cat: error: truncated frame at byte" "$(cat err.txt)"

begin "garbage input: exit 65 with a hint"
echo '{"this":"is json, not frames"}' | mh-cat --to json > out.jsonl 2> err.txt; code=$?
expect_eq "exit code" 65 "$code"
expect_contains "message" "garbage at byte 0" "$(cat err.txt)"
expect_contains "hint" "--from json" "$(cat err.txt)"

begin "oversized frame: refused before it is read whole"
mh-cat --max-frame 64 --to json < good.frames > out.jsonl 2> err.txt; code=$?
expect_eq "exit code" 65 "$code"
expect_contains "message" "over the limit of 64" "$(cat err.txt)"

begin "garbled frame inside good framing: counted, skipped, set aside, exit 0"
# Corrupt the root pointer of the second frame (its framing stays intact).
first=$(mh-cat --count 1 < good.frames | wc -c)
cp good.frames garbled.frames
printf '\xf0\xff\xff\x00' | dd of=garbled.frames bs=1 seek=$((first + 8)) conv=notrunc status=none
mh-cat --to json --dead-letter dead.frames < garbled.frames > out.jsonl 2> err.txt; code=$?
expect_eq "exit code" 0 "$code"
expect_eq "good messages" "s1 s3" "$(jq -r .source out.jsonl | tr '\n' ' ' | sed 's/ $//')"
expect_contains "warning" "dropped a garbled frame" "$(cat err.txt)"
expect_eq "dead letter holds the garbled frame (frames here are all one size)" "$first" "$(stat -c %s dead.frames)"
expect_contains "and it is still garbled" "dropped a garbled frame" "$(mh-cat < dead.frames 2>&1 >/dev/null)"

begin "bad JSON lines: reported with line numbers and skipped"
printf '%s\n' '{"source":"a","x":1}' '{"source":' 'not json' '[1,2]' '{"source":"b","x":2}' > mixed.jsonl
mh-cat --from json < mixed.jsonl 2> err.txt | mh-cat --to json > out.jsonl; code=$?
expect_eq "exit code" 0 "$code"
expect_eq "good lines kept" "a b" "$(jq -r .source out.jsonl | tr '\n' ' ' | sed 's/ $//')"
expect_contains "line 2 reported" "line 2:" "$(cat err.txt)"
expect_contains "line 3 reported" "line 3:" "$(cat err.txt)"
expect_contains "line 4 reported" "line 4:" "$(cat err.txt)"
expect_contains "summary" "skipped 3 bad input lines" "$(cat err.txt)"

begin "bad JSON with --strict: exit 65 at the first bad line, earlier lines delivered"
mh-cat --from json --strict < mixed.jsonl 2> err.txt | mh-cat --to json > out.jsonl; code=${PIPESTATUS[0]}
expect_eq "exit code" 65 "$code"
expect_eq "delivered before" "a" "$(jq -r .source out.jsonl)"
expect_contains "message" "line 2:" "$(cat err.txt)"

begin "bad options: exit 64"
mh-cat --no-such-option < /dev/null > /dev/null 2> err.txt; expect_eq "unknown option" 64 "$?"
mh-cat --from yaml < /dev/null > /dev/null 2> err.txt; expect_eq "bad format" 64 "$?"
expect_contains "names the value" "yaml" "$(cat err.txt)"
mh-cat --in 'pair@tcp://*:1' < /dev/null > /dev/null 2> err.txt; expect_eq "bad endpoint" 64 "$?"
expect_contains "explains" "unknown pattern 'pair'" "$(cat err.txt)"
mh-cat --from json --in '@tcp://127.0.0.1:1' > /dev/null 2> err.txt; expect_eq "json from a socket" 64 "$?"
mh-cat --in /nonexistent/file > /dev/null 2> err.txt; expect_eq "missing file" 74 "$?"
expect_contains "names the file" "/nonexistent/file" "$(cat err.txt)"
mh-cat --metrics nonsense < /dev/null > /dev/null 2> err.txt; expect_eq "bad metrics address" 64 "$?"

begin "--help and --version: exit 0 on stdout"
expect_contains "help" "--from" "$(mh-cat --help)"
expect_contains "version" "mh-cat (mh)" "$(mh-cat --version)"

begin "a closed output ends quietly"
mh-gen --count 1000000 --seed 1 | mh-cat --to json 2> err.txt | head -1 > /dev/null
expect_eq "exit codes" "0 0 0" "${PIPESTATUS[*]}"
expect_eq "nothing on stderr" "" "$(cat err.txt)"

finish
