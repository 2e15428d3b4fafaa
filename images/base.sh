#!/usr/bin/env bash
# Build a Python 3.11 base image from Debian bookworm's own packages, for machines that cannot pull
# python:3.11-slim-bookworm (no registry reachable, or a policy that allows only Debian mirrors).
#
#   images/base.sh IMAGE_REF
#
# debootstrap (minbase variant) installs bookworm with python3 (3.11), python3-venv (venv and its
# bundled pip), python3-dev (headers: Triton compiles launcher stubs against Python.h at run time)
# and python-is-python3 (`python` on PATH), from the mirror apt already uses on this machine (or
# DEBIAN_MIRROR), then `docker import`s the tree. The Dockerfiles need nothing else from a base.
# Needs root and debootstrap (apt-get install -y debootstrap). About a minute.
#
# Environment: DOCKER (default docker), DEBIAN_MIRROR (default: the first Debian mirror in apt's
# sources), DEBIAN_SUITE (default bookworm).
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: images/base.sh IMAGE_REF" >&2; exit 2; }
ref="$1"
docker_cmd="${DOCKER:-docker}"
suite="${DEBIAN_SUITE:-bookworm}"

if ! command -v debootstrap >/dev/null 2>&1; then
    echo "error: debootstrap is not installed; run apt-get install -y debootstrap (or set MONGARS_BASE_IMAGE to an image you can pull)" >&2
    exit 1
fi

mirror="${DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
    # deb822 (URIs: ...) or one-line (deb URL suite ...) sources; the first /debian mirror wins.
    mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n 1 | tr -d ' ' || true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs="$(mktemp -d "${TMPDIR:-/tmp}/mongars-base.XXXXXX")"
cleanup() {
    # debootstrap mounts /proc and /sys inside the tree while it runs; unmount before deleting.
    awk -v root="$rootfs" 'index($2, root) == 1 {print $2}' /proc/mounts | sort -r | while IFS= read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$rootfs"
}
trap cleanup EXIT

echo "base.sh: debootstrap $suite (minbase) from $mirror"
debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-dev,python-is-python3,ca-certificates \
    "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    echo "error: debootstrap failed; the last lines of $rootfs.log:" >&2
    tail -n 20 "$rootfs.log" >&2
    exit 1
}
rm -f "$rootfs.log"
# Leave no package cache or lists in the image; apt-get update runs in each Dockerfile that installs.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*

tar --numeric-owner -C "$rootfs" -c . | "$docker_cmd" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    --message "debootstrap --variant=minbase $suite from $mirror" \
    - "$ref" >/dev/null
echo "base.sh: imported $ref ($("$docker_cmd" run --rm "$ref" python --version 2>&1))"
