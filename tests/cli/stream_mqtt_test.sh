#!/usr/bin/env bash
# mh-stream mqtt against a real mosquitto broker started here: payloads published with
# mosquitto_pub arrive as messages with the right fields; a broker restart is survived;
# a named QoS 1 client restarted in the middle gets what was published while it was away;
# TLS with a password and a client certificate; a refused login ends with 78.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mosquitto_lib.sh"

command -v mosquitto > /dev/null || { echo "mosquitto is not installed (scripts/install-deps.sh)" >&2; exit 1; }

# start_stream NAME ARGS...: mh-stream mqtt in the background, its JSON in NAME.jsonl
start_stream() {
  local name=$1; shift
  mh-stream mqtt "$@" 2> "$name.log" > >(mh-cat --to json --time rfc3339 > "$name.jsonl") &
  STREAM_PID=$!
  BACKGROUND_PIDS+=("$STREAM_PID")
}
lines() { [ -f "$1" ] && wc -l < "$1" || echo 0; }
has_lines() { [ "$(lines "$1")" -ge "$2" ]; }
count_in_log() { grep -c -- "$2" "$1" 2>/dev/null || true; }
log_has_count() { [ "$(count_in_log "$1" "$2")" -ge "$3" ]; }

start_mosquitto broker "allow_anonymous true
user root" || exit 1
BROKER="mqtt://127.0.0.1:$MQTT_PORT"

begin "payloads become messages: topic levels, keys, mh-cat's mapping"
start_stream plain --broker "$BROKER" --topic 'plant/+/+/telemetry' --source-level 2 --kind-level 3 \
  --time-key ts --time-unit s
wait_until 20 grep -q "subscribed to 'plant/+/+/telemetry'" plain.log || fail "no subscription: $(cat plain.log)"
mosquitto_pub -p "$MQTT_PORT" -t plant/north/pump-7/telemetry -m '{"ts":1700000000,"temperature":21.5,"motor":{"rpm":1200},"ok":true}'
mosquitto_pub -p "$MQTT_PORT" -t plant/north/pump-8/telemetry -m 'not json'
mosquitto_pub -p "$MQTT_PORT" -t plant/south/fan-1/telemetry -m '{"ts":"2026-11-26T10:00:00Z","status":"idle","gateway":"forged"}'
mosquitto_pub -p "$MQTT_PORT" -t other/topic -m '{"x":1}'
wait_until 20 has_lines plain.jsonl 2 || fail "2 messages expected, got $(lines plain.jsonl)"
first=$(head -n 1 plain.jsonl | jq -c 'del(.id, .ingested)')
expect_eq "first message" '{"time":"2023-11-14T22:13:20Z","source":"pump-7","kind":"telemetry","temperature":21.5,"motor":{"rpm":1200},"ok":true}' "$first"
second=$(sed -n 2p plain.jsonl | jq -c 'del(.id, .ingested)')
expect_eq "second message (RFC 3339, gateway dropped)" '{"time":"2026-11-26T10:00:00Z","source":"fan-1","kind":"telemetry","status":"idle"}' "$second"
expect_eq "ids are UUIDs" 2 "$(jq -r .id plain.jsonl | grep -cE '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$')"
expect_contains "a bad payload is logged with its topic" "topic 'plant/north/pump-8/telemetry': expected a JSON object" "$(cat plain.log)"

begin "a broker restart: reconnect with back-off, subscribe again, resume"
stop_mosquitto
wait_until 20 grep -q "connection to $BROKER lost" plain.log || fail "loss not noticed: $(cat plain.log)"
restart_mosquitto broker || fail "broker did not come back on port $MQTT_PORT"
wait_until 30 log_has_count plain.log "subscribed to" 2 || fail "no second subscription: $(cat plain.log)"
mosquitto_pub -p "$MQTT_PORT" -t plant/east/pump-9/telemetry -m '{"temperature":30}'
wait_until 20 has_lines plain.jsonl 3 || fail "nothing after the restart: $(cat plain.log)"
expect_eq "resumed" '"pump-9"' "$(sed -n 3p plain.jsonl | jq -c .source)"
kill -TERM "$STREAM_PID"; wait_pid_exit 20 "$STREAM_PID"
expect_eq "SIGTERM ends it with 0" 0 "$EXIT_CODE"
expect_contains "the rejected payload is counted" "stopped after 3 messages (1 records rejected)" "$(cat plain.log)"

begin "restart of mh-stream in the middle: a named QoS 1 client resumes its session"
start_stream first --broker "$BROKER" --topic 'line/#' --qos 1 --client-id mh-stream-test --source-key dev
wait_until 20 grep -q "subscribed to 'line/#' (qos 1)" first.log || fail "no subscription: $(cat first.log)"
for i in 1 2 3; do mosquitto_pub -q 1 -p "$MQTT_PORT" -t line/a -m "{\"dev\":\"d$i\",\"n\":$i}"; done
wait_until 20 has_lines first.jsonl 3 || fail "3 messages expected before the restart, got $(lines first.jsonl)"
kill -TERM "$STREAM_PID"; wait_pid_exit 20 "$STREAM_PID"
for i in 4 5 6; do mosquitto_pub -q 1 -p "$MQTT_PORT" -t line/a -m "{\"dev\":\"d$i\",\"n\":$i}"; done
start_stream second --broker "$BROKER" --topic 'line/#' --qos 1 --client-id mh-stream-test --source-key dev
wait_until 20 has_lines second.jsonl 3 || fail "what was published while away did not arrive: $(cat second.log)"
expect_eq "nothing lost, nothing repeated" "d1 d2 d3 d4 d5 d6" "$(cat first.jsonl second.jsonl | jq -r .source | tr '\n' ' ' | sed 's/ $//')"
kill -TERM "$STREAM_PID"; wait_pid_exit 20 "$STREAM_PID"
stop_mosquitto

begin "TLS with a password and a client certificate"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -subj /CN=mh-test-ca -days 2 2>/dev/null
for who in server client; do
  openssl req -newkey rsa:2048 -nodes -keyout $who.key -out $who.csr -subj "/CN=$who" 2>/dev/null
done
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile server.ext 2>/dev/null
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 2 2>/dev/null
mosquitto_passwd -b -c passwd alice 's3cret' 2>/dev/null
start_mosquitto tls "user root
allow_anonymous false
password_file $WORK/passwd
cafile $WORK/ca.crt
certfile $WORK/server.crt
keyfile $WORK/server.key
require_certificate true" || exit 1
TLS_BROKER="mqtts://localhost:$MQTT_PORT"
MH_STREAM_PASSWORD=s3cret start_stream tls --broker "$TLS_BROKER" --topic 'secure/+' --source-level 1 \
  --cafile ca.crt --cert client.crt --key client.key --username alice --kind reading
wait_until 20 grep -q "subscribed to 'secure/+'" tls.log || fail "no TLS subscription: $(cat tls.log)"
mosquitto_pub -p "$MQTT_PORT" -h localhost --cafile ca.crt --cert client.crt --key client.key -u alice -P s3cret \
  -t secure/vault -m '{"door":"closed"}'
wait_until 20 has_lines tls.jsonl 1 || fail "nothing over TLS: $(cat tls.log)"
expect_eq "over TLS" '{"source":"vault","kind":"reading","door":"closed"}' "$(jq -c 'del(.id, .ingested, .time)' tls.jsonl)"
kill -TERM "$STREAM_PID"; wait_pid_exit 20 "$STREAM_PID"

begin "a refused login ends the tool with 78 and says what to check"
timeout 30 mh-stream mqtt --broker "$TLS_BROKER" --topic 'secure/+' --cafile ca.crt --cert client.crt \
  --key client.key --username alice --password wrong > /dev/null 2> refused.log
expect_eq "exit status" 78 "$?"
expect_contains "diagnostic" "refused the connection" "$(cat refused.log)"

begin "usage errors"
mh-stream mqtt --broker http://x --topic a > /dev/null 2> usage.log
expect_eq "bad URL exit" 64 "$?"
expect_contains "bad URL diagnostic" "--broker 'http://x': expected mqtt://" "$(cat usage.log)"
mh-stream mqtt --broker mqtt://127.0.0.1:1 --topic 'a/#/b' > /dev/null 2> usage.log
expect_eq "bad filter exit" 64 "$?"
mh-stream mqtt --broker mqtt://127.0.0.1:1 --topic a --cafile ca.crt > /dev/null 2> usage.log
expect_eq "TLS options on plain MQTT" 64 "$?"

stop_mosquitto
finish
