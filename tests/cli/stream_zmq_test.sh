#!/usr/bin/env bash
# Pulling another mh environment's stream needs no mh-stream subcommand: its frames are
# already messages, and mh-cat --in connects to whatever the other side serves. Proof: one
# environment's store served by `mh-store tail --follow` over ZeroMQ, pulled into a second
# store, history first and then what is appended while connected (man mh-stream, "Another
# mh environment").
source "$(dirname "$0")/lib.sh"

count() { mh-store stat --db "$1" --json 2>/dev/null | jq -r .messages; }
count_is() { [ "$(count "$1")" == "$2" ]; }

# Seeded, the history's ids are from 2026-01-01; what is appended later (unseeded, ids from
# now, a millisecond apart: not in the future) sorts after it, which is the order tail follows.
mh-gen --count 100 --seed 1 | mh-store append --db there 2> /dev/null

begin "history, then new writes, from a PUSH served by mh-store tail"
mh-store tail --db there --from-start --follow --out '@tcp://127.0.0.1:*' 2> tail.log &
TAIL=$!; BACKGROUND_PIDS+=("$TAIL")
port=$(wait_log_port 20 tail.log 'bound tcp://') || fail "tail did not bind: $(cat tail.log)"
# Through a FIFO, not a pipeline: $! of a pipeline is its last process, and the mh-cat
# before it would outlive the test.
mkfifo pulled.fifo
mh-cat --in ">tcp://127.0.0.1:$port" > pulled.fifo 2> pull.log &
CAT=$!; BACKGROUND_PIDS+=("$CAT")
mh-store append --db here < pulled.fifo 2> append.log &
PULL=$!; BACKGROUND_PIDS+=("$PULL")
wait_until 30 count_is here 100 || fail "history: $(count here) of 100"
mh-gen --count 50 --interval 1ms | mh-store append --db there 2> /dev/null
wait_until 30 count_is here 150 || fail "new writes: $(count here) of 150"
expect_eq "same ids" "$(mh-store tail --db there --format json | jq -r .id | sort | md5sum)" \
  "$(mh-store tail --db here --format json | jq -r .id | sort | md5sum)"
kill -TERM "$TAIL"; wait_pid_exit 20 "$TAIL"
kill -TERM "$CAT" "$PULL" 2>/dev/null

begin "a tap: SUB to a PUB that mh-store tail serves"
mh-store tail --db there --follow --out 'pub@tcp://127.0.0.1:*' 2> pub.log &
PUB=$!; BACKGROUND_PIDS+=("$PUB")
port=$(wait_log_port 20 pub.log 'bound tcp://') || fail "tail did not bind: $(cat pub.log)"
mh-cat --in "sub>tcp://127.0.0.1:$port" --to json > tapped.jsonl 2> sub.log &
SUB=$!; BACKGROUND_PIDS+=("$SUB")
# A PUB sends to whoever has subscribed by then: append one message at a time until the tap
# has one (ids are time-ordered, so what is appended later is what tail follows).
# The id is kept from the very read that saw it, not read again.
tap_one() {
  mh-gen --count 1 | mh-store append --db there 2> /dev/null
  head -n 1 tapped.jsonl | jq -r .id > tapped.id 2> /dev/null
  [ -s tapped.id ]  # jq 1.6 -e says yes to an empty input
}
wait_until 30 tap_one || fail "tap: nothing arrived: $(cat sub.log)"
tapped=$(cat tapped.id)
# Not grep -q: with pipefail, an early exit would fail the writers with SIGPIPE.
mh-store tail --db there --format json | jq -r .id | grep -x "$tapped" > /dev/null
expect_eq "a tapped message is one of the store's" 0 "$?"
kill -TERM "$PUB" "$SUB"

finish
