#!/usr/bin/env bash
# mh-notify against real receivers: a local HTTPS receiver of the test's own (payloads and
# HMAC signatures checked with openssl), made to fail with 500s, timeouts and refused
# connections, then to recover; a local SMTP receiver, plain and STARTTLS; --exec with a
# script; commands to a ZeroMQ socket; --out with barriers; throttling, resolution and
# flapping timing; dead letters; a restart in the middle of an open incident.
source "$(dirname "$0")/lib.sh"

MH_BUILD=${MH_BUILD:-$MH_SOURCE/build}
RECEIVER="$MH_BUILD/tests/notify_receiver"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out cert.pem \
  -days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost 2>/dev/null

# alert SOURCE TEMPERATURE: one telemetry reading through mh-filter, which raises the alert.
alert() {
  echo "{\"source\":\"$1\",\"gateway\":\"gw-01\",\"kind\":\"telemetry\",\"temperature\":$2,\"limit\":30}" |
    mh-cat --from json | mh-filter --alert 'hot=temperature > limit'
}
# start_receiver NAME KIND [TLS]: a receiver in $WORK/NAME; sets PORT.
start_receiver() {
  mkdir -p "$1"
  if [ "${3:-}" = tls ]; then "$RECEIVER" "$2" "$1" cert.pem key.pem 2> "$1.err" &
  else "$RECEIVER" "$2" "$1" 2> "$1.err" & fi
  BACKGROUND_PIDS+=($!)
  PORT=$(wait_log_port 20 "$1.err" 'listening on') || fail "$1 did not start"
}
count_status() { grep -c " $2\$" "$1/log" 2>/dev/null || true; }
# verify_signatures DIR SECRET: prints the numbers of bodies whose signature is wrong.
verify_signatures() {
  for headers in "$1"/*.headers; do
    n=$(basename "$headers" .headers)
    want=$(openssl dgst -sha256 -hmac "$2" -hex < "$1/$n.body" | awk '{print $NF}')
    got=$(grep -i '^X-Mh-Signature:' "$headers" | tr -d '\r' | sed 's/.*sha256=//')
    [ "$want" = "$got" ] || echo "$n"
  done
}

begin "--out: one notification per incident, the template, barriers passing through"
mh-gen --count 3000 --seed 7 --sources 20 > gen.frames
mh-filter --alert 'hot=temperature > 24' < gen.frames > alerts.frames
mh-cat --to json < alerts.frames | jq -c 'select(.kind == "alert")' > alerts.jsonl
{ head -n 5 alerts.jsonl; echo '{"$barrier":7,"time":1}'; tail -n +6 alerts.jsonl; } | mh-cat --from json |
  mh-notify --out out.frames --template '{source}: {temperature:.1f} °C ({state})' 2> err.txt; code=$?
expect_eq "exit code" 0 "$code"
expect_eq "no diagnostics" "" "$(cat err.txt)"
mh-cat --to json < out.frames > out.jsonl
expect_eq "one notification per hot source, in order of first alert" \
  "$(jq -r .source alerts.jsonl | awk '!seen[$0]++')" "$(jq -r 'select(.kind == "notification") | .source' out.jsonl)"
expect_eq "texts: the first alert of each source, formatted" \
  "$(jq -r .source alerts.jsonl | awk '!seen[$0]++' | while read -r s; do
       jq -r --arg s "$s" 'select(.source == $s) | "\(.source): \(.temperature * 10 | round / 10) °C (open)"' alerts.jsonl | head -n 1
     done)" \
  "$(jq -r 'select(.kind == "notification") | .text' out.jsonl | sed 's/\.0 °C/ °C/')"
expect_eq "counts of alerts per source" "$(jq -r 'select(.kind == "notification") | .count' out.jsonl | sort -u)" "1"
expect_eq "the barrier passes" '{"$barrier":7,"time":1}' "$(grep barrier out.jsonl)"
expect_eq "state, incident, rule, the alert inside" "open hot/$(jq -r .source out.jsonl | grep -v null | head -n 1) hot alert" \
  "$(jq -r 'select(.kind == "notification") | "\(.state) \(.incident) \(.rule) \(.message.kind)"' out.jsonl | head -n 1)"

begin "--when evaluates every message; --key groups; a bad expression is a usage error"
mh-notify --when 'kind == "telemetry" and temperature > 24' --key gateway --out - < gen.frames |
  mh-cat --to json > by_gateway.jsonl
expect_eq "one incident per gateway" "$(mh-cat --to json < gen.frames | jq -r 'select(.temperature > 24) | .gateway' | awk '!seen[$0]++')" \
  "$(jq -r .incident by_gateway.jsonl)"
mh-notify --when 'temperature >' --out - < /dev/null 2> err.txt; code=$?
expect_eq "bad --when exit code" 64 "$code"
expect_contains "bad --when says so" "bad expression in --when" "$(cat err.txt)"
mh-notify --state /proc/no/such --out - < /dev/null 2> err.txt; code=$?
expect_eq "a state directory that cannot be made" 74 "$code"
expect_contains "says so" "--state /proc/no/such: cannot create the state directory" "$(cat err.txt)"
mh-notify < /dev/null 2> err.txt; code=$?
expect_eq "no sink" 64 "$code"
expect_contains "no sink says which" "no sink" "$(cat err.txt)"

begin "HTTPS webhook: signed payloads; 500s, refused connections and timeouts, then recovery: each once"
start_receiver hook http tls
mkfifo input.fifo
exec 3<>input.fifo
echo 500 > hook/mode
mh-notify --in input.fifo --webhook "https://127.0.0.1:$PORT/hook" --cacert cert.pem --secret 's3cret' \
  --header 'X-Team: cold-chain' --timeout 500ms --backoff 50ms --backoff-max 200ms --retry-for 1m \
  --metrics 127.0.0.1:0 2> notify.err 3>&- &
notify=$!; BACKGROUND_PIDS+=($notify)
mport=$(wait_log_port 20 notify.err 'metrics on port')
for s in 1 2 3; do alert "sensor-$s" 31.5 >&3; alert "sensor-$s" 32 >&3; done
wait_until 20 bash -c "[ \$(grep -c ' 500\$' hook/log) -ge 3 ]" || fail "no 500s seen"
echo refuse > hook/mode
failed_before=$(scrape_metrics "$mport" m.txt; awk '/^mh_notify_failed_attempts_total/ {print $2}' m.txt)
wait_until 20 bash -c "scrape_metrics() { exec 3<>/dev/tcp/127.0.0.1/$mport; printf 'GET / HTTP/1.0\r\n\r\n' >&3; cat <&3; }; \
  [ \$(scrape_metrics | awk '/^mh_notify_failed_attempts_total/ {print \$2}') -ge $((failed_before + 3)) ]" ||
  fail "refused connections were not retried"
echo hang > hook/mode
wait_until 20 grep -q hang hook/log || fail "no request reached the hanging receiver"
wait_until 20 bash -c "[ \$(grep -c hang hook/log) -ge 2 ]" || fail "the timed-out request was not retried"
echo ok > hook/mode
wait_until 30 bash -c "[ \$(grep -c ' 200\$' hook/log) -ge 3 ]" || fail "not delivered after recovery"
exec 3>&-
wait_pid_exit 30 "$notify"
expect_eq "exit code" 0 "$EXIT_CODE"
expect_eq "delivered exactly once each (3 incidents)" 3 "$(count_status hook 200)"
expect_eq "distinct notification ids" 3 "$(grep -hi '^X-Mh-Notification:' hook/*.headers | sort -u | wc -l)"
expect_eq "sources" "sensor-1 sensor-2 sensor-3" "$(cat hook/*.body | jq -r .source | sort | paste -sd' ')"
expect_eq "signatures that openssl does not confirm" "" "$(verify_signatures hook s3cret)"
expect_eq "custom header" 3 "$(grep -h '^X-Team: cold-chain' hook/*.headers | wc -l)"
expect_eq "count of the open incident" "1 1 1" "$(cat hook/*.body | jq -r .count | paste -sd' ')"
expect_contains "the outage is logged" "retrying with back-off" "$(cat notify.err)"
expect_contains "and the recovery" "delivering again" "$(cat notify.err)"
expect_contains "a timeout among the failures" "$(printf 'hang')" "$(cat hook/log)"

begin "a receiver that keeps failing: the retry budget, then --dead-letter with the reason"
start_receiver dead http
echo 500 > dead/mode
alert sensor-9 40 | mh-notify --webhook "http://127.0.0.1:$PORT/x" --backoff 10ms --retry-max 3 \
  --dead-letter dead.frames 2> dead.err; code=$?
expect_eq "exit code" 0 "$code"
expect_eq "attempts" 3 "$(count_status dead 500)"
expect_eq "dead letter: reason, sink, attempts" "HTTP 500: failing on purpose|webhook http://127.0.0.1:$PORT/x|3|sensor-9" \
  "$(mh-cat --to json < dead.frames | jq -r '"\(.reason)|\(.sink)|\(.attempts)|\(.source)"')"
expect_contains "logged" "gave up on notification hot/sensor-9 after 3 attempts: HTTP 500" "$(cat dead.err)"
echo ok > dead/mode
alert sensor-9 40 | mh-notify --webhook "http://127.0.0.1:$PORT/missing" --header 'X-Fail: 1' \
  --dead-letter dead2.frames 2> /dev/null
expect_eq "a 2xx is delivered, nothing dead" "0" "$(stat -c %s dead2.frames)"

begin "--max-pending: beyond it a notification goes to the dead letter at once"
start_receiver full http
echo hang > full/mode
{ alert sensor-1 31; alert sensor-2 31; alert sensor-3 31; } > three.frames
mh-notify --webhook "http://127.0.0.1:$PORT/f" --max-pending 1 --retry-max 1 --timeout 3s \
  --dead-letter full.frames < three.frames 2> full.err; code=$?
expect_eq "exit code" 0 "$code"
expect_eq "dead letters: two at once, then the one that waited, after its attempt" \
  "0 sensor-2 1 notifications already wait for this sink (--max-pending)
0 sensor-3 1 notifications already wait for this sink (--max-pending)
1 sensor-1 timeout" \
  "$(mh-cat --to json < full.frames | jq -r '"\(.attempts) \(.source) \(.reason)"' | sed 's/ Operation timed out.*/ timeout/')"
expect_eq "attempts made" 1 "$(grep -c hang full/log)"

begin "--exec: JSON on stdin, MH_* variables, exit status decides (a failure is retried)"
cat > hook.sh <<'SCRIPT'
#!/bin/sh
if [ ! -e failed-once ]; then touch failed-once; exit 3; fi
cat > "exec-$MH_SOURCE.json"
echo "$MH_STATE|$MH_RULE|$MH_SOURCE|$MH_GATEWAY|$MH_INCIDENT|$MH_COUNT|$MH_TEXT" >> exec.log
SCRIPT
chmod +x hook.sh
{ alert sensor-4 33.5; alert sensor-5 34.0; alert sensor-4 35; } |
  mh-notify --exec ./hook.sh --backoff 10ms --template '{source} at {temperature}' 2> exec.err; code=$?
expect_eq "exit code" 0 "$code"
expect_eq "one line per incident" "open|hot|sensor-4|gw-01|hot/sensor-4|1|sensor-4 at 33.5
open|hot|sensor-5|gw-01|hot/sensor-5|1|sensor-5 at 34" "$(cat exec.log)"
expect_eq "stdin is the notification" "notification 33.5" "$(jq -r '"\(.kind) \(.message.temperature)"' exec-sensor-4.json)"
expect_contains "the failure was logged" "exit status 3" "$(cat exec.err)"

begin "SMTP: plain, and STARTTLS required"
start_receiver mail smtp
alert sensor-6 36.25 | mh-notify --smtp "127.0.0.1:$PORT" --mail-to ops@example.com --mail-to oncall@example.com \
  --mail-from mh@example.com --template '{source}: {temperature:.1f} °C above {limit}' 2> mail.err; code=$?
expect_eq "exit code" 0 "$code"
expect_eq "one mail" 1 "$(count_status mail 250)"
expect_eq "envelope" "MAIL FROM:<mh@example.com>
RCPT TO:<ops@example.com>
RCPT TO:<oncall@example.com>" "$(head -n 3 mail/1.eml | tr -d '\r')"
subject=$(grep '^Subject:' mail/1.eml | sed 's/^Subject: =?UTF-8?B?//; s/?=$//' | base64 -d)
expect_eq "subject (RFC 2047)" "sensor-6: 36.2 °C above 30" "$subject"
expect_contains "body has the text" "sensor-6: 36.2 °C above 30" "$(cat mail/1.eml)"
expect_eq "plain" plain "$(cat mail/1.tls)"
start_receiver tlsmail smtp tls
alert sensor-7 37 | mh-notify --smtp "127.0.0.1:$PORT" --mail-to ops@example.com --starttls --cacert cert.pem \
  2> tlsmail.err; code=$?
expect_eq "STARTTLS exit code" 0 "$code"
expect_eq "STARTTLS mail" tls "$(cat tlsmail/1.tls 2>/dev/null)"
expect_contains "STARTTLS mail to" "To: ops@example.com" "$(cat tlsmail/1.eml 2>/dev/null)"
alert sensor-7 37 | mh-notify --smtp "127.0.0.1:$PORT" --mail-to ops@example.com --starttls --retry-max 1 \
  2> untrusted.err
expect_contains "an untrusted certificate is not accepted" "gave up" "$(cat untrusted.err)"

begin "--command: a command message for the alert's gateway and source on a ZeroMQ PULL socket"
mh-cat --in "@ipc://$WORK/cmd.sock" --count 1 --to json > commands.jsonl 2> cmd.err &
cat_pid=$!
alert sensor-8 39 | mh-notify --command ">ipc://$WORK/cmd.sock" --command-name cool_down 2> command.err; code=$?
expect_eq "exit code" 0 "$code"
wait_pid_exit 20 "$cat_pid"
expect_eq "the command" "command|sensor-8|gw-01|cool_down|hot|open" \
  "$(jq -r '"\(.kind)|\(.source)|\(.gateway)|\(.command)|\(.rule)|\(.state)"' commands.jsonl)"

begin "--command reaches a device: mosquitto_sub logged in as the gateway to a real mh-endpoint"
if mh-endpoint --help 2> /dev/null | grep -q -- --commands; then
  mh-endpoint ca --dir epca > /dev/null 2>&1
  mh-endpoint server-cert --ca epca --host localhost 127.0.0.1 --out epserver > /dev/null 2>&1
  printf '[gateway.gw-01]\ntoken_key = "%s"\nsources = ["sensor-*"]\n' "$(mh-endpoint keygen)" > registry.toml
  token=$(mh-endpoint token --registry registry.toml --gateway gw-01)
  mh-endpoint --registry registry.toml --cert epserver/server.crt --key epserver/server.key --mqtt 127.0.0.1:0 \
    --commands "@ipc://$WORK/endpoint-commands.sock" --out /dev/null 2> endpoint.log &
  BACKGROUND_PIDS+=($!)
  mqtt_port=$(wait_log_port 20 endpoint.log 'listening on mqtt')
  # A persistent session: a command that comes before the subscription waits for it.
  mosquitto_sub --cafile epca/ca.crt -h 127.0.0.1 -p "$mqtt_port" -u gw-01 -P "$token" -c -i gw01-device -q 1 \
    -t 'commands/gw-01/#' -C 1 -W 30 -v > device.txt 2> device.err &
  sub=$!
  alert sensor-5 33 | mh-notify --command ">ipc://$WORK/endpoint-commands.sock" --command-name cool_down \
    2> endpoint-notify.err; code=$?
  expect_eq "exit code" 0 "$code"
  wait_pid_exit 40 "$sub"
  expect_eq "mosquitto_sub exit code" 0 "$EXIT_CODE"
  expect_contains "topic: the gateway and source of the alert" "commands/gw-01/sensor-5 " "$(cat device.txt)"
  expect_eq "payload" "command cool_down hot open" \
    "$(sed 's/^[^ ]* //' device.txt | jq -r '"\(.kind) \(.command) \(.rule) \(.state)"')"
else
  echo "notify_test: skipped the mh-endpoint case: this mh-endpoint has no --commands yet" >&2
fi

begin "--every and --resolve-after timing, then --resolve-when with --flap"
mkfifo timing.fifo
exec 4<>timing.fifo
mh-notify --in timing.fifo --every 500ms --resolve-after 2s --out timing.frames 2> timing.err 4>&- &
notify=$!; BACKGROUND_PIDS+=($notify)
alert sensor-1 31 >&4
wait_until 20 bash -c "[ -s timing.frames ]" || fail "no open notification"
alert sensor-1 32 >&4; alert sensor-1 33 >&4   # within --every: counted, not told
sleep 0.7                                      # the thing under test: --every 500ms has passed
alert sensor-1 34 >&4
wait_until 20 bash -c "mh-cat --to json < timing.frames | grep -q resolved" || fail "no resolution"
exec 4>&-
wait_pid_exit 20 "$notify"
mh-cat --to json < timing.frames > timing.jsonl
expect_eq "states" "open repeat resolved" "$(jq -r .state timing.jsonl | paste -sd' ')"
expect_eq "counts" "1 4 4" "$(jq -r .count timing.jsonl | paste -sd' ')"
gap=$(jq -s '(.[2].time - .[1].time) / 1e6 | floor' timing.jsonl)
[ "$gap" -ge 2000 ] && pass || fail "resolved ${gap} ms after the last alert, expected at least 2000"
[ "$gap" -lt 8000 ] && pass || fail "resolved only ${gap} ms after the last alert"

mkfifo flap.fifo
exec 5<>flap.fifo
ok() { echo "{\"source\":\"$1\",\"gateway\":\"gw-01\",\"kind\":\"telemetry\",\"temperature\":$2,\"limit\":30}" | mh-cat --from json; }
mh-notify --in flap.fifo --resolve-when 'kind == "telemetry" and temperature <= 30' --flap 700ms \
  --out flap.frames 2> flap.err 5>&- &
notify=$!; BACKGROUND_PIDS+=($notify)
alert sensor-2 31 >&5
wait_until 20 bash -c "[ -s flap.frames ]" || fail "no open notification"
for i in 1 2 3; do ok sensor-2 29 >&5; alert sensor-2 31 >&5; done   # flapping
ok sensor-2 29 >&5
wait_until 20 bash -c "mh-cat --to json < flap.frames | grep -q resolved" || fail "no resolution"
exec 5>&-
wait_pid_exit 20 "$notify"
expect_eq "flapping told once open, once resolved" "open 1,resolved 4" \
  "$(mh-cat --to json < flap.frames | jq -r '"\(.state) \(.count)"' | paste -sd,)"

begin "a restart in the middle of an open incident repeats nothing; pending deliveries survive"
alert sensor-3 31 | mh-notify --state state --out restart1.frames --every 1h 2> /dev/null
alert sensor-3 35 | mh-notify --state state --out restart2.frames --every 1h 2> restart.err
expect_eq "first run told" "open" "$(mh-cat --to json < restart1.frames | jq -r .state)"
expect_eq "second run told nothing" 0 "$(stat -c %s restart2.frames)"
expect_contains "the open incident was restored" "1 incidents open from an earlier run" "$(cat restart.err)"
mkfifo resume.fifo
exec 6<>resume.fifo
mh-notify --in resume.fifo --state state --out resumed.frames --resolve-after 1s 2> resume.err 6>&- &
notify=$!; BACKGROUND_PIDS+=($notify)
wait_until 20 bash -c "[ -s resumed.frames ]" || fail "the restored incident did not resolve"
exec 6>&-
wait_pid_exit 20 "$notify"
expect_eq "the restored incident resolves by absence, counting both runs" "resolved 2 hot/sensor-3" \
  "$(mh-cat --to json < resumed.frames | jq -r '"\(.state) \(.count) \(.incident)"')"
mh-notify --out a.frames --out a.frames < /dev/null 2> twice.err; code=$?
expect_eq "a sink given twice" 64 "$code"
expect_contains "says which" "out a.frames is given twice" "$(cat twice.err)"
start_receiver later http
echo 500 > later/mode
alert sensor-3 31 | mh-notify --state state2 --webhook "http://127.0.0.1:$PORT/h" --backoff 20ms 2> later.err &
notify=$!
wait_until 20 grep -qs ' 500$' later/log || fail "no attempt"
kill -TERM "$notify"
wait_pid_exit 20 "$notify"
expect_eq "stopped while the receiver fails: exit code" 0 "$EXIT_CODE"
expect_contains "kept for the next start" "not yet delivered stay in state2" "$(cat later.err)"
echo ok > later/mode
mh-notify --state state2 --webhook "http://127.0.0.1:$PORT/h" < /dev/null 2> later2.err; code=$?
expect_eq "resumed exit code" 0 "$code"
expect_eq "delivered once after the restart" 1 "$(count_status later 200)"
expect_eq "it is the open notification" "open sensor-3" "$(jq -r '"\(.state) \(.source)"' later/*.body)"
mh-notify --state state2 --webhook "http://127.0.0.1:$PORT/h" < /dev/null 2> /dev/null
expect_eq "and not again" 1 "$(count_status later 200)"

begin "a hanging webhook holds up neither --out nor the input"
start_receiver slow http
echo hang > slow/mode
mh-filter --alert 'hot=temperature > 24' < gen.frames |
  mh-notify --webhook "http://127.0.0.1:$PORT/slow" --timeout 20s --out slow.frames 2> slow.err &
notify=$!; BACKGROUND_PIDS+=($notify)
expected=$(mh-filter --alert 'hot=temperature > 24' < gen.frames | mh-cat --to json | jq -r 'select(.kind == "alert") | .source' | sort -u | wc -l)
wait_until 20 bash -c "[ \$(mh-cat --to json < slow.frames | wc -l) -eq $expected ]" ||
  fail "--out did not get its $expected notifications while the webhook hung"
expect_eq "the webhook got one request, still unanswered" "1 hang" "$(cat slow/log)"
kill -TERM "$notify"
wait_pid_exit 30 "$notify"
expect_eq "stopped during a hanging attempt: exit code" 0 "$EXIT_CODE"

begin "a crash (SIGKILL) while failing: after the restart each notification arrives once"
start_receiver crash http
echo 500 > crash/mode
{ alert sensor-1 31; alert sensor-2 32; } |
  mh-notify --state crashstate --webhook "http://127.0.0.1:$PORT/c" --backoff 20ms 2> crash.err &
notify=$!
wait_until 20 bash -c "[ \$(cat crash/log 2>/dev/null | grep -c ' 500\$') -ge 3 ]" || fail "no failing attempts"
{ kill -KILL "$notify"; wait "$notify"; } 2> /dev/null
echo ok > crash/mode
mh-notify --state crashstate --webhook "http://127.0.0.1:$PORT/c" < /dev/null 2> crash2.err; code=$?
expect_eq "restart exit code" 0 "$code"
expect_eq "each delivered once" "sensor-1 sensor-2" "$(cat crash/*.body | jq -r .source | sort | paste -sd' ')"
expect_contains "resumed" "2 notifications pending from an earlier run" "$(cat crash2.err)"
before=$(grep -c ' 500$' crash/log)
echo 500 > crash/mode
alert sensor-4 31 | mh-notify --state crashstate --webhook "http://127.0.0.1:$PORT/c" --backoff 20ms 2> /dev/null &
notify=$!
wait_until 20 bash -c "[ \$(grep -c ' 500\$' crash/log) -gt $before ]" || fail "no failing attempt"
{ kill -KILL "$notify"; wait "$notify"; } 2> /dev/null
mh-notify --state crashstate --out - < /dev/null > /dev/null 2> orphans.err
expect_contains "pending rows of sinks not given now are reported" "1 notifications in crashstate are pending for sinks not given now" "$(cat orphans.err)"

finish
