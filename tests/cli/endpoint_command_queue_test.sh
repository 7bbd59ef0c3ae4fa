#!/usr/bin/env bash
# mh-endpoint --command-queue: commands for an absent gateway wait in LMDB, survive a restart
# of the endpoint and arrive in order (curl over real TLS, GET /v1/commands; mosquitto_sub over TLS with
# a token); a full queue drops
# the oldest (counted); a command whose --command-ttl passed is dropped as expired (counted);
# a device's reply after a restart still matches the command delivered before it.
source "$(dirname "$0")/lib.sh"

mh-endpoint ca --dir ca > /dev/null 2>&1
mh-endpoint server-cert --ca ca --host localhost 127.0.0.1 --out server > /dev/null 2>&1
cat > registry.toml <<EOF2
[gateway.gw-01]
token_key = "$(mh-endpoint keygen)"
sources = ["sensor-00000?"]
EOF2
token1=$(mh-endpoint token --registry registry.toml --gateway gw-01)

# start [options]: runs the endpoint on the queue in $WORK/queue; sets ENDPOINT, port, metrics_port
start() {
  : > endpoint.log
  mh-endpoint --registry registry.toml --cert server/server.crt --key server/server.key \
    --https 127.0.0.1:0 --mqtt 127.0.0.1:0 --metrics 127.0.0.1:0 --commands "@ipc://$WORK/commands.sock" \
    --command-queue "$WORK/queue" --max-pending-commands 2 "$@" --out out.frames 2>> endpoint.log &
  ENDPOINT=$!
  BACKGROUND_PIDS+=("$ENDPOINT")
  port=$(wait_log_port 20 endpoint.log 'listening on https')
  mqtt_port=$(wait_log_port 20 endpoint.log 'listening on mqtt')
  metrics_port=$(wait_log_port 20 endpoint.log 'metrics on port')
}
stop() { kill -TERM "$ENDPOINT"; wait_pid_exit 20 "$ENDPOINT"; }
get() { curl -sS --cacert ca/ca.crt -H "Authorization: Bearer $token1" -o commands.json -w '%{http_code}' \
  "https://127.0.0.1:$port/v1/commands"; }
reply() {
  curl -sS --cacert ca/ca.crt -H "Authorization: Bearer $token1" -H 'Content-Type: application/json' \
    --data-binary "$1" -o reply.json -w '%{http_code}' "https://127.0.0.1:$port/v1/replies"
}
metric() { scrape_metrics "$metrics_port" metrics.txt; grep -E "^$1 " metrics.txt | awk '{print $2}'; }
queued() { [ "$(metric mh_endpoint_commands_queued_total)" = "$1" ]; }
statuses() { mh-cat --to json < out.frames | jq -c 'select(.kind == "command-status")'; }

begin "commands for an absent gateway survive a restart; a full queue drops the oldest"
start
printf '%s\n' '{"kind":"command","gateway":"gw-01","action":"old"}' \
  '{"kind":"command","gateway":"gw-01","source":"sensor-000001","action":"reboot"}' \
  '{"kind":"command","gateway":"gw-01","action":"sync"}' | mh-cat --from json --out ">ipc://$WORK/commands.sock"
wait_until 20 queued 3 && pass || fail "the commands were not queued"
expect_eq "one dropped" 1 "$(metric mh_endpoint_commands_dropped_total)"
expect_eq "statuses" "queued queued dropped queued" "$(statuses | jq -r .status | xargs)"
expect_contains "the oldest is dropped" "queue was full" "$(statuses | jq -r 'select(.status == "dropped") | .reason')"
old_id=$(statuses | jq -r 'select(.status == "dropped") | .correlation_id')
expect_eq "it was the first queued" "$old_id" "$(statuses | jq -r 'select(.status == "queued") | .correlation_id' | head -1)"
stop
statuses > first.json
expect_eq "exit code" 0 "$EXIT_CODE"
start
expect_eq "after the restart" 200 "$(get)"
expect_eq "in order, the oldest dropped" "reboot sync" "$(jq -r .action commands.json | xargs)"
expect_eq "the device" "sensor-000001" "$(jq -r 'select(.action=="reboot") | .source' commands.json)"
expect_eq "correlation ids kept across the restart" \
  "$(jq -r 'select(.status == "queued") | .correlation_id' first.json | tail -2 | xargs)" \
  "$(jq -r .correlation_id commands.json | xargs)"
expect_eq "delivered statuses" "delivered delivered" "$(statuses | jq -r 'select(.status == "delivered") | .status' | xargs)"
expect_eq "taken" 204 "$(get)"
stop

begin "taken commands stay taken across a restart"
start
expect_eq "none" 204 "$(get)"
stop

begin "MQTT: a command queued before a restart reaches mosquitto_sub after it"
start
echo '{"kind":"command","gateway":"gw-01","source":"sensor-000002","action":"blink"}' \
  | mh-cat --from json --out ">ipc://$WORK/commands.sock"
wait_until 20 queued 1 && pass || fail "the command was not queued"
stop
start
mosquitto_sub --cafile ca/ca.crt -h 127.0.0.1 -p "$mqtt_port" -u gw-01 -P "$token1" -c -i gw01-console -q 1 \
  -t 'commands/gw-01/#' -C 1 -W 20 -v > got.txt 2> sub.err
expect_eq "exit code" 0 "$?"
expect_contains "topic" "commands/gw-01/sensor-000002 " "$(cat got.txt)"
expect_eq "payload" "blink" "$(sed 's/^[^ ]* //' got.txt | jq -r .action)"
stop

begin "a reply after a restart matches the command delivered before it, once"
start
echo '{"kind":"command","gateway":"gw-01","source":"sensor-000003","command":"calibrate","correlation_id":"r-1"}' \
  | mh-cat --from json --out ">ipc://$WORK/commands.sock"
wait_until 20 queued 1 && pass || fail "the command was not queued"
expect_eq "fetched" 200 "$(get)"
expect_eq "its correlation id" r-1 "$(jq -r .correlation_id commands.json)"
stop
start
expect_eq "replied after the restart" 202 "$(reply '{"correlation_id":"r-1","result":"calibrated"}')"
acknowledged() { statuses | jq -c 'select(.status == "acknowledged")'; }
has_ack() { [ -n "$(acknowledged)" ]; }
wait_until 20 has_ack && pass || fail "no acknowledged status: $(statuses)"
expect_eq "matched to its command" "true sensor-000003 calibrate calibrated" \
  "$(acknowledged | jq -r '[.matched, .source, .command, .reply.result] | map(tostring) | join(" ")')"
stop
start
expect_eq "a second reply" 202 "$(reply '{"correlation_id":"r-1","result":"again"}')"
wait_until 20 has_ack && pass || fail "no acknowledged status: $(statuses)"
expect_eq "finds nothing awaited any more" false "$(acknowledged | jq -r .matched)"
expect_eq "counted as unmatched" 1 "$(metric mh_endpoint_command_replies_unmatched_total)"
stop

begin "a command whose time to live passed is dropped as expired"
start --command-ttl 1ms
echo '{"kind":"command","gateway":"gw-01","action":"late"}' | mh-cat --from json --out ">ipc://$WORK/commands.sock"
wait_until 20 queued 1 && pass || fail "the command was not queued"
expect_eq "expired" 204 "$(get)"
expect_eq "counted" 1 "$(metric mh_endpoint_commands_expired_total)"
expect_eq "its status" "queued expired" "$(statuses | jq -r .status | xargs)"
stop

finish
