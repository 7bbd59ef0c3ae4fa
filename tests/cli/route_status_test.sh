#!/usr/bin/env bash
# mh-route status: a table per process of a running channel, with rates from two readings
# of each stage's metrics, and the last state once the channel has stopped.
source "$(dirname "$0")/lib.sh"

cat > channel.toml <<'TOML'
[channel]
name = "watched"

[stage.gen]
run = "mh-gen --rate 2000 --sources 10"

[stage.warm]
run = "mh-filter 'temperature > 21'"
from = ["gen"]
replicas = 2

[stage.archive]
run = "mh-store append --db archive --sync none"
from = ["warm"]
TOML

column() {  # column PROCESS HEADER: the cell of the status table in status.txt
  awk -v p="$1" -v h="$2" 'NR == 2 { for (i = 1; i <= NF; i++) if ($i == h) c = i }
                           NR > 2 && $1 == p { print $c }' status.txt
}

begin "not up yet"
mh-route status channel.toml --runtime-dir "$WORK/run" 2> err.txt; code=$?
expect_eq "exit code" 69 "$code"
expect_contains "says so" "the channel is not up in $WORK/run" "$(cat err.txt)"

begin "a running channel: state, pid, rates"
mh-route up channel.toml --runtime-dir "$WORK/run" 2> up.err &
up=$!; BACKGROUND_PIDS+=($up)
ports_known() { [ "$(awk -F'\t' 'NR > 1 && $6 > 0' "$WORK/run/processes.tsv" 2>/dev/null | wc -l)" -eq 4 ]; }
wait_until 30 ports_known || fail "metrics ports not all known: $(cat run/processes.tsv)"
mh-route status channel.toml --runtime-dir "$WORK/run" --interval 0.5 > status.txt; code=$?
expect_eq "exit code" 0 "$code"
expect_eq "first line" "channel watched: up" "$(head -1 status.txt)"
expect_eq "header" "PROCESS STATE PID RESTARTS IN/S OUT/S IN OUT DROPPED ERRORS UPTIME LAST EXIT" \
  "$(sed -n 2p status.txt | tr -s ' ')"
expect_eq "processes" "gen warm.1 warm.2 archive" "$(awk 'NR > 2 { print $1 }' status.txt | paste -sd' ')"
expect_eq "all running" "running running running running" "$(awk 'NR > 2 { print $2 }' status.txt | paste -sd' ')"
expect_eq "pid of warm.1" "$(awk -F'\t' '$1 == "warm.1" { print $4 }' run/processes.tsv)" "$(column warm.1 PID)"
kill -0 "$(column archive PID)" && pass || fail "archive's pid is not a live process"
rate=$(column gen OUT/S)
[ "$rate" -ge 500 ] && [ "$rate" -le 4000 ] && pass || fail "gen OUT/S $rate, expected about 2000: $(cat status.txt)"
shared=$(( $(column warm.1 IN/S) + $(column warm.2 IN/S) ))
[ "$shared" -ge 500 ] && pass || fail "the replicas take in $shared/s together: $(cat status.txt)"
[ "$(column warm.1 IN)" -gt 0 ] && [ "$(column warm.2 IN)" -gt 0 ] && pass || fail "one replica gets nothing"
[ "$(column archive DROPPED)" -eq 0 ] && pass || fail "archive drops: $(cat status.txt)"

begin "after the drain: the last state, with what each process took in and sent"
kill -TERM $up
wait_pid_exit 60 $up
expect_eq "up exit code" 0 "$EXIT_CODE"
mh-route status channel.toml --runtime-dir "$WORK/run" --interval 0.05 > status.txt
expect_eq "first line" "channel watched: not running (the last state it left)" "$(head -1 status.txt)"
expect_eq "all exited" "exited exited exited exited" "$(awk 'NR > 2 { print $2 }' status.txt | paste -sd' ')"
expect_eq "archive took in what the replicas sent" "$(( $(column warm.1 OUT) + $(column warm.2 OUT) ))" "$(column archive IN)"
expect_eq "and stored it" "$(mh-store stat --db archive --json | jq -r .messages)" "$(column archive IN)"
expect_eq "the replicas took in what gen sent" "$(column gen OUT)" "$(( $(column warm.1 IN) + $(column warm.2 IN) ))"

begin "the example channel runs in its own directory, and drains"
mkdir example
cp "$MH_SOURCE/examples/cold-chain.toml" example/
(cd / && exec mh-route up "$WORK/example/cold-chain.toml" --runtime-dir "$WORK/run-example") 2> example.err &
up=$!; BACKGROUND_PIDS+=($up)
wait_until 30 bash -c '[ "$(mh-store stat --db example/alerts --json 2>/dev/null | jq -r .messages)" -gt 0 ] 2>/dev/null' \
  || fail "no alert stored in example/alerts: $(tail -5 example.err)"
mh-route status example/cold-chain.toml --runtime-dir "$WORK/run-example" --interval 0.3 > status.txt
expect_eq "processes" "sensors check.1 check.2 archive check->alerts alerts" "$(awk 'NR > 2 { print $1 }' status.txt | paste -sd' ')"
kill -TERM $up
wait_pid_exit 60 $up
expect_eq "exit code" 0 "$EXIT_CODE"
mh-route status example/cold-chain.toml --runtime-dir "$WORK/run-example" --interval 0.05 > status.txt
expect_eq "the archive has what the checks passed, alerts too" \
  "$(mh-store stat --db example/archive --json | jq -r .messages)" "$(column archive IN)"
expect_eq "the alerts store has what the edge passed" \
  "$(mh-store stat --db example/alerts --json | jq -r .messages)" "$(column check-\>alerts OUT)"

finish
