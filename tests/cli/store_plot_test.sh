#!/usr/bin/env bash
# mh-store plot: the SVG parses as XML (xmllint), has one polyline per series, reads only
# the chosen sources' index entries, holds at most two points per pixel column, and its
# plotted points map back to the minimum and maximum of the data as jq computes them.
source "$(dirname "$0")/lib.sh"

if ! command -v xmllint > /dev/null; then
  echo "store_plot_test: xmllint is missing (scripts/install-deps.sh installs libxml2-utils)" >&2
  exit 1
fi

xp() { xmllint --xpath "$1" "$2" 2> /dev/null; }
line_attr() { xp "string((//*[local-name()='polyline'])[$2]/@$3)" "$1"; }  # FILE INDEX ATTRIBUTE
# The points of a polyline as "count min_y max_y" (pixel rows: smaller is higher).
point_stats() {
  tr ' ' '\n' <<< "$1" | awk -F, 'NF == 2 { n++; if (n == 1 || $2 < lo) lo = $2; if (n == 1 || $2 > hi) hi = $2 }
                                 END { printf "%d %s %s\n", n, lo, hi }'
}
# jq's minimum and maximum of FIELD over SOURCES (a jq array literal), as "min max".
data_range() {
  jq -s -r --argjson sources "$1" --arg field "$2" \
    '[.[] | select(.source as $s | $sources | index($s)) | .[$field] | numbers] | "\(min) \(max)"' all.jsonl
}
same_number() { awk -v a="$1" -v b="$2" -v tol="${3:-0}" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= tol) }'; }

mh-gen --count 20000 --seed 4 > gen.frames
mh-cat --to json < gen.frames > all.jsonl
mh-store append --db D < gen.frames

begin "two fields of three sources (a name and a glob): one polyline each, from the index"
mh-store plot --db D --source sensor-000007 --source 'sensor-00000[12]' --field temperature --field humidity \
  --width 400 --height 320 -o chart.svg --log-level debug 2> err.txt
expect_eq "exit code" 0 "$?"
xmllint --noout chart.svg 2> xml.err; expect_eq "parses as XML: $(cat xml.err)" 0 "$?"
expect_eq "polylines" 6 "$(xp "count(//*[local-name()='polyline'])" chart.svg)"
expect_contains "only the three sources' index entries were read" "read 6000 index entries" "$(cat err.txt)"
expect_eq "self-contained: no external reference" 0 "$(grep -cE 'href|url\(' chart.svg)"

top=$(xp "string(//*[@class='plot-area']/@y)" chart.svg)
height=$(xp "string(//*[@class='plot-area']/@height)" chart.svg)
width=$(xp "string(//*[@class='plot-area']/@width)" chart.svg)
ymax=$(xp "string(//*[@class='y-max'])" chart.svg)
ymin=$(xp "string(//*[@class='y-min'])" chart.svg)
read -r data_min data_max <<< "$(data_range '["sensor-000007","sensor-000001","sensor-000002"]' temperature)"
read -r hum_min hum_max <<< "$(data_range '["sensor-000007","sensor-000001","sensor-000002"]' humidity)"
all_min=$(awk -v a="$data_min" -v b="$hum_min" 'BEGIN { print (a < b ? a : b) }')
all_max=$(awk -v a="$data_max" -v b="$hum_max" 'BEGIN { print (a > b ? a : b) }')
same_number "$ymax" "$all_max" && pass || fail "value axis top $ymax, data max $all_max"
same_number "$ymin" "$all_min" && pass || fail "value axis bottom $ymin, data min $all_min"

# Every point, mapped back through the axis, per series: its extremes are the data's.
tolerance=$(awk -v r="$ymax" -v s="$ymin" -v h="$height" 'BEGIN { print (r - s) / h * 0.006 }')
lowest=""; highest=""
for i in 1 2 3 4 5 6; do
  source_name=$(line_attr chart.svg "$i" data-source); field=$(line_attr chart.svg "$i" data-field)
  read -r count low_px high_px <<< "$(point_stats "$(line_attr chart.svg "$i" points)")"
  [ "$count" -gt 0 ] && [ "$count" -le $((2 * 400)) ] && pass || fail "$source_name $field: $count points for 400 pixels"
  [ "$count" -le $((2 * width)) ] && pass || fail "$source_name $field: $count points for $width columns"
  read -r want_min want_max <<< "$(data_range "[\"$source_name\"]" "$field")"
  got_max=$(awk -v p="$low_px" -v t="$top" -v h="$height" -v a="$ymin" -v b="$ymax" 'BEGIN { printf "%.9f", b - (p - t) / h * (b - a) }')
  got_min=$(awk -v p="$high_px" -v t="$top" -v h="$height" -v a="$ymin" -v b="$ymax" 'BEGIN { printf "%.9f", b - (p - t) / h * (b - a) }')
  same_number "$got_max" "$want_max" "$tolerance" && pass || fail "$source_name $field: plotted max $got_max, data $want_max"
  same_number "$got_min" "$want_min" "$tolerance" && pass || fail "$source_name $field: plotted min $got_min, data $want_min"
  lowest=$(awk -v a="$lowest" -v b="$high_px" 'BEGIN { print (a == "" || b > a) ? b : a }')
  highest=$(awk -v a="$highest" -v b="$low_px" 'BEGIN { print (a == "" || b < a) ? b : a }')
done
same_number "$highest" "$top" && pass || fail "the highest point is at $highest, the plot area's top at $top"
same_number "$lowest" "$((top + height))" && pass || fail "the lowest point is at $lowest, the bottom at $((top + height))"

begin "a time range reads only that range of the source's entries"
from=$(jq -s -r '[.[] | select(.source == "sensor-000003")][500].time' all.jsonl)
to=$(jq -s -r '[.[] | select(.source == "sensor-000003")][900].time' all.jsonl)
mh-store plot --db D --source sensor-000003 --field pressure --from "$from" --to "$to" -o range.svg \
  --log-level debug 2> err.txt
expect_eq "exit code" 0 "$?"
expect_contains "400 entries read" "read 400 index entries" "$(cat err.txt)"
read -r want_min want_max <<< "$(jq -s -r --argjson f "$from" --argjson t "$to" \
  '[.[] | select(.source == "sensor-000003" and .time >= $f and .time < $t) | .pressure] | "\(min) \(max)"' all.jsonl)"
same_number "$(xp "string(//*[@class='y-max'])" range.svg)" "$want_max" && pass || fail "range max"
same_number "$(xp "string(//*[@class='y-min'])" range.svg)" "$want_min" && pass || fail "range min"
read -r count _ _ <<< "$(point_stats "$(line_attr range.svg 1 points)")"
[ "$count" -le $((2 * 960)) ] && pass || fail "$count points for the default 960 pixels"

begin "units: given, or derived from a unit field or a name suffix"
mh-store plot --db D --source sensor-000003 --field temperature --unit '°C' -o unit.svg
expect_eq "--unit shown" "°C" "$(xp "string(//*[@class='y-unit'])" unit.svg)"
printf '%s\n' \
  '{"id":"019b76da-a800-7000-a4f1-d71bb64f0f01","time":1000000000,"source":"m<&>\"1","temp_c":20.5,"flow.value":3,"flow.unit":"l/min"}' \
  '{"id":"019b76da-a800-7000-a4f1-d71bb64f0f02","time":2000000000,"source":"m<&>\"1","temp_c":21.25,"flow.value":4,"flow.unit":"l/min"}' \
  | mh-cat --from json | mh-store append --db U
mh-store plot --db U --source 'm<&>"1' --field temp_c --field flow.value -o derived.svg
expect_eq "exit code" 0 "$?"
xmllint --noout derived.svg; expect_eq "a source with markup characters still parses" 0 "$?"
expect_eq "derived units" "°C, l/min" "$(xp "string(//*[@class='y-unit'])" derived.svg)"
expect_eq "the source, escaped and read back" 'm<&>"1' "$(line_attr derived.svg 1 data-source)"

begin "nothing to draw, and bad requests"
mh-store plot --db D --source 'nobody*' --field temperature -o empty.svg 2> err.txt
expect_eq "a glob that matches nothing still draws" 0 "$?"
expect_contains "and says so" "names no stored source" "$(cat err.txt)"
xmllint --noout empty.svg; expect_eq "the empty chart parses" 0 "$?"
mh-store plot --db D --source sensor-000001 -o x.svg 2> err.txt; expect_eq "no --field" 64 "$?"
mh-store plot --db D --source 'sensor-*' --field temperature --height 100 -o x.svg 2> err.txt
expect_eq "no room for the legend" 64 "$?"
expect_contains "says how much is needed" "at least" "$(cat err.txt)"
mh-store plot --db D --source sensor-000001 --field temperature --from 5 --to 4 -o x.svg 2> err.txt
expect_eq "--from after --to" 64 "$?"
mh-store plot --db nowhere --source a --field b -o x.svg 2> err.txt; expect_eq "no store" 74 "$?"

finish
