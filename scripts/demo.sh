#!/usr/bin/env bash
# The Drover demo: builds the agent, makes an OCI image from Debian's busybox-static,
# starts the agent in standalone mode on the built-in defaults and runs the example
# workload (configs/manifests/hello.yaml) as a real container with cgroup limits.
#
#   sudo scripts/demo.sh          set up, build, start, show it running
#   sudo scripts/demo.sh stop     stop the workload and the agent; leaves nothing behind
#
# The hub (and with it fleet manifests over MQTT) comes with the next milestone; until
# then the demo runs the agent alone, as on a board without a hub.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=/var/lib/drover-demo
agent=target/release/drover-agent
cfg=$demo/agent.toml

if [ "$(id -u)" != 0 ]; then
  echo "demo: run as root (containers and cgroups need it): sudo $0 $*" >&2
  exit 1
fi

stop() {
  if [ -f "$demo/agent.pid" ] && kill -0 "$(cat "$demo/agent.pid")" 2>/dev/null; then
    echo "demo: removing the workload (the agent stops its container and deletes its cgroup)"
    rm -f "$demo"/manifests/*.yaml
    for _ in $(seq 100); do
      [ -z "$(ls -A "$demo/state/workloads" 2>/dev/null)" ] && break
      sleep 0.2
    done
    kill "$(cat "$demo/agent.pid")"
    sleep 0.5
  fi
  rm -f "$demo/agent.pid"
  left=$(find /sys/fs/cgroup/*/drover-demo -mindepth 1 -type d 2>/dev/null | wc -l)
  find /sys/fs/cgroup/*/drover-demo -depth -type d -exec rmdir {} + 2>/dev/null || true
  echo "demo: stopped ($left workload cgroups were left; now none)"
}

if [ "${1:-}" = stop ]; then
  stop
  exit 0
fi

scripts/setup.sh
echo "demo: building (release)…"
cargo build --release --locked -p drover-agent -p drover-tests --bins
[ -f "$demo/agent.pid" ] && stop
mkdir -p "$demo/manifests"
target/release/busybox-layout "$demo/busybox" latest
cat > "$cfg" <<TOML
# Demo agent config: the defaults of configs/agent.toml, with folders under $demo.
state_dir = "$demo/state"
manifests_dir = "$demo/manifests"
cgroup_parent = "drover-demo"
TOML
"$agent" preflight --config "$cfg"
"$agent" run --config "$cfg" >"$demo/agent.log" 2>&1 &
echo $! >"$demo/agent.pid"
cp configs/manifests/hello.yaml "$demo/manifests/"
echo "demo: agent started (pid $(cat "$demo/agent.pid"), log $demo/agent.log); waiting for the workload…"
for _ in $(seq 100); do
  "$agent" ps --config "$cfg" 2>/dev/null | grep -q Running && break
  sleep 0.2
done
"$agent" ps --config "$cfg"
sleep 1
echo
echo "demo: the container's output ($agent logs --config $cfg hello):"
"$agent" logs --config "$cfg" hello
cat <<TXT

Drover is running the 'hello' workload as a real container (32 MiB memory, 250m CPU,
32 pids). Try:
  $agent ps --config $cfg
  $agent logs --config $cfg hello -f
  edit $demo/manifests/hello.yaml (the agent replaces the container)
Stop it all with:  sudo scripts/demo.sh stop
TXT
