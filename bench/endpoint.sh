#!/usr/bin/env bash
# mh-endpoint on this machine, everything over TLS on loopback:
#  1. the native protocol with mh-gen --connect as 8 gateways;
#  2. MQTT: 8 concurrent `mosquitto_pub -l` (one ~150-byte JSON message per line), QoS 0
#     and 1, sent to mosquitto 2 (started here) and to mh-endpoint in 4 alternating rounds;
#  3. idle TLS connections held (logged in over the native protocol), memory per connection.
# Per case: messages/s and the server's CPU seconds per million messages.
# Usage: bench/endpoint.sh [NATIVE_MESSAGES] [MQTT_QOS1_MESSAGES] [IDLE_CONNECTIONS] [MQTT_QOS0_MESSAGES]
#        (default 2000000 400000 10000 2000000)
# CPU time comes from /proc in clock ticks (10 ms): QoS 0 sends more messages than QoS 1 so
# that a tick more or less changes its figure by under 1 %.
set -euo pipefail
cd "$(dirname "$0")/.."
NATIVE=${1:-2000000}
MQTT=${2:-400000}
IDLE=${3:-10000}
MQTT_QOS0=${4:-2000000}
GATEWAYS=8
BIN=$(realpath "${MH_BIN:-build/tools}")
[ -x "$BIN/mh-endpoint" ] || { echo "bench: build first (scripts/build.sh)" >&2; exit 1; }
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

now() { date +%s%N; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
report() {  # report NAME MESSAGES WALL_NS CPU_TICKS
  awk -v name="$1" -v n="$2" -v ns="$3" -v ticks="$4" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    printf "%-40s %9.0f msgs/s  %6.2f server CPU s per 1M msgs  (%.2f s)\n", name, n / (ns / 1e9),
      ticks / hz / (n / 1e6), ns / 1e9 }'
}

"$BIN/mh-endpoint" ca --dir ca > /dev/null 2>&1
"$BIN/mh-endpoint" server-cert --ca ca --host localhost 127.0.0.1 --out server > /dev/null 2>&1
{
  printf '[defaults]\nmessages_per_second = 0\nbytes_per_second = 0\nmax_connections = %d\n' $((IDLE + 16))
  for g in $(seq -f '%02g' 1 $GATEWAYS); do
    printf '[gateway.gw-%s]\ntoken_key = "%s"\nsources = ["*"]\n' "$g" "$("$BIN/mh-endpoint" keygen)"
  done
} > registry.toml
for g in $(seq -f '%02g' 1 $GATEWAYS); do
  echo "gw-$g $("$BIN/mh-endpoint" token --registry registry.toml --gateway "gw-$g")"
done > tokens.txt
token_of() { awk -v g="$1" '$1 == g { print $2 }' tokens.txt; }

start_endpoint() {  # start_endpoint PROTOCOL: sets EP and PORT
  "$BIN/mh-endpoint" --registry registry.toml --cert server/server.crt --key server/server.key \
    --"$1" 127.0.0.1:0 --max-connections $((IDLE + 100)) --max-gateway-connections $((IDLE + 16)) \
    --idle-timeout 1h --out /dev/null 2> endpoint.log &
  EP=$!
  PIDS+=("$EP")
  for _ in $(seq 1 200); do
    PORT=$(grep -oE "listening on $1 [0-9.]+:[0-9]+" endpoint.log | grep -oE '[0-9]+$' || true)
    [ -n "$PORT" ] && return 0
    sleep 0.05
  done
  echo "bench: the endpoint did not start: $(cat endpoint.log)" >&2; exit 1
}
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

echo "endpoint bench: $(nproc) cores, TLS on loopback, $GATEWAYS gateways"

# 1. Native protocol, mh-gen as the gateways.
start_endpoint native
before=$(cpu_ticks "$EP"); start=$(now)
"$BIN/mh-gen" --count "$NATIVE" --sources 8000 --gateways $GATEWAYS --connect "tls://127.0.0.1:$PORT" \
  --ca ca/ca.crt --tokens tokens.txt --log-level warn
end=$(now); after=$(cpu_ticks "$EP")
report "native, mh-gen --connect (acknowledged)" "$NATIVE" $((end - start)) $((after - before))
stop "$EP"

# 2. MQTT: the same mosquitto_pub load to mosquitto and to mh-endpoint. (mosquitto started as
# root drops to its own user, which cannot read the temporary directory: "user root" keeps it.)
lines() {  # lines COUNT FILE: COUNT ~150-byte JSON messages for one gateway
  awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++)
    printf "{\"temperature\":%.2f,\"humidity\":%.1f,\"pressure\":%.2f,\"battery\":%.1f,\"status\":\"ok\",\"site\":\"north-field-3\",\"firmware\":\"2.4.1\",\"seq\":%d}\n",
      20 + (i % 100) / 10, 40 + (i % 30), 1013 + (i % 7) / 3, 90 + (i % 10), i }' > "$2"
}
lines $((MQTT_QOS0 / GATEWAYS / 4)) lines-0.json  # a round's: 4 rounds (ROUNDS below)
lines $((MQTT / GATEWAYS / 4)) lines-1.json
echo "mqtt payload: $(( $(wc -c < lines-1.json) / (MQTT / GATEWAYS / 4) )) bytes per message;" \
     "$((MQTT_QOS0 / GATEWAYS)) (QoS 0) and $((MQTT / GATEWAYS)) (QoS 1) per gateway in 4 rounds"
mqtt_load() {  # mqtt_load PORT QOS WITH_AUTH
  local pids=()
  for g in $(seq -f '%02g' 1 $GATEWAYS); do
    local auth=()
    [ "$3" = yes ] && auth=(-u "gw-$g" -P "$(token_of "gw-$g")")
    mosquitto_pub --cafile ca/ca.crt ${MQTT_TLS_VERSION:+--tls-version "$MQTT_TLS_VERSION"} -h 127.0.0.1 -p "$1" "${auth[@]}" -i "bench-$g" -q "$2" \
      -t "telemetry/sensor-$g" -l < "lines-$2.json" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
}
# Both servers run side by side and take the load in alternating rounds, so that a change
# of load on a shared machine weighs on both alike; the figures are the rounds' sums.
ROUNDS=4
for qos in 0 1; do
  count=$MQTT
  [ "$qos" = 0 ] && count=$MQTT_QOS0
  port=$(free_port)
  printf 'user root\nlistener %s 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nallow_anonymous true\nlog_dest none\n' \
    "$port" "$WORK/ca/ca.crt" "$WORK/server/server.crt" "$WORK/server/server.key" > mosquitto.conf
  mosquitto -c mosquitto.conf 2> mosquitto.log &
  MOSQ=$!
  PIDS+=("$MOSQ")
  for _ in $(seq 1 200); do ss -ltn | grep -q ":$port " && break; sleep 0.05; done
  start_endpoint mqtt
  mosq_ns=0 mosq_ticks=0 mh_ns=0 mh_ticks=0
  for _ in $(seq 1 $ROUNDS); do
    before=$(cpu_ticks "$MOSQ"); start=$(now)
    mqtt_load "$port" "$qos" no
    end=$(now); after=$(cpu_ticks "$MOSQ")
    mosq_ns=$((mosq_ns + end - start)) mosq_ticks=$((mosq_ticks + after - before))
    before=$(cpu_ticks "$EP"); start=$(now)
    mqtt_load "$PORT" "$qos" yes
    end=$(now); after=$(cpu_ticks "$EP")
    mh_ns=$((mh_ns + end - start)) mh_ticks=$((mh_ticks + after - before))
  done
  report "mosquitto $(mosquitto -h | head -1 | awk '{print $3}'), mosquitto_pub -l, QoS $qos" "$count" \
    "$mosq_ns" "$mosq_ticks"
  report "mh-endpoint, mosquitto_pub -l, QoS $qos" "$count" "$mh_ns" "$mh_ticks"
  awk -v a="$mh_ticks" -v b="$mosq_ticks" 'BEGIN { printf "%-40s %9s         %6.2f of mosquitto'"'"'s CPU per message\n", "", "", a / b }'
  stop "$MOSQ"
  stop "$EP"
done

# 3. Idle TLS connections, logged in, held open.
start_endpoint native
rss_before=$(awk '/VmRSS/ { print $2 }' "/proc/$EP/status")
python3 - "$PORT" "$IDLE" "$(token_of gw-01)" "$WORK/ca/ca.crt" <<'EOF' &
import asyncio, ssl, sys
port, count, token, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
context = ssl.create_default_context(cafile=ca)
context.check_hostname = False
held = []
async def one():
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    writer.write(f"MH1 gw-01 {token}\n".encode())
    await writer.drain()
    await reader.readexactly(8)  # the welcome record's header
    held.append(writer)
async def main():
    for start in range(0, count, 200):
        await asyncio.gather(*(one() for _ in range(min(200, count - start))))
    print(f"held {len(held)}", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
EOF
CLIENT=$!
PIDS+=("$CLIENT")
start=$(now)
for _ in $(seq 1 1200); do
  n=$(ss -tn state established "( sport = :$PORT )" | tail -n +2 | wc -l)
  [ "$n" -ge "$IDLE" ] && break
  sleep 0.1
done
end=$(now)
sleep 1  # let idle connections give their buffers back
rss_after=$(awk '/VmRSS/ { print $2 }' "/proc/$EP/status")
awk -v n="$n" -v kb=$((rss_after - rss_before)) -v ns=$((end - start)) 'BEGIN {
  printf "%-40s %9d held      %6.1f KiB per connection  (RSS +%d KiB; connected in %.1f s)\n",
    "idle TLS connections (native, logged in)", n, kb / n, kb, ns / 1e9 }'
stop "$CLIENT"
stop "$EP"
