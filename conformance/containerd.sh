#!/usr/bin/env bash
# Runs the lab's containerd instances, each fully separate from any system
# containerd and from each other (socket, ttrpc, root, state, shim sockets,
# runc root, netns pins), with the built-in CRI plugin set up as the reference.
#   containerd.sh up|down|clean|status|address|binary 2.4|1.6
# 2.4: containerd 2.4.2 + runc 1.5.2 from $LAB_BIN.  1.6: Debian's containerd 1.6.20 + runc.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

: "${LAB_SANDBOX_IMAGE:=registry.k8s.io/pause:3.10}"

usage() { echo "usage: $0 up|down|clean|status|address|binary 2.4|1.6" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1 t=$2
sys_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
case $t in
2.4) bin=$LAB_BIN/containerd ctr=$LAB_BIN/ctr runc=$LAB_BIN/runc path="$LAB_BIN:$sys_path" ;;
1.6) bin=/usr/bin/containerd ctr=/usr/bin/ctr runc=/usr/bin/runc path=$sys_path ;;
*) usage ;;
esac

run=$LAB_RUN/containerd-$t          # sockets, state, shim sockets, runc root
root=$LAB_STATE/containerd-$t       # content, snapshots, metadata, log, config
sock=$run/containerd.sock
pidf=$LAB_RUN/containerd-$t.pid
cfg=$root/config.toml
logf=$root/containerd.log

config_2_4() {
	cat <<EOF
# written by conformance/containerd.sh
version = 4
root = "$root"
state = "$run/state"
imports = []
oom_score = 0

[plugins.'io.containerd.server.v1.grpc']
  address = "$sock"
[plugins.'io.containerd.server.v1.ttrpc']
  address = "$sock.ttrpc"      # v4 does not derive it from grpc's
[plugins.'io.containerd.server.v1.debug']
  address = ""
[plugins.'io.containerd.server.v1.metrics']
  address = ""
[plugins.'io.containerd.shim.v1.manager']
  socket_dir = "$run/s"
[plugins.'io.containerd.nri.v1.nri']
  disable = true               # its socket is a global path
[plugins.'io.containerd.transfer.v1.local']
  config_path = "$LAB_CERTS_D"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$LAB_SANDBOX_IMAGE"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$LAB_CERTS_D"

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true        # this VM cannot lower oom_score_adj
  netns_mounts_under_state_dir = true  # own netns pin dir
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$LAB_CNI_BIN_DIR"]
    conf_dir = "$LAB_CNI_CONF_DIR"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$runc"
        Root = "$run/runc"
        SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
}

config_1_6() {
	cat <<EOF
# written by conformance/containerd.sh
version = 2
root = "$root"
state = "$run/state"
imports = []
oom_score = 0

[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$LAB_SANDBOX_IMAGE"
  restrict_oom_score_adj = true        # this VM cannot lower oom_score_adj
  netns_mounts_under_state_dir = true  # own netns pin dir
  enable_unprivileged_ports = false    # 1.6's defaults
  enable_unprivileged_icmp = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$LAB_CNI_BIN_DIR"
    conf_dir = "$LAB_CNI_CONF_DIR"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$runc"
        Root = "$run/runc"             # 1.6 otherwise uses /run/containerd/runc
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$LAB_CERTS_D"
EOF
}

answers() { "$ctr" --address "$sock" --timeout 2s version >/dev/null 2>&1; }

up() {
	if pid_alive "$pidf"; then
		wait_for "containerd $t on $sock" 30 answers
		return 0
	fi
	[ -x "$bin" ] || die "$bin missing (run build-tools.sh / packages.sh)"
	mkdir -p "$run" "$root"
	rm -f "$sock" "$sock.ttrpc"
	if [ "$t" = 2.4 ]; then config_2_4 >"$cfg"; else config_1_6 >"$cfg"; fi
	log "starting containerd $t ($bin) on $sock, log $logf"
	# A clean environment; PATH decides which shim (and runc) the daemon finds.
	env -i PATH="$path" HOME=/root setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' \
		_ "$pidf" "$bin" --config "$cfg" >>"$logf" 2>&1 </dev/null &
	for _ in $(seq 50); do [ -s "$pidf" ] && break; sleep 0.1; done
	wait_for "containerd $t on $sock (see $logf)" 60 answers
	log "containerd $t up (pid $(cat "$pidf"))"
}

# clean removes the pods a suite left in the built-in CRI (the reference's),
# so that no pod of one suite runs on beside the next, nor holds its hostPorts.
clean() {
	if [ -x "$LAB_BIN/crictl" ] && answers; then
		timeout 120 "$LAB_BIN/crictl" -r "unix://$sock" rmp -af >/dev/null 2>&1 || true
	fi
}

down() {
	pid_alive "$pidf" || { rm -f "$pidf"; return 0; }
	clean
	stop_pidfile "$pidf"
	log "containerd $t down"
}

case $cmd in
up) up ;;
down) down ;;
clean) clean ;;
status)
	if pid_alive "$pidf" && answers; then echo "containerd $t: up, pid $(cat "$pidf"), unix://$sock"
	else echo "containerd $t: down"; exit 3; fi ;;
address) echo "$sock" ;;
binary) echo "$bin" ;;
*) usage ;;
esac
