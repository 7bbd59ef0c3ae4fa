#!/usr/bin/env bash
# mh-stream http from the command line: bad options are usage errors; a server that is not
# there is a failed poll, logged and retried, not the end of the tool; over real TLS (openssl
# s_server -WWW serving a file) records at a path arrive once, however often they are polled,
# and a certificate that is not trusted is a failed poll. Conditional requests and 304s are
# tested against a server of the test's own in tests/stream/http_source_test.cpp.
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

begin "https: records at a path, each once, and an untrusted certificate refused"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -subj /CN=mh-test-ca -days 2 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 \
  -extfile server.ext 2>/dev/null
mkdir www
printf '{"data":{"items":[{"id":4711,"n":1},{"id":4712,"n":2}]}}' > www/api.json
(cd www && exec openssl s_server -accept 127.0.0.1:0 -cert ../server.crt -key ../server.key -WWW \
  > ../server.log 2>&1) &
SERVER=$!; BACKGROUND_PIDS+=("$SERVER")
port=$(wait_log_port 20 server.log 'ACCEPT') || fail "s_server did not start: $(cat server.log)"
mh-stream http --url "https://localhost:$port/api.json" --cafile ca.crt --interval 100ms --records data.items \
  --key id --kind reading --metrics 127.0.0.1:0 2> https.log > >(mh-cat --to json > https.jsonl) &
pid=$!; BACKGROUND_PIDS+=("$pid")
metrics_port=$(wait_log_port 20 https.log 'metrics on port') || fail "no metrics port: $(cat https.log)"
duplicates() { scrape_metrics "$metrics_port" m.txt && grep 'reason="duplicate"' m.txt | awk '{ print $2 }'; }
at_least() { [ "$("$1")" -ge "$2" ] 2>/dev/null; }
wait_until 20 at_least duplicates 4 || fail "the same records polled again are not dropped: $(cat https.log)"
expect_eq "each record once" "1 2" "$(jq -r .n https.jsonl | tr '\n' ' ' | sed 's/ $//')"
expect_eq "mapped, the API's id kept as record_id" '{"kind":"reading","record_id":4711,"n":1}' \
  "$(head -n 1 https.jsonl | jq -c 'del(.id, .ingested, .time)')"
printf '{"data":{"items":[{"id":4712,"n":2},{"id":4713,"n":3}]}}' > www/api.json
wait_until 20 bash -c "[ \$(wc -l < https.jsonl) -ge 3 ]" || fail "the new record did not arrive: $(cat https.log)"
expect_eq "only the new one" "1 2 3" "$(jq -r .n https.jsonl | tr '\n' ' ' | sed 's/ $//')"
kill -TERM "$pid"; wait_pid_exit 20 "$pid"
mh-stream http --url "https://localhost:$port/api.json" --interval 100ms > untrusted.frames 2> untrusted.log &
pid=$!; BACKGROUND_PIDS+=("$pid")
wait_until 20 grep -q "failed: .*[Cc]ertificate" untrusted.log || fail "untrusted certificate not refused: $(cat untrusted.log)"
kill -TERM "$pid"; wait_pid_exit 20 "$pid"
expect_eq "nothing from an untrusted server" 0 "$(stat -c %s untrusted.frames)"

finish
