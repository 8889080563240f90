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

# wait_for DESC SECONDS CMD...: poll CMD every 0.2 s until it succeeds.
wait_for() {
	local desc=$1 secs=$2; shift 2
	local i
	for ((i = 0; i < secs * 5; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	die "timed out after ${secs}s waiting for $desc"
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
