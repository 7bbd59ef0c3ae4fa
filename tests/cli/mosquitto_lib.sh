# A real mosquitto broker for the suites that need one. mosquitto cannot listen on port 0
# (it means a unix socket to it), so a free port is picked at random among those that
# /proc/net/tcp shows nobody listening on, and a collision in the meantime is retried.
# Sourced after lib.sh.
#
#   start_mosquitto NAME [EXTRA_CONFIG_LINES]   sets MQTT_PORT and MQTT_PID; config in $WORK/NAME.conf
#   restart_mosquitto NAME                      on the same port and config
#   stop_mosquitto

port_in_use() {  # port_in_use PORT: someone listens on it (state 0A) over IPv4 or IPv6
  local hex
  hex=$(printf ':%04X ' "$1")
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '$4 == "0A" { print $2 " " }' | grep -q -- "$hex"
}

_run_mosquitto() {  # _run_mosquitto NAME: starts it on MQTT_PORT; 0 when it listens
  local name=$1
  : > "$WORK/$name.log"
  mosquitto -c "$WORK/$name.conf" > "$WORK/$name.log" 2>&1 &
  MQTT_PID=$!
  BACKGROUND_PIDS+=("$MQTT_PID")
  local deadline=$(($(date +%s) + 20))
  while [ "$(date +%s)" -le "$deadline" ]; do
    if grep -q "listen socket on port $MQTT_PORT" "$WORK/$name.log" && port_in_use "$MQTT_PORT"; then return 0; fi
    if ! kill -0 "$MQTT_PID" 2>/dev/null; then return 1; fi
    sleep 0.02
  done
  return 1
}

start_mosquitto() {
  local name=$1 extra=${2:-}
  local attempt
  for attempt in 1 2 3 4 5 6 7 8; do
    MQTT_PORT=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    port_in_use "$MQTT_PORT" && continue
    printf 'listener %s 127.0.0.1\n%s\n' "$MQTT_PORT" "${extra:-allow_anonymous true}" > "$WORK/$name.conf"
    if _run_mosquitto "$name"; then return 0; fi
    kill "$MQTT_PID" 2>/dev/null; wait "$MQTT_PID" 2>/dev/null
  done
  echo "could not start mosquitto:" >&2; cat "$WORK/$name.log" >&2
  return 1
}

restart_mosquitto() {
  _run_mosquitto "$1"
}

stop_mosquitto() {
  kill "$MQTT_PID" 2>/dev/null
  wait "$MQTT_PID" 2>/dev/null
}
