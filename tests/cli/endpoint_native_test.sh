#!/usr/bin/env bash
# mh-endpoint over real TLS with its native protocol: identities made by its own
# subcommands, openssl s_client for the handshake, mh-gen --connect as the gateways (tokens
# and client certificates), refusals counted by reason, stamping checked on the output,
# SIGHUP reloading the registry.
source "$(dirname "$0")/lib.sh"

mh-endpoint ca --dir ca > /dev/null 2>&1
mh-endpoint server-cert --ca ca --host localhost 127.0.0.1 --out server > /dev/null 2>&1
gw1_fp=$(mh-endpoint cert --ca ca --gateway gw-01 --out gws 2> /dev/null)
mh-endpoint ca --dir other-ca > /dev/null 2>&1
mh-endpoint cert --ca other-ca --gateway gw-01 --out foreign > /dev/null 2>&1
mh-endpoint cert --ca ca --gateway gw-01 --out expired --days 1 --backdate 2d > /dev/null 2>&1
key1=$(mh-endpoint keygen)
key2=$(mh-endpoint keygen)
cat > registry.toml <<EOF
[defaults]
messages_per_second = 0
bytes_per_second = 0

[gateway.gw-01]
token_key = "$key1"
cert_sha256 = "$gw1_fp"
sources = ["sensor-00000?", "sensor-000010"]

[gateway.gw-02]
token_key = "$key2"
sources = ["sensor-00001?", "sensor-000020"]
messages_per_second = 5
burst_messages = 5
EOF
token1=$(mh-endpoint token --registry registry.toml --gateway gw-01)
token2=$(mh-endpoint token --registry registry.toml --gateway gw-02)

mh-endpoint --registry registry.toml --cert server/server.crt --key server/server.key --client-ca ca/ca.crt \
  --native 127.0.0.1:0 --metrics 127.0.0.1:0 --handshake-timeout 1s --out out.frames 2> endpoint.log &
ENDPOINT=$!
BACKGROUND_PIDS+=("$ENDPOINT")
port=$(wait_log_port 20 endpoint.log 'listening on native')
metrics_port=$(wait_log_port 20 endpoint.log 'metrics on port')
metric() {  # metric REASON: the refusal counter
  scrape_metrics "$metrics_port" metrics.txt
  grep -E "^mh_endpoint_refused_total\{reason=\"$1\"\} " metrics.txt | awk '{print $2}'
}
refused_at_least() {  # refused_at_least REASON N
  local n; n=$(metric "$1"); [ "${n:-0}" -ge "$2" ]
}
gen() { mh-gen --sources 10 --seed 7 --connect "tls://127.0.0.1:$port" --ca ca/ca.crt "$@"; }

begin "TLS handshake with openssl s_client"
handshake=$(openssl s_client -connect "127.0.0.1:$port" -CAfile ca/ca.crt -verify_return_error < /dev/null 2>&1)
expect_contains "verified" "Verify return code: 0 (ok)" "$handshake"
expect_contains "TLS 1.3" "TLSv1.3" "$handshake"
old=$(openssl s_client -connect "127.0.0.1:$port" -CAfile ca/ca.crt -tls1_1 < /dev/null 2>&1)
[[ "$old" == *"Cipher is (NONE)"* || "$old" == *"alert"* || "$old" == *"no protocols available"* ]] && pass \
  || fail "TLS 1.1 was accepted: $old"

begin "a gateway with a token: every message acknowledged, stamped with its identity"
gen --count 1000 --token "gw-01=$token1" 2> gen.err; code=$?
expect_eq "exit code" 0 "$code"
expect_contains "acknowledged" "acknowledged 1000 messages" "$(cat gen.err)"
mh-cat --to json < out.frames > out.json
expect_eq "messages out" 1000 "$(wc -l < out.json)"
expect_eq "gateway" "gw-01" "$(jq -r .gateway out.json | sort -u)"
expect_eq "fresh ids" 1000 "$(jq -r .id out.json | sort -u | wc -l)"
expect_eq "ingested set" 0 "$(jq 'select(.ingested == null)' out.json | wc -l)"

begin "a gateway with a client certificate"
gen --count 10 --cert gws/gw-01.crt --key gws/gw-01.key 2> gen.err; code=$?
expect_eq "exit code" 0 "$code"
expect_contains "acknowledged" "acknowledged 10 messages" "$(cat gen.err)"

begin "wrong, foreign and expired credentials are refused and counted"
gen --count 10 --token "gw-01=$token2" 2> gen.err; code=$?
expect_eq "another gateway's token" 69 "$code"
gen --count 10 --token "gw-01=mh1.gw-01.1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" 2> gen.err; code=$?
expect_eq "a forged token" 69 "$code"
expired=$(mh-endpoint token --registry registry.toml --gateway gw-01 --valid 1s)
wait_until 10 bash -c "[ \$(date +%s) -gt $(cut -d. -f3 <<< "$expired") ]"
gen --count 10 --token "gw-01=$expired" 2> gen.err; code=$?
expect_eq "an expired token" 69 "$code"
expect_eq "auth refusals" 3 "$(metric auth)"
wait_until 10 grep -q "expired" endpoint.log && pass || fail "the expiry is not logged: $(cat endpoint.log)"
gen --count 10 --cert foreign/gw-01.crt --key foreign/gw-01.key 2> gen.err; code=$?
expect_eq "a certificate from another CA" 69 "$code"
gen --count 10 --cert expired/gw-01.crt --key expired/gw-01.key 2> gen.err; code=$?
expect_eq "an expired certificate" 69 "$code"
wait_until 10 bash -c "[ \"\$(grep -c 'TLS handshake with' endpoint.log)\" -ge 2 ]" && pass || fail "not logged"
expect_eq "certificate refusals" 2 "$(metric certificate)"

begin "publishing for a foreign source is refused and counted"
mh-gen --sources 20 --seed 7 --count 20 --connect "tls://127.0.0.1:$port" --ca ca/ca.crt \
  --token "gw-01=$token1" 2> gen.err; code=$?
expect_eq "exit code" 65 "$code"
expect_contains "refused" "refused 10" "$(cat gen.err)"  # sensor-000011..000020 are not gw-01's
expect_eq "source refusals" 10 "$(metric source)"

begin "over quota: refused and counted"
# Half the messages are gw-02's, whose quota is 5 a second with a burst of 5.
mh-gen --sources 20 --gateways 2 --seed 7 --count 40 --connect "tls://127.0.0.1:$port" --ca ca/ca.crt \
  --token "gw-01=$token1" --token "gw-02=$token2" 2> gen.err; code=$?
expect_eq "exit code" 65 "$code"
refused=$(metric quota)
[ "$refused" -ge 10 ] && [ "$refused" -le 15 ] && pass || fail "quota refusals: $refused"
expect_contains "reported" "refused $refused" "$(cat gen.err)"

begin "a client that never finishes the handshake is dropped; others are served meanwhile"
exec 5<>"/dev/tcp/127.0.0.1/$port"
gen --count 10 --token "gw-01=$token1" 2> gen.err; code=$?
expect_eq "served meanwhile" 0 "$code"
wait_until 20 refused_at_least handshake_timeout 1 && pass || fail "no handshake timeout counted"
exec 5<&-

begin "garbage before the handshake is refused"
printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' > garbage.txt
exec 6<>"/dev/tcp/127.0.0.1/$port"; cat garbage.txt >&6; exec 6<&-
wait_until 10 refused_at_least protocol 1 && pass || fail "garbage not counted as protocol"

begin "SIGHUP reloads the registry"
key3=$(mh-endpoint keygen)
printf '\n[gateway.gw-03]\ntoken_key = "%s"\nsources = ["sensor-*"]\n' "$key3" >> registry.toml
token3=$(mh-endpoint token --registry registry.toml --gateway gw-03)
kill -HUP "$ENDPOINT"
wait_until 10 grep -q "reloaded registry.toml: 3 gateways" endpoint.log && pass || fail "no reload: $(cat endpoint.log)"
gen --count 10 --gateways 1 --token "gw-01=$token3" > /dev/null 2>&1
mh-gen --sources 10 --count 10 --connect "tls://127.0.0.1:$port" --ca ca/ca.crt --token "gw-01=$token3" \
  > /dev/null 2> gen.err; code=$?
expect_eq "gw-03's token does not log in as gw-01" 69 "$code"

begin "plaintext only on loopback, and only when asked"
mh-endpoint --registry registry.toml --native 127.0.0.1:0 2> no-tls.err; code=$?
expect_eq "no certificate, no --insecure-loopback" 64 "$code"
mh-endpoint --registry registry.toml --insecure-loopback --native 0.0.0.0:0 2> open.err; code=$?
expect_eq "plaintext off loopback" 64 "$code"
expect_contains "says why" "127.0.0.1 only" "$(cat open.err)"
mh-endpoint --registry registry.toml --insecure-loopback --native 127.0.0.1:0 --out plain.frames 2> plain.log &
PLAIN=$!
BACKGROUND_PIDS+=("$PLAIN")
plain_port=$(wait_log_port 20 plain.log 'listening on native')
expect_contains "says so" "native is plaintext" "$(cat plain.log)"
mh-gen --sources 10 --count 100 --connect "tcp://127.0.0.1:$plain_port" --token "gw-01=$token1" 2> gen.err; code=$?
expect_eq "exit code" 0 "$code"
expect_eq "messages" 100 "$(mh-cat --to json < plain.frames | wc -l)"
kill -TERM "$PLAIN"
wait_pid_exit 20 "$PLAIN"

begin "SIGTERM: exit 0"
kill -TERM "$ENDPOINT"
wait_pid_exit 20 "$ENDPOINT"
expect_eq "exit code" 0 "$EXIT_CODE"

finish
