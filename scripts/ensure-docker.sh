#!/usr/bin/env bash
# Make sure a Docker engine answers and the test image p2p-orch/busybox:latest exists.
#
# Idempotent and fast when everything is already there. On a fresh Debian/Ubuntu machine (as root)
# it installs docker.io and busybox-static, starts dockerd in the background and builds the image
# locally (no registry is needed). Elsewhere it says how to get Docker and exits 1.
#
# Environment:
#   DOCKER_HOST               engine to use (default unix:///var/run/docker.sock)
#   P2P_ORCH_DOCKERD_FLAGS    extra flags for dockerd when this script starts it
set -euo pipefail

IMAGE="p2p-orch/busybox:latest"
DOCKERD_LOG="/var/log/p2p-orch-dockerd.log"
# A fresh dockerd answers in ~2 s here; 60 s leaves room for slow disks and first-boot storage setup.
SOCKET_WAIT_SECONDS=60
# An engine that does not answer `docker version` within this is treated as absent.
PROBE_TIMEOUT_SECONDS=5

say() { echo "ensure-docker: $*"; }
die() { echo "ensure-docker: $*" >&2; exit 1; }

DEFAULT_SOCKET="/var/run/docker.sock"
SOCKET="$DEFAULT_SOCKET"
case "${DOCKER_HOST:-}" in
  "") ;;
  unix://*) SOCKET="${DOCKER_HOST#unix://}" ;;
  *) SOCKET="" ;; # tcp:// or ssh://: a remote engine this script cannot start
esac

engine_answers() {
  if command -v docker >/dev/null 2>&1; then
    timeout "$PROBE_TIMEOUT_SECONDS" docker version --format '{{.Server.Version}}' >/dev/null 2>&1
  elif [ -n "$SOCKET" ] && command -v curl >/dev/null 2>&1; then
    timeout "$PROBE_TIMEOUT_SECONDS" curl -sf --unix-socket "$SOCKET" http://localhost/_ping >/dev/null 2>&1
  else
    return 1
  fi
}

is_debian() { [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; }
is_root() { [ "$(id -u)" -eq 0 ]; }
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Install the given Debian packages that are missing; `apt-get update` only when apt cannot find them.
apt_install_missing() {
  local missing=() p
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  local need_update=0
  for p in "${missing[@]}"; do
    if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]'; then need_update=1; fi
  done
  if [ "$need_update" -eq 1 ]; then
    say "apt-get update (package lists are missing or stale)"
    apt-get update -qq >/dev/null || die "apt-get update failed"
  fi
  apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
}

start_dockerd() {
  if pgrep -x dockerd >/dev/null 2>&1; then
    say "dockerd is already running but not answering yet; waiting for $SOCKET"
  else
    local flags=()
    [ "$SOCKET" != "$DEFAULT_SOCKET" ] && flags+=("-H" "unix://$SOCKET")
    # Without a working iptables (some minimal kernels) dockerd refuses to start its bridge network.
    if ! iptables -nL >/dev/null 2>&1; then
      say "iptables does not work on this kernel: starting dockerd with --iptables=false"
      flags+=("--iptables=false" "--ip6tables=false")
    fi
    # shellcheck disable=SC2206
    [ -n "${P2P_ORCH_DOCKERD_FLAGS:-}" ] && flags+=(${P2P_ORCH_DOCKERD_FLAGS})
    say "starting dockerd${flags[*]:+ ${flags[*]}} in the background (log: $DOCKERD_LOG)"
    setsid dockerd "${flags[@]}" >>"$DOCKERD_LOG" 2>&1 </dev/null &
    disown || true
  fi
  local waited=0
  until [ -S "$SOCKET" ] && engine_answers; do
    if [ "$waited" -ge "$SOCKET_WAIT_SECONDS" ]; then
      die "dockerd did not answer at $SOCKET within ${SOCKET_WAIT_SECONDS}s; see $DOCKERD_LOG"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  say "dockerd is up at $SOCKET"
}

# ---- 1. the engine --------------------------------------------------------------------------------
if engine_answers; then
  say "Docker engine answers${DOCKER_HOST:+ at $DOCKER_HOST}"
else
  [ -n "$SOCKET" ] || die "no Docker engine answers at DOCKER_HOST=$DOCKER_HOST (a remote engine: start it there)"
  if [ -S "$SOCKET" ] && [ ! -w "$SOCKET" ] && ! is_root; then
    die "no access to $SOCKET: run as root or add $(id -un) to the docker group"
  fi
  if ! is_root || ! is_debian; then
    die "no Docker engine answers; install Docker (https://docs.docker.com/engine/install/) and start it, or run this script as root on Debian/Ubuntu to do it automatically"
  fi
  say "no Docker engine answers: installing it if needed and starting dockerd"
  apt_install_missing docker.io busybox-static
  start_dockerd
fi

# ---- 2. the test image ----------------------------------------------------------------------------
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  say "image $IMAGE present"
  exit 0
fi

if ! pkg_installed busybox-static; then
  if is_root && is_debian; then
    apt_install_missing busybox-static
  else
    die "image $IMAGE is missing and building it needs a static busybox: install busybox-static (Debian/Ubuntu) or run this script as root"
  fi
fi
BUSYBOX="$(dpkg-query -L busybox-static 2>/dev/null | grep -E '/bin/busybox$' | head -n1)"
[ -n "$BUSYBOX" ] && [ -x "$BUSYBOX" ] || die "busybox-static is installed but its /bin/busybox was not found"

say "building $IMAGE from $BUSYBOX (docker import, no registry needed)"
ROOTFS="$(mktemp -d)"
trap 'rm -rf "$ROOTFS"' EXIT
mkdir -p "$ROOTFS/bin" "$ROOTFS/etc" "$ROOTFS/www" "$ROOTFS/tmp" "$ROOTFS/root"
chmod 1777 "$ROOTFS/tmp"
cp "$BUSYBOX" "$ROOTFS/bin/busybox"
for applet in $("$ROOTFS/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$ROOTFS/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOTFS/etc/group"
echo '<html><body>p2p-orch test page</body></html>' >"$ROOTFS/www/index.html"
tar -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/bin' \
  --change 'CMD ["sh"]' \
  - "$IMAGE" >/dev/null
say "image $IMAGE built"
