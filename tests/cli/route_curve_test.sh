#!/usr/bin/env bash
# CURVE on tcp edges: mh-route keys makes a key pair per host; with MH_CURVE_KEY set, a tool
# binding tcp admits only the keys in MH_CURVE_CLIENTS (others are refused and logged), a
# tool connecting needs the server's key in MH_CURVE_SERVERS; units --keys wires it all.
source "$(dirname "$0")/lib.sh"

cat > cc.toml <<TOML
[channel]
name = "cc"
[hosts]
edge = "127.0.0.1"
core = "10.0.0.6"
[defaults]
bin_dir = "$MH_BIN"
keys_dir = "/etc/mh/cold"
[stage.ingest]
run = "mh-gen --rate 100"
host = "edge"
[stage.archive]
run = "mh-store append --db /var/lib/mh/cc"
from = ["ingest"]
host = "core"
TOML

begin "mh-route keys: a pair per host, the secret for its owner only"
mh-route keys cc.toml --dir keys > out.txt; code=$?
expect_eq "exit code" 0 "$code"
expect_eq "written" $'keys/edge.key keys/edge.pub\nkeys/core.key keys/core.pub' "$(cat out.txt)"
expect_eq "secret mode" "600" "$(stat -c %a keys/core.key)"
expect_eq "public key is the key pair's first line" "$(head -1 keys/core.key)" "$(cat keys/core.pub)"
expect_eq "Z85 keys of 40 characters" "40 40" "$(sed -n 1p keys/edge.key | tr -d '\n' | wc -c) $(sed -n 2p keys/edge.key | tr -d '\n' | wc -c)"
before=$(cat keys/edge.key)
mh-route keys cc.toml --dir keys > /dev/null 2> err.txt
expect_eq "kept when they exist" "$before" "$(cat keys/edge.key)"
expect_contains "and says so" "keys/edge.key exists: kept" "$(cat err.txt)"
mh-route keys cc.toml --dir keys --force > /dev/null
[ "$before" != "$(cat keys/edge.key)" ] && pass || fail "--force kept the old pair"

begin "a CURVE edge: the known client gets through"
mkdir clients && cp keys/edge.pub clients/
MH_CURVE_KEY=keys/core.key MH_CURVE_CLIENTS=clients mh-cat --in '@tcp://127.0.0.1:0' --to json > got.jsonl 2> server.err &
server=$!; BACKGROUND_PIDS+=($server)
port=$(wait_log_port 10 server.err 'bound tcp://') || fail "no port: $(cat server.err)"
mh-gen --count 100 --seed 3 > sent.frames
MH_CURVE_KEY=keys/edge.key MH_CURVE_SERVERS="127.0.0.1=$(cat keys/core.pub)" mh-cat --out ">tcp://127.0.0.1:$port" < sent.frames
wait_until 10 bash -c '[ "$(wc -l < got.jsonl)" -ge 100 ]' || fail "received $(wc -l < got.jsonl) of 100"
expect_eq "what was sent" "$(mh-cat --to json < sent.frames)" "$(cat got.jsonl)"

begin "an unknown key, and no CURVE at all, are refused"
mh-route keys cc.toml --dir strangers > /dev/null
MH_CURVE_KEY=strangers/edge.key MH_CURVE_SERVERS="127.0.0.1=$(cat keys/core.pub)" \
  timeout 10 mh-cat --out ">tcp://127.0.0.1:$port" < sent.frames
wait_until 10 grep -q 'refused a CURVE client from 127.0.0.1 with key' server.err \
  && pass || fail "no refusal logged: $(cat server.err)"
expect_contains "names the key" "$(cat strangers/edge.pub)" "$(cat server.err)"
timeout 10 mh-cat --out ">tcp://127.0.0.1:$port" < sent.frames
# The known client again, as a marker: once its messages are in, nothing else came before them.
MH_CURVE_KEY=keys/edge.key MH_CURVE_SERVERS="127.0.0.1=$(cat keys/core.pub)" mh-cat --out ">tcp://127.0.0.1:$port" < sent.frames
wait_until 10 bash -c '[ "$(wc -l < got.jsonl)" -ge 200 ]' || fail "the known client's second batch did not arrive"
expect_eq "only the known client's 200 messages" 200 "$(wc -l < got.jsonl)"
kill -TERM $server; wait_pid_exit 10 $server

begin "fail closed: a connect without the server's key, a bind without clients"
MH_CURVE_KEY=keys/edge.key mh-gen --count 1 --out ">tcp://127.0.0.1:1" 2> err.txt; code=$?
expect_eq "exit code" 78 "$code"
expect_contains "message" "MH_CURVE_SERVERS has no key for 127.0.0.1, so the server cannot be authenticated" "$(cat err.txt)"
MH_CURVE_KEY=keys/core.key mh-cat --in '@tcp://127.0.0.1:0' < /dev/null 2> err.txt; code=$?
expect_eq "exit code" 78 "$code"
expect_contains "message" "MH_CURVE_CLIENTS lists none" "$(cat err.txt)"
printf 'not a key\n' > bad.key
MH_CURVE_KEY=bad.key mh-gen --count 1 --out ">tcp://127.0.0.1:1" 2> err.txt; code=$?
expect_eq "a broken key file" 78 "$code"

begin "units --keys: the key as a credential, clients and servers for every tcp edge"
mh-route units cc.toml --host edge --dir units --keys keys > /dev/null 2>&1; code=$?
expect_eq "exit code" 0 "$code"
unit=$(cat units/mh-cc-ingest.service)
expect_contains "credential" "LoadCredential=curve.key:/etc/mh/cold/edge.key" "$unit"
expect_contains "key" "Environment=MH_CURVE_KEY=%d/curve.key" "$unit"
expect_contains "clients" 'Environment="MH_CURVE_CLIENTS=/etc/mh/cold"' "$unit"
servers="MH_CURVE_SERVERS=127.0.0.1=$(cat keys/edge.pub) 10.0.0.6=$(cat keys/core.pub)"
expect_contains "servers, % doubled for systemd" "Environment=\"${servers//%/%%}\"" "$unit"
if command -v systemd-analyze > /dev/null; then
  (cd units && systemd-analyze verify ./*.service ./*.target) > verify.txt 2>&1; code=$?
  expect_eq "systemd-analyze verify" 0 "$code"
  expect_eq "no complaint" "" "$(cat verify.txt)"
fi
mh-route units cc.toml --host edge --dir units --keys nowhere 2> err.txt; code=$?
expect_eq "missing keys: exit code" 78 "$code"
expect_contains "missing keys: what to do" "make the keys with mh-route keys cc.toml --dir nowhere" "$(cat err.txt)"

finish
