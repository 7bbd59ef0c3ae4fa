#!/usr/bin/env bash
# A channel across three hosts, made as network namespaces on this machine (ip netns, veth
# pairs on a bridge): mh-gen on gw -> mh-filter on core -> mh-store on db, each host's part
# run by `mh-route up --host H --keys DIR` inside its namespace, tcp with CURVE between them.
# A gw with a key the others do not know is refused and logged, and delivers nothing; then
# gw's link is cut for a moment while messages flow, and restored: the channel resumes and
# every message arrives once.
#
# What ZeroMQ keeps across a cut: a link that goes down and comes back within TCP's
# retransmission time leaves the tcp connection standing, so nothing is lost: what mh-gen
# sent meanwhile waits in the sockets (kernel buffers, then ZeroMQ's send queue of 64
# batches per peer; past that the sender blocks: back-pressure, no drop) and follows once
# TCP's next retransmission gets through. If the connection itself breaks (a peer restarts,
# the cut outlasts TCP's retries), ZeroMQ reconnects and resends what is still in its queue,
# but the batches already handed to the dead connection's kernel buffer are lost, and only
# a source that keeps what it sent (the endpoint's journal, DESIGN.md) can send them again.
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
  echo "route_netns_test: SKIP (counted as passed): network namespaces need root; CI runs as root"
  exit 0
fi
if ! command -v ip > /dev/null || ! ip netns list > /dev/null 2>&1; then
  echo "route_netns_test: SKIP (counted as passed): ip netns is not available (install iproute2)"
  exit 0
fi

# Names unique to this run, so that parallel runs do not meet; everything goes in the trap.
tag="mh$$"
SW="${tag}sw"
NAMESPACES=("$SW")
netns_cleanup() {
  for ns in "${NAMESPACES[@]}"; do
    for pid in $(ip netns pids "$ns" 2> /dev/null); do kill -9 "$pid" 2> /dev/null; done
    ip netns del "$ns" 2> /dev/null
  done
  cleanup
}
trap netns_cleanup EXIT
trap 'exit 143' TERM  # so that a timeout's SIGTERM cleans up too
trap 'exit 130' INT
# Namespaces left by a run that was killed outright (its pid gone, nothing running inside).
for ns in $(ip netns list | grep -oE '^mh[0-9]+(sw|gw|core|db)\b'); do
  pid=$(grep -oE '[0-9]+' <<< "$ns")
  if ! kill -0 "$pid" 2> /dev/null && [ -z "$(ip netns pids "$ns" 2> /dev/null)" ]; then ip netns del "$ns"; fi
done

begin "three hosts as network namespaces on one bridge"
ip netns add "$SW" && ip -n "$SW" link add br0 type bridge && ip -n "$SW" link set br0 up || fail "no bridge"
declare -A address=([gw]=10.77.0.1 [core]=10.77.0.2 [db]=10.77.0.3)
for host in gw core db; do
  ns="${tag}$host"
  NAMESPACES+=("$ns")
  ip netns add "$ns" &&
    ip -n "$SW" link add "$host" type veth peer name eth0 netns "$ns" &&
    ip -n "$SW" link set "$host" master br0 up &&
    ip -n "$ns" addr add "${address[$host]}/24" dev eth0 &&
    ip -n "$ns" link set eth0 up &&
    ip -n "$ns" link set lo up || fail "cannot make host $host"
done
expect_eq "gw's own address" "inet ${address[gw]}/24" "$(ip -n "${tag}gw" -4 -o addr show dev eth0 | grep -oE 'inet [0-9./]+')"

count=4000
cat > span.toml <<TOML
[channel]
name = "span"

[hosts]
gw = "${address[gw]}"
core = "${address[core]}"
db = "${address[db]}"

[defaults]
drain_quiet = "1s"
drain_timeout = "4s"

[stage.gen]
run = "mh-gen --count $count --rate 1000 --interval 1s --seed 5 --sources 10"
host = "gw"

[stage.warm]
run = "mh-filter 'temperature > 21' --alert 'hot=temperature > 24'"
from = ["gen"]
host = "core"

[stage.archive]
run = "mh-store append --db $WORK/archive --sync none"
from = ["warm"]
host = "db"

[stage.alerts]
run = "mh-store append --db $WORK/alerts --sync none"
from = [{ stage = "warm", when = 'kind == "alert"' }]
host = "db"
TOML
mh-gen --count $count --interval 1s --seed 5 --sources 10 | mh-filter 'temperature > 21' --alert 'hot=temperature > 24' \
  | mh-cat --to json > expected.jsonl
expected_all=$(wc -l < expected.jsonl)
expected_alerts=$(grep -c '"kind":"alert"' expected.jsonl)
[ "$expected_alerts" -gt 50 ] && pass || fail "too few alerts for a telling test: $expected_alerts"
store_count() { mh-store stat --db "$1" --json 2> /dev/null | jq -r '.messages // 0' 2> /dev/null || echo 0; }
count_at_least() { [ "$(store_count "$1")" -ge "$2" ]; }

begin "keys: a pair per host; a stranger's pair for gw that nobody lists"
mh-route keys span.toml --dir keys > /dev/null || fail "mh-route keys failed"
mh-route keys span.toml --dir strangers > /dev/null
mkdir stranger-keys && cp keys/*.pub stranger-keys/ && cp strangers/gw.key stranger-keys/gw.key

begin "a host run where its address is not: refused at once, not a restart loop"
ip netns exec "${tag}core" mh-route up span.toml --host db --keys keys --runtime-dir "$WORK/run-wrong" 2> wrong.err
expect_eq "exit code" 78 "$?"
expect_contains "what to do" "its address in [hosts] of span.toml, ${address[db]}, is not an address of this machine" "$(cat wrong.err)"
ip netns exec "${tag}core" mh-route up span.toml --host nowhere 2> wrong.err
expect_eq "an undeclared host: exit code" 64 "$?"
expect_contains "an undeclared host: the hosts" "its hosts are: gw, core, db" "$(cat wrong.err)"

begin "up --host db and core, each in its namespace"
# (ip netns exec, not a shell function, so that $! is mh-route itself)
ip netns exec "${tag}db" mh-route up span.toml --host db --keys keys --runtime-dir "$WORK/run-db" 2> db.err &
db_pid=$!; BACKGROUND_PIDS+=($db_pid)
ip netns exec "${tag}core" mh-route up span.toml --host core --keys keys --runtime-dir "$WORK/run-core" 2> core.err &
core_pid=$!; BACKGROUND_PIDS+=($core_pid)
wait_until 20 grep -q "channel up: 2 processes" core.err || fail "core is not up: $(cat core.err)"
wait_until 20 grep -q "channel up: 2 processes" db.err || fail "db is not up: $(cat db.err)"
expect_contains "core's tcp input" "warm.1 listens on tcp port 7400 (CURVE" "$(cat core.err)"
expect_contains "db's tcp inputs" "alerts.1 listens on tcp port 7402" "$(cat db.err)"

begin "an unknown key is refused, logged, and delivers nothing"
ip netns exec "${tag}gw" mh-route up span.toml --host gw --keys stranger-keys --runtime-dir "$WORK/run-gw0" 2> gw0.err &
gw0_pid=$!; BACKGROUND_PIDS+=($gw0_pid)
wait_until 20 grep -qF "refused a CURVE client from ${address[gw]} with key $(cat strangers/gw.pub)" core.err \
  && pass || fail "no refusal logged on core: $(cat core.err) / gw: $(cat gw0.err)"
expect_contains "under the stage's name" "warm: mh-filter: " "$(grep refused core.err)"
kill -TERM $gw0_pid
# The stranger's mh-gen still holds what it could not deliver; drain_timeout ends it.
wait_pid_exit 20 $gw0_pid
expect_eq "nothing in the archive" 0 "$(store_count "$WORK/archive")"
expect_eq "nothing in the alerts" 0 "$(store_count "$WORK/alerts")"

begin "the known key: messages flow gw -> core -> db"
ip netns exec "${tag}gw" mh-route up span.toml --host gw --keys keys --runtime-dir "$WORK/run-gw" 2> gw.err &
gw_pid=$!; BACKGROUND_PIDS+=($gw_pid)
wait_until 20 count_at_least "$WORK/archive" $((expected_all / 5)) \
  && pass || fail "the archive has $(store_count "$WORK/archive") of $expected_all: gw: $(cat gw.err) core: $(cat core.err)"

begin "gw's link cut for a moment while it sends, then restored: the channel resumes"
ip -n "${tag}gw" link set eth0 down || fail "cannot cut the link"
at_cut=$(store_count "$WORK/archive")
sleep 1.5  # the length of the cut, not a wait for readiness
during_cut=$(store_count "$WORK/archive")
ip -n "${tag}gw" link set eth0 up || fail "cannot restore the link"
echo "route_netns_test: archive held $at_cut at the cut, $during_cut after 1.5 s of it, of $expected_all" >&2
[ "$during_cut" -lt "$expected_all" ] && pass || fail "everything arrived before the link came back: the cut cut nothing"
wait_until 30 count_at_least "$WORK/archive" "$expected_all" \
  || fail "after the cut the archive has $(store_count "$WORK/archive") of $expected_all"
wait_pid_exit 30 $gw_pid
expect_eq "gw's part ends by itself once mh-gen has delivered everything" 0 "$EXIT_CODE"

begin "SIGTERM drains core, then db"
kill -TERM $core_pid; wait_pid_exit 30 $core_pid
expect_eq "core's exit code" 0 "$EXIT_CODE"
kill -TERM $db_pid; wait_pid_exit 30 $db_pid
expect_eq "db's exit code" 0 "$EXIT_CODE"

begin "every message once: none lost at the cut, none twice"
expect_eq "archive count" "$expected_all" "$(store_count "$WORK/archive")"
expect_eq "alerts count" "$expected_alerts" "$(store_count "$WORK/alerts")"
mh-store query --db "$WORK/archive" --format json | jq -r .id | sort > got-all.txt
jq -r .id expected.jsonl | sort > want-all.txt
expect_files_equal "archive ids" want-all.txt got-all.txt
mh-store query --db "$WORK/alerts" --format json | jq -r .id | sort > got-alerts.txt
grep '"kind":"alert"' expected.jsonl | jq -r .id | sort > want-alerts.txt
expect_files_equal "alert ids" want-alerts.txt got-alerts.txt
expect_eq "no other client was refused" 1 "$(grep -c refused core.err)"

begin "IPv6 addresses in [hosts]: the same over tcp://[ADDRESS]:PORT"
# nodad: an address still in duplicate address detection cannot be bound yet.
ip -n "${tag}gw" addr add fd77::1/64 dev eth0 nodad && ip -n "${tag}db" addr add fd77::3/64 dev eth0 nodad \
  || fail "cannot add IPv6 addresses"
cat > span6.toml <<TOML
[channel]
name = "span6"
[hosts]
gw = "fd77::1"
db = "fd77::3"
[defaults]
drain_quiet = "1s"
[stage.gen]
run = "mh-gen --count 500 --seed 6"
host = "gw"
[stage.archive]
run = "mh-store append --db $WORK/archive6 --sync none"
from = ["gen"]
host = "db"
TOML
mh-route keys span6.toml --dir keys6 > /dev/null
# Without --runtime-dir: each host's part in a directory of its own (XDG_RUNTIME_DIR/mh-route/span6/HOST).
export XDG_RUNTIME_DIR="$WORK/xdg"
ip netns exec "${tag}db" mh-route up span6.toml --host db --keys keys6 2> db6.err &
db6_pid=$!; BACKGROUND_PIDS+=($db6_pid)
ip netns exec "${tag}gw" mh-route up span6.toml --host gw --keys keys6 2> gw6.err
expect_eq "gw's part: exit code" 0 "$?"
wait_until 20 count_at_least "$WORK/archive6" 500 \
  || fail "the archive has $(store_count "$WORK/archive6") of 500: db: $(cat db6.err) gw: $(cat gw6.err)"
expect_contains "db's runtime directory" "channel up: 1 processes in $WORK/xdg/mh-route/span6/db" "$(cat db6.err)"
ip netns exec "${tag}db" mh-route status span6.toml --host db --interval 0.1 > status6.txt 2>&1
expect_contains "status --host finds it" "archive" "$(cat status6.txt)"
expect_contains "running" "running" "$(grep archive status6.txt)"
expect_contains "listens on the IPv6 address" "archive.1 listens on tcp port 7400" "$(cat db6.err)"
kill -TERM $db6_pid; wait_pid_exit 30 $db6_pid
expect_eq "db's part: exit code" 0 "$EXIT_CODE"
expect_eq "every message once" 500 "$(store_count "$WORK/archive6")"

finish
