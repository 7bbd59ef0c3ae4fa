# Input: [messages, alerts]. Output per detector: injected episodes (truth), alerts raised,
# alerts that match an injected episode (true_alerts), episodes with an alert (found).
def spike_alerts: [.[1][] | select(.detector == "zscore")];
def stuck_alerts: [.[1][] | select(.detector == "stuck")];
def silence_alerts: [.[1][] | select(.detector == "silence")];
. as $in
| ($in[0] | group_by(.source) | map(sort_by(.time))) as $by_source
| ([$in[0][] | select(.anomaly == "spike") | "\(.source)|\(.time)"]) as $spikes
| ([$by_source[] | . as $m | range(0; length)
    | select($m[.].anomaly == "stuck" and (. == 0 or $m[. - 1].anomaly != "stuck")) | . as $i
    | (([range($i; $m | length) | select($m[.].anomaly != "stuck")] | first) // ($m | length)) as $e
    | {source: $m[$i].source, first: $m[$i].time, last: $m[$e - 1].time}]) as $stuck
| ([$by_source[] | . as $m | range(1; length) | select($m[.].anomaly == "silent-end")
    | {source: $m[.].source, last_seen: $m[. - 1].time}]) as $silences
| ($in | spike_alerts) as $sa | ($in | stuck_alerts) as $ta | ($in | silence_alerts) as $la
| {
  spike: {truth: ($spikes | length), alerts: ($sa | length),
          true_alerts: ($sa | map(select("\(.source)|\(.time)" as $k | $spikes | index([$k]))) | length),
          found: ([$spikes[] | . as $k | select($sa | any("\(.source)|\(.time)" == $k))] | length)},
  stuck: {truth: ($stuck | length), alerts: ($ta | length),
          true_alerts: ($ta | map(. as $a | select($stuck | any(.source == $a.source and .first <= $a.time and $a.time <= .last))) | length),
          found: ([$stuck[] | . as $e | select($ta | any(.source == $e.source and $e.first <= .time and .time <= $e.last))] | length)},
  silence: {truth: ($silences | length), alerts: ($la | length),
          true_alerts: ($la | map(. as $a | select($silences | any(.source == $a.source and .last_seen == $a.last_seen))) | length),
          found: ([$silences[] | . as $e | select($la | any(.source == $e.source and .last_seen == $e.last_seen))] | length)}
}
