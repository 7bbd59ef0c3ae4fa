#!/usr/bin/env bash
# Tapping a running stream through a pub socket, and the Prometheus counters a tool
# serves on --metrics while it runs.
source "$(dirname "$0")/lib.sh"

begin "a sub tap sees a publisher's messages"
mh-cat --in "sub>ipc://$WORK/tap.sock" --count 5 --to json > tapped.jsonl 2> tap.err &
tap=$!; BACKGROUND_PIDS+=($tap)
# PUB drops what is sent before a subscriber joins, so publish until the tap has enough.
mh-gen --rate 500 --out "pub@ipc://$WORK/tap.sock" 2> pub.err &
publisher=$!; BACKGROUND_PIDS+=($publisher)
wait_pid_exit 30 $tap
expect_eq "tap exit" 0 "$EXIT_CODE"
kill -TERM $publisher; wait_pid_exit 10 $publisher
expect_eq "publisher exit" 0 "$EXIT_CODE"
expect_eq "five messages" 5 "$(jq -r .kind tapped.jsonl | grep -c telemetry)"

begin "--metrics serves counters while the tool runs"
mh-cat --in "@ipc://$WORK/metered.sock" --metrics 127.0.0.1:0 > /dev/null 2> metered.err &
metered=$!; BACKGROUND_PIDS+=($metered)
wait_until 10 grep -q 'metrics on port' metered.err || fail "no metrics port logged: $(cat metered.err)"
port=$(grep -o 'metrics on port [0-9]*' metered.err | grep -o '[0-9]*$')
mh-gen --count 1234 --seed 1 --out ">ipc://$WORK/metered.sock"
counted() { scrape_metrics "$port" metrics.txt && grep -q '^mh_messages_in_total 1234$' metrics.txt; }
wait_until 10 counted || fail "counter never reached 1234: $(grep mh_messages metrics.txt)"
expect_contains "HTTP status" "HTTP/1.1 200 OK" "$(head -1 metrics.txt)"
expect_contains "out counter" "mh_messages_out_total 1234" "$(cat metrics.txt)"
expect_contains "bytes counter" "mh_bytes_in_total" "$(cat metrics.txt)"
expect_contains "drops by reason" 'mh_dropped_total{reason="malformed"} 0' "$(cat metrics.txt)"
kill -TERM $metered; wait_pid_exit 10 $metered
expect_eq "exit on SIGTERM" 0 "$EXIT_CODE"

finish
