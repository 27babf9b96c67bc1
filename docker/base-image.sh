#!/usr/bin/env bash
# Build a minimal Debian bookworm base image with Python 3.11 when no registry is reachable
# (python:3.11-slim cannot be pulled).  Usage: docker/base-image.sh [NAME:TAG]
# Contents: debootstrap minbase + python3, python3-venv (ensurepip bundles pip), ca-certificates, tzdata.
# python3-pip is left out on purpose: images use their own venv, and it would add 25 MB.
set -euo pipefail
NAME="${1:-rltrader/base:bookworm}"
SUITE="${SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
command -v debootstrap >/dev/null || { echo "debootstrap missing (apt-get install debootstrap)" >&2; exit 1; }

dir="$(mktemp -d /var/tmp/rltrader-rootfs.XXXXXX)"
trap 'rm -rf "$dir"' EXIT
t0=$(date +%s)
debootstrap --variant=minbase \
  --include=python3,python3-venv,ca-certificates,tzdata \
  "$SUITE" "$dir" "$MIRROR" >"$dir.log" 2>&1 || { tail -n 40 "$dir.log" >&2; exit 1; }
rm -f "$dir.log"
# Slim it the way the official slim images do: no apt lists, caches, docs, man pages.
chroot "$dir" apt-get clean
rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/usr/share/doc/* \
       "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/usr/share/locale/* "$dir"/var/log/*.log "$dir"/tmp/*
# debootstrap leaves the host's resolv.conf/hostname; Docker manages both at run time.
: >"$dir/etc/resolv.conf"; : >"$dir/etc/hostname"
tar --numeric-owner -C "$dir" -c . | docker import \
  -c 'ENV LANG=C.UTF-8' \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["python3"]' \
  - "$NAME" >/dev/null
echo "base image $NAME built in $(( $(date +%s) - t0 ))s: $(docker image inspect -f '{{.Size}}' "$NAME" | awk '{printf "%.0f MB", $1/1e6}')"
docker run --rm "$NAME" python3 -c 'import sys, ssl, venv; print(sys.version)'
