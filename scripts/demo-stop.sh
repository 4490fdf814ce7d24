#!/usr/bin/env bash
# Stops the demo cluster cleanly: removes its services (the agents stop their containers), then
# stops the agents (each announces that it leaves).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
DEMO="$root/.demo"
NODE="$root/node_modules/.bin/node"
for i in 1 2 3; do
  if [ -S "$DEMO/n$i/control.sock" ]; then
    ids="$("$NODE" cli/main.js --data "$DEMO/n$i" nodes --json 2>/dev/null | "$NODE" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{console.log(JSON.parse(s).map(x=>x.id).join(" "))}catch{}})')"
    svcs="$("$NODE" cli/main.js --data "$DEMO/n$i" services --json 2>/dev/null | "$NODE" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{console.log(JSON.parse(s).map(x=>x.name).join(" "))}catch{}})')"
    if [ -n "$svcs" ]; then echo "removing services: $svcs"; "$NODE" cli/main.js --data "$DEMO/n$i" rm $svcs; fi
    break
  fi
done
# give the agents a moment to stop their containers
for _ in $(seq 1 50); do
  [ -z "$(docker ps -q --filter label=p2p-orch.service 2>/dev/null | head -1)" ] && break; sleep 0.2
done
for i in 1 2 3; do
  if [ -f "$DEMO/n$i.pid" ]; then kill -TERM "$(cat "$DEMO/n$i.pid")" 2>/dev/null && echo "stopped node$i"; fi
done
sleep 1
# containers of a node whose agent is gone (e.g. killed with -9 while looking around) have no owner left
for id in ${ids:-}; do
  left="$(docker ps -aq --filter "label=p2p-orch.node=$id" 2>/dev/null)"
  if [ -n "$left" ]; then echo "removing containers left by node ${id: -12}"; docker rm -f $left >/dev/null; fi
  # the node's mesh network (its agent leaves it in place for its running containers)
  for net in $(docker network ls -q --filter "label=p2p-orch.node=$id" 2>/dev/null); do docker network rm "$net" >/dev/null 2>&1 || true; done
done
rm -rf "$DEMO"
echo "demo cluster stopped"
