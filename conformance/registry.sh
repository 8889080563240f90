#!/usr/bin/env bash
# The lab's local image registry: Debian's docker-registry (distribution 2.8.2) on
# 127.0.0.1:5000 only, no auth, deletes enabled, data under $LAB_STATE/registry.
# Usage: registry.sh up|down|status
set -euo pipefail
. "$(dirname "$0")/lib.sh"

REG_DIR=$LAB_STATE/registry
REG_CONFIG=$REG_DIR/config.yml
REG_LOG=$REG_DIR/registry.log
REG_PID=$LAB_RUN/registry.pid
REG_BIN=/usr/bin/docker-registry
REG_URL=http://$LAB_REGISTRY/v2/

serving() { curl -fs -o /dev/null --max-time 2 "$REG_URL"; }

write_config() {
	mkdir -p "$REG_DIR/data"
	# Loopback only: the lab must never expose the registry beyond this machine.
	# No health check of the storage driver (it only adds log noise), no debug server.
	cat >"$REG_CONFIG.tmp" <<EOF
version: 0.1
log:
  level: info
  fields:
    service: peapod-lab-registry
storage:
  filesystem:
    rootdirectory: $REG_DIR/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $LAB_REGISTRY
  headers:
    X-Content-Type-Options: [nosniff]
EOF
	mv "$REG_CONFIG.tmp" "$REG_CONFIG"
}

up() {
	if serving; then
		log "registry already serving at $REG_URL"
		return 0
	fi
	case $LAB_REGISTRY in 127.0.0.1:*) ;; *) die "LAB_REGISTRY must be on 127.0.0.1, got $LAB_REGISTRY" ;; esac
	[ -x "$REG_BIN" ] || die "$REG_BIN missing (apt-get install docker-registry)"
	if pid_alive "$REG_PID"; then
		# Started earlier but not answering yet (or wedged): give it a moment, then restart.
		serving || { sleep 2; serving && return 0; stop_pidfile "$REG_PID"; }
	fi
	write_config
	mkdir -p "$LAB_RUN"
	log "starting registry on $LAB_REGISTRY (log $REG_LOG)"
	# setsid+nohup: detached from the caller's session so it outlives the calling shell.
	# setsid does not fork here (a non-interactive shell's background job is no group
	# leader) and the subshell execs it, so $! is the registry's own PID; checked below.
	# Inherited descriptors are closed first: a caller's lock file (images/build.sh holds
	# one) must not stay locked for the registry's lifetime.
	(
		for fd in /proc/$BASHPID/fd/*; do
			fd=${fd##*/}
			if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
		done
		exec setsid nohup "$REG_BIN" serve "$REG_CONFIG" >>"$REG_LOG" 2>&1 </dev/null
	) &
	echo $! >"$REG_PID"
	wait_for "registry at $REG_URL" 20 serving
	[ "$(readlink "/proc/$(cat "$REG_PID")/exe" 2>/dev/null)" = "$REG_BIN" ] ||
		die "pid file $REG_PID does not point at $REG_BIN"
	log "registry up, pid $(cat "$REG_PID")"
}

down() {
	if pid_alive "$REG_PID"; then
		log "stopping registry pid $(cat "$REG_PID")"
		stop_pidfile "$REG_PID"
	else
		rm -f "$REG_PID"
		# Something else answers on the port: not ours to kill.
		if serving; then log "a registry not started by the lab serves $REG_URL; left alone"; fi
	fi
}

status() {
	if serving; then
		if pid_alive "$REG_PID"; then
			echo "registry serving at $REG_URL (pid $(cat "$REG_PID"), data $REG_DIR/data)"
		else
			echo "registry serving at $REG_URL (not started by the lab)"
		fi
		return 0
	fi
	if pid_alive "$REG_PID"; then
		echo "registry pid $(cat "$REG_PID") running but not answering at $REG_URL"
	else
		echo "registry not running"
	fi
	return 3
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
*) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
