#!/usr/bin/env bash
# mh-cat --from json with one output decodes each frame straight into that output's buffer;
# teed to two outputs it hands frames out one by one and copies them. Both ways, from a
# mapped file and from a pipe, give the same bytes, the same warnings with the same line
# numbers, barriers where they were, and the same refusal under --strict.
source "$(dirname "$0")/lib.sh"

# A little over 3 MiB of lines (a file that large is mapped and handed out 1 MiB at a
# time), with bad, blank, "\r\n" and barrier lines among good ones, and a bad line across
# each 1 MiB boundary.
mh-gen --count 15000 --seed 7 | mh-cat --to json > good.jsonl
awk -v boundary=1048576 '
  function emit(text) { print text; bytes += length(text) + 1 }
  {
    if (bytes + length($0) + 1 > boundary) {  # this line would cross: a bad one does instead
      bad = "not json, across the " boundary " byte boundary "
      emit(bad sprintf("%" (boundary - bytes - length(bad) + 50) "s", "x"))
      boundary += 1048576
    }
    n++
    if (n % 997 == 0) emit("{\"$barrier\":" n ",\"time\":" n "}")
    if (n % 1001 == 0) emit("[1,2]")
    if (n % 1003 == 0) emit("")
    if (n % 1009 == 0) { printf "%s\r\n", $0; bytes += length($0) + 2; next }
    emit($0)
  }' good.jsonl > mixed.jsonl
lines=$(wc -l < mixed.jsonl)

begin "the input is what the test means it to be"
expect_eq "over 3 MiB (mapped, several windows)" 1 "$(($(stat -c %s mixed.jsonl) > 3 * 1048576))"
expect_eq "three lines across the 1 MiB boundaries" 3 "$(grep -c 'across the' mixed.jsonl)"

begin "in place from a file, from a pipe, and copied to two outputs: the same bytes"
mh-cat --from json < mixed.jsonl > file.frames 2> file.err; expect_eq "exit (file)" 0 "$?"
cat mixed.jsonl | mh-cat --from json > pipe.frames 2> pipe.err; expect_eq "exit (pipe)" 0 "$?"
mh-cat --from json --in mixed.jsonl --out tee1.frames --out tee2.frames 2> tee.err; expect_eq "exit (tee)" 0 "$?"
expect_files_equal "pipe = file" file.frames pipe.frames
expect_files_equal "teed = file" file.frames tee1.frames
expect_files_equal "both teed outputs" tee1.frames tee2.frames
expect_files_equal "warnings (pipe)" file.err pipe.err
expect_files_equal "warnings (tee)" file.err tee.err

begin "every good line, in order, and nothing else"
mh-cat --to json < file.frames > out.jsonl
grep -v '^\[1,2\]$' mixed.jsonl | grep -v '^not json' | grep -v '^$' | tr -d '\r' > expected.jsonl
expect_files_equal "the good lines back" expected.jsonl out.jsonl
expect_eq "barriers in order" "$(grep -o '"\$barrier":[0-9]*' mixed.jsonl | tr '\n' ' ')" \
  "$(grep -o '"\$barrier":[0-9]*' out.jsonl | tr '\n' ' ')"

begin "bad lines reported by their numbers"
expected_numbers=$(grep -n -e '^\[1,2\]$' -e '^not json' mixed.jsonl | cut -d: -f1 | tr '\n' ' ')
expect_eq "line numbers" "$expected_numbers" \
  "$(grep -o 'warning: line [0-9]*' file.err | awk '{print $3}' | tr '\n' ' ')"
expect_contains "summary" "skipped $(grep -c -e '^\[1,2\]$' -e '^not json' mixed.jsonl) bad input lines" "$(cat file.err)"
expect_eq "lines read" "$lines" "$(($(wc -l < out.jsonl) + $(grep -c -e '^\[1,2\]$' -e '^not json' -e '^$' mixed.jsonl)))"

begin "--strict: the first bad line ends it, the lines before it delivered, either way"
first_bad=$(echo "$expected_numbers" | cut -d' ' -f1)
mh-cat --from json --strict < mixed.jsonl > strict.frames 2> strict.err; expect_eq "exit (file)" 65 "$?"
cat mixed.jsonl | mh-cat --from json --strict > strict_pipe.frames 2> strict_pipe.err
expect_eq "exit (pipe)" 65 "${PIPESTATUS[1]}"
mh-cat --from json --strict --in mixed.jsonl --out strict_tee1.frames --out strict_tee2.frames 2> strict_tee.err
expect_eq "exit (tee)" 65 "$?"
expect_contains "names the line" "line $first_bad:" "$(cat strict.err)"
expect_files_equal "pipe = file" strict.frames strict_pipe.frames
expect_files_equal "teed = file" strict.frames strict_tee1.frames
expect_files_equal "message (pipe)" strict.err strict_pipe.err
expect_files_equal "message (tee)" strict.err strict_tee.err
expect_eq "delivered before it" "$(head -n $((first_bad - 1)) mixed.jsonl | grep -c -v -e '^$')" \
  "$(mh-cat --to json < strict.frames | wc -l)"

begin "--count stops at the same frame"
mh-cat --from json --count 5000 < mixed.jsonl > count.frames 2> /dev/null
mh-cat --from json --count 5000 --in mixed.jsonl --out count_tee1.frames --out count_tee2.frames 2> /dev/null
expect_files_equal "counted" count.frames count_tee1.frames
expect_eq "5000 messages" 5000 "$(mh-cat --to json < count.frames | wc -l)"

finish
