#!/usr/bin/env bash
# mh-route up: a channel mh-gen -> mh-filter (2 replicas) -> mh-store, with a conditional
# edge to a second store. A finite source drains the channel by itself and every message is
# accounted for; SIGTERM drains an unbounded one so that exactly what was generated passes;
# a stage killed with -9 is restarted and the channel goes on.
source "$(dirname "$0")/lib.sh"

store_count() { mh-store stat --db "$1" --json 2>/dev/null | jq -r .messages; }
state_of() { awk -F'\t' -v n="$2" '$1 == n { print $'"$3"' }' "$1/processes.tsv"; }

begin "MH_METRICS_FINAL: a tool leaves its last counters in that file as it exits"
MH_METRICS_FINAL="$WORK/final.prom" mh-gen --count 123 > /dev/null
expect_contains "mh-gen's count" "mh_messages_out_total 123" "$(cat final.prom)"
mh-gen --count 7 | MH_METRICS_FINAL="$WORK/final2.prom" mh-filter 'temperature > 1000' > /dev/null
expect_contains "mh-filter in" "mh_messages_in_total 7" "$(cat final2.prom)"
expect_contains "mh-filter out" "mh_messages_out_total 0" "$(cat final2.prom)"

cat > finite.toml <<'TOML'
[channel]
name = "finite"

[defaults]
drain_quiet = "1s"

[stage.gen]
run = "mh-gen --count 20000 --seed 11 --sources 40"

[stage.warm]
run = "mh-filter 'temperature > 21' --alert 'hot=temperature > 24'"
from = ["gen"]
replicas = 2

[stage.archive]
run = "mh-store append --db archive --sync none"
from = ["warm"]

[stage.alerts]
run = "mh-store append --db alerts --sync none"
from = [{ stage = "warm", when = 'kind == "alert"' }]
TOML

begin "a finite source: the channel drains by itself, every message in its store"
mh-gen --count 20000 --seed 11 --sources 40 | mh-filter 'temperature > 21' --alert 'hot=temperature > 24' \
  | mh-cat --to json > expected.jsonl
expected_all=$(wc -l < expected.jsonl)
expected_alerts=$(grep -c '"kind":"alert"' expected.jsonl)
[ "$expected_alerts" -gt 100 ] && pass || fail "too few alerts for a telling test: $expected_alerts"
timeout 120 mh-route up finite.toml --runtime-dir "$WORK/run1" 2> up1.err; code=$?
expect_eq "exit code" 0 "$code"
expect_eq "archive holds every message that passed, alerts included" "$expected_all" "$(store_count archive)"
expect_eq "alerts store holds the alerts" "$expected_alerts" "$(store_count alerts)"
mh-store query --db alerts --format json | jq -r .id | sort > got-alerts.txt
grep '"kind":"alert"' expected.jsonl | jq -r .id | sort > want-alerts.txt
expect_files_equal "alert ids" want-alerts.txt got-alerts.txt
mh-store query --db archive --format json | jq -r .id | sort > got-all.txt
jq -r .id expected.jsonl | sort > want-all.txt
expect_files_equal "archive ids" want-all.txt got-all.txt
log=$(cat up1.err)
expect_contains "lines prefixed with the replica" "warm.2: mh-filter: " "$log"
expect_contains "the edge filter has a name" "warm->alerts: mh-filter: " "$log"
expect_contains "source finished" "mh-route: gen: finished" "$log"
expect_contains "drained by counts" "mh-route: stopping warm: it took in all 20000 messages its upstream sent" "$log"
# mh-filter counts the alerts it adds to the stream as sent, so its readers drain by counts.
expect_contains "edge drained by counts" "stopping warm->alerts: it took in all $expected_all messages" "$log"
expect_contains "ended" "mh-route: the channel ended: every stage drained and stopped" "$log"
expect_eq "no warnings" "" "$(grep -E 'warning|error' up1.err)"
expect_eq "state file: all exited" "exited exited exited exited exited exited" \
  "$(tail -n +2 run1/processes.tsv | cut -f3 | paste -sd' ')"
expect_eq "no pid file left" "no" "$([ -e run1/up.pid ] && echo yes || echo no)"

cat > endless.toml <<'TOML'
[channel]
name = "endless"

[defaults]
restart_delay = "100ms"
drain_quiet = "3s"

[stage.gen]
run = "mh-gen --rate 4000 --interval 1s --seed 12 --sources 20"

[stage.warm]
run = "mh-filter 'temperature > 21'"
from = ["gen"]

[stage.archive]
run = "mh-store append --db endless --sync none"
from = ["warm"]
TOML

begin "SIGTERM drains an unbounded channel: exactly what was generated and passed is stored"
mh-route up endless.toml --runtime-dir "$WORK/run2" 2> up2.err &
up=$!; BACKGROUND_PIDS+=($up)
wait_until 30 bash -c '[ "$(mh-store stat --db endless --json 2>/dev/null | jq -r .messages)" -gt 1000 ] 2>/dev/null' \
  || fail "nothing stored: $(cat up2.err)"
mh-route up endless.toml --runtime-dir "$WORK/run2" 2> twice.err; code=$?
expect_eq "a second up of the same runtime dir" 75 "$code"
expect_contains "says why" "already up in $WORK/run2 (mh-route pid $up)" "$(cat twice.err)"
kill -TERM $up
wait_pid_exit 60 $up
expect_eq "exit code" 0 "$EXIT_CODE"
sent=$(grep -oE 'draining warm: its upstream ended having sent [0-9]+' up2.err | grep -oE '[0-9]+$')
[ -n "$sent" ] && pass || fail "no drain line: $(cat up2.err)"
mh-gen --rate 0 --interval 1s --count "$sent" --seed 12 --sources 20 | mh-filter 'temperature > 21' | mh-cat --to json | jq -r .id | sort > want.txt
mh-store query --db endless --format json | jq -r .id | sort > got.txt
expect_files_equal "the ids of the first $sent generated messages that pass" want.txt got.txt
expect_contains "drained by counts" "stopping archive: it took in all $(wc -l < want.txt) messages" "$(cat up2.err)"

begin "kill -9 of a stage: restarted with back-off, the channel goes on"
mh-route up endless.toml --runtime-dir "$WORK/run3" 2> up3.err &
up=$!; BACKGROUND_PIDS+=($up)
wait_until 30 bash -c "[ \"\$(awk -F'\t' '\$1 == \"warm\" { print \$6 }' $WORK/run3/processes.tsv 2>/dev/null)\" -gt 0 ] 2>/dev/null" \
  || fail "warm never showed its metrics port: $(cat up3.err)"
old=$(state_of run3 warm 4)
kill -9 "$old"
wait_until 30 bash -c "[ \"\$(awk -F'\t' '\$1 == \"warm\" { print \$3 \$5 }' $WORK/run3/processes.tsv)\" = running1 ]" \
  || fail "warm not restarted: $(cat run3/processes.tsv)"
new=$(state_of run3 warm 4)
[ "$new" != "$old" ] && kill -0 "$new" && pass || fail "no new warm process"
expect_contains "said so" "mh-route: warning: warm: failed with signal 9 (Killed); restarting it in 0.1 s" "$(cat up3.err)"
before=$(store_count endless)
wait_until 30 bash -c "[ \"\$(mh-store stat --db endless --json | jq -r .messages)\" -gt $((before + 1000)) ]" \
  && pass || fail "the store stopped growing after the restart"
kill -TERM $up
wait_pid_exit 60 $up
expect_eq "exit code after a restart" 0 "$EXIT_CODE"

begin "a stage that fails with restart = never ends the channel with 69"
cat > failing.toml <<'TOML'
[stage.gen]
run = "mh-gen --count 10 --fields no_such_field"
restart = "never"
[stage.sink]
run = "mh-store append --db failing"
from = ["gen"]
TOML
timeout 60 mh-route up failing.toml --runtime-dir "$WORK/run4" 2> up4.err; code=$?
expect_eq "exit code" 69 "$code"
expect_contains "the stage's own message, prefixed" "gen: mh-gen: " "$(cat up4.err)"
expect_contains "why it stays down" "gen: failed with exit 64; restart = never, so it stays down" "$(cat up4.err)"

finish
