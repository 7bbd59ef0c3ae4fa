#!/usr/bin/env bash
# Makes DIR ready to run the cold-chain channel of examples/cold-chain-gateways.toml:
#   DIR/ca/             a development CA (mh-endpoint ca)
#   DIR/tls/            the endpoint's certificate for 127.0.0.1 and localhost, and the CA's
#                       certificate (what the gateways trust)
#   DIR/gateways.toml   the gateway registry: gw-01..gw-03 (the fleet, 4 sensors each) and
#                       cold-room, each with a token key and the sources it may publish for
#   DIR/tokens.txt      a token per gateway, valid for a day ("GATEWAY TOKEN" lines)
#   DIR/hook.key        the webhook's HMAC secret
#   DIR/cold-chain-gateways.toml   the manifest, with free ports and the rest filled in
# Then: mh-route up DIR/cold-chain-gateways.toml
#
# usage: cold-chain-setup.sh [--hook-url URL] [--rate R] [--readings N]
#                            [--cold-room-readings N] [--cold-room-every SECONDS] DIR
#   --hook-url      where mh-notify posts (default http://127.0.0.1:8080/hooks/mh)
#   --rate          fleet messages per second, all sensors together (default 24)
#   --readings      fleet messages in all, then the fleet stops (default 0: until stopped)
#   --cold-room-readings, --cold-room-every   the cold room's readings (default 100000, 2 s apart)
# The two ports of the endpoint (native protocol, MQTT) are free ones on 127.0.0.1, picked now.
set -euo pipefail

hook_url=http://127.0.0.1:8080/hooks/mh
rate=24 readings=0 cold_room_readings=100000 cold_room_every=2
while [ $# -gt 1 ]; do
  case "$1" in
    --hook-url) hook_url=$2 ;;
    --rate) rate=$2 ;;
    --readings) readings=$2 ;;
    --cold-room-readings) cold_room_readings=$2 ;;
    --cold-room-every) cold_room_every=$2 ;;
    *) echo "cold-chain-setup: unknown option $1 (see the head of $0)" >&2; exit 64 ;;
  esac
  shift 2
done
[ $# -eq 1 ] || { echo "usage: cold-chain-setup.sh [OPTIONS] DIR (see the head of $0)" >&2; exit 64; }
dir=$1
here=$(cd "$(dirname "$0")" && pwd)
command -v mh-endpoint > /dev/null || { echo "cold-chain-setup: mh-endpoint is not in PATH" >&2; exit 69; }
[ ! -e "$dir/gateways.toml" ] || { echo "cold-chain-setup: $dir is set up already; use a new directory" >&2; exit 73; }
mkdir -p "$dir"
cd "$dir"

mh-endpoint ca --dir ca > /dev/null 2>&1
mh-endpoint server-cert --ca ca --host 127.0.0.1 localhost --out tls > /dev/null 2>&1
cp ca/ca.crt tls/ca.crt

# The fleet as mh-gen spreads it: 12 sensors over 3 gateways in blocks (source s of gateway
# s * 3 / 12), so each gateway may publish for its own four sensors only.
sources=12 gateways=3
{
  for ((g = 0; g < gateways; g++)); do
    list=""
    for ((s = 0; s < sources; s++)); do
      if [ $((s * gateways / sources)) -eq $g ]; then list+="${list:+, }\"$(printf 'sensor-%06d' $((s + 1)))\""; fi
    done
    printf '[gateway.gw-%02d]\ntoken_key = "%s"\nsources = [%s]\n\n' $((g + 1)) "$(mh-endpoint keygen)" "$list"
  done
  printf '[gateway.cold-room]\ntoken_key = "%s"\nsources = ["cold-room-*"]\n' "$(mh-endpoint keygen)"
} > gateways.toml
for gw in gw-01 gw-02 gw-03 cold-room; do
  echo "$gw $(mh-endpoint token --registry gateways.toml --gateway $gw --valid 1d)"
done > tokens.txt
(umask 077 && mh-endpoint keygen > hook.key)

# Two free ports: bound to port 0 and released; the endpoint takes them a moment later.
read -r native_port mqtt_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')

cold_room_token=$(awk '$1 == "cold-room" { print $2 }' tokens.txt)
sed -e "s|@NATIVE_PORT@|$native_port|g" -e "s|@MQTT_PORT@|$mqtt_port|g" -e "s|@HOOK_URL@|$hook_url|g" \
    -e "s|@COLD_ROOM_TOKEN@|$cold_room_token|g" -e "s|@RATE@|$rate|g" -e "s|@READINGS@|$readings|g" \
    -e "s|@COLD_ROOM_READINGS@|$cold_room_readings|g" -e "s|@COLD_ROOM_EVERY@|$cold_room_every|g" \
    "$here/cold-chain-gateways.toml" > cold-chain-gateways.toml
echo "cold-chain-setup: $dir is ready: endpoint on 127.0.0.1:$native_port (native) and :$mqtt_port (MQTT)," \
     "webhook $hook_url" >&2
