#!/usr/bin/env bash
# The README's "run it" command (`npm start`): a local cluster of three agents on 127.0.0.2–4
# (data in .demo/), a sample stack deployed, `web` scaled to 10 with live progress, a rolling
# update of `web` followed batch by batch, and the
# commands to look around and to stop it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
NODE="$(bash scripts/ensure-node.sh)"
bash scripts/ensure-docker.sh
P="$NODE $root/cli/main.js"
DEMO="$root/.demo"

if [ -d "$DEMO" ]; then
  echo "== stopping the previous demo cluster"
  bash scripts/demo-stop.sh >/dev/null 2>&1 || true
fi
mkdir -p "$DEMO"
# if any step fails, don't leave half a cluster running
trap 'echo "demo failed; stopping its agents (logs were in $DEMO)" >&2; bash "$root/scripts/demo-stop.sh" >/dev/null 2>&1' ERR

start_agent() { # index, extra args...
  local i="$1"; shift
  setsid "$NODE" "$root/cli/main.js" agent --data "$DEMO/n$i" --name "node$i" --listen "/ip4/127.0.0.$((i + 1))/tcp/7946" \
    --ingress-host "127.0.0.$((i + 1))" "$@" \
    >"$DEMO/n$i.log" 2>&1 </dev/null &
  echo $! >"$DEMO/n$i.pid"
  for _ in $(seq 1 100); do [ -S "$DEMO/n$i/control.sock" ] && return 0; sleep 0.1; done
  echo "agent $i did not start; see $DEMO/n$i.log" >&2; tail -5 "$DEMO/n$i.log" >&2; exit 1
}

echo "== starting node1 (creates the cluster) on 127.0.0.2"
start_agent 1 --label zone=a
TOKEN="$($P --data "$DEMO/n1" join-token)"
echo "== starting node2 and node3 with the join token"
start_agent 2 --join "$TOKEN" --label zone=b
start_agent 3 --join "$TOKEN" --label zone=b
for _ in $(seq 1 50); do
  [ "$($P --data "$DEMO/n3" nodes --json | grep -c '"status": "alive"')" = 3 ] && break; sleep 0.2
done
$P --data "$DEMO/n3" nodes

echo; echo "== deploying examples/stack.yaml from node1"
$P --data "$DEMO/n1" deploy -f examples/stack.yaml -y
echo; echo "== scaling web to 10 from node2"
$P --data "$DEMO/n2" scale web=10
echo; echo "== replicas, as node3 sees them"
$P --data "$DEMO/n3" ps web
echo; echo "== the same, straight from Docker (containers labelled with this cluster's node ids)"
ids="$($P --data "$DEMO/n1" nodes --json | "$NODE" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).map(n=>n.id).join("|")))')"
docker ps --filter label=p2p-orch.service=web --format '{{.Names}}\t{{.Label "p2p-orch.node"}}\t{{.Status}}\t{{.Ports}}' \
  | awk -F'\t' -v ids="$ids" 'BEGIN { n = split(ids, a, "|"); for (i = 1; i <= n; i++) { mine[a[i]] = 1; short[a[i]] = substr(a[i], length(a[i]) - 11) } }
      $2 in mine { printf "%-20s %-14s %-26s %s\n", $1, short[$2], $3, $4; count++ } END { print count " web containers running" }'
# awk reads all its input (no early exit), so no broken pipe under `set -o pipefail`
echo; echo "== the routing mesh: port 8080 on every node answers, from replicas on any node (each page names its container)"
for i in 1 2 3; do
  printf '127.0.0.%s:8080 ->' "$((i + 1))"
  for _ in 1 2 3 4 5 6; do printf ' %s' "$("$NODE" -e "fetch('http://127.0.0.$((i + 1)):8080/').then(r => r.text()).then(t => process.stdout.write(t.trim()), e => process.stdout.write('failed: ' + e.message))")"; done
  echo
done
worker="$(docker ps -q --filter label=p2p-orch.service=worker | head -1)"
if [ -n "$worker" ]; then echo; echo "== a worker container reaches web by its name:"; docker exec "$worker" wget -q -O - http://web/ || true; fi
echo; echo "== a rolling update of web to version 2 from node3 (5 at a time, start-first; no node leads it)"
$P --data "$DEMO/n3" update web --env VERSION=2
printf '127.0.0.2:8080 -> %s\n' "$("$NODE" -e "fetch('http://127.0.0.2:8080/').then(r => r.text()).then(t => process.stdout.write(t.trim()), e => process.stdout.write('failed: ' + e.message))")"
cat <<TXT

The cluster keeps running. Look around:
  export P2P_ORCH_DATA=$DEMO/n2
  npx p2p-orch nodes          npx p2p-orch services        npx p2p-orch ps web
  npx p2p-orch scale web=3    docker ps --filter label=p2p-orch.service=web
  curl http://127.0.0.3:8080/    npx p2p-orch inspect web     npx p2p-orch logs worker
  npx p2p-orch update web --env VERSION=3    npx p2p-orch rollout status web    npx p2p-orch rollback web
  kill -9 \$(cat $DEMO/n3.pid)   # a lost node: watch the survivors take over its replicas
Logs: $DEMO/n1.log …   Stop everything cleanly:  npm run stop
TXT
