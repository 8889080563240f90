# Shared settings and helpers for the offline conformance lab. Sourced, not run.
# Every path can be overridden from the environment.

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$LAB_DIR/.." && pwd)

: "${LAB_CACHE:=/var/cache/peapod-lab}"     # built tools and images (kept between runs)
: "${LAB_STATE:=/var/lib/peapod-lab}"       # registry data, containerd roots, run results
: "${LAB_RUN:=/run/peapod-lab}"             # sockets and pid files
: "${LAB_BIN:=$LAB_CACHE/bin}"
: "${LAB_REGISTRY:=127.0.0.1:5000}"
: "${LAB_CERTS_D:=/etc/peapod/certs.d}"      # hosts.toml mirrors (peapod and containerd)
: "${LAB_CNI_CONF_DIR:=/etc/cni/net.d}"
: "${LAB_CNI_BIN_DIR:=/usr/lib/cni}"

export GOTOOLCHAIN=local GOFLAGS=-mod=mod
export PATH="$LAB_BIN:/usr/local/go/bin:$PATH"

log() { printf '[lab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# poll SECONDS CMD...: run CMD every 0.2 s until it succeeds (status 0) or
# SECONDS have passed (status 1).
poll() {
	local deadline=$((SECONDS + $1)); shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

# wait_for DESC SECONDS CMD...: poll CMD until it succeeds, or die.
wait_for() {
	local desc=$1 secs=$2; shift 2
	poll "$secs" "$@" || die "timed out after ${secs}s waiting for $desc"
}

# pid_alive PIDFILE: the process recorded in PIDFILE is running.
pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pidfile PIDFILE: stop a process the lab started (by its recorded PID only).
stop_pidfile() {
	local f=$1 pid i
	pid_alive "$f" || { rm -f "$f"; return 0; }
	pid=$(cat "$f")
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$f"
}
