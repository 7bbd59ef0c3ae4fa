#!/usr/bin/env bash
# mh-filter between mh-gen and mh-cat: what passes, every transform checked field by field
# with jq, rejects, alerts in the stream and on their own output, barriers in order,
# sampling and deduplication, counters, bad expressions, and jq as an oracle.
source "$(dirname "$0")/lib.sh"

mh-gen --count 2000 --seed 5 --sources 50 > gen.frames
mh-cat --to json < gen.frames > gen.jsonl
total=$(wc -l < gen.jsonl)

begin "pass and transform: every output line checked field by field"
mh-filter 'temperature > 22' --set 'temperature_f=round(temperature * 9 / 5 + 32, 2)' \
  --set 'hot=temperature_f > 75' --rename humidity=rh --drop pressure --kind warm \
  < gen.frames > out.frames 2> err.txt; code=$?
expect_eq "exit code" 0 "$code"
expect_eq "no diagnostics" "" "$(cat err.txt)"
mh-cat --to json < out.frames > out.jsonl
expect_eq "the ids jq selects, in order" "$(jq -r 'select(.temperature > 22) | .id' gen.jsonl)" \
  "$(jq -r .id out.jsonl)"
expect_eq "key order: header, input fields renamed in place, --set fields appended" \
  '["id","time","ingested","source","gateway","kind","temperature","rh","battery","temperature_f","hot"]' \
  "$(jq -c keys_unsorted out.jsonl | sort -u)"
# Each output line against its input line, by id.
bad=$(jq -n -r --slurpfile in gen.jsonl --slurpfile out out.jsonl '
  ($in | map({(.id): .}) | add) as $by_id
  | $out[] | . as $o | $by_id[$o.id] as $i
  | select(($o.kind != "warm") or ($o.temperature != $i.temperature) or ($o.rh != $i.humidity)
           or ($o.battery != $i.battery) or ($o.time != $i.time) or ($o.source != $i.source)
           or ($o.gateway != $i.gateway) or ($o.ingested != $i.ingested)
           or ((($i.temperature * 9 / 5 + 32) * 100 | round) / 100 - $o.temperature_f | fabs) > 1e-9
           or ($o.hot != ($o.temperature_f > 75)))
  | $o.id')
expect_eq "lines that differ from the input where they should not" "" "$bad"
expect_contains "some are hot" "true" "$(jq -r .hot out.jsonl | sort -u | paste -sd,)"
expect_contains "some are not" "false" "$(jq -r .hot out.jsonl | sort -u | paste -sd,)"

begin "without a transform the passing frames are the input's bytes"
mh-filter 'true' < gen.frames > same.frames
expect_files_equal "EXPR true" gen.frames same.frames
mh-filter < gen.frames > same.frames
expect_files_equal "no EXPR" gen.frames same.frames
mh-filter --drop no_such_field --rename nor_this=that < gen.frames > same.frames
expect_files_equal "transforms that change nothing" gen.frames same.frames

begin "--keep keeps the named fields only"
mh-filter --keep humidity,battery < gen.frames | mh-cat --to json > kept.jsonl
expect_eq "keys" '["id","time","ingested","source","gateway","kind","humidity","battery"]' \
  "$(jq -c keys_unsorted kept.jsonl | sort -u)"
expect_eq "values unchanged" "$(jq -c '[.id, .humidity, .battery]' gen.jsonl)" \
  "$(jq -c '[.id, .humidity, .battery]' kept.jsonl)"

begin "--rejects gets what fails, unchanged; --invert passes the same"
mh-filter 'temperature > 22' --rejects rejects.frames < gen.frames > passed.frames
mh-filter --invert 'temperature > 22' < gen.frames > inverted.frames
expect_files_equal "rejects equal the inverted filter's output" rejects.frames inverted.frames
passed=$(mh-cat --to json < passed.frames | wc -l)
rejected=$(mh-cat --to json < rejects.frames | wc -l)
expect_eq "passed + rejected" "$total" "$((passed + rejected))"
expect_eq "rejected ones fail the test" "false" \
  "$(mh-cat --to json < rejects.frames | jq '.temperature > 22' | sort -u)"

begin "--alert in the data stream: each alert right after its message"
mh-filter --alert 'hot=temperature > 24 and humidity < 60' < gen.frames | mh-cat --to json > alerted.jsonl
alerts=$(jq -c 'select(.kind == "alert")' alerted.jsonl | wc -l)
expect_eq "one alert per crossing" "$(jq -c 'select(.temperature > 24 and .humidity < 60)' gen.jsonl | wc -l)" "$alerts"
[ "$alerts" -gt 0 ] && pass || fail "no alerts raised"
bad=$(jq -s -r '
  [range(1; length) as $k | .[$k] as $a | .[$k - 1] as $m | select($a.kind == "alert")
   | select($a.origin_id != $m.id or $a.rule != "hot" or $a.expr != "temperature > 24 and humidity < 60"
            or $a.temperature != $m.temperature or $a.humidity != $m.humidity
            or $a.source != $m.source or $a.gateway != $m.gateway or $a.time != $m.time
            or $a.ingested != $m.ingested or $a.id == $m.id or ($a.id[0:13] != $m.id[0:13])
            or ($a | has("pressure")))
   | $a.id] | .[]' alerted.jsonl)
expect_eq "alerts that do not match their message" "" "$bad"
expect_eq "alert keys" '["id","time","ingested","source","gateway","kind","rule","expr","origin_id","temperature","humidity"]' \
  "$(jq -c 'select(.kind == "alert") | keys_unsorted' alerted.jsonl | sort -u)"
expect_eq "data messages unchanged" "$(cat gen.jsonl)" "$(grep -v '"kind":"alert"' alerted.jsonl)"

begin "--alert-out: alerts on their own output, the same ids on a replay"
mh-filter --alert 'hot=temperature > 24 and humidity < 60' --alert-out alerts.frames < gen.frames > data.frames
expect_files_equal "data stream without alerts" gen.frames data.frames
expect_eq "alerts there" "$(grep '"kind":"alert"' alerted.jsonl)" "$(mh-cat --to json < alerts.frames)"
mh-filter --alert 'hot=temperature > 24 and humidity < 60' --alert-out alerts2.frames < gen.frames > /dev/null
expect_files_equal "replay" alerts.frames alerts2.frames
expect_eq "unique alert ids" "$alerts" "$(mh-cat --to json < alerts.frames | jq -r .id | sort -u | wc -l)"

begin "barriers reach every output in order"
cat > barriers.jsonl <<'JSON'
{"source":"s1","time":1,"temperature":31.0}
{"$barrier":1,"time":2}
{"source":"s2","time":3,"temperature":20.0}
{"$barrier":2,"time":4}
{"source":"s3","time":5,"temperature":36.0}
JSON
mh-cat --from json < barriers.jsonl \
  | mh-filter 'temperature > 30' --rejects rejected.frames --alert 'scorching=temperature > 35' \
      --alert-out barrier-alerts.frames > kept.frames
summary() { mh-cat --to json < "$1" | jq -r 'if has("$barrier") then "b\(."$barrier")" else .source // "?" end' | paste -sd' '; }
expect_eq "data" "s1 b1 b2 s3" "$(summary kept.frames)"
expect_eq "rejects" "b1 s2 b2" "$(summary rejected.frames)"
expect_eq "alerts" "b1 b2 s3" "$(summary barrier-alerts.frames)"

begin "--sample keeps about its share, the same messages every run"
mh-gen --count 20000 --seed 6 > many.frames
mh-filter --sample 0.1 < many.frames > sampled.frames
mh-filter --sample 0.1 < many.frames > sampled2.frames
expect_files_equal "the same messages" sampled.frames sampled2.frames
kept=$(mh-cat --to json < sampled.frames | wc -l)
[ "$kept" -ge 1800 ] && [ "$kept" -le 2200 ] && pass || fail "--sample 0.1 kept $kept of 20000"

begin "--dedup drops repeated ids; its cap evicts, counts and says so"
cat gen.frames gen.frames > twice.frames
mh-filter --dedup 10m < twice.frames > deduped.frames 2> err.txt
expect_files_equal "every id once" gen.frames deduped.frames
expect_eq "quiet" "" "$(cat err.txt)"
mh-filter --dedup 10m --dedup-max 100 < twice.frames > capped.frames 2> err.txt
expect_eq "all pass again: the first ids were forgotten" "$((2 * total))" "$(mh-cat --to json < capped.frames | wc -l)"
expect_contains "warned" "--dedup-max 100 reached" "$(cat err.txt)"
expect_eq "warned once, summed at the end" 2 "$(grep -c dedup-max err.txt)"

begin "--metrics counts in, out, dropped by reason and alerts"
mh-filter 'temperature > 22' --dedup 1h --alert 'hot=temperature > 24' --in "@ipc://$WORK/filter.sock" \
  --metrics 127.0.0.1:0 > /dev/null 2> metered.err &
metered=$!; BACKGROUND_PIDS+=($metered)
wait_until 10 grep -q 'metrics on port' metered.err || fail "no metrics port logged: $(cat metered.err)"
port=$(grep -o 'metrics on port [0-9]*' metered.err | grep -o '[0-9]*$')
mh-cat --out ">ipc://$WORK/filter.sock" < twice.frames
counted() { scrape_metrics "$port" metrics.txt && grep -q "^mh_messages_in_total $((2 * total))\$" metrics.txt; }
wait_until 10 counted || fail "in counter never reached $((2 * total)): $(grep mh_messages metrics.txt)"
kept=$(jq -c 'select(.temperature > 22)' gen.jsonl | wc -l)
hot=$(jq -c 'select(.temperature > 24)' gen.jsonl | wc -l)
m=$(cat metrics.txt)
expect_contains "out: the passing messages and the alerts" "mh_messages_out_total $((kept + hot))" "$m"
expect_contains "duplicates" "mh_dropped_total{reason=\"duplicate\"} $total" "$m"
expect_contains "filtered" "mh_dropped_total{reason=\"filtered\"} $((total - kept))" "$m"
expect_contains "sampled" "mh_dropped_total{reason=\"sampled\"} 0" "$m"
expect_contains "alerts" "mh_alerts_total $hot" "$m"
expect_contains "evictions" "mh_dedup_evicted_total 0" "$m"
expect_eq "one HELP per metric name" "" "$(grep '^# HELP' metrics.txt | sort | uniq -d)"
kill -TERM $metered; wait_pid_exit 10 $metered
expect_eq "exit on SIGTERM" 0 "$EXIT_CODE"

begin "a bad expression: the expression, a caret under the column, what was expected; exit 64"
mh-filter 'temperature > 30' --set 'temperature_f=temperature * / 5' < gen.frames > out.frames 2> err.txt; code=$?
expect_eq "exit code" 64 "$code"
expect_eq "nothing written" 0 "$(stat -c %s out.frames)"
expect_eq "three lines" 3 "$(wc -l < err.txt)"
expect_contains "names the option" "mh-filter: error: bad expression in --set temperature_f: " "$(head -1 err.txt)"
expect_contains "says what was expected" "expected" "$(cat err.txt)"
# The caret stands under the '/' of the line that shows the expression.
expression_line=$(grep -F 'temperature * / 5' err.txt | head -1)
caret_line=$(grep -F '^' err.txt | head -1)
slash=${expression_line%%'/'*}
caret=${caret_line%%'^'*}
expect_eq "caret column" "${#slash}" "${#caret}"

mh-filter 'temperature >> 30' < /dev/null 2> err.txt; code=$?
expect_eq "EXPR: exit code" 64 "$code"
expect_contains "EXPR: names it" "mh-filter: error: bad expression: " "$(head -1 err.txt)"
mh-filter --alert 'hot=temperature > ' < /dev/null 2> err.txt; code=$?
expect_eq "--alert: exit code" 64 "$code"
expect_contains "--alert: names the rule" "bad expression in --alert hot: " "$(head -1 err.txt)"

begin "bad --set syntax and other bad options: exit 64 with the reason"
mh-filter --set 'temperature * 2' < /dev/null 2> err.txt; code=$?
expect_eq "exit code" 64 "$code"
expect_contains "message" "mh-filter: error: --set 'temperature * 2': expected NAME=EXPR" "$(cat err.txt)"
mh-filter --set 'time=1' < /dev/null 2> err.txt; code=$?
expect_eq "a header: exit code" 64 "$code"
expect_contains "a header" "time is a header, not a field" "$(cat err.txt)"
mh-filter --sample 1.5 < /dev/null 2> err.txt; code=$?
expect_eq "--sample out of range" 64 "$code"
mh-filter --dedup soon < /dev/null 2> err.txt; code=$?
expect_eq "--dedup not a duration" 64 "$code"
expect_contains "--dedup message" "--dedup 'soon'" "$(cat err.txt)"
mh-filter --dedup-max 5 < /dev/null 2> err.txt; code=$?
expect_eq "--dedup-max without --dedup" 64 "$code"
mh-filter --invert < /dev/null 2> err.txt; code=$?
expect_eq "--invert without EXPR" 64 "$code"

begin "oracle: the ids mh-filter keeps are the ids jq selects"
mh-gen --count 20000 --seed 5 --sources 200 --anomalies 0.01 --label-anomalies > oracle.frames
mh-cat --to json < oracle.frames > oracle.jsonl
check_oracle() {  # check_oracle MH_EXPR JQ_CONDITION
  mh-filter "$1" < oracle.frames | mh-cat --to json | jq -r .id | sort > ours.txt
  jq -r "select($2) | .id" oracle.jsonl | sort > theirs.txt
  local n; n=$(wc -l < theirs.txt)
  # Thresholds chosen so that a good share passes and a good share does not.
  if [ "$n" -ge 2000 ] && [ "$n" -le 18000 ]; then pass; else fail "'$1' selects $n of 20000: not a telling test"; fi
  expect_files_equal "$1" theirs.txt ours.txt
}
check_oracle 'temperature > 21.5 and humidity < 55' '.temperature > 21.5 and .humidity < 55'
check_oracle 'not (temperature <= 21.5 or humidity >= 55) or anomaly in ["spike", "stuck"]' \
  '(.temperature > 21.5 and .humidity < 55) or .anomaly == "spike" or .anomaly == "stuck"'
check_oracle 'source like "sensor-0000*" or battery < 90.5' \
  '(.source | startswith("sensor-0000")) or .battery < 90.5'

begin "accounting: in + alerts = out + dropped + rejected, alerts counted as out wherever they go"
metric() { awk -v n="$1" '$1 == n { print $2 }' "$2"; }
mh-gen --count 3000 --seed 8 --sources 30 > acct.frames
mh-cat --to json < acct.frames > acct.jsonl
want_alerts=$(jq -c 'select(.temperature > 23)' acct.jsonl | wc -l)
want_pass=$(jq -c 'select(.humidity < 60)' acct.jsonl | wc -l)
want_pass_alerts=$(jq -c 'select(.humidity < 60 and .temperature > 23)' acct.jsonl | wc -l)
[ "$want_alerts" -gt 20 ] && [ "$want_pass" -gt 300 ] && [ "$want_pass" -lt 2700 ] && pass \
  || fail "not a telling input: $want_alerts alerts, $want_pass passing"
MH_METRICS_FINAL="$WORK/acct1.prom" mh-filter --alert 'hot=temperature > 23' < acct.frames > acct1.out
expect_eq "alerts raised" "$want_alerts" "$(metric mh_alerts_total acct1.prom)"
expect_eq "out = passed + alerts" "$((3000 + want_alerts))" "$(metric mh_messages_out_total acct1.prom)"
expect_eq "out = what was written" "$(mh-cat --to json < acct1.out | wc -l)" "$(metric mh_messages_out_total acct1.prom)"
expect_eq "bytes out = bytes written" "$(stat -c %s acct1.out)" "$(metric mh_bytes_out_total acct1.prom)"
MH_METRICS_FINAL="$WORK/acct2.prom" mh-filter 'humidity < 60' --alert 'hot=temperature > 23' \
  --alert-out acct2.alerts < acct.frames > acct2.out
expect_eq "in" 3000 "$(metric mh_messages_in_total acct2.prom)"
expect_eq "dropped: filtered" "$((3000 - want_pass))" "$(metric 'mh_dropped_total{reason="filtered"}' acct2.prom)"
expect_eq "alerts on --alert-out are counted out too" "$((want_pass + want_pass_alerts))" \
  "$(metric mh_messages_out_total acct2.prom)"
expect_eq "in + alerts = out + dropped" "$((3000 + $(metric mh_alerts_total acct2.prom)))" \
  "$(($(metric mh_messages_out_total acct2.prom) + $(metric 'mh_dropped_total{reason="filtered"}' acct2.prom)))"

finish
