#!/usr/bin/env bash
# Make sure the project's dependencies are installed, which includes a Node >= 22 binary
# (the npm `node` package) for machines whose system Node is older. Prints the node to use.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  sys="$(node -v 2>/dev/null || echo none)"
  echo "ensure-node: installing dependencies with npm ci (system Node: $sys; the project brings its own Node 24)" >&2
  npm ci --no-audit --no-fund >&2
fi
"$root/node_modules/.bin/node" -e 'if (+process.versions.node.split(".")[0] < 22) { console.error("ensure-node: node_modules/.bin/node is " + process.version + ", need >= 22"); process.exit(1) }'
sys_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$sys_major" -lt 22 ]; then
  echo "ensure-node: the system's Node is $(node -v 2>/dev/null || echo missing) (p2p-orch needs >= 22): using Node $("$root/node_modules/.bin/node" -v) from node_modules" >&2
fi
echo "$root/node_modules/.bin/node"
