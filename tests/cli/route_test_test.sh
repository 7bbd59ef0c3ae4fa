#!/usr/bin/env bash
# mh-route test: channel unit tests beside the manifest. A channel with a filter raising
# alerts (one on the clock), when-routing and a per-minute aggregate: its tests pass (exit
# 0); wrong expectations fail with a field-by-field diff (exit 1); the pinned clock decides
# what now() sees; a broken test file gets every error at its line and column (exit 78);
# and the example beside examples/cold-chain.toml passes.
source "$(dirname "$0")/lib.sh"

EXAMPLE="$MH_SOURCE/examples/cold-chain.toml"

begin "the example channel's tests pass"
out=$(mh-route test "$EXAMPLE" 2> err.txt); code=$?
expect_eq "exit code" 0 "$code"
expect_contains "first test" "PASS  a warm reading raises one alert, kept in the alerts store" "$out"
expect_contains "second test" "PASS  readings at 24 degrees or below raise nothing" "$out"
expect_contains "summary" "cold-chain.test.toml: 2 tests, 2 passed, 0 failed" "$out"
expect_eq "quiet stderr" "" "$(cat err.txt)"
expect_eq "the example's stores are not touched" "no no" \
  "$([ -e "$MH_SOURCE/examples/archive" ] && echo yes || echo no) $([ -e "$MH_SOURCE/examples/alerts" ] && echo yes || echo no)"

cat > shop.toml <<'TOML'
[channel]
name = "shop"

[stage.sensors]
run = "mh-gen --sources 3 --rate 10"

[stage.check]
run = '''mh-filter 'exists(temperature)' --alert 'too_warm=temperature > 8' --alert 'stale=now() - time > 5m' '''
from = ["sensors"]
replicas = 2

[stage.minute]
run = "mh-aggregate --window 1m --by source --agg 'count(), mean(temperature), max(temperature)'"
from = [{ stage = "check", when = 'kind == "telemetry"' }]

[stage.archive]
run = "mh-store append --db archive --sync none"
from = ["check", "minute"]

[stage.alerts]
run = "mh-store append --db alerts --sync none"
from = [{ stage = "check", when = 'kind == "alert"' }]
TOML

cat > readings.jsonl <<'JSON'
{"time":"2026-01-01T00:00:10Z","source":"truck-1","kind":"telemetry","temperature":4.0}
{"time":"2026-01-01T00:00:20Z","source":"truck-1","kind":"telemetry","temperature":6.0}

{"time":"2026-01-01T00:00:30Z","source":"truck-2","kind":"telemetry","temperature":3}
{"time":"2026-01-01T00:01:10Z","source":"truck-1","kind":"telemetry","temperature":5.0}
{"time":"2026-01-01T00:01:15Z","source":"truck-1","kind":"event","door":"open"}
JSON

cat > shop.test.toml <<'TOML'
# The clock of every test, unless it says otherwise: two minutes after the readings.
now = 2026-01-01T00:02:00Z

[[test]]
name = "telemetry is averaged per source and minute"

[[test.input]]
stage = "sensors"
file = "readings.jsonl"

[[test.expect]]
stage = "minute"
ordered = false
messages = [
  { time = 2026-01-01T00:01:00Z, source = "truck-1", kind = "aggregate", count = 2, mean_temperature = 5.0, max_temperature = 6.0 },
  { time = 2026-01-01T00:01:00Z, source = "truck-2", kind = "aggregate", count = 1, mean_temperature = 3.0, max_temperature = 3 },
  { time = 2026-01-01T00:02:00Z, source = "truck-1", kind = "aggregate", count = 1, mean_temperature = 5.0 },
]

[[test.expect]]
stage = "check"
absent = [{ kind = "event" }]
count = 4

[[test.expect]]
stage = "archive"
where = 'kind == "aggregate"'
count = 3

[[test.expect]]
stage = "alerts"
count = 0

[[test]]
name = "a warm reading raises an alert, routed to the alerts store only"

[[test.input]]
stage = "sensors"
messages = [
  '{"id":"019b76db-0000-7000-8000-000000000001","time":"2026-01-01T00:01:30Z","source":"truck-2","kind":"telemetry","temperature":9.5}',
  { time = 2026-01-01T00:01:40Z, source = "truck-2", kind = "telemetry", temperature = 7.5 },
]

[[test.expect]]
stage = "alerts"
exact = true
messages = [
  { time = 2026-01-01T00:01:30Z, source = "truck-2", kind = "alert", rule = "too_warm", expr = "temperature > 8", origin_id = "019b76db-0000-7000-8000-000000000001", temperature = 9.5 },
]

[[test.expect]]
stage = "minute"
at = "in"
absent = [{ kind = "alert" }]
count = 2

[[test]]
name = "a reading older than five minutes is stale, on the pinned clock"
now = "2026-01-01T00:10:00Z"

[[test.input]]
stage = "sensors"
messages = [
  { time = 2026-01-01T00:00:00Z, source = "truck-1", kind = "telemetry", temperature = 4.0 },
  { time = 2026-01-01T00:08:00Z, source = "truck-2", kind = "telemetry", temperature = 4.0 },
]

[[test.expect]]
stage = "alerts"
messages = [{ source = "truck-1", rule = "stale" }]
TOML

begin "a channel's tests pass: filter, when-routing, aggregate, input file, pinned clock"
out=$(mh-route test shop.toml 2> err.txt); code=$?
expect_eq "exit code" 0 "$code"
expect_contains "aggregate test" "PASS  telemetry is averaged per source and minute" "$out"
expect_contains "routing test" "PASS  a warm reading raises an alert, routed to the alerts store only" "$out"
expect_contains "clock test" "PASS  a reading older than five minutes is stale, on the pinned clock" "$out"
expect_contains "summary" "shop.test.toml: 3 tests, 3 passed, 0 failed" "$out"
expect_eq "nothing in the manifest's directory" "no" "$([ -e archive ] && echo yes || echo no)"
echo "$out$(cat err.txt)" > pass.log

begin "without the pinned clock, now() is today and both readings are stale: the test fails"
sed -e '/^now = /d' shop.test.toml > unpinned.test.toml
out=$(mh-route test shop.toml --tests unpinned.test.toml --match stale 2> err.txt); code=$?
expect_eq "exit code" 1 "$code"
expect_contains "fails" "FAIL  a reading older than five minutes is stale, on the pinned clock" "$out"
expect_contains "the second alert" 'message 2: not expected: {"time":"2026-01-01T00:08:00Z","source":"truck-2","kind":"alert","rule":"stale"' "$out"
expect_contains "only the matching test ran" "unpinned.test.toml: 1 test, 0 passed, 1 failed" "$out"

cat > wrong.test.toml <<'TOML'
now = 2026-01-01T00:02:00Z

[[test]]
name = "a wrong mean"

[[test.input]]
stage = "sensors"
file = "readings.jsonl"

[[test.expect]]
stage = "minute"
ordered = false
messages = [
  { source = "truck-1", count = 2, mean_temperature = 5.5, max_temperature = 6.0 },
  { source = "truck-2", count = 1 },
  { source = "truck-1", count = 1 },
]

[[test]]
name = "an alert that never comes"

[[test.input]]
stage = "sensors"
messages = [{ time = 2026-01-01T00:01:00Z, source = "truck-3", kind = "telemetry", temperature = 2.0 }]

[[test.expect]]
stage = "alerts"
messages = [{ kind = "alert", source = "truck-3" }]

[[test.expect]]
stage = "archive"
absent = [{ source = "truck-3" }]

[[test]]
name = "this one passes"

[[test.input]]
stage = "sensors"
messages = [{ time = 2026-01-01T00:01:00Z, source = "truck-3", kind = "telemetry", temperature = 2.0 }]

[[test.expect]]
stage = "archive"
count = 2
TOML

begin "failing tests: exit 1, each failure with what was expected and what came"
mh-route test shop.toml --tests wrong.test.toml > out.txt 2> err.txt; code=$?
out=$(cat out.txt)
expect_eq "exit code" 1 "$code"
expect_contains "first fails" "FAIL  a wrong mean" "$out"
expect_contains "where" "minute (out, line 11):" "$out"
expect_contains "unmatched" '  no message matches {"source":"truck-1","count":2,"mean_temperature":5.5,"max_temperature":6.0}' "$out"
expect_contains "the closest" '    closest: {"time":"2026-01-01T00:01:00Z","source":"truck-1","kind":"aggregate","window_start":1767225600000000000,"window_end":1767225660000000000,"count":2,"mean_temperature":5.0,"max_temperature":6.0}' "$out"
expect_contains "field diff" "      mean_temperature: expected 5.5, got 5.0" "$out"
expect_contains "second fails" "FAIL  an alert that never comes" "$out"
expect_contains "count" "alerts (in, line 27):" "$out"
expect_contains "missing message" '  expected 1 message, got 0' "$out"
expect_contains "missing which" '  message 1: missing: {"source":"truck-3","kind":"alert"}' "$out"
expect_contains "absent" 'unwanted: {"time":"2026-01-01T00:01:00Z","source":"truck-3","kind":"telemetry","temperature":2.0} (matches absent {"source":"truck-3"})' "$out"
expect_contains "the flow" "messages: sensors 1 given; check 1 in, 1 out; check->minute 1; minute 1 in, 1 out; archive 2 in, 0 out; check->alerts 0; alerts 0 in, 0 out" "$out"
expect_contains "third passes" "PASS  this one passes" "$out"
expect_contains "summary" "wrong.test.toml: 3 tests, 1 passed, 2 failed" "$out"

begin "a stage that fails fails its test, with its own words"
sed -e 's/--sync none"$/--sync never"/' shop.toml > badstage.toml
mh-route test badstage.toml --tests wrong.test.toml --match passes > out.txt 2> err.txt; code=$?
out=$(cat out.txt)
expect_eq "exit code" 1 "$code"
expect_contains "stage failed" "stage archive failed with exit 64" "$out"
expect_contains "its stderr" "--sync" "$out"

begin "--match that no test's name contains: exit 64; --verbose shows what the stages say"
mh-route test shop.toml --match nothing-like-this > out.txt 2> err.txt; code=$?
expect_eq "exit code" 64 "$code"
expect_contains "says so" "no test's name contains 'nothing-like-this' in shop.test.toml" "$(cat err.txt)"
out=$(mh-route test badstage.toml --tests wrong.test.toml --match passes --verbose 2> err.txt)
expect_contains "a stage's stderr under the test" "      archive: --sync: never not in" "$out"

begin "a stage that does not end at the end of its input is stopped after the timeout, and fails its test"
cat > hang.toml <<TOML
[stage.sensors]
run = "mh-gen"
[stage.hang]
run = "mh-filter --in @ipc://$WORK/hang.sock"
from = ["sensors"]
[stage.archive]
run = "mh-store append --db archive --sync none"
from = ["hang"]
TOML
printf 'timeout = "1s"\n[[test]]\nname = "hangs"\n[[test.input]]\nstage = "sensors"\nmessages = [{ source = "a" }]\n[[test.expect]]\nstage = "archive"\ncount = 0\n' > hang.test.toml
mh-route test hang.toml > out.txt 2> err.txt; code=$?
expect_eq "exit code" 1 "$code"
expect_contains "timeout" "stage hang did not end within 1 s of the end of its input (timeout); it was stopped" "$(cat out.txt)"

begin "--keep keeps each test's directory: the stores, inputs, outputs and logs"
out=$(mh-route test shop.toml --keep --match routed 2> err.txt); code=$?
expect_eq "exit code" 0 "$code"
kept=$(echo "$out" | sed -n 's/^kept: //p')
expect_eq "alerts store" "1" "$(mh-store stat --db "$kept/2/alerts" --json | jq -r .messages)"
expect_eq "stage logs" "yes" "$([ -f "$kept/2/_mh_test/check.log" ] && echo yes || echo no)"
rm -rf "$kept"

cat > broken.test.toml <<'TOML'
now = "yesterday"
skipp = ["alerts"]

[[test]]
name = "broken"
skip = ["alert"]

[[test.input]]
stage = "sensor"
messages = [{ source = "x" }, '{"time": "soon"}', 5]

[[test.expect]]
stage = "alerts"
where = "kind === 1"
count = -1

[[test.expect]]
stage = "minute"
at = "inside"

[[test]]
name = "broken"
TOML

begin "a broken test file: every error at its line and column, exit 78, nothing run"
mh-route test shop.toml --tests broken.test.toml > out.txt 2> err.txt; code=$?
e=$(cat err.txt)
expect_eq "exit code" 78 "$code"
expect_eq "nothing on stdout" "" "$(cat out.txt)"
expect_contains "bad now" "mh-route: error: broken.test.toml:1:7: 'now' in the test file must be a time" "$e"
expect_contains "unknown key" "broken.test.toml:2:1: unknown key 'skipp' (did you mean 'skip'?)" "$e"
expect_contains "unknown skip" "broken.test.toml:6:9: skip names 'alert' is not a stage of the channel (did you mean 'alerts'?)" "$e"
expect_contains "unknown input stage" "broken.test.toml:9:9: input for 'sensor' is not a stage of the channel (did you mean 'sensors'?)" "$e"
expect_contains "bad message" "broken.test.toml:10:31: message 2 of 'messages' is not an mh message: time:" "$e"
expect_contains "not a message" "broken.test.toml:10:51: message 3 of 'messages' must be a table or a JSON object in a string, not an integer" "$e"
expect_contains "bad where" "broken.test.toml:14:17: bad where condition: a single" "$e"
expect_contains "caret" "kind === 1" "$e"
expect_contains "bad count" "broken.test.toml:15:9: 'count' must be an integer, 0 or more" "$e"
expect_contains "bad at" "broken.test.toml:19:6: 'at' must be \"out\"" "$e"
expect_contains "checks nothing" "broken.test.toml:18:9: the expectation on minute checks nothing" "$e"
expect_contains "duplicate" "broken.test.toml:22:8: a second test named 'broken'" "$e"
expect_contains "expects nothing" "broken.test.toml:22:8: test 'broken' expects nothing" "$e"
expect_contains "summary" "broken.test.toml: 13 errors: no test was run" "$e"

begin "a missing test file, a bad input file, and not TOML: exit 78"
mh-route test shop.toml --tests nothere.toml > /dev/null 2> err.txt; code=$?
expect_eq "missing file" 78 "$code"
expect_contains "says which" "cannot read the test file nothere.toml" "$(cat err.txt)"
printf '[[test]]\nname = "x"\n[[test.input]]\nstage = "sensors"\nfile = "bad.jsonl"\n[[test.expect]]\nstage = "alerts"\ncount = 0\n' > badinput.test.toml
printf '{"source":"a"}\n[1,2]\n' > bad.jsonl
mh-route test shop.toml --tests badinput.test.toml > /dev/null 2> err.txt; code=$?
expect_eq "bad input file" 78 "$code"
expect_contains "line of the input file" "badinput.test.toml:5:8: input file" "$(cat err.txt)"
expect_contains "its line" "bad.jsonl: line 2: expected a JSON object" "$(cat err.txt)"
printf '[[test]\n' > notoml.test.toml
mh-route test shop.toml --tests notoml.test.toml > /dev/null 2> err.txt; code=$?
expect_eq "not TOML" 78 "$code"
expect_contains "not valid TOML" "notoml.test.toml:1:" "$(cat err.txt)"

begin "MH_NOW sets the wall clock every tool starts from (RFC 3339 or ns); a bad one is said and ignored"
t=$(MH_NOW=2030-01-01T00:00:00Z mh-gen --count 1 | mh-cat --to json --time rfc3339 | jq -r .time)
expect_contains "RFC 3339" "2030-01-01T00:00:0" "$t"
t=$(MH_NOW=1893456000000000000 mh-gen --count 1 | mh-cat --to json --time rfc3339 | jq -r .time)
expect_contains "nanoseconds" "2030-01-01T00:00:0" "$t"
t=$(MH_NOW=soon mh-gen --count 1 2> err.txt | mh-cat --to json --time rfc3339 | jq -r .time)
expect_eq "the real clock" "no" "$([[ "$t" == 2030-* ]] && echo yes || echo no)"
expect_contains "said" "mh: MH_NOW=soon is neither RFC 3339 nor integer nanoseconds: the real clock is used" "$(cat err.txt)"

finish
