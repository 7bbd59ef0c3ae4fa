#!/usr/bin/env bash
# mh-route check and graph: the example manifest is fine; a manifest with a mistake of each
# kind gets every one reported at its line and column, with what to do, and exit 78.
source "$(dirname "$0")/lib.sh"

EXAMPLE="$MH_SOURCE/examples/cold-chain.toml"

begin "the example manifest checks"
out=$(mh-route check "$EXAMPLE" 2> err.txt); code=$?
expect_eq "exit code" 0 "$code"
expect_eq "summary" "$EXAMPLE: ok: 4 stages (1 source, 2 destinations), 3 edges (1 conditional), 1 host, 6 processes" "$out"
expect_eq "quiet stderr" "" "$(cat err.txt)"
expect_eq "--quiet" "" "$(mh-route check --quiet "$EXAMPLE")"

begin "every error, each at its place, exit 78"
cat > bad.toml <<'TOML'
[channel]
name = "bad"

[hosts]
edge-1 = "10.0.0.5"
edge-2 = "10.0.0.6"

[defaults]
host = "edge-1"
restrt = "always"

[stage.gen]
run = "mh-gen --count 10"
replica = 2

[stage.hot]
run = "mh-filter 'temperature > 30' | mh-cat"
from = ["gen", "ghost"]

[stage.loop1]
run = "mh-filter"
from = ["gen", "loop2"]

[stage.loop2]
run = "mh-filter"
from = [{stage = "loop1", when = "temperature >> 3"}]
host = "edge-9"

[stage.store]
run = "mh-stroe append --db /tmp/x"
from = ["hot", "loop2"]
TOML
mh-route check bad.toml > out.txt 2> err.txt; code=$?
expect_eq "exit code" 78 "$code"
expect_eq "nothing on stdout" "" "$(cat out.txt)"
e=$(cat err.txt)
expect_contains "unknown key" "mh-route: error: bad.toml:10:1: unknown key 'restrt' in [defaults] (did you mean 'restart'?)" "$e"
expect_contains "unknown stage key" "bad.toml:14:1: unknown key 'replica' in [stage.gen] (did you mean 'replicas'?)" "$e"
expect_contains "shell syntax" "bad.toml:17:37: run of stage hot: '|' is shell syntax" "$e"
expect_contains "unknown stage" "bad.toml:18:16: stage hot reads from 'ghost', which is not a stage" "$e"
expect_contains "cycle" "bad.toml:26:18: a cycle: loop1 -> loop2 -> loop1" "$e"
expect_contains "bad when" "bad.toml:26:48: bad when condition on the edge from loop1: expected a value" "$e"
expect_contains "undeclared host" "bad.toml:27:8: host 'edge-9' is not declared in [hosts] (did you mean 'edge-1'?)" "$e"
expect_contains "no reader" "bad.toml:29:8: nothing reads from stage store and it is not a destination" "$e"
expect_contains "not installed" "bad.toml:30:7: stage store runs 'mh-stroe', which is not installed (did you mean 'mh-store'?)" "$e"
expect_contains "the total" "mh-route: error: bad.toml: 9 errors: nothing was started" "$e"
# The caret line of the bad condition stands under the second '>'.
expression_line=$(grep -F '    temperature >> 3' err.txt)
caret_line=$(grep -A1 -F '    temperature >> 3' err.txt | tail -1)
prefix=${expression_line%%'>>'*}
caret=${caret_line%%'^'*}
expect_eq "caret column" "$((${#prefix} + 1))" "${#caret}"

begin "a program beside mh-route is found; a missing one by path is reported"
cat > paths.toml <<'TOML'
[stage.a]
run = "./no-such-tool --x"
destination = true
[stage.b]
run = ["mh-store", "append", "--db", "x"]
TOML
env PATH=/usr/bin:/bin "$MH_BIN/mh-route" check paths.toml 2> err.txt; code=$?
expect_eq "exit code" 78 "$code"
expect_contains "by path" "paths.toml:2:7: stage a runs './no-such-tool', which is not an executable file" "$(cat err.txt)"
expect_eq "one error: mh-store is beside mh-route" 2 "$(wc -l < err.txt)"

begin "bad TOML and a missing file"
printf '[stage.a]\nrun = "mh-gen\n' > broken.toml
mh-route check broken.toml 2> err.txt; code=$?
expect_eq "exit code" 78 "$code"
expect_contains "syntax error with place" "broken.toml:2:" "$(cat err.txt)"
mh-route check no-such.toml 2> err.txt; code=$?
expect_eq "missing file" 74 "$code"
expect_contains "missing file message" "cannot read the manifest no-such.toml" "$(cat err.txt)"

begin "graph: DOT with replicas, conditions and hosts"
cat > hosts.toml <<'TOML'
[hosts]
edge = "10.0.0.5"
core = "10.0.0.6"
[stage.ingest]
run = "mh-gen"
host = "edge"
[stage.hot]
run = "mh-filter 'temperature > 8'"
from = ["ingest"]
replicas = 3
host = "edge"
[stage.archive]
run = "mh-store append --db /var/lib/mh/a"
from = ["ingest", { stage = "hot", when = 'kind == "alert"' }]
host = "core"
TOML
mh-route graph hosts.toml > graph.dot; code=$?
expect_eq "exit code" 0 "$code"
dot_text=$(cat graph.dot)
expect_contains "digraph" 'digraph "hosts" {' "$dot_text"
expect_contains "host cluster" $'subgraph "cluster_edge" {\n    label="edge (10.0.0.5)";' "$dot_text"
expect_contains "replicas" 'hot ×3' "$dot_text"
expect_contains "conditional edge across hosts" '"hot" -> "archive" [label="kind == \"alert\"", style=dashed, color=blue, penwidth=2];' "$dot_text"
expect_contains "plain edge across hosts" '"ingest" -> "archive" [color=blue, penwidth=2];' "$dot_text"
expect_contains "same-host edge" '"ingest" -> "hot";' "$dot_text"
if command -v dot > /dev/null; then
  dot -Tsvg graph.dot > graph.svg && pass || fail "dot rejects the graph"
fi
mh-route graph --text hosts.toml > graph.txt
expect_contains "text header" "channel hosts: 3 stages (1 source, 1 destination), 3 edges (1 conditional), 2 hosts, 6 processes" "$(cat graph.txt)"
expect_contains "text stage" $'hot x3 (handler, on edge)\n  run   mh-filter "temperature > 8"\n  from  ingest\n  to    archive' "$(cat graph.txt)"
expect_contains "text edge" 'from  hot when kind == "alert" (tcp from edge)' "$(cat graph.txt)"

finish
