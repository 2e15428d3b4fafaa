#!/usr/bin/env bash
# Start or stop a Docker daemon for building the images and running the container test tier on a
# machine that has Docker's packages but no running daemon (a fresh CI machine, a dev VM).
#
#   images/dockerd.sh start STATE_DIR   use the daemon that answers, else start one under STATE_DIR
#   images/dockerd.sh stop STATE_DIR    stop the daemon only if `start` started it, then clean up
#
# `start` touches nothing when `docker info` already answers. Otherwise it starts `dockerd` in the
# background with its data, exec root, pid file and log under STATE_DIR, and polls `docker info`
# until the daemon answers (a few seconds). `stop` reads STATE_DIR/started-by-us: without it, it
# does nothing. With it, it stops that daemon, unmounts what the daemon left mounted under
# STATE_DIR (overlay layers, the network namespace), removes the docker0 bridge and the DOCKER
# iptables chains, and only then deletes STATE_DIR.
#
# Needs root (dockerd does). Debian/Ubuntu: apt-get install -y docker.io.
# Environment: DOCKER (default docker), DOCKERD_WAIT_S (default 60).
set -euo pipefail

usage() {
    echo "usage: images/dockerd.sh start|stop STATE_DIR" >&2
    exit 2
}
[[ $# -eq 2 ]] || usage
action="$1"
state_dir="$2"
docker_cmd="${DOCKER:-docker}"
marker="$state_dir/started-by-us"

answers() { "$docker_cmd" info >/dev/null 2>&1; }

start() {
    if answers; then
        echo "dockerd.sh: a Docker daemon already answers; using it (nothing to stop later)"
        return 0
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        echo "error: no Docker daemon answers and dockerd is not installed; run apt-get install -y docker.io" >&2
        return 1
    fi
    mkdir -p "$state_dir/data" "$state_dir/exec"
    # setsid: the daemon gets its own session, so a Ctrl-C in the caller's terminal does not reach it.
    setsid dockerd \
        --data-root "$state_dir/data" \
        --exec-root "$state_dir/exec" \
        --pidfile "$state_dir/dockerd.pid" \
        --storage-driver overlay2 \
        >"$state_dir/dockerd.log" 2>&1 </dev/null &
    echo "$!" >"$marker"
    local waited=0 limit="${DOCKERD_WAIT_S:-60}"
    until answers; do
        if ! kill -0 "$(cat "$marker")" 2>/dev/null; then
            echo "error: dockerd exited at start; its log is $state_dir/dockerd.log:" >&2
            tail -n 20 "$state_dir/dockerd.log" >&2
            return 1
        fi
        if ((waited >= limit)); then
            echo "error: dockerd did not answer within ${limit}s; its log is $state_dir/dockerd.log" >&2
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "dockerd.sh: started dockerd (pid $(cat "$marker"), state under $state_dir) in ${waited}s"
}

stop() {
    if [[ ! -f "$marker" ]]; then
        echo "dockerd.sh: this script did not start the daemon; leaving it alone"
        return 0
    fi
    local pid
    pid="$(cat "$marker")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "dockerd.sh: dockerd (pid $pid) still running after 30s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # containerd-shim processes started by this daemon outlive it only if a container still runs.
    # Unmount deepest first: overlay layers, then the netns (nsfs) mount under the exec root.
    local mounts
    mounts="$(awk -v root="$(realpath "$state_dir")" 'index($2, root) == 1 {print $2}' /proc/mounts | sort -r)"
    if [[ -n "$mounts" ]]; then
        while IFS= read -r mount_point; do
            umount "$mount_point" 2>/dev/null || umount -l "$mount_point" 2>/dev/null || true
        done <<<"$mounts"
    fi
    if ip link show docker0 >/dev/null 2>&1; then
        ip link delete docker0 || true
    fi
    if command -v iptables >/dev/null 2>&1; then
        for table_chain in "filter DOCKER-USER" "filter DOCKER-ISOLATION-STAGE-1" \
            "filter DOCKER-ISOLATION-STAGE-2" "filter DOCKER" "nat DOCKER"; do
            read -r table chain <<<"$table_chain"
            iptables -t "$table" -L "$chain" >/dev/null 2>&1 || continue
            # Drop the jumps into the chain, then the chain itself.
            while iptables -t "$table" -S | grep -q -- "-j $chain\$"; do
                rule="$(iptables -t "$table" -S | grep -- "-j $chain\$" | head -n 1 | sed 's/^-A /-D /')"
                # shellcheck disable=SC2086
                iptables -t "$table" $rule || break
            done
            iptables -t "$table" -F "$chain" 2>/dev/null || true
            iptables -t "$table" -X "$chain" 2>/dev/null || true
        done
        # The bridge's own rules: masquerading out of it, forwarding to and from it.
        for table_chain in "nat POSTROUTING" "filter FORWARD"; do
            read -r table chain <<<"$table_chain"
            while iptables -t "$table" -S "$chain" | grep -q -- "docker0"; do
                rule="$(iptables -t "$table" -S "$chain" | grep -- "docker0" | head -n 1 | sed 's/^-A /-D /')"
                # shellcheck disable=SC2086
                iptables -t "$table" $rule || break
            done
        done
    fi
    if awk -v root="$(realpath "$state_dir")" 'index($2, root) == 1 {found = 1} END {exit !found}' /proc/mounts; then
        echo "error: mounts remain under $state_dir; not deleting it" >&2
        return 1
    fi
    rm -rf "$state_dir"
    echo "dockerd.sh: stopped dockerd (pid $pid) and removed $state_dir"
}

case "$action" in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
