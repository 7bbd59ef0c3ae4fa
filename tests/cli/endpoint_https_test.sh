#!/usr/bin/env bash
# mh-endpoint's HTTPS listener against curl over real TLS: POST of JSON lines, a JSON array
# and frames with a bearer token or a client certificate (202 and the messages arrive with
# the right gateway), 401/403/400/413/415/429 with their counters, and an HTTP-only
# gateway fetching its commands.
source "$(dirname "$0")/lib.sh"

mh-endpoint ca --dir ca > /dev/null 2>&1
mh-endpoint server-cert --ca ca --host localhost 127.0.0.1 --out server > /dev/null 2>&1
gw1_fp=$(mh-endpoint cert --ca ca --gateway gw-01 --out gws 2> /dev/null)
cat > registry.toml <<EOF
[defaults]
messages_per_second = 0
bytes_per_second = 0

[gateway.gw-01]
token_key = "$(mh-endpoint keygen)"
cert_sha256 = "$gw1_fp"
sources = ["sensor-00000?"]

[gateway.gw-02]
token_key = "$(mh-endpoint keygen)"
sources = ["sensor-00001?"]
messages_per_second = 5
burst_messages = 5
EOF
token1=$(mh-endpoint token --registry registry.toml --gateway gw-01)
token2=$(mh-endpoint token --registry registry.toml --gateway gw-02)

mh-endpoint --registry registry.toml --cert server/server.crt --key server/server.key --client-ca ca/ca.crt \
  --https 127.0.0.1:0 --metrics 127.0.0.1:0 --max-message 1024 --commands "@ipc://$WORK/commands.sock" \
  --out out.frames 2> endpoint.log &
ENDPOINT=$!
BACKGROUND_PIDS+=("$ENDPOINT")
port=$(wait_log_port 20 endpoint.log 'listening on https')
metrics_port=$(wait_log_port 20 endpoint.log 'metrics on port')
url="https://127.0.0.1:$port/v1/messages"
metric() {
  scrape_metrics "$metrics_port" metrics.txt
  grep -E "^mh_endpoint_refused_total\{reason=\"$1\"\} " metrics.txt | awk '{print $2}'
}
out_json() { mh-cat --to json < out.frames; }
# post TOKEN CONTENT-TYPE FILE [curl options]: prints the status, the body into reply.json
post() {
  local token=$1 type=$2 file=$3; shift 3
  curl -sS --cacert ca/ca.crt ${token:+-H "Authorization: Bearer $token"} -H "Content-Type: $type" \
    --data-binary "@$file" -o reply.json -w '%{http_code}' -D headers.txt "$@" "$url"
}

begin "POST JSON lines with a bearer token: 202, stamped with the gateway"
for i in 1 2 3; do echo "{\"source\":\"sensor-00000$i\",\"kind\":\"telemetry\",\"temperature\":2$i.5,\"gateway\":\"gw-02\"}"; done > lines.json
expect_eq "status" 202 "$(post "$token1" application/x-ndjson lines.json)"
expect_eq "reply" '{"accepted":3,"refused":0}' "$(cat reply.json)"
# 202 comes after the output was flushed: the messages are there now.
expect_eq "messages" 3 "$(out_json | wc -l)"
expect_eq "gateway overwritten" "gw-01" "$(out_json | jq -r .gateway | sort -u)"
expect_eq "sources" "sensor-000001 sensor-000002 sensor-000003" "$(out_json | jq -r .source | xargs)"
expect_eq "fresh ids" 3 "$(out_json | jq -r .id | sort -u | wc -l)"

begin "POST a JSON array and frames"
echo '[{"source":"sensor-000004","x":1},{"source":"sensor-000005","x":2}]' > array.json
expect_eq "array" 202 "$(post "$token1" application/json array.json)"
echo '{"source":"sensor-000006","kind":"telemetry","x":3}' | mh-cat --from json > one.frames
expect_eq "frames" 202 "$(post "$token1" application/vnd.mh.frames one.frames)"
expect_eq "messages" 6 "$(out_json | wc -l)"

begin "POST with a client certificate and no token"
expect_eq "status" 202 "$(post "" application/json array.json --cert gws/gw-01.crt --key gws/gw-01.key)"

begin "refusals: 401 without or with a bad token, 403 for a foreign source"
expect_eq "no token" 401 "$(post "" application/json array.json)"
expect_contains "WWW-Authenticate" "WWW-Authenticate: Bearer" "$(cat headers.txt)"
expect_eq "forged token" 401 "$(post "mh1.gw-01.9999999999.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" application/json array.json)"
expect_eq "auth refusals" 2 "$(metric auth)"
echo '{"source":"sensor-000011","x":1}' > foreign.json
expect_eq "foreign source" 403 "$(post "$token1" application/json foreign.json)"
expect_eq "source refusals" 1 "$(metric source)"
before=$(out_json | wc -l)
echo '{"source":"sensor-000011","x":1} {"source":"sensor-000001","x":1}' | tr ' ' '\n' > mixed.json
expect_eq "mixed: the allowed one is taken" 202 "$(post "$token1" application/x-ndjson mixed.json)"
expect_eq "reply" '{"accepted":1,"refused":1}' "$(cat reply.json)"
expect_eq "one more out" $((before + 1)) "$(out_json | wc -l)"

begin "400 for malformed JSON, 415 for an unknown type, 413 over the size limit"
echo '{"source":"sensor-000001",' > broken.json
expect_eq "malformed" 400 "$(post "$token1" application/json broken.json)"
expect_eq "unknown type" 415 "$(post "$token1" text/plain lines.json)"
head -c 100000 /dev/zero | tr '\0' x > big.json
# With Expect: 100-continue the refusal comes before the body is sent.
expect_eq "too large" 413 "$(post "$token1" application/json big.json -H 'Expect: 100-continue')"
[ "$(metric oversized)" -ge 1 ] && pass || fail "oversized not counted"

begin "413 without Expect: 100-continue: the lingering close lets curl read it"
# The endpoint answers from Content-Length while curl is still sending: it shuts its write
# side and reads what comes until curl closes, so curl gets the 413 instead of a reset
# (without it, about every other attempt here ended in "Send failure: Broken pipe").
head -c 8000000 /dev/zero | tr '\0' x > huge.json
for i in 1 2 3 4 5 6; do
  expect_eq "too large ($i)" 413 "$(post "$token1" application/json huge.json -H 'Expect:' 2> curl.err)"
done
expect_eq "the endpoint still serves" 202 "$(post "$token1" application/x-ndjson lines.json)"

begin "429 with Retry-After over quota"
for i in $(seq 1 8); do echo "{\"source\":\"sensor-000012\",\"n\":$i}"; done > eight.json
head -n 4 eight.json > four.json
expect_eq "within the burst" 202 "$(post "$token2" application/x-ndjson four.json)"
expect_eq "the bucket is nearly empty" 429 "$(post "$token2" application/x-ndjson four.json)"
expect_contains "Retry-After" "Retry-After: " "$(cat headers.txt)"
expect_eq "quota refusals" 4 "$(metric quota)"
expect_eq "more than the burst can ever take" 413 "$(post "$token2" application/x-ndjson eight.json)"

begin "an HTTP-only gateway fetches its commands"
get() { curl -sS --cacert ca/ca.crt -H "Authorization: Bearer $token1" -o commands.json -w '%{http_code}' \
  "https://127.0.0.1:$port/v1/commands"; }
expect_eq "none yet" 204 "$(get)"
printf '%s\n' '{"kind":"command","gateway":"gw-01","source":"sensor-000001","action":"reboot"}' \
  '{"kind":"command","gateway":"gw-01","action":"sync"}' | mh-cat --from json --out ">ipc://$WORK/commands.sock"
two_queued() { scrape_metrics "$metrics_port" queued.txt; grep -q '^mh_endpoint_commands_queued_total 2$' queued.txt; }
wait_until 20 two_queued \
  && pass || fail "the commands were not queued"
expect_eq "two commands" 200 "$(get)"
expect_eq "in order" "reboot sync" "$(jq -r .action commands.json | xargs)"
expect_eq "taken" 204 "$(get)"

begin "garbage after the handshake: 400"
code=$(curl -sS --cacert ca/ca.crt -X 'BAD METHOD' -o /dev/null -w '%{http_code}' "$url" 2>/dev/null)
[ "$code" = 400 ] || [ "$code" = 000 ] && pass || fail "status $code"

begin "SIGTERM: exit 0"
kill -TERM "$ENDPOINT"
wait_pid_exit 20 "$ENDPOINT"
expect_eq "exit code" 0 "$EXIT_CODE"

finish
