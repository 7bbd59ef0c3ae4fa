#!/usr/bin/env bash
# mh-cat conversions: JSON -> frames -> JSON is lossless for the flat shape, capnp
# itself reads what we write, CSV and text forms, and nested objects.
source "$(dirname "$0")/lib.sh"

begin "JSON round trip reproduces the input byte for byte"
cat > flat.jsonl <<'JSON'
{"id":"019ac0d2-7e3a-7a2b-8c4d-5e6f708192a3","time":1795706442123000000,"source":"sensor-000001","gateway":"gw-01","kind":"telemetry","temperature":21.5,"humidity":40.0,"count":7,"ok":true,"status":"fine \"quoted\" é °C","body":"raw payload"}
{"time":1795706443000000000,"source":"sensor-000002","kind":"event","door":"open","negative":-3,"tiny":1e-300}
{"$barrier":12,"time":1795706444000000000}
{"source":"sensor-000003","samples":[1,2,3],"nothing":null,"big":123456789012345678901234567890}
JSON
mh-cat --from json < flat.jsonl | mh-cat --to json > back.jsonl; code=$?
expect_eq "exit code" 0 "$code"
expect_files_equal "round trip" flat.jsonl back.jsonl

begin "generated data survives JSON -> frames -> JSON -> frames unchanged"
mh-gen --count 2000 --seed 3 > gen.frames
mh-cat --to json < gen.frames > gen.jsonl
mh-cat --from json < gen.jsonl > gen2.frames
expect_files_equal "frames after a JSON trip" gen.frames gen2.frames
expect_eq "lines" 2000 "$(wc -l < gen.jsonl)"
expect_eq "valid JSON per jq" 2000 "$(jq -c . gen.jsonl | wc -l)"

begin "capnp decode reads what mh-cat writes"
mh-cat --from json < flat.jsonl > flat.frames
decoded=$(capnp decode "$SCHEMA" Message < flat.frames 2>&1)
expect_contains "source" 'source = "sensor-000001"' "$decoded"
expect_contains "a float field" 'name = "temperature", value = (float = 21.5)' "$decoded"
expect_contains "a barrier" 'number = 12' "$decoded"
expect_eq "one message per input line" 4 "$(grep -c '^(' <<< "$decoded")"

begin "nested objects flatten to dotted fields and come back nested"
echo '{"source":"pump-7","motor":{"rpm":1500,"temp":{"winding":71.5}},"ok":true}' > nested.jsonl
mh-cat --from json < nested.jsonl > nested.frames
expect_contains "dotted name" 'name = "motor.temp.winding"' "$(capnp decode "$SCHEMA" Message < nested.frames)"
expect_eq "unflattened" "$(jq -cS . nested.jsonl)" "$(mh-cat --to json < nested.frames | jq -cS .)"

begin "times in RFC 3339 both ways"
echo '{"time":"2026-11-26T15:20:42.5+01:00","source":"a"}' | mh-cat --from json > t.frames
expect_eq "read as UTC nanoseconds" '{"time":1795702842500000000,"source":"a"}' "$(mh-cat --to json < t.frames)"
expect_eq "written as RFC 3339" '"2026-11-26T14:20:42.500Z"' "$(mh-cat --to json --time rfc3339 < t.frames | jq -c .time)"

begin "CSV in and out"
printf 'time,source,temperature,door\n1,s1,21.5,open\n2,s2,,closed\n3,"s,3",22,\n' > in.csv
mh-cat --from csv < in.csv | mh-cat --to json > csv.jsonl
expect_eq "typed cells, empty cells absent" \
  '{"time":1,"source":"s1","temperature":21.5,"door":"open"}|{"time":2,"source":"s2","door":"closed"}|{"time":3,"source":"s,3","temperature":22}' \
  "$(paste -sd'|' csv.jsonl)"
mh-cat --from csv < in.csv | mh-cat --to csv --columns time,source,temperature,door > out.csv
expect_files_equal "CSV round trip" in.csv out.csv

begin "text form for people"
text=$(mh-gen --count 3 --seed 1 | mh-cat --to text)
expect_eq "one line per message" 3 "$(wc -l <<< "$text")"
expect_contains "time, source, kind and fields" "2026-01-01T00:00:00Z sensor-000001 gw-01 telemetry temperature=" "$text"

begin "a big file is read through a mapping: the same as through a pipe, truncation still reported"
mh-gen --count 20000 --seed 2 > big.frames   # ~7 MB, over the size that is mapped
mh-cat --to json < big.frames > big-file.jsonl
cat big.frames | mh-cat --to json > big-pipe.jsonl
expect_files_equal "frames from the file = through a pipe" big-pipe.jsonl big-file.jsonl
expect_eq "all of them" 20000 "$(wc -l < big-file.jsonl)"
mh-cat --from json < big-file.jsonl > big-again.frames
cmp -s big.frames big-again.frames && pass || fail "JSON lines from the file did not give the same frames"
head -c $(( $(stat -c %s big.frames) - 100 )) big.frames > cut.frames
mh-cat --to json < cut.frames > /dev/null 2> cut.err; code=$?
expect_eq "a file cut short: exit code" 65 "$code"
expect_contains "and where" "truncated frame at byte" "$(cat cut.err)"

finish
