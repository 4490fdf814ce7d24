#!/usr/bin/env bash
# The benchmark command (`npm run bench [-- --quick]`): dependencies and Node >= 22, a Docker
# engine and the local test image, then every test/bench/*.bench.ts in turn (one at a time: they
# start real agents on 127.0.0.x addresses and share one Docker engine). A failing bench does not
# stop the others; the exit status is non-zero if any failed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) args+=("--quick") ;;
    # e.g. --only convergence,footprint: the cluster bench runs only those parts
    --only) [ $# -ge 2 ] || { echo "bench: --only needs a list, e.g. --only convergence,footprint" >&2; exit 2; }; args+=("--only" "$2"); shift ;;
    *) echo "bench: unknown argument \"$1\" (usage: scripts/bench.sh [--quick] [--only convergence,detection,footprint])" >&2; exit 2 ;;
  esac
  shift
done

NODE="$(bash scripts/ensure-node.sh)"
bash scripts/ensure-docker.sh
export PATH="$root/node_modules/.bin:$PATH"

shopt -s nullglob
benches=(test/bench/*.bench.ts)
if [ ${#benches[@]} -eq 0 ]; then
  echo "bench: no test/bench/*.bench.ts found" >&2
  exit 1
fi

failed=()
for b in "${benches[@]}"; do
  echo
  echo "== $(basename "$b" .bench.ts) ($b${args[*]:+ ${args[*]}}) — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  start=$SECONDS
  if "$NODE" "$b" "${args[@]}"; then
    echo "== $(basename "$b" .bench.ts): done in $((SECONDS - start)) s"
  else
    rc=$?
    echo "== $(basename "$b" .bench.ts): FAILED (exit $rc) after $((SECONDS - start)) s" >&2
    failed+=("$b")
  fi
done

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "bench: ${#failed[@]} of ${#benches[@]} failed: ${failed[*]}" >&2
  exit 1
fi
echo "bench: all ${#benches[@]} completed"
