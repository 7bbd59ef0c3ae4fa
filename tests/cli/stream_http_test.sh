#!/usr/bin/env bash
# mh-stream http from the command line: bad options are usage errors, and a server that is
# not there is a failed poll, logged and retried, not the end of the tool. The polling itself
# (conditional requests, 304, records at a path, overlap dropped) is tested against a server
# of the test's own in tests/stream/http_source_test.cpp.
source "$(dirname "$0")/lib.sh"

begin "usage errors"
mh-stream http --url ftp://example/x > /dev/null 2> err.log
expect_eq "scheme exit" 64 "$?"
expect_contains "scheme diagnostic" "--url 'ftp://example/x': expected http:// or https://" "$(cat err.log)"
mh-stream http --url http://127.0.0.1:1/x --interval soon > /dev/null 2> err.log
expect_eq "interval exit" 64 "$?"
expect_contains "interval diagnostic" "--interval 'soon'" "$(cat err.log)"
mh-stream http --url http://127.0.0.1:1/x --header 'no colon' > /dev/null 2> err.log
expect_eq "header exit" 64 "$?"
mh-stream http > /dev/null 2> err.log
expect_eq "--url is required" 64 "$?"

begin "a server that is not there: failed polls, retried, then a clean stop"
mh-stream http --url http://127.0.0.1:1/api --interval 50ms --metrics 127.0.0.1:0 > out.frames 2> run.log &
pid=$!; BACKGROUND_PIDS+=("$pid")
port=$(wait_log_port 20 run.log 'metrics on port') || fail "no metrics port: $(cat run.log)"
wait_until 20 bash -c "grep -c 'poll of http://127.0.0.1:1/api failed' run.log | grep -q '[2-9]'" \
  || fail "polls not retried: $(cat run.log)"
scrape_metrics "$port" metrics.txt
expect_contains "failed polls counted" 'mh_stream_polls_total{result="failed"}' "$(cat metrics.txt)"
kill -TERM "$pid"; wait_pid_exit 20 "$pid"
expect_eq "SIGTERM ends it with 0" 0 "$EXIT_CODE"
expect_eq "nothing written" 0 "$(stat -c %s out.frames)"

finish
