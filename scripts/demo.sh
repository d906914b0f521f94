#!/usr/bin/env bash
# The Drover demo: builds hub, agent and the example images (sensor-sim, uptime-http for
# amd64, arm64 and arm/v7), starts the hub (embedded MQTT broker, SQLite store, HTTP API
# and image registry), registers and starts one local agent, imports the images into the
# hub, applies configs/demo/ and shows it all working: both workloads running as real
# containers pulled from the hub, sensor readings arriving, the HTTP service answering.
#
#   scripts/demo.sh               set up, build, start, show it running
#   scripts/demo.sh stop          remove the workloads, stop agent and hub; leaves nothing behind
set -euo pipefail
cd "$(dirname "$0")/.."
demo=/var/lib/drover-demo
bin=target/release
hub="$bin/drover-hub"
agent="$bin/drover-agent"
export DROVER_HUB_API=http://127.0.0.1:7780
# The CLI reads the hub's admin token from the data folder its config names
# ($demo/hub/data/api.token, created by the hub at its first start, mode 0600).
export DROVER_HUB_CONFIG=$demo/hub/hub.toml
http_port=18080

if [ "$(id -u)" != 0 ]; then
  echo "demo: run as root (containers and cgroups need it): as root, or sudo $0 $*" >&2
  exit 1
fi

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop() {
  if alive "$demo/hub.pid" && alive "$demo/agent.pid" && [ -d "$demo/fleet" ]; then
    echo "demo: deleting the deployments (the agent stops the containers and deletes their cgroups)"
    "$hub" delete -f "$demo/fleet" || true
    for _ in $(seq 100); do
      [ -z "$(ls -A "$demo/agent/state/workloads" 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  for p in agent hub; do
    if alive "$demo/$p.pid"; then kill "$(cat "$demo/$p.pid")"; fi
    rm -f "$demo/$p.pid"
  done
  sleep 1
  left=$(find /sys/fs/cgroup/*/drover-demo -mindepth 1 -type d 2>/dev/null | wc -l)
  find /sys/fs/cgroup/*/drover-demo -depth -type d -exec rmdir {} + 2>/dev/null || true
  echo "demo: stopped ($left container cgroups were left behind)"
}

if [ "${1:-}" = stop ]; then
  stop
  exit 0
fi

scripts/setup.sh
echo "demo: building hub and agent (release; the first build takes a few minutes)…"
cargo build --release --locked -p drover-agent -p drover-hub
echo "demo: building the example images for amd64, arm64 and arm/v7…"
images/build.sh
stop >/dev/null 2>&1 || true
rm -rf "$demo/hub" "$demo/agent" "$demo/fleet"
mkdir -p "$demo/hub" "$demo/agent/manifests" "$demo/fleet"

# The hub on its defaults (API and registry on port 7780, embedded broker); only the data
# folder moves under $demo, and the broker port if a system broker already holds 1883.
port=1883
if (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then port=11883; fi
cat >"$demo/hub/hub.toml" <<TOML
data_dir = "$demo/hub/data"
[api]
advertise = "127.0.0.1:7780"
[broker]
listen = "0.0.0.0:$port"
# Plain MQTT beyond loopback, for the demo's containers; devices elsewhere use TLS (8883).
allow_plain = true
advertise = "127.0.0.1:$port"
TOML
"$hub" serve --config "$demo/hub/hub.toml" >"$demo/hub.log" 2>&1 &
echo $! >"$demo/hub.pid"
for _ in $(seq 100); do "$hub" get devices >/dev/null 2>&1 && break; sleep 0.1; done
echo "demo: hub started (pid $(cat "$demo/hub.pid"), log $demo/hub.log)"

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
# One local board, registered with the label the demo Deployments select; two broker
# logins that are clients, not devices: one the sensor publishes its readings with, one
# (read-only) to watch them.
snippet=$("$hub" device add demo-board --label role=demo -o json | json_field config)
sensor_cred=$("$hub" client add demo-sensor --publish 'drover/v1/sensors/#' -o json | json_field credential)
dash_cred=$("$hub" client add demo-dash --subscribe 'drover/v1/sensors/#' -o json | json_field credential)
cat >"$demo/agent/agent.toml" <<TOML
state_dir = "$demo/agent/state"
run_dir = "$demo/agent/run"
manifests_dir = "$demo/agent/manifests"
cgroup_parent = "drover-demo"
$snippet
TOML
"$agent" preflight --config "$demo/agent/agent.toml" >/dev/null
"$agent" run --config "$demo/agent/agent.toml" >"$demo/agent.log" 2>&1 &
echo $! >"$demo/agent.pid"
echo "demo: agent started (pid $(cat "$demo/agent.pid"), log $demo/agent.log)"

"$hub" image import target/images/sensor-sim
"$hub" image import target/images/uptime-http
"$hub" image ls
for f in configs/demo/*.yaml; do
  sed -e "s/@BROKER@/127.0.0.1:$port/" -e "s/@SENSOR_CREDENTIAL@/$sensor_cred/" -e "s/@PORT@/$http_port/" \
    "$f" >"$demo/fleet/$(basename "$f")"
done
"$hub" apply -f "$demo/fleet"
for _ in $(seq 300); do
  "$hub" get devices 2>/dev/null | grep -q ' 2/2 ' && break
  sleep 0.2
done
echo
"$hub" get devices
echo
"$hub" get deployments
echo
"$agent" ps --config "$demo/agent/agent.toml"
echo
echo "demo: sensor readings arriving on the hub's broker:"
mosquitto_sub -h 127.0.0.1 -p "$port" -i demo-dash -u demo-dash -P "$dash_cred" -t 'drover/v1/sensors/#' -v -C 3 -W 20 || true
echo
echo "demo: the HTTP service (GET http://127.0.0.1:$http_port/):"
python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$http_port/', timeout=5).read().decode())" || true
cat <<TXT

Drover runs two Deployments (configs/demo/) on the local board as real containers,
pulled from the hub's own registry: 'sensor' publishes readings over MQTT, 'uptime'
serves HTTP on port $http_port. The CLI finds the hub's admin token through its config:
  export DROVER_HUB_CONFIG=$DROVER_HUB_CONFIG
Then try:
  $hub dashboard-url      (open the address it prints: the dashboard, with the read-only token)
  $hub get devices        $hub describe device demo-board        $hub image ls
  $hub client ls          $hub broker-config mosquitto-acl
  $agent ps --config $demo/agent/agent.toml
  $agent logs --config $demo/agent/agent.toml sensor -f
  mosquitto_sub -p $port -i demo-dash -u demo-dash -P $dash_cred -t 'drover/v1/sensors/#' -v
Stop it all with:  scripts/demo.sh stop
TXT
