# Shared helpers for the CLI suites: they drive the real binaries and compare stdout,
# stderr and exit codes. Sourced by each tests/cli/*_test.sh; ctest sets MH_BIN.
set -uo pipefail

MH_SOURCE=${MH_SOURCE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
MH_BIN=${MH_BIN:-$MH_SOURCE/build/tools}
export PATH="$MH_BIN:$PATH"
SCHEMA="$MH_SOURCE/lib/schema/message.capnp"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mh-cli.XXXXXX")
BACKGROUND_PIDS=()
cleanup() {
  for pid in "${BACKGROUND_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK" || exit 1

FAILURES=0
PASSES=0
CURRENT=""

begin() { CURRENT="$1"; }
pass() { PASSES=$((PASSES + 1)); }
fail() {
  FAILURES=$((FAILURES + 1))
  echo "FAIL [$CURRENT]: $*" >&2
}

expect_eq() {  # expect_eq WHAT EXPECTED ACTUAL
  if [ "$2" == "$3" ]; then pass; else fail "$1: expected '$2', got '$3'"; fi
}
expect_contains() {  # expect_contains WHAT NEEDLE HAYSTACK
  if [[ "$3" == *"$2"* ]]; then pass; else fail "$1: expected to contain '$2', got: $3"; fi
}
expect_files_equal() {  # expect_files_equal WHAT EXPECTED_FILE ACTUAL_FILE
  if cmp -s "$2" "$3"; then pass; else
    fail "$1: $2 and $3 differ"
    diff <(head -c 4000 "$2") <(head -c 4000 "$3") | head -20 >&2
  fi
}

# wait_until DEADLINE_SECONDS COMMAND...: polls COMMAND every 10 ms until it succeeds.
wait_until() {
  local deadline=$(($(date +%s%N) + $1 * 1000000000)); shift
  until "$@"; do
    if [ "$(date +%s%N)" -gt "$deadline" ]; then return 1; fi
    sleep 0.01
  done
}

# wait_pid_exit DEADLINE PID: waits for a background PID, killing it past the deadline.
# Sets EXIT_CODE.
wait_pid_exit() {
  local deadline=$1 pid=$2
  if ! wait_until "$deadline" bash -c "! kill -0 $pid 2>/dev/null"; then
    fail "process $pid still running after ${deadline}s"
    kill -9 "$pid" 2>/dev/null
  fi
  wait "$pid"; EXIT_CODE=$?
}

# wait_log_port DEADLINE FILE REGEX: waits until a line of FILE matches REGEX (for instance
# 'listening on') and prints the port that ends it ("listening on 127.0.0.1:41234" -> 41234).
# Servers in tests listen on port 0 and log the port they got, so parallel suites never collide.
wait_log_port() {
  local deadline=$1 file=$2 regex=$3
  wait_until "$deadline" grep -qE "$regex" "$file" || return 1
  grep -E "$regex" "$file" | head -n 1 | grep -oE '[0-9]+$'
}

# scrape_metrics PORT FILE: GET /metrics from a tool's --metrics server on 127.0.0.1.
scrape_metrics() {
  exec 3<>/dev/tcp/127.0.0.1/"$1" || return 1
  printf 'GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n' >&3
  cat <&3 > "$2"
  exec 3<&-
}

finish() {
  echo "$(basename "$0" .sh): $PASSES passed, $FAILURES failed"
  [ "$FAILURES" -eq 0 ]
}
