#!/usr/bin/env bash
# The demo channel (examples/cold-chain-gateways.toml) under mh-route up, with real TLS,
# tokens, a stock MQTT client, a webhook receiver and LMDB stores.
#   1. A finite input (mh-gen --count as three gateways, mosquitto_pub --repeat as a fourth):
#      every message is accounted for at every stage (in = out + dropped by reason, alerts
#      counted as out), the store holds exactly what the endpoint accepted, the alerts are
#      what jq finds in the stored telemetry, the aggregates what jq computes from it, every
#      notification reached the webhook (signed) and every command for the cold room its
#      controller; then SIGTERM drains the channel and the final counts balance on every edge.
#   2. kill -9 of the filter while data flows: mh-route restarts it, the channel goes on, and
#      what is lost is exactly what the filter held in flight at the kill (found as gaps in
#      the sensors' regular series), nothing after it.
source "$(dirname "$0")/lib.sh"
EXAMPLES="$MH_SOURCE/examples"

# col RUNDIR PROCESS N: column N of processes.tsv (3 state, 4 pid, 5 restarts, 6 metrics port,
# 9 ended_in, 10 ended_out).
col() { awk -F'\t' -v p="$2" -v c="$3" '$1 == p { print $c }' "$1/processes.tsv" 2>/dev/null; }
# m FILE NAME: a sample's value (0 when absent); NAME with its labels, e.g. mh_dropped_total{reason="late"}.
m() { awk -v n="$2" '$1 == n { v = $2 } END { print v + 0 }' "$1"; }
# statuses FILE: the command-status messages the endpoint wrote (every status, summed).
statuses() { awk '$1 ~ /^mh_endpoint_command_status_total/ { s += $2 } END { print s + 0 }' "$1"; }
# dropped FILE: every mh_dropped_total sample, summed.
dropped() { awk '$1 ~ /^mh_dropped_total/ { s += $2 } END { print s + 0 }' "$1"; }
PROCESSES="ingest check check-_minute minute archive check-_notify notify"
# scrape_all RUNDIR: each mh process's metrics into RUNDIR/m/NAME (-> spelled -_ in file names).
scrape_all() {
  mkdir -p "$1/m"
  local p
  for p in $PROCESSES; do
    local port; port=$(col "$1" "${p//-_/->}" 6)
    [ -n "$port" ] && [ "$port" -gt 0 ] && scrape_metrics "$port" "$1/m/$p.new" 2>/dev/null || return 1
    mv "$1/m/$p.new" "$1/m/$p"
  done
}

# The webhook receiver, outside the channel (it is the operations system), on a free port.
python3 "$EXAMPLES/webhook-receiver.py" --secret-file "$WORK/hook.key" --log "$WORK/webhook.jsonl" \
  2> hook.err &
BACKGROUND_PIDS+=($!)
hook_port=$(wait_log_port 20 hook.err 'listening on') || { fail "no webhook receiver: $(cat hook.err)"; finish; exit 1; }
hook_url="http://127.0.0.1:$hook_port/hooks/mh"

begin "setup: CA, server certificate, registry, tokens; the manifest checks"
readings=2400 cold_readings=30
"$EXAMPLES/cold-chain-setup.sh" --hook-url "$hook_url" --rate 400 --readings $readings \
  --cold-room-readings $cold_readings --cold-room-every 0.1 one 2> setup.err; code=$?
expect_eq "setup exit code" 0 "$code"
cp one/hook.key "$WORK/hook.key"
openssl verify -CAfile one/ca/ca.crt one/tls/server.crt > /dev/null 2>&1 && pass || fail "server certificate not from the CA"
expect_eq "four gateways with tokens" 4 "$(grep -c ' mh1\.' one/tokens.txt)"
mh-route check -q one/cold-chain-gateways.toml 2> check.err; code=$?
expect_eq "mh-route check" 0 "$code$(cat check.err)"
mh-route check -q "$EXAMPLES/cold-chain-gateways.toml"; code=$?
expect_eq "mh-route check of the template" 0 "$code"

begin "a finite input: the sources finish, the channel settles"
mh-route up one/cold-chain-gateways.toml --runtime-dir "$WORK/rt1" 2> up1.err &
up=$!; BACKGROUND_PIDS+=($up)
sources_done() { [ "$(col rt1 fleet 3)$(col rt1 cold-room 3)" = exitedexited ]; }
wait_until 60 sources_done || fail "the sources did not finish: $(cut -f1-5 rt1/processes.tsv 2>/dev/null) $(tail -5 up1.err)"
expect_contains "the gateways were all acknowledged" "acknowledged $readings messages" "$(grep 'fleet: mh-gen' up1.err)"
total=$((readings + cold_readings))
# Settled: every edge took in what its upstream sent, the webhook got every notification,
# the controller every command for the cold room, and the counts stayed put for a moment.
settled() {
  scrape_all rt1 || return 1
  local d=rt1/m
  [ "$(m $d/ingest mh_messages_out_total)" -eq $((total + $(statuses $d/ingest))) ] || return 1
  [ "$(m $d/check mh_messages_in_total)" -eq "$(m $d/ingest mh_messages_out_total)" ] || return 1
  local check_out; check_out=$(m $d/check mh_messages_out_total)
  [ "$(m $d/check-_minute mh_messages_in_total)" -eq "$check_out" ] || return 1
  [ "$(m $d/check-_notify mh_messages_in_total)" -eq "$check_out" ] || return 1
  [ "$(m $d/minute mh_messages_in_total)" -eq "$(m $d/check-_minute mh_messages_out_total)" ] || return 1
  [ "$(m $d/notify mh_messages_in_total)" -eq "$(m $d/check-_notify mh_messages_out_total)" ] || return 1
  [ "$(m $d/archive mh_messages_in_total)" -eq $((check_out + $(m $d/minute mh_messages_out_total))) ] || return 1
  [ "$(m $d/archive mh_messages_out_total)" -eq "$(mh-store stat --db one/archive --json | jq .messages)" ] || return 1
  local made; made=$(awk '$1 ~ /^mh_notifications_total/ { s += $2 } END { print s + 0 }' $d/notify)
  [ "$(wc -l < webhook.jsonl 2>/dev/null || echo 0)" -eq "$made" ] || return 1
  local for_room; for_room=$(jq -s '[.[].body | select(.gateway == "cold-room" and .state != "resolved")] | length' webhook.jsonl)
  [ "$(mh-cat --to json < one/controller.frames 2>/dev/null | wc -l)" -eq "$for_room" ] || return 1
  local now; now=$(cat $d/* | grep -E '^mh_(messages|dropped|notif|alerts)' | md5sum)
  [ "$now" = "${LAST_SETTLED:-}" ] || { LAST_SETTLED=$now; return 1; }
  # What the checks below read, taken with the counters (a resolution may come later).
  cp webhook.jsonl calls1.jsonl && mh-cat --to json < one/controller.frames > controller1.jsonl
}
wait_until 60 settled || fail "the channel did not settle: $(for f in rt1/m/*; do echo "$f: $(grep -E '^mh_messages' "$f" | tr '\n' ' ')"; done)"

begin "every stage: in = out + dropped by reason"
d=rt1/m
expect_eq "fleet sent (its final counters)" $readings "$(col rt1 fleet 10)"
status_count=$(statuses $d/ingest)
replies=$(m $d/ingest 'mh_endpoint_command_status_total{status="acknowledged"}')
expect_eq "ingest: in = readings + the gateways' replies" $((total + replies)) "$(m $d/ingest mh_messages_in_total)"
expect_eq "ingest: out = readings + command statuses" $((total + status_count)) "$(m $d/ingest mh_messages_out_total)"
expect_eq "ingest: nothing refused" "" "$(awk '$1 ~ /^mh_endpoint_refused_total/ && $2 != 0' $d/ingest)"
alerts=$(m $d/check mh_alerts_total)
[ "$alerts" -gt $cold_readings ] && pass || fail "too few alerts for a telling test: $alerts"
expect_eq "check: in + alerts = out + dropped" $((total + status_count + alerts)) \
  $(($(m $d/check mh_messages_out_total) + $(dropped $d/check)))
expect_eq "check: dropped nothing" 0 "$(dropped $d/check)"
for edge in check-_minute check-_notify; do
  expect_eq "$edge: in = out + dropped" "$(m $d/$edge mh_messages_in_total)" \
    $(($(m $d/$edge mh_messages_out_total) + $(dropped $d/$edge)))
done
expect_eq "check->minute drops exactly the alerts and command statuses (filtered)" $((alerts + status_count)) \
  "$(m $d/check-_minute 'mh_dropped_total{reason="filtered"}')"
expect_eq "check->notify passes exactly the alerts" "$alerts" "$(m $d/check-_notify mh_messages_out_total)"
expect_eq "minute: dropped nothing (late, malformed)" 0 "$(dropped $d/minute)"
expect_eq "archive: in = out + dropped" "$(m $d/archive mh_messages_in_total)" \
  $(($(m $d/archive mh_messages_out_total) + $(dropped $d/archive)))
expect_eq "archive: dropped nothing" 0 "$(dropped $d/archive)"
expect_eq "notify: every message it took in matched (alerts only)" "$(m $d/notify mh_messages_in_total)" \
  "$(m $d/notify mh_notify_matched_total)"
opened=$(m $d/notify 'mh_notifications_total{state="open"}')
repeated=$(m $d/notify 'mh_notifications_total{state="repeat"}')
resolved=$(m $d/notify 'mh_notifications_total{state="resolved"}')
expect_eq "notify: delivered = webhook calls + commands (none for a resolution)" \
  $((2 * (opened + repeated) + resolved)) "$(m $d/notify mh_notify_delivered_total)"
expect_eq "notify: no failed attempt" 0 "$(m $d/notify mh_notify_failed_attempts_total)"
commands=$(( $(m $d/ingest mh_endpoint_commands_delivered_total) + $(m $d/ingest mh_endpoint_commands_queued_total) ))
[ "$commands" -ge $((opened + repeated)) ] && pass \
  || fail "the endpoint saw $commands commands, notify sent $((opened + repeated))"

begin "the store holds exactly what the endpoint accepted; alerts = the jq oracle"
mh-store query --db one/archive --format json > stored.jsonl
jq -c 'select(.kind == "telemetry")' stored.jsonl > accepted.jsonl
expect_eq "accepted messages stored" $total "$(wc -l < accepted.jsonl)"
expect_eq "ids unique" $total "$(jq -r .id accepted.jsonl | sort -u | wc -l)"
expect_eq "each reading stamped with the gateway that owns its sensor" "" \
  "$(jq -r 'select(.gateway != (if .source == "cold-room-1" then "cold-room"
                               else "gw-0\((.source[7:] | tonumber) - 1 | ./4 | floor + 1)" end)) | .id' accepted.jsonl)"
expect_eq "per gateway" "cold-room=$cold_readings gw-01=800 gw-02=800 gw-03=800" \
  "$(jq -r .gateway accepted.jsonl | sort | uniq -c | awk '{ print $2 "=" $1 }' | paste -sd' ')"
jq -r 'select(.temperature > 8) | .id' accepted.jsonl | sort > want-alerts.txt
jq -r 'select(.kind == "alert") | .origin_id' stored.jsonl | sort > got-alerts.txt
expect_files_equal "alerts: one per reading above 8 °C, no other" want-alerts.txt got-alerts.txt
expect_eq "alerts stored = alerts raised" "$alerts" "$(wc -l < got-alerts.txt)"

begin "every command's fate is in the store: delivered, and acknowledged by the fleet's gateways"
jq -c 'select(.kind == "command-status")' stored.jsonl > statuses.jsonl
expect_eq "statuses stored = statuses written" "$status_count" "$(wc -l < statuses.jsonl)"
expect_eq "one 'delivered' per command mh-notify sent" $((opened + repeated)) \
  "$(jq -s '[.[] | select(.status == "delivered")] | length' statuses.jsonl)"
expect_eq "nothing refused, expired or dropped" "" \
  "$(jq -r 'select(.status != "queued" and .status != "delivered" and .status != "acknowledged") | .status' statuses.jsonl)"
jq -r 'select(.status == "delivered" and .gateway != "cold-room") | .correlation_id' statuses.jsonl | sort > fleet-delivered.txt
jq -r 'select(.status == "acknowledged" and .reply.result == "done" and .matched) | .correlation_id' statuses.jsonl | sort > fleet-acked.txt
[ -s fleet-delivered.txt ] && pass || fail "no command for the fleet's gateways"
expect_files_equal "each fleet command acknowledged by its gateway (mh-gen --answer-commands)" fleet-delivered.txt fleet-acked.txt

begin "webhook calls = notifications, signed; commands reached the cold room's controller"
calls=$(wc -l < calls1.jsonl)
expect_eq "calls" $((opened + repeated + resolved)) "$calls"
expect_eq "all signatures good" "$calls" "$(jq -s '[.[] | select(.signature_ok)] | length' calls1.jsonl)"
expect_eq "X-Mh-Notification is the body's id" "$calls" "$(jq -s '[.[] | select(.notification == .body.id)] | length' calls1.jsonl)"
jq -r 'select(.kind == "alert") | "\(.rule)/\(.source)"' stored.jsonl | sort -u > want-incidents.txt
jq -r .body.incident calls1.jsonl | sort -u > got-incidents.txt
expect_files_equal "an incident per rule and sensor that alerted" want-incidents.txt got-incidents.txt
expect_eq "each incident's first call opens it" "" \
  "$(jq -rs 'group_by(.body.incident)[] | select(.[0].body.state != "open") | .[0].body.incident' calls1.jsonl)"
room_commands=$(jq -s '[.[].body | select(.gateway == "cold-room" and .state != "resolved")] | length' calls1.jsonl)
[ "$room_commands" -ge 1 ] && pass || fail "no notification for the cold room"
expect_eq "commands the controller received" "$room_commands" "$(wc -l < controller1.jsonl)"
expect_eq "for the cold room, named cool_down" "$room_commands" \
  "$(jq -s '[.[] | select(.kind == "command" and .source == "cold-room-1" and .command == "cool_down")] | length' controller1.jsonl)"
expect_eq "one per notification that is not a resolution, in order" \
  "$(jq -r 'select(.body.gateway == "cold-room" and .body.state != "resolved") | .body.id' calls1.jsonl)" \
  "$(jq -r .notification controller1.jsonl)"

begin "SIGTERM drains the channel in order; the final counts balance on every edge"
kill -TERM $up
wait_pid_exit 60 $up
expect_eq "mh-route up exit code" 0 "$EXIT_CODE"
expect_eq "all exited" "exited exited exited exited exited exited exited exited exited exited" \
  "$(tail -n +2 rt1/processes.tsv | cut -f3 | paste -sd' ')"
sent() { col rt1 "$1" 10; }
took() { col rt1 "$1" 9; }
expect_eq "check took in what ingest sent" "$(sent ingest)" "$(took check)"
expect_eq "check->minute" "$(sent check)" "$(took 'check->minute')"
expect_eq "check->notify" "$(sent check)" "$(took 'check->notify')"
expect_eq "minute" "$(sent 'check->minute')" "$(took minute)"
expect_eq "notify" "$(sent 'check->notify')" "$(took notify)"
expect_eq "archive" $(($(sent check) + $(sent minute))) "$(took archive)"
for p in check minute archive; do
  expect_contains "$p drained by counts" "stopping $p: it took in all" "$(cat up1.err)"
done
expect_eq "no warnings" "" "$(grep -E 'mh-route: (warning|error)' up1.err | grep -v 'restarting it in')"

begin "the aggregates: one per sensor and minute, as jq computes them from the stored telemetry"
mh-store query --db one/archive --format json --where 'kind == "aggregate"' > aggregates.jsonl
expect_eq "aggregates stored = minute's output" "$(sent minute)" "$(wc -l < aggregates.jsonl)"
expect_eq "they count every reading" $total "$(jq -s 'map(.count) | add' aggregates.jsonl)"
jq -s -c 'group_by(.source)[] | group_by(.time / 60e9 | floor)[] |
  {source: .[0].source, minute: (.[0].time / 60e9 | floor), count: length,
   min: (map(.temperature) | min), max: (map(.temperature) | max)}' accepted.jsonl | sort > want-agg.txt
jq -c '{source, minute: (.window_start / 60e9 | floor), count, min: .min_t, max: .max_t}' aggregates.jsonl \
  | sort > got-agg.txt
expect_files_equal "count, min and max per sensor and minute" want-agg.txt got-agg.txt
expect_eq "means agree (to 1e-9)" "" "$(jq -n --slurpfile a aggregates.jsonl --slurpfile t accepted.jsonl '
  ($t | group_by(.source)[] | group_by(.time / 60e9 | floor)[] |
   {key: "\(.[0].source)/\(.[0].time / 60e9 | floor)", value: (map(.temperature) | add / length)}) as $w
  | $a[] | select("\(.source)/\(.window_start / 60e9 | floor)" == $w.key)
  | select((.mean_t - $w.value) | fabs > 1e-9) | .source')"

begin "kill -9 of the filter while data flows: restarted, the channel goes on, loss = what it held"
"$EXAMPLES/cold-chain-setup.sh" --hook-url "$hook_url" --rate 300 --readings 2700 --cold-room-every 1 two 2> setup2.err \
  || fail "setup: $(cat setup2.err)"
cp two/hook.key "$WORK/hook.key"
mh-route up two/cold-chain-gateways.toml --runtime-dir "$WORK/rt2" 2> up2.err &
up=$!; BACKGROUND_PIDS+=($up)
ingested() { local port; port=$(col rt2 ingest 6); [ -n "$port" ] && [ "$port" -gt 0 ] && scrape_metrics "$port" ingest.prom 2>/dev/null && m ingest.prom mh_messages_out_total; }
over() { local n; n=$(ingested) && [ "$n" -gt "$1" ]; }
wait_until 60 over 600 || fail "no data flows: $(tail -5 up2.err)"
old=$(col rt2 check 4)
kill_ns=$(date +%s%N)
kill -9 "$old"
restarted() { [ "$(col rt2 check 3)$(col rt2 check 5)" = running1 ] && [ "$(col rt2 check 6)" -gt 0 ]; }
wait_until 30 restarted || fail "check not restarted: $(cut -f1-6 rt2/processes.tsv)"
expect_contains "said so" "mh-route: warning: check: failed with signal 9 (Killed); restarting it in 0.2 s" "$(cat up2.err)"
new=$(col rt2 check 4)
restarted_ns=$(col rt2 check 7)
[ "$new" != "$old" ] && pass || fail "the same pid"
fleet_done() { [ "$(col rt2 fleet 3)" = exited ]; }
wait_until 60 fleet_done || fail "the fleet did not finish: $(tail -5 up2.err)"
# Alerts raised after the restart reach the archive and the webhook.
check_port=$(col rt2 check 6)
scrape_metrics "$check_port" check2.prom
[ "$(m check2.prom mh_alerts_total)" -gt 0 ] && pass || fail "the restarted filter raised no alert"
kill -TERM $up  # the cold room (mosquitto_pub --repeat) still sends: it dies of the SIGTERM
wait_pid_exit 60 $up
expect_eq "exit code: drained (mosquitto_pub dying of SIGTERM is a clean stop)" 0 "$EXIT_CODE"
expect_eq "the cold room was stopped, not finished" "signal 15 (Terminated)" "$(col rt2 cold-room 8)"
expect_eq "restarts of check" 1 "$(col rt2 check 5)"
# What the endpoint accepted from the fleet (mh-gen's acknowledged count: every frame up to
# the last acknowledgement is in the endpoint's output) against what the archive holds, and
# where the gaps are: each sensor reports every 40 ms of event time (12 sensors, 300/s), so a
# missing reading is a gap in its series.
acked=$(grep -oE 'fleet: mh-gen: the endpoint acknowledged [0-9]+ messages' up2.err | tail -1 | grep -oE '[0-9]+ messages' | grep -oE '[0-9]+')
expect_contains "the fleet refused nothing" "refused 0" "$(grep 'fleet: mh-gen: the endpoint acknowledged' up2.err | tail -1)"
mh-store query --db two/archive --format json --where 'kind == "telemetry" and gateway != "cold-room"' > stored2.jsonl
lost=$((acked - $(wc -l < stored2.jsonl)))
jq -s -c --argjson step 40000000 'group_by(.source)[] | sort_by(.time) |
  [range(1; length) as $i | {before: .[$i - 1].ingested, after: .[$i].ingested,
                             missing: (((.[$i].time - .[$i - 1].time) / $step | round) - 1)}
   | select(.missing != 0)][]' stored2.jsonl > gaps.jsonl
gap_msgs=$(jq -s 'map(.missing) | add // 0' gaps.jsonl)
echo "kill -9 of the filter: the endpoint accepted $acked fleet readings, the archive holds $((acked - lost)):" \
     "$lost lost in flight, in $(wc -l < gaps.jsonl) gaps of $gap_msgs readings" >&2
[ "$acked" -gt 1500 ] && pass || fail "too little data for a telling test: $acked"
expect_eq "what is lost is exactly the gaps (nothing at the end, no repeats)" "$lost" "$gap_msgs"
expect_eq "every gap straddles the kill (the last before it ingested before kill + 1 s, the next after kill - 1 s)" "" \
  "$(jq -c --argjson k "$kill_ns" 'select(.before > $k + 1e9 or .after < $k - 1e9 or .missing < 0)' gaps.jsonl)"
after_restart=$(jq -s --argjson r "$restarted_ns" 'map(select(.ingested > $r)) | length' stored2.jsonl)
[ "$after_restart" -gt 500 ] && pass || fail "only $after_restart readings ingested after the restart are stored"

finish
