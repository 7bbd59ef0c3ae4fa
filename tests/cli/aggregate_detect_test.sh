#!/usr/bin/env bash
# mh-aggregate --detect on generated data: anomalies injected by hand with jq, and by
# mh-gen --anomalies with labels; the detectors must find them (recall) and raise nothing
# else (precision), and raise nothing at all on clean data.
source "$(dirname "$0")/lib.sh"
SCORE="$MH_SOURCE/tests/cli/aggregate_score.jq"

DETECT=(--window 1h --by source --detect 'spike=zscore(temperature) > 6'
        --detect 'stuck=stuck(humidity, 10s)' --detect 'silent=silence(10s)')
alerts_of() { mh-aggregate "${DETECT[@]}" | mh-filter 'kind == "alert"' | mh-cat --to json; }

mh-gen --count 20000 --seed 21 --sources 20 | mh-cat --to json > clean.jsonl

begin "clean data: no alert"
mh-cat --from json < clean.jsonl | alerts_of > clean_alerts.jsonl
expect_eq "alerts on clean data" "" "$(cat clean_alerts.jsonl)"

begin "anomalies injected with jq: a spike, a stuck humidity, a silent sensor"
# sensor-000003: temperature +12 at its 200th report; sensor-000005: humidity frozen for
# reports 300-340; sensor-000007: reports 500-540 removed.
jq -c --slurp '
  (map(select(.source == "sensor-000003")) | .[200].id) as $spike
  | (map(select(.source == "sensor-000005")) | .[300:341] | map(.id)) as $stuck
  | (map(select(.source == "sensor-000005")) | .[300].humidity) as $h
  | (map(select(.source == "sensor-000007")) | .[500:541] | map(.id)) as $gone
  | .[] | select(.id as $i | $gone | index([$i]) | not)
  | if .id == $spike then .temperature += 12 else . end
  | if (.id as $i | $stuck | index([$i])) then .humidity = $h else . end' clean.jsonl > injected.jsonl
mh-cat --from json < injected.jsonl | alerts_of > injected_alerts.jsonl
expect_eq "the three alerts, in time order" "spike sensor-000003|stuck sensor-000005|silent sensor-000007" \
  "$(jq -r '"\(.rule) \(.source)"' injected_alerts.jsonl | paste -sd'|')"
spike_time=$(jq -s -r 'map(select(.source == "sensor-000003"))[200].time' injected.jsonl)
expect_eq "spike at the injected message" "$spike_time" "$(jq -r 'select(.rule == "spike") | .time' injected_alerts.jsonl)"
expect_eq "spike score above 6, value reported" "true" \
  "$(jq -r --argjson t "$(jq -s 'map(select(.source == "sensor-000003"))[200].temperature' injected.jsonl)" \
    'select(.rule == "spike") | (.score > 6 and .value == $t)' injected_alerts.jsonl)"
expect_eq "stuck since the first frozen report" "$(jq -s -r 'map(select(.source == "sensor-000005"))[300].time' injected.jsonl)" \
  "$(jq -r 'select(.rule == "stuck") | .since' injected_alerts.jsonl)"
expect_eq "silent since the last report before the gap" "$(jq -s -r 'map(select(.source == "sensor-000007"))[499].time' injected.jsonl)" \
  "$(jq -r 'select(.rule == "silent") | .last_seen' injected_alerts.jsonl)"
expect_eq "alert keys" '["id","time","ingested","source","kind","rule","detector","field","score","value","mean","stddev"]' \
  "$(jq -c 'select(.rule == "spike") | keys_unsorted' injected_alerts.jsonl)"

begin "mh-gen --anomalies: precision and recall"
mh-gen --count 60000 --seed 9 --sources 40 --anomalies 0.001 --label-anomalies > labeled.frames
mh-cat --to json < labeled.frames > labeled.jsonl
DETECT=(--window 1h --by source --detect 'spike=zscore(temperature) > 6'
        --detect 'stuck=stuck(temperature, 10s)' --detect 'silent=silence(10s)')
alerts_of < labeled.frames > labeled_alerts.jsonl
score=$(jq -s -c -f "$SCORE" <(jq -s . labeled.jsonl) <(jq -s . labeled_alerts.jsonl))
echo "detection on mh-gen --seed 9 --anomalies 0.001: $score"
for d in spike stuck silence; do
  expect_eq "$d: every alert is an injected anomaly (precision 1)" \
    "$(jq ".$d.alerts" <<< "$score")" "$(jq ".$d.true_alerts" <<< "$score")"
done
expect_eq "stuck: every episode found" "$(jq .stuck.truth <<< "$score")" "$(jq .stuck.found <<< "$score")"
expect_eq "silence: every episode found" "$(jq .silence.truth <<< "$score")" "$(jq .silence.found <<< "$score")"
# Spikes within a source's first 2/alpha = 40 reports only warm the baseline up.
expect_eq "spike: recall >= 0.9" "true" "$(jq '.spike.found >= 0.9 * .spike.truth' <<< "$score")"
expect_eq "there were anomalies of each kind" "true" \
  "$(jq '.spike.truth > 5 and .stuck.truth > 5 and .silence.truth > 5' <<< "$score")"

finish
