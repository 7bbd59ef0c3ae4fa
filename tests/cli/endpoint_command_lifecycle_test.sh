#!/usr/bin/env bash
# mh-endpoint's command lifecycle with real clients over real TLS: correlation ids carried to
# the device (mosquitto_sub, curl), command-status messages on the output (queued, delivered
# at the PUBACK or the HTTPS fetch, acknowledged by a reply from mosquitto_pub or curl, expired
# by a command's own ttl/expires, refused for an unknown gateway, a gateway without commands
# and a malformed command), replies for unknown correlation ids passed on as unmatched, a
# reply on another gateway's topic refused, the counts on --metrics, and the whole loop with
# mh-gen --connect --answer-commands as the gateway (native protocol).
source "$(dirname "$0")/lib.sh"

mh-endpoint ca --dir ca > /dev/null 2>&1
mh-endpoint server-cert --ca ca --host localhost 127.0.0.1 --out server > /dev/null 2>&1
cat > registry.toml <<EOF
[gateway.gw-01]
token_key = "$(mh-endpoint keygen)"
sources = ["sensor-00000?"]

[gateway.gw-02]
token_key = "$(mh-endpoint keygen)"
sources = ["sensor-00001?"]
commands = false
EOF
token1=$(mh-endpoint token --registry registry.toml --gateway gw-01)
token2=$(mh-endpoint token --registry registry.toml --gateway gw-02)

mh-endpoint --registry registry.toml --cert server/server.crt --key server/server.key \
  --https 127.0.0.1:0 --mqtt 127.0.0.1:0 --native 127.0.0.1:0 --metrics 127.0.0.1:0 --commands "@ipc://$WORK/commands.sock" \
  --out out.frames 2> endpoint.log &
ENDPOINT=$!
BACKGROUND_PIDS+=("$ENDPOINT")
port=$(wait_log_port 20 endpoint.log 'listening on https')
mqtt_port=$(wait_log_port 20 endpoint.log 'listening on mqtt')
native_port=$(wait_log_port 20 endpoint.log 'listening on native')
metrics_port=$(wait_log_port 20 endpoint.log 'metrics on port')

send_command() { printf '%s\n' "$@" | mh-cat --from json --out ">ipc://$WORK/commands.sock"; }
statuses() { mh-cat --to json < out.frames | jq -c 'select(.kind == "command-status")'; }
# status_of ID: the statuses of correlation id ID so far, in order
status_of() { statuses | jq -r --arg id "$1" 'select(.correlation_id == $id) | .status' | xargs; }
# has_status ID LIST: the statuses of ID are LIST
has_status() { [ "$(status_of "$1")" = "$2" ]; }
field_of() { statuses | jq -r --arg id "$1" --arg s "$2" "select(.correlation_id == \$id and .status == \$s) | $3"; }
metric() { scrape_metrics "$metrics_port" metrics.txt; awk -v key="$1" '$1 == key {print $2}' metrics.txt; }
sub() {
  mosquitto_sub --cafile ca/ca.crt -h 127.0.0.1 -p "$mqtt_port" -u gw-01 -P "$token1" -c -i gw01-console -q 1 \
    -t 'commands/gw-01/#' -C "$1" -W 20 -v
}
pub() {
  local topic=$1 payload=$2
  mosquitto_pub --cafile ca/ca.crt -h 127.0.0.1 -p "$mqtt_port" -u gw-01 -P "$token1" -q 1 -t "$topic" -m "$payload"
}
get() {
  curl -sS --cacert ca/ca.crt -H "Authorization: Bearer ${2:-$token1}" -o commands.json -w '%{http_code}' \
    "https://127.0.0.1:$port/v1/commands"
}
reply() {
  curl -sS --cacert ca/ca.crt -H "Authorization: Bearer ${2:-$token1}" -H 'Content-Type: application/json' \
    --data-binary "$1" -o reply.json -w '%{http_code}' "https://127.0.0.1:$port/v1/replies"
}

begin "MQTT: queued while away, delivered at the PUBACK with its correlation id, acknowledged by a reply"
send_command '{"kind":"command","gateway":"gw-01","source":"sensor-000001","command":"reboot","correlation_id":"c-1"}'
wait_until 20 has_status c-1 queued && pass || fail "no queued status: $(statuses)"
expect_eq "queued: gateway and source" "gw-01 sensor-000001 reboot" \
  "$(field_of c-1 queued '[.gateway, .source, .command] | join(" ")')"
expect_eq "queued: its expiry (the default 24h)" true \
  "$(field_of c-1 queued '((.expires - .time) / 1e9 | round) == 86400')"
sub 1 > got.txt 2> sub.err
expect_eq "mosquitto_sub exit code" 0 "$?"
expect_contains "topic" "commands/gw-01/sensor-000001 " "$(cat got.txt)"
expect_eq "the device gets the correlation id" c-1 "$(sed 's/^[^ ]* //' got.txt | jq -r .correlation_id)"
wait_until 20 has_status c-1 "queued delivered" && pass || fail "not delivered: $(statuses)"
expect_eq "delivered over" mqtt "$(field_of c-1 delivered .protocol)"
pub replies/gw-01/sensor-000001 '{"correlation_id":"c-1","result":"rebooted","uptime":3}'
expect_eq "mosquitto_pub exit code" 0 "$?"
# QoS 1: the PUBACK came after the status was in the output.
expect_eq "acknowledged" "queued delivered acknowledged" "$(status_of c-1)"
expect_eq "the reply's fields" "rebooted 3 true sensor-000001 reboot" \
  "$(field_of c-1 acknowledged '[.reply.result, .reply.uptime, .matched, .source, .command] | map(tostring) | join(" ")')"

begin "MQTT QoS 0: delivered once written"
send_command '{"kind":"command","gateway":"gw-01","correlation_id":"c-q0"}'
wait_until 20 has_status c-q0 queued && pass || fail "not queued"
mosquitto_sub --cafile ca/ca.crt -h 127.0.0.1 -p "$mqtt_port" -u gw-01 -P "$token1" -i gw01-q0 -q 0 \
  -t 'commands/gw-01/#' -C 1 -W 20 > got0.txt 2> sub0.err
expect_eq "received" c-q0 "$(jq -r .correlation_id got0.txt)"
wait_until 20 has_status c-q0 "queued delivered" && pass || fail "not delivered: $(status_of c-q0)"

begin "a command without correlation_id: its id is the correlation id; without id either: a fresh one"
send_command '{"id":"0190a6b2-0000-7000-8000-000000000001","kind":"command","gateway":"gw-01","action":"a"}' \
  '{"kind":"command","gateway":"gw-01","action":"b"}'
wait_until 20 has_status 0190a6b2-0000-7000-8000-000000000001 queued && pass || fail "not queued: $(statuses)"
expect_eq "fetched over HTTPS" 200 "$(get)"
expect_eq "both carry one" "0190a6b2-0000-7000-8000-000000000001 true" \
  "$(jq -r '.correlation_id' commands.json | head -1) $(jq -r 'select(.action == "b") | (.correlation_id | test("^[0-9a-f-]{36}$"))' commands.json)"
fresh=$(jq -r 'select(.action == "b") | .correlation_id' commands.json)
expect_eq "the fresh one is the command's id" "$fresh" "$(jq -r 'select(.action == "b") | .id' commands.json)"
expect_eq "delivered over https" "queued delivered https" \
  "$(status_of "$fresh") $(field_of "$fresh" delivered .protocol)"

begin "HTTPS: POST /v1/replies acknowledges; an unknown correlation id is passed on as unmatched"
expect_eq "202" 202 "$(reply "{\"correlation_id\":\"$fresh\",\"ok\":true}")"
expect_eq "counts" '{"accepted":1,"refused":0}' "$(cat reply.json)"
expect_eq "acknowledged" "queued delivered acknowledged true true" \
  "$(status_of "$fresh") $(field_of "$fresh" acknowledged '.matched') $(field_of "$fresh" acknowledged '.reply.ok')"
expect_eq "unknown id: 202" 202 "$(reply '{"correlation_id":"nobody-sent-this","ok":false}')"
expect_eq "passed on, marked" "acknowledged false gw-01" \
  "$(status_of nobody-sent-this) $(field_of nobody-sent-this acknowledged '.matched, .gateway' | xargs)"
expect_eq "counted" 1 "$(metric mh_endpoint_command_replies_unmatched_total)"
expect_eq "a second reply to the same command is unmatched" 202 "$(reply "{\"correlation_id\":\"$fresh\"}")"
expect_eq "counted" 2 "$(metric mh_endpoint_command_replies_unmatched_total)"
expect_eq "no correlation_id: 400" 400 "$(reply '{"result":"?"}')"
expect_contains "why" "correlation_id" "$(cat reply.json)"
expect_eq "a foreign source: 403" 403 "$(reply '{"correlation_id":"x","source":"sensor-000011"}')"

begin "a reply only on the gateway's own topic"
send_command '{"kind":"command","gateway":"gw-01","correlation_id":"c-2","command":"sync"}'
wait_until 20 has_status c-2 queued && pass || fail "not queued"
expect_eq "fetched" 200 "$(get)"
pub replies/gw-02 '{"correlation_id":"c-2"}'
pub replies/gw-01/sensor-000011 '{"correlation_id":"c-2"}'
expect_eq "neither acknowledged" "queued delivered" "$(status_of c-2)"
pub replies/gw-01 '{"correlation_id":"c-2","done":1}'
expect_eq "its own" "queued delivered acknowledged" "$(status_of c-2)"

begin "expiry: a command's own ttl or expires overrides --command-ttl"
send_command '{"kind":"command","gateway":"gw-01","correlation_id":"c-ttl","ttl":"200ms"}' \
  '{"kind":"command","gateway":"gw-01","correlation_id":"c-past","expires":"2020-01-01T00:00:00Z"}' \
  '{"kind":"command","gateway":"gw-01","correlation_id":"c-long","ttl":3600}'
# Nobody fetches: the periodic sweep finds it expired.
wait_until 20 has_status c-ttl "queued expired" && pass || fail "not expired by the sweep: $(statuses)"
expect_eq "expired on arrival" "expired" "$(status_of c-past)"
expect_contains "why" "expiry" "$(field_of c-past expired .reason)"
expect_eq "an hour" true "$(field_of c-long queued '((.expires - .time) / 1e9 | round) == 3600')"
expect_eq "only the living one is fetched" "200 c-long" "$(get) $(jq -r .correlation_id commands.json | xargs)"
send_command '{"kind":"command","gateway":"gw-01","correlation_id":"c-reconnect","ttl":"1ms"}'
wait_until 20 has_status c-reconnect queued && pass || fail "not queued"
expect_eq "expired when the gateway comes" 204 "$(get)"
wait_until 20 has_status c-reconnect "queued expired" && pass || fail "not expired: $(statuses)"

begin "refused: unknown gateway, a gateway without commands, malformed commands"
send_command '{"kind":"command","gateway":"gw-99","correlation_id":"r-1"}' \
  '{"kind":"command","gateway":"gw-02","correlation_id":"r-2"}' \
  '{"kind":"command","gateway":"gw-01","correlation_id":"r-3","ttl":"soon"}' \
  '{"kind":"telemetry","gateway":"gw-01","correlation_id":"r-4"}' \
  '{"kind":"command","correlation_id":"r-5"}'
wait_until 20 has_status r-5 refused && pass || fail "not refused: $(statuses)"
for id in r-1 r-2 r-3 r-4; do expect_eq "$id" refused "$(status_of $id)"; done
expect_contains "unknown" "unknown gateway" "$(field_of r-1 refused .reason)"
expect_contains "no commands" "does not allow commands" "$(field_of r-2 refused .reason)"
expect_contains "ttl" "ttl" "$(field_of r-3 refused .reason)"
expect_contains "kind" "not \"command\"" "$(field_of r-4 refused .reason)"
expect_contains "gateway" "no gateway" "$(field_of r-5 refused .reason)"
expect_eq "gw-02 gets nothing" 204 "$(get "" "$token2")"

begin "counted by status on --metrics"
expect_eq "queued" "$(statuses | jq -r 'select(.status == "queued")' | jq -s length)" \
  "$(metric 'mh_endpoint_command_status_total{status="queued"}')"
expect_eq "delivered" 6 "$(metric 'mh_endpoint_command_status_total{status="delivered"}')"
expect_eq "acknowledged" 5 "$(metric 'mh_endpoint_command_status_total{status="acknowledged"}')"
expect_eq "expired" 3 "$(metric 'mh_endpoint_command_status_total{status="expired"}')"
expect_eq "refused" 5 "$(metric 'mh_endpoint_command_status_total{status="refused"}')"

begin "the whole loop: mh-gen --connect --answer-commands as the gateway"
mh-gen --sources 1 --gateways 1 --rate 20 --duration 60s --connect "tls://127.0.0.1:$native_port" \
  --ca ca/ca.crt --token "gw-01=$token1" --answer-commands 2> gen.log &
GEN=$!
BACKGROUND_PIDS+=("$GEN")
connected() { mh-cat --to json < out.frames | jq -e 'select(.kind == "telemetry" and .gateway == "gw-01")' > /dev/null; }
wait_until 20 connected && pass || fail "no telemetry from mh-gen"
send_command '{"kind":"command","gateway":"gw-01","source":"sensor-000001","command":"calibrate","correlation_id":"g-1"}'
wait_until 20 has_status g-1 "delivered acknowledged" && pass || fail "no answer: $(status_of g-1)"
expect_eq "over the native protocol" native "$(field_of g-1 delivered .protocol)"
expect_eq "answered" "true done sensor-000001 calibrate" \
  "$(field_of g-1 acknowledged '[.matched, .reply.result, .source, .command] | map(tostring) | join(" ")')"
expect_contains "mh-gen logs it" "gw-01: command calibrate for sensor-000001 (correlation_id g-1)" "$(cat gen.log)"
expect_eq "no reply in the telemetry" 0 "$(mh-cat --to json < out.frames | jq -c 'select(.kind == "command-reply")' | wc -l)"
kill -TERM "$GEN"
wait_pid_exit 20 "$GEN"
expect_eq "mh-gen exit code" 0 "$EXIT_CODE"

begin "SIGTERM: exit 0"
kill -TERM "$ENDPOINT"
wait_pid_exit 20 "$ENDPOINT"
expect_eq "exit code" 0 "$EXIT_CODE"

finish
