#!/usr/bin/env bash
# Make sure the project's dependencies are installed, which includes a Node >= 22 binary
# (the npm `node` package) for machines whose system Node is older. Prints the node to use.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# npm puts node_modules/.bin first on PATH: look past it for the system's own Node
sys_path="$(echo "$PATH" | tr ':' '\n' | grep -v "node_modules/.bin" | paste -sd: -)"
sys_node() { PATH="$sys_path" node "$@" 2>/dev/null; }
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  sys="$(sys_node -v || echo none)"
  echo "ensure-node: installing dependencies with npm ci (system Node: $sys; the project brings its own Node 24)" >&2
  npm ci --no-audit --no-fund >&2
fi
"$root/node_modules/.bin/node" -e 'if (+process.versions.node.split(".")[0] < 22) { console.error("ensure-node: node_modules/.bin/node is " + process.version + ", need >= 22"); process.exit(1) }'
sys_major="$(sys_node -p 'process.versions.node.split(".")[0]' || echo 0)"
if [ "$sys_major" -lt 22 ]; then
  echo "ensure-node: the system's Node is $(sys_node -v || echo missing) (p2p-orch needs >= 22): using Node $("$root/node_modules/.bin/node" -v) from node_modules" >&2
fi
echo "$root/node_modules/.bin/node"
