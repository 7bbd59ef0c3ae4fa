#!/usr/bin/env bash
# Frames across a ZeroMQ hop between two real processes (ipc and tcp on 127.0.0.1),
# tee to several outputs, and a stop by SIGTERM that loses nothing already read.
source "$(dirname "$0")/lib.sh"

count=50000
mh-gen --count $count --seed 7 > expected.frames
mh-cat --to json < expected.frames > expected.jsonl

begin "ipc hop"
mh-cat --in "@ipc://$WORK/hop.sock" --count $count --to json > got.jsonl 2> recv.err &
receiver=$!; BACKGROUND_PIDS+=($receiver)
mh-cat --out ">ipc://$WORK/hop.sock" < expected.frames; expect_eq "sender exit" 0 "$?"
wait_pid_exit 30 $receiver
expect_eq "receiver exit" 0 "$EXIT_CODE"
expect_files_equal "every message, in order" expected.jsonl got.jsonl

begin "tcp hop on 127.0.0.1 with a port picked by the system"
mh-cat --in '@tcp://127.0.0.1:0' --count $count --to json > got.jsonl 2> recv.err &
receiver=$!; BACKGROUND_PIDS+=($receiver)
wait_until 10 grep -q 'bound tcp://' recv.err || fail "receiver never said where it listens: $(cat recv.err)"
address=$(grep -o 'tcp://[0-9.:]*' recv.err | head -1)
mh-gen --count $count --seed 7 --out ">$address"; expect_eq "sender exit" 0 "$?"
wait_pid_exit 30 $receiver
expect_eq "receiver exit" 0 "$EXIT_CODE"
expect_files_equal "every message, in order" expected.jsonl got.jsonl

begin "tee: every output gets every message"
mh-cat --in "@ipc://$WORK/tee.sock" --count $count > teed-socket.frames &
receiver=$!; BACKGROUND_PIDS+=($receiver)
mh-cat --out teed-a.frames --out teed-b.frames --out ">ipc://$WORK/tee.sock" < expected.frames
expect_eq "sender exit" 0 "$?"
wait_pid_exit 30 $receiver
expect_files_equal "file a" expected.frames teed-a.frames
expect_files_equal "file b" expected.frames teed-b.frames
expect_files_equal "socket" expected.frames teed-socket.frames

begin "SIGTERM while blocked on output: stops reading, writes all it read, exits 0"
mh-gen --count 300000 --seed 9 > many.frames
mkfifo slow.fifo
# Once the reader of the fifo is stopped, mh-cat fills the pipe and blocks in write(2).
( exec cat slow.fifo > drained.jsonl ) &
drainer=$!; BACKGROUND_PIDS+=($drainer)
mh-cat --to json --log-level info < many.frames > slow.fifo 2> stop.err &
cat_pid=$!; BACKGROUND_PIDS+=($cat_pid)
wait_until 10 test -s drained.jsonl || fail "nothing came through the fifo"
kill -STOP $drainer
wait_until 10 grep -q pipe_write /proc/$cat_pid/wchan 2>/dev/null || fail "mh-cat never blocked on output"
kill -TERM $cat_pid
kill -CONT $drainer
wait_pid_exit 30 $cat_pid
expect_eq "exit code" 0 "$EXIT_CODE"
wait_pid_exit 30 $drainer
read_count=$(grep -o 'stopped after [0-9]* messages' stop.err | grep -o '[0-9]*')
expect_eq "every message it read was written" "${read_count:-none}" "$(wc -l < drained.jsonl)"
expect_files_equal "and they are the stream's first ones" \
  <(mh-cat --to json < many.frames | head -n "$(wc -l < drained.jsonl)") drained.jsonl
[ "${read_count:-0}" -lt 300000 ] && pass || fail "the stop came too late to test anything"

begin "a sender whose peer never comes waits to deliver, and gives up on SIGTERM"
mh-gen --count 10 --seed 1 --out ">ipc://$WORK/nobody.sock" 2> nobody.err &
sender=$!; BACKGROUND_PIDS+=($sender)
# It has nothing left to do but wait in zmq_ctx_term: poll until it sleeps there.
wait_until 10 bash -c "awk '{print \$3}' /proc/$sender/stat | grep -qx S" || fail "sender not waiting"
kill -0 $sender 2>/dev/null && pass || fail "sender exited without delivering"
kill -TERM $sender
wait_pid_exit 10 $sender
expect_eq "exit code" 0 "$EXIT_CODE"
expect_contains "says what was lost" "they are lost" "$(cat nobody.err)"

finish
