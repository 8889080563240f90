#!/usr/bin/env bash
# Runs a peapod instance of the lab from this checkout's bin/peapod.
#   peapod.sh up NAME CONTAINERD_SOCKET [EXTRA_FLAGS...]
#   peapod.sh down|status|address|namespace|clean NAME
#     (namespace: its containerd namespace; clean: remove all its pods)
# NAME "main" serves the default socket /run/peapod/peapod.sock with the
# default root, state and containerd namespace; any other name gets its own
# socket, root, state and namespace, so lab runs never disturb one another.
# Flags given after the socket come after these and win.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() { echo "usage: $0 up NAME CONTAINERD_SOCKET [FLAGS...] | down|status|address|namespace|state|clean NAME" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 name=$2
shift 2

# Each lab instance also has a containerd namespace of its own: instances
# sharing one would see (and clean up) each other's pods.
if [ "$name" = main ]; then
	sock=/run/peapod/peapod.sock root=/var/lib/peapod state=/run/peapod ns=k8s.peapod
else
	sock=$LAB_RUN/peapod-$name/peapod.sock root=$LAB_STATE/peapod-$name state=$LAB_RUN/peapod-$name ns=k8s.peapod.lab-$name
fi
pidfile=$LAB_RUN/peapod-$name.pid
logfile=$LAB_STATE/logs/peapod-$name.log

serving() { "$LAB_BIN/crictl" --runtime-endpoint "unix://$sock" --timeout 2s version >/dev/null 2>&1; }
# ready: peapod has rebuilt its state from containerd and answers the calls
# that touch it (until then they wait, then answer Unavailable).
ready() { "$LAB_BIN/crictl" --runtime-endpoint "unix://$sock" --timeout 5s pods -q >/dev/null 2>&1; }

case $cmd in
up)
	[ $# -ge 1 ] || usage
	ctrd=$1; shift
	if pid_alive "$pidfile" && serving; then
		# A peapod started from a binary rebuilt since runs old code: restart it.
		if [[ "$(readlink "/proc/$(cat "$pidfile")/exe")" != *" (deleted)" ]]; then
			log "peapod $name already serving $sock (pid $(cat "$pidfile"))"
			exit 0
		fi
		log "peapod $name runs a binary rebuilt since it started: restarting it"
		stop_pidfile "$pidfile"
	fi
	[ -x "$REPO_DIR/bin/peapod" ] || make -s -C "$REPO_DIR" build
	mkdir -p "$LAB_RUN" "$(dirname "$logfile")"
	# peapod picks the OCI runtime itself: the lab's runc v1.5.2, whatever
	# runc the containerd under it would find (Debian's 1.1.5 for 1.6).
	config=$LAB_STATE/peapod-$name.toml
	cat >"$config" <<EOC
# Written by conformance/peapod.sh for the lab instance "$name".
[runtimes.runc]
binary = "$LAB_BIN/runc"
EOC
	# A lab instance runs with -v=4 so its log shows every CRI call.
	setsid nohup "$REPO_DIR/bin/peapod" --config "$config" --listen "$sock" --root "$root" --state "$state" \
		--containerd-address "$ctrd" --containerd-namespace "$ns" --registry-config-path "$LAB_CERTS_D" \
		--cni-conf-dir "$LAB_CNI_CONF_DIR" --v 4 "$@" </dev/null >>"$logfile" 2>&1 &
	echo $! >"$pidfile"
	started=$SECONDS
	wait_for "peapod $name on $sock (log: $logfile)" 20 serving
	# Its start-up recovery is quick on an idle containerd, slower on one
	# still collecting a test's garbage.
	if ! poll 120 ready; then
		tail -n 40 "$logfile" >&2
		die "peapod $name has not recovered its state from containerd in 120s (log: $logfile)"
	fi
	log "peapod $name serving $sock, recovered in $((SECONDS - started))s (pid $(cat "$pidfile"), containerd $ctrd, log $logfile)"
	;;
down)
	stop_pidfile "$pidfile"
	# The IO server peapod started outlives it by design (logs flow while
	# peapod restarts); the lab's instance takes it down too. The next
	# server takes up the containers that are left.
	io_pid=$state/io/server.pid
	if pid_alive "$io_pid" && tr '\0' ' ' <"/proc/$(cat "$io_pid")/cmdline" | grep -q -- "--dir $state/io "; then
		stop_pidfile "$io_pid"
	fi
	;;
state)
	echo "$state"
	;;
status)
	if pid_alive "$pidfile" && serving; then echo "peapod $name: serving $sock (pid $(cat "$pidfile"))"; else echo "peapod $name: down"; exit 1; fi
	;;
address)
	echo "$sock"
	;;
namespace)
	echo "$ns"
	;;
clean)
	[ "$name" != main ] || die "refusing to remove the pods of the main instance"
	timeout 300 "$LAB_BIN/crictl" --runtime-endpoint "unix://$sock" rmp -af >/dev/null
	;;
*) usage ;;
esac
