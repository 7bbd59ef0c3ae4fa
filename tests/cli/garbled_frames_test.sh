#!/usr/bin/env bash
# A frame whose framing is intact but whose content is garbled (a pointer out of bounds) is
# counted, logged, set aside on --dead-letter and skipped by every handler; the frames
# around it go on, and the tool exits 0.
source "$(dirname "$0")/lib.sh"

mh-gen --count 3 --seed 1 --sources 1 > good.frames
first=$(mh-cat --count 1 < good.frames | wc -c)
cp good.frames garbled.frames
# The second frame's root pointer aims far past its segment.
printf '\xf0\xff\xff\x00' | dd of=garbled.frames bs=1 seek=$((first + 8)) conv=notrunc status=none

begin "mh-filter"
mh-filter 'true' --dead-letter dead-filter.frames < garbled.frames > out.frames 2> err.txt
expect_eq "exit code" 0 "$?"
expect_eq "the two good frames pass" 2 "$(mh-cat --to json < out.frames | wc -l)"
expect_contains "warning" "dropped a garbled frame" "$(cat err.txt)"
expect_eq "dead letter holds it" "$first" "$(stat -c %s dead-filter.frames)"

begin "mh-aggregate"
mh-aggregate --window 1h --agg 'count()' --dead-letter dead-agg.frames < garbled.frames > agg.frames 2> err.txt
expect_eq "exit code" 0 "$?"
expect_eq "counted the two good messages" 2 "$(mh-cat --to json < agg.frames | jq -s 'map(.count) | add')"
expect_contains "warning" "dropped a garbled frame" "$(cat err.txt)"
expect_eq "dead letter holds it" "$first" "$(stat -c %s dead-agg.frames)"

finish
