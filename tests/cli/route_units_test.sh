#!/usr/bin/env bash
# mh-route units: systemd units per host with the exact wiring (ipc on a host, tcp across
# hosts), restart policy, sandboxing and state directories; systemd-analyze verify accepts them.
source "$(dirname "$0")/lib.sh"

cat > cc.toml <<TOML
[channel]
name = "cc"

[hosts]
edge = "10.0.0.5"
core = "10.0.0.6"

[defaults]
bin_dir = "$MH_BIN"
env = { TZ = "UTC" }
restart_delay = "250ms"
base_port = 7600

[stage.ingest]
run = "mh-gen --rate 100"
host = "edge"

[stage.hot]
run = "mh-filter 'temperature > 8 and source like \"s-%\"'"
from = ["ingest"]
replicas = 2
host = "edge"
restart = "always"

[stage.archive]
run = "mh-store append --db /var/lib/mh/cc"
from = ["ingest", { stage = "hot", when = 'kind == "alert"' }]
host = "core"
TOML

begin "the units of each host"
mh-route units cc.toml --host edge --dir edge > edge.txt 2> edge.err; code=$?
expect_eq "exit code" 0 "$code"
expect_eq "files written" "edge/mh-cc-ingest.service edge/mh-cc-hot.1.service edge/mh-cc-hot.2.service edge/mh-cc-hot-to-archive.service edge/mh-cc.target" \
  "$(paste -sd' ' edge.txt)"
mh-route units cc.toml --host core --dir core > core.txt 2> core.err; code=$?
expect_eq "exit code" 0 "$code"
expect_eq "files written" "core/mh-cc-archive.service core/mh-cc.target" "$(paste -sd' ' core.txt)"
expect_contains "the port to open" "archive.1 listens on tcp port 7600" "$(cat core.err)"

exec_start() { grep '^ExecStart=' "$1" | cut -d= -f2-; }
expect_eq "ingest: ipc to the replicas on its host, tcp to the other host" \
  "$MH_BIN/mh-gen --rate 100 --out \">ipc:///run/mh/cc/hot.1,>ipc:///run/mh/cc/hot.2\" --out \">tcp://10.0.0.6:7600\"" \
  "$(exec_start edge/mh-cc-ingest.service)"
expect_eq "hot.2: % and quotes escaped for systemd; its alerts through the edge's filter" \
  "$MH_BIN/mh-filter \"temperature > 8 and source like \\\"s-%%\\\"\" --in @ipc:///run/mh/cc/hot.2 --out \">ipc:///run/mh/cc/hot->archive.1\"" \
  "$(exec_start edge/mh-cc-hot.2.service)"
expect_eq "the edge's filter runs beside its upstream and sends across" \
  "$MH_BIN/mh-filter \"kind == \\\"alert\\\"\" --in \"@ipc:///run/mh/cc/hot->archive.1\" --out \">tcp://10.0.0.6:7600\"" \
  "$(exec_start edge/mh-cc-hot-to-archive.service)"
expect_eq "archive listens on its host's address" \
  "$MH_BIN/mh-store append --db /var/lib/mh/cc --in @tcp://10.0.0.6:7600" "$(exec_start core/mh-cc-archive.service)"

unit=$(cat edge/mh-cc-hot.1.service)
expect_contains "restart policy" $'Restart=always\nRestartSec=250ms' "$unit"
expect_contains "environment" 'Environment="TZ=UTC"' "$unit"
expect_contains "starts before its writer, stops after it" "Before=mh-cc-ingest.service" "$unit"
expect_contains "one dynamic user for the channel" $'DynamicUser=yes\nUser=mh-cc' "$unit"
expect_contains "runtime directory for the sockets" $'RuntimeDirectory=mh/cc\nRuntimeDirectoryPreserve=yes' "$unit"
for key in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes PrivateDevices=yes \
           'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' SystemCallFilter=@system-service; do
  expect_contains "sandbox $key" "$key" "$unit"
done
expect_contains "part of the target" "WantedBy=mh-cc.target" "$unit"
expect_contains "the store's state directory" "StateDirectory=mh/cc" "$(cat core/mh-cc-archive.service)"
expect_contains "tcp waits for the network" "After=network-online.target" "$(cat core/mh-cc-archive.service)"
expect_contains "target wants every unit of the host" \
  "Wants=mh-cc-ingest.service mh-cc-hot.1.service mh-cc-hot.2.service mh-cc-hot-to-archive.service" "$(cat edge/mh-cc.target)"

if command -v systemd-analyze > /dev/null; then
  begin "systemd-analyze verify"
  for host in edge core; do
    (cd $host && systemd-analyze verify ./*.service ./*.target) > verify-$host.txt 2>&1; code=$?
    expect_eq "$host: exit code" 0 "$code"
    expect_eq "$host: no complaint" "" "$(grep -v 'Failed to .* cgroup\|Cannot add dependency job' verify-$host.txt)"
  done
fi

begin "a host that is not declared"
mh-route units cc.toml --host nowhere --dir x 2> err.txt; code=$?
expect_eq "exit code" 64 "$code"
expect_contains "message" "--host nowhere: not a host of cc.toml; its hosts are: edge, core" "$(cat err.txt)"

finish
