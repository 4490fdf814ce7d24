#!/usr/bin/env bash
# The test command (`npm test`): dependencies and Node >= 22, a Docker engine and the local test
# image, a type check, then unit + integration tests (in parallel) and end-to-end tests (one file at a time:
# they start real agents on fixed 127.0.0.x addresses and share one Docker engine), then the chaos
# tests (agents in network namespaces with real packet drops; needs root, skipped otherwise).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
NODE="$(bash scripts/ensure-node.sh)"
bash scripts/ensure-docker.sh
export PATH="$root/node_modules/.bin:$PATH"
echo "== type check (tsc)"
"$root/node_modules/.bin/tsc" -p .
echo "== unit and integration tests"
"$NODE" --test --test-reporter=spec test/unit/*.test.ts test/integration/*.test.ts
echo "== end-to-end tests (real agents, real libp2p, real Docker)"
"$NODE" --test --test-reporter=spec --test-concurrency=1 test/e2e/*.test.ts
echo "== chaos tests (real faults: agents in network namespaces, iptables drops; one at a time)"
"$NODE" --test --test-reporter=spec --test-concurrency=1 test/chaos/*.test.ts
