#!/usr/bin/env bash
# mh-store append on a full disk: a small tmpfs fills up; append stops with exit 74 and a
# clear error, the store is sound and holds whole batches only, a prefix of the input that
# covers every barrier it confirmed; with --wait-for-room it holds its input instead
# (back-pressure) and goes on once there is room. Mounting needs root (CI runs as root).
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
  echo "store_full_test: SKIP (counted as passed): mounting a small tmpfs needs root; CI runs as root"
  exit 0
fi

mkdir fs
if ! mount -t tmpfs -o size=8m tmpfs fs; then
  echo "store_full_test: FAIL: mount -t tmpfs failed although running as root" >&2
  exit 1
fi
# Unmount before lib.sh's cleanup removes $WORK.
trap 'umount -l "$WORK/fs" 2> /dev/null; cleanup' EXIT

# 60000 messages (about 20 MB of frames, more than the 8 MiB file system) with a barrier
# after every 1000.
mh-gen --count 60000 --seed 3 | mh-cat --to json \
  | awk '{ print } NR % 1000 == 0 { printf "{\"$barrier\":%d,\"time\":1}\n", NR / 1000 }' > in.jsonl
mh-cat --from json < in.jsonl > in.frames
jq -r 'select(.id) | .id' in.jsonl > in.ids

begin "a full disk stops append with exit 74, a clear error, and nothing half-written"
mh-store append --db fs/S --batch 500 --confirm confirmed.frames < in.frames 2> err.txt; code=$?
expect_eq "exit code" 74 "$code"
expect_contains "says the file system is full" "the file system holding 'fs/S' is full" "$(cat err.txt)"
expect_contains "says what is kept" "everything committed before is kept" "$(cat err.txt)"
expect_eq "the disk is in fact full" 0 "$(df --output=avail -k fs | tail -n 1 | awk '{ print ($1 < 256) ? 0 : $1 }')"
mh-store check --db fs/S > check.txt; code=$?
expect_eq "check passes" 0 "$code"
stored=$(mh-store stat --db fs/S --json | jq .messages)
[ "$stored" -gt 1000 ] && pass || fail "only $stored messages stored before the disk was full"
expect_contains "check counted them all" "sound: $stored messages" "$(cat check.txt)"
expect_eq "whole batches only (500, or 1000 between barriers)" 0 "$((stored % 500))"
mh-store tail --db fs/S --format json | jq -r .id > stored.ids
expect_eq "every stored id read back" "$stored" "$(wc -l < stored.ids)"
head -n "$stored" in.ids > prefix.ids
expect_files_equal "a prefix of the input, in order" prefix.ids stored.ids
last_barrier=$(mh-cat --to json < confirmed.frames | tail -n 1 | jq '."$barrier"')
[ "$((last_barrier * 1000))" -le "$stored" ] && pass \
  || fail "barrier $last_barrier confirmed, but only $stored messages stored"
expect_eq "barriers confirmed up to what was stored" "$((stored / 1000))" "$last_barrier"

begin "on the full disk: a new store exits 74 (no crash), and reading still works"
mh-store append --db fs/NEW < in.frames 2> err.txt; expect_eq "exit code" 74 "$?"
expect_contains "says so" "is full" "$(cat err.txt)"
expect_eq "query on a full disk" "$stored" "$(mh-store query --db fs/S --format json | wc -l)"
mh-store append --db fs/S < in.frames 2> err.txt; expect_eq "appending again to the full store" 74 "$?"
expect_eq "it still holds what it held" "$stored" "$(mh-store stat --db fs/S --json | jq .messages)"
mh-store check --db fs/S > /dev/null; expect_eq "and is sound" 0 "$?"
rm -rf fs/NEW

begin "with room again, a replay completes the store"
mount -o remount,size=64m fs
mh-store append --db fs/S < in.frames 2> err.txt; expect_eq "exit code: $(cat err.txt)" 0 "$?"
expect_eq "all of it" 60000 "$(mh-store stat --db fs/S --json | jq .messages)"
mh-store check --db fs/S > /dev/null; expect_eq "sound" 0 "$?"

begin "--wait-for-room holds the input on a full disk and goes on once there is room"
rm -rf fs/S
mount -o remount,size=8m fs
mh-store append --db fs/W --batch 500 --wait-for-room 60s < in.frames 2> wait.err &
appender=$!; BACKGROUND_PIDS+=($appender)
wait_until 30 grep -q "holding the input" wait.err || fail "no word of a full disk: $(cat wait.err)"
held=$(mh-store stat --db fs/W --json | jq .messages)
kill -0 "$appender" 2> /dev/null && pass || fail "the appender ended instead of waiting"
mount -o remount,size=64m fs
wait_pid_exit 60 "$appender"
expect_eq "exit code once there was room" 0 "$EXIT_CODE"
expect_contains "says it went on" "there is room again" "$(cat wait.err)"
expect_eq "nothing lost while it waited" 60000 "$(mh-store stat --db fs/W --json | jq .messages)"
[ "$held" -lt 60000 ] && pass || fail "the store held everything before the wait: $held"
mh-store check --db fs/W > /dev/null; expect_eq "sound" 0 "$?"

begin "--wait-for-room gives up with exit 74 when no room comes"
rm -rf fs/W
mount -o remount,size=8m fs
mh-store append --db fs/G --batch 500 --wait-for-room 2s < in.frames 2> err.txt; code=$?
expect_eq "exit code" 74 "$code"
expect_contains "says it gave up" "stopped appending" "$(cat err.txt)"
mh-store check --db fs/G > /dev/null; expect_eq "sound" 0 "$?"

finish
