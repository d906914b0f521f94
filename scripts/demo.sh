#!/usr/bin/env bash
# The Drover demo: builds hub and agent, makes an OCI image from Debian's busybox-static,
# starts the hub (embedded MQTT broker, SQLite store, HTTP API), registers and starts one
# local agent, applies configs/demo/ and shows the workload running as a real container.
#
#   sudo scripts/demo.sh          set up, build, start, show it running
#   sudo scripts/demo.sh stop     remove the workload, stop agent and hub; leaves nothing behind
set -euo pipefail
cd "$(dirname "$0")/.."
demo=/var/lib/drover-demo
bin=target/release
hub="$bin/drover-hub"
agent="$bin/drover-agent"
export DROVER_HUB_API=http://127.0.0.1:7780

if [ "$(id -u)" != 0 ]; then
  echo "demo: run as root (containers and cgroups need it): sudo $0 $*" >&2
  exit 1
fi

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop() {
  if alive "$demo/hub.pid" && alive "$demo/agent.pid"; then
    echo "demo: deleting the deployment (the agent stops its container and deletes its cgroup)"
    "$hub" delete -f configs/demo/ || true
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
echo "demo: building (release; the first build takes a few minutes)…"
cargo build --release --locked -p drover-agent -p drover-hub -p drover-tests --bins
stop >/dev/null 2>&1 || true
rm -rf "$demo/hub" "$demo/agent"
mkdir -p "$demo/hub" "$demo/agent/manifests"
"$bin/busybox-layout" "$demo/busybox" latest

# The hub on its defaults (API on 127.0.0.1:7780, embedded broker); only the data folder
# moves under $demo, and the broker port if a system broker already holds 1883.
port=1883
if (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then port=11883; fi
cat >"$demo/hub/hub.toml" <<TOML
data_dir = "$demo/hub/data"
[broker]
listen = "0.0.0.0:$port"
advertise = "127.0.0.1:$port"
TOML
"$hub" serve --config "$demo/hub/hub.toml" >"$demo/hub.log" 2>&1 &
echo $! >"$demo/hub.pid"
for _ in $(seq 100); do "$hub" get devices >/dev/null 2>&1 && break; sleep 0.1; done
echo "demo: hub started (pid $(cat "$demo/hub.pid"), log $demo/hub.log)"

# One local agent, registered with the label the demo Deployment selects.
snippet=$("$hub" device add demo-board --label role=demo -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"])')
cat >"$demo/agent/agent.toml" <<TOML
state_dir = "$demo/agent/state"
manifests_dir = "$demo/agent/manifests"
cgroup_parent = "drover-demo"
$snippet
TOML
"$agent" preflight --config "$demo/agent/agent.toml" >/dev/null
"$agent" run --config "$demo/agent/agent.toml" >"$demo/agent.log" 2>&1 &
echo $! >"$demo/agent.pid"
echo "demo: agent started (pid $(cat "$demo/agent.pid"), log $demo/agent.log)"

"$hub" apply -f configs/demo/
for _ in $(seq 150); do
  "$hub" get devices 2>/dev/null | grep -q ' 1/1 ' && break
  sleep 0.2
done
echo
"$hub" get devices
echo
"$hub" get deployments
echo
"$agent" ps --config "$demo/agent/agent.toml"
sleep 1
echo
echo "demo: the container's output:"
"$agent" logs --config "$demo/agent/agent.toml" hello
cat <<TXT

Drover runs the 'hello' Deployment (configs/demo/hello.yaml) on the local board as a
real container (32 MiB memory, 250m CPU, 32 pids). Try:
  $hub get devices                 $hub describe device demo-board
  $agent ps --config $demo/agent/agent.toml
  $agent logs --config $demo/agent/agent.toml hello -f
  edit configs/demo/hello.yaml and run: $hub apply -f configs/demo/
Stop it all with:  sudo scripts/demo.sh stop
TXT
