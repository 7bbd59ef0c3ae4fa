#!/usr/bin/env bash
# mh-aggregate between mh-gen and mh-cat: tumbling and hopping windows per source against
# jq's own computation of the same windows, session windows, out-of-order and late data,
# barriers in order, idle close, wall clock, the group cap, and bad options.
source "$(dirname "$0")/lib.sh"

S=1000000000  # ns per second
json_to_frames() { mh-cat --from json; }
to_json() { mh-cat --to json; }

mh-gen --count 6000 --seed 11 --sources 25 > gen.frames
to_json < gen.frames > gen.jsonl
total=$(wc -l < gen.jsonl)

# Rounds to 1e-6 so that summation order cannot matter; window index = floor(start / size).
oracle_round='def r: (. * 1000000 | round) / 1000000;'

begin "tumbling 10s by source: count, sum, min, max, mean equal jq's"
mh-aggregate --window 10s --by source \
  --agg 'count(), sum(temperature), min(temperature), max(temperature), mean(temperature) as avg' \
  < gen.frames > tumbling.frames 2> err.txt; code=$?
expect_eq "exit code" 0 "$code"
expect_eq "no diagnostics" "" "$(cat err.txt)"
to_json < tumbling.frames > tumbling.jsonl
jq -s -c "$oracle_round"' group_by([.source, ((.time / 1e10) | floor)])[]
  | [.[0].source, ((.[0].time / 1e10) | floor), length, (map(.temperature) | add | r),
     (map(.temperature) | min | r), (map(.temperature) | max | r), ((map(.temperature) | add) / length | r)]' \
  gen.jsonl | sort > expected.txt
jq -c "$oracle_round"' [.source, ((.window_start / 1e10) | floor), .count, (.sum_temperature | r),
  (.min_temperature | r), (.max_temperature | r), (.avg | r)]' tumbling.jsonl | sort > actual.txt
expect_files_equal "windows and aggregates" expected.txt actual.txt
expect_eq "every message counted once" "$total" "$(jq -s 'map(.count) | add' tumbling.jsonl)"
expect_eq "window length" "10000000000" "$(jq '.window_end - .window_start' tumbling.jsonl | sort -u)"
expect_eq "header time is the window end" "true" "$(jq '.time == .window_end' tumbling.jsonl | sort -u)"
expect_eq "kind" "aggregate" "$(jq -r .kind tumbling.jsonl | sort -u)"
expect_eq "key order" '["id","time","ingested","source","kind","window_start","window_end","count","sum_temperature","min_temperature","max_temperature","avg"]' \
  "$(jq -c keys_unsorted tumbling.jsonl | sort -u)"
mh-aggregate --window 10s --by source \
  --agg 'count(), sum(temperature), min(temperature), max(temperature), mean(temperature) as avg' \
  < gen.frames | to_json | jq -c 'del(.ingested)' > again.jsonl
expect_eq "a rerun gives the same ids and values" "$(jq -c 'del(.ingested)' tumbling.jsonl)" "$(cat again.jsonl)"

begin "hopping 10s every 5s: each message in two windows, counts equal jq's"
mh-aggregate --window 10s --hop 5s --by source --agg 'count(), max(humidity)' < gen.frames | to_json > hopping.jsonl
expect_eq "counted twice" "$((2 * total))" "$(jq -s 'map(.count) | add' hopping.jsonl)"
jq -s -c '[.[] | . as $m | ((.time / 5e9) | floor) as $k | ($k, $k - 1) | {source: $m.source, w: ., h: $m.humidity}]
  | group_by([.source, .w])[] | [.[0].source, .[0].w, length, (map(.h) | max)]' gen.jsonl | sort > expected.txt
jq -c '[.source, ((.window_start / 5e9) | floor), .count, .max_humidity]' hopping.jsonl | sort > actual.txt
expect_files_equal "hopping windows" expected.txt actual.txt

begin "group by a field and by gateway; without --by one group"
mh-gen --count 600 --seed 3 --sources 12 --gateways 3 | mh-aggregate --window 1m --by gateway --agg 'count(), distinct(source)' | to_json > gw.jsonl
expect_eq "three gateways" "3" "$(wc -l < gw.jsonl)"
expect_eq "four sources each" "4" "$(jq .distinct_source gw.jsonl | sort -u)"
mh-aggregate --window 1h < gen.frames | to_json > all.jsonl
expect_eq "one window, every message" "$total" "$(jq .count all.jsonl)"
expect_eq "no source on a global window" "null" "$(jq .source all.jsonl)"
printf '%s\n' '{"source":"a","time":1000000000,"site":"north","v":1}' '{"source":"b","time":1000000000,"site":"north","v":2}' \
  '{"source":"c","time":1000000000,"site":"south","v":5}' '{"source":"d","time":1000000000,"v":7}' \
  | json_to_frames | mh-aggregate --window 10s --by site --agg 'count(),sum(v)' | to_json > site.jsonl
expect_eq "by a field, missing is a group of its own" '{"site":"north","count":2,"sum_v":3} {"site":"south","count":1,"sum_v":5} {"count":1,"sum_v":7}' \
  "$(jq -c '{site, count, sum_v} | with_entries(select(.value != null))' site.jsonl | paste -sd' ')"

begin "out of order within --lateness counts; later than that is late, sent to --late"
{
  for t in 1 2 3 11 4 12 13 25 5 26 27; do echo "{\"source\":\"s\",\"time\":$((t * S)),\"v\":$t}"; done
} | json_to_frames > ooo.frames
mh-aggregate --window 10s --lateness 20s --by source --agg 'count(), sum(v)' --late late.frames < ooo.frames | to_json > ooo.jsonl
expect_eq "windows" '[0,5,15] [10,3,36] [20,3,78]' \
  "$(jq -c '[(.window_start / 1e9), .count, .sum_v]' ooo.jsonl | paste -sd' ')"
expect_eq "nothing late" "" "$(to_json < late.frames)"
mh-aggregate --window 10s --lateness 1s --by source --agg 'count(), sum(v)' --late late.frames < ooo.frames | to_json > ooo.jsonl
expect_eq "windows without the late ones" '[0,3,6] [10,3,36] [20,3,78]' \
  "$(jq -c '[(.window_start / 1e9), .count, .sum_v]' ooo.jsonl | paste -sd' ')"
expect_eq "late messages, unchanged" "4 5" "$(to_json < late.frames | jq .v | paste -sd' ')"

begin "session windows: a gap of inactivity ends one, a bridging message merges two"
{
  for t in 0 1 2 10 11 30; do echo "{\"source\":\"a\",\"time\":$((t * S)),\"v\":$t}"; done
  echo "{\"source\":\"b\",\"time\":$((3 * S)),\"v\":100}"
} | json_to_frames | mh-aggregate --session 5s --lateness 30s --by source --agg 'count(), sum(v), first(v), last(v)' | to_json > sessions.jsonl
expect_eq "sessions" '["a",0,7,3,3,0,2] ["b",3,8,1,100,100,100] ["a",10,16,2,21,10,11] ["a",30,35,1,30,30,30]' \
  "$(jq -c '[.source, (.window_start / 1e9), (.window_end / 1e9), .count, .sum_v, .first_v, .last_v]' sessions.jsonl | paste -sd' ')"
{
  for t in 0 1 8 9 5; do echo "{\"source\":\"a\",\"time\":$((t * S)),\"v\":$t}"; done
} | json_to_frames | mh-aggregate --session 5s --lateness 30s --by source --agg 'count(), min(v), max(v)' | to_json > merged.jsonl
expect_eq "5 bridges [0,6) and [8,14)" '[0,14,5,0,9]' \
  "$(jq -c '[(.window_start / 1e9), (.window_end / 1e9), .count, .min_v, .max_v]' merged.jsonl | paste -sd' ')"

begin "barriers pass in order: after every window that closed before them"
{
  for t in 1 2; do echo "{\"source\":\"s\",\"time\":$((t * S)),\"v\":$t}"; done
  echo '{"$barrier":1,"time":7}'
  for t in 12 13; do echo "{\"source\":\"s\",\"time\":$((t * S)),\"v\":$t}"; done
  echo '{"$barrier":2,"time":8}'
  echo "{\"source\":\"s\",\"time\":$((25 * S)),\"v\":25}"
} | json_to_frames | mh-aggregate --window 10s --lateness 0 --by source --late late.frames | to_json > barriers.jsonl
expect_eq "order" 'barrier 1|window 0|barrier 2|window 10|window 20' \
  "$(jq -r 'if has("$barrier") then "barrier \(."$barrier")" else "window \(.window_start / 1e9)" end' barriers.jsonl | paste -sd'|')"
expect_eq "barriers also on --late" "1 2" "$(to_json < late.frames | jq '."$barrier"' | paste -sd' ')"

begin "--idle closes open windows while the input stays open"
mkfifo idle.fifo
mh-aggregate --window 1h --idle 200ms --by source --in idle.fifo > idle.frames 2> idle.err &
pid=$!; BACKGROUND_PIDS+=("$pid")
exec 7> idle.fifo
mh-gen --count 50 --seed 2 --sources 5 >&7
windows_out() { [ "$(to_json < idle.frames 2>/dev/null | wc -l)" -ge 5 ]; }
wait_until 20 windows_out && pass || fail "no windows after --idle"
expect_eq "all 50 counted" "50" "$(to_json < idle.frames | jq -s 'map(.count) | add')"
exec 7>&-
wait_pid_exit 20 "$pid"
expect_eq "exit code" 0 "$EXIT_CODE"

begin "--clock wall: windows of arrival time close on the clock"
mkfifo wall.fifo
mh-aggregate --window 200ms --clock wall --in wall.fifo > wall.frames 2> wall.err &
pid=$!; BACKGROUND_PIDS+=("$pid")
exec 7> wall.fifo
mh-gen --count 30 --seed 2 --sources 3 --start 2001-01-01T00:00:00Z >&7
wall_out() { [ "$(to_json < wall.frames 2>/dev/null | wc -l)" -ge 1 ]; }
wait_until 20 wall_out && pass || fail "no window closed on the wall clock"
now=$(date +%s%N)
expect_eq "the window is of now, not of 2001" "true" \
  "$(to_json < wall.frames | jq --argjson now "$now" '(.window_end - $now | fabs) < 60e9' | head -1)"
exec 7>&-
wait_pid_exit 20 "$pid"
expect_eq "all 30 counted" "30" "$(to_json < wall.frames | jq -s 'map(.count) | add')"

begin "--max-groups: evictions emit early, are counted and logged"
mh-aggregate --window 1h --by source --max-groups 5 --log-level info < gen.frames 2> cap.err | to_json > cap.jsonl
expect_eq "nothing lost" "$total" "$(jq -s 'map(.count) | add' cap.jsonl)"
expect_contains "some evicted" "true" "$(jq -c '.evicted' cap.jsonl | sort -u | paste -sd,)"
expect_contains "logged" "--max-groups 5 reached" "$(cat cap.err)"

begin "percentiles and distinct on generated data against exact values"
mh-aggregate --window 1h --agg 'p50(temperature), p99(temperature), distinct(humidity), stddev(temperature)' < gen.frames | to_json > sk.jsonl
read -r exact50 exact99 exact_distinct exact_sd < <(jq -s -r '(map(.temperature) | sort) as $t | ($t | length) as $n
  | [$t[(0.5 * ($n - 1) | floor)], $t[(0.99 * ($n - 1) | floor)], (map(.humidity) | unique | length),
     ((($t | map(. * .) | add) - (($t | add) * ($t | add) / $n)) / ($n - 1) | sqrt)] | @tsv' gen.jsonl)
check_rel() { jq -n --argjson a "$1" --argjson b "$2" --argjson tol "$3" '(($a - $b) / $b | fabs) <= $tol'; }
expect_eq "p50 within 1%" true "$(check_rel "$(jq .p50_temperature sk.jsonl)" "$exact50" 0.01)"
expect_eq "p99 within 1%" true "$(check_rel "$(jq .p99_temperature sk.jsonl)" "$exact99" 0.01)"
expect_eq "distinct (exact while small)" "$exact_distinct" "$(jq .distinct_humidity sk.jsonl)"
expect_eq "stddev" true "$(check_rel "$(jq .stddev_temperature sk.jsonl)" "$exact_sd" 1e-9)"

begin "--metrics: in, out, late and windows"
mkfifo metered.fifo
mh-aggregate --window 10s --lateness 1s --by source --in metered.fifo --metrics 127.0.0.1:0 > /dev/null 2> metered.err &
pid=$!; BACKGROUND_PIDS+=("$pid")
exec 7> metered.fifo
wait_until 10 grep -q 'metrics on port' metered.err || fail "no metrics port: $(cat metered.err)"
port=$(grep -o 'metrics on port [0-9]*' metered.err | grep -o '[0-9]*$')
cat ooo.frames >&7
counted() { scrape_metrics "$port" metrics.txt && grep -q '^mh_messages_in_total 11$' metrics.txt; }
wait_until 20 counted || fail "in counter never reached 11: $(grep mh_messages metrics.txt)"
m=$(cat metrics.txt)
expect_contains "late" "mh_aggregate_late_total 2" "$m"
expect_contains "late dropped without --late" 'mh_dropped_total{reason="late"} 2' "$m"
expect_contains "windows closed by the watermark" "mh_aggregate_windows_total 2" "$m"
expect_contains "out" "mh_messages_out_total 2" "$m"
exec 7>&-
wait_pid_exit 20 "$pid"
expect_eq "exit code" 0 "$EXIT_CODE"

begin "bad options: usage errors name what is wrong"
mh-aggregate < /dev/null 2> err.txt; code=$?
expect_eq "no window: exit" 64 "$code"
expect_contains "no window: text" "--window" "$(cat err.txt)"
mh-aggregate --window 1m --agg 'mean()' < /dev/null 2> err.txt; code=$?
expect_eq "mean() without field" 64 "$code"
expect_contains "says what" "mean() needs a field" "$(cat err.txt)"
mh-aggregate --window 1m --agg 'count(), bogus(x)' < /dev/null 2> err.txt
expect_contains "unknown function" "unknown function 'bogus'" "$(cat err.txt)"
mh-aggregate --window 1m --hop 2m < /dev/null 2> err.txt; code=$?
expect_eq "hop > window" 64 "$code"
mh-aggregate --window 1m --agg 'count(), count()' < /dev/null 2> err.txt
expect_contains "duplicate names" "named 'count'" "$(cat err.txt)"
mh-aggregate --window soon < /dev/null 2> err.txt; code=$?
expect_eq "bad duration" 64 "$code"

finish
