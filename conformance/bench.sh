#!/usr/bin/env bash
# Benchmarks peapod beside containerd 2.4.2's built-in CRI on the same daemon
# (conformance/podbench; ratios are peapod / containerd's CRI): pod start and
# teardown, where peapod's time goes (its phase metrics), pods started in
# parallel, List/Status/stats calls and memory footprint with many pods
# running, and PullImage; then critest's benchmark table for both.
#   bench.sh [--quick] [-n PODS] [--rounds R] [--parallel N] [--scale-pods N]
#            [--scale-per-pod N] [--scale-calls N] [--scale-rounds N]
#            [--memory-pods N] [--relist-seconds N] [--pulls N]
#   --quick: a smoke run (rounds 1, n 5, parallel 10, scale-pods 20,
#     memory-pods 10, relist-seconds 5, pulls 3, critest benchmark samples 5); options given
#     after it win.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

n=20 rounds=3 parallel=30 scale_pods=250 scale_per_pod=2 scale_calls=100 scale_rounds=1 memory_pods=100 relist_seconds=30 pulls=10
while [ $# -gt 0 ]; do
	case $1 in
	--quick)
		rounds=1 n=5 parallel=10 scale_pods=20 memory_pods=10 relist_seconds=5 pulls=3
		: "${LAB_BENCH_N:=5}"; export LAB_BENCH_N # critest's samples
		shift ;;
	-n) n=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--parallel) parallel=$2; shift 2 ;;
	--scale-pods) scale_pods=$2; shift 2 ;;
	--scale-per-pod) scale_per_pod=$2; shift 2 ;;
	--scale-calls) scale_calls=$2; shift 2 ;;
	--scale-rounds) scale_rounds=$2; shift 2 ;;
	--memory-pods) memory_pods=$2; shift 2 ;;
	--relist-seconds) relist_seconds=$2; shift 2 ;;
	--pulls) pulls=$2; shift 2 ;;
	*) die "unknown option $1 (see the header of $0)" ;;
	esac
done

# peapod's metrics (its phase histogram), on the loopback only.
metrics_address=127.0.0.1:19192

"$LAB_DIR/prepare.sh"
"$LAB_DIR/containerd.sh" up 2.4
ctrd=$("$LAB_DIR/containerd.sh" address 2.4)
# Restarted rather than reused: a running instance may lack these flags.
# -v 2, not the lab's 4: logging every CRI call would slow what is measured.
"$LAB_DIR/peapod.sh" down bench
"$LAB_DIR/peapod.sh" up bench "$ctrd" --v 2 --metrics-address "$metrics_address"
trap '"$LAB_DIR/peapod.sh" down bench' EXIT
"$LAB_DIR/peapod.sh" clean bench
# The reference starts as empty as peapod's instance: pods other lab runs
# left in containerd's CRI (node conformance's reference, the kubelet
# suite's) would slow its List and stats calls, and their containers would
# keep the image's snapshots from the garbage collection that follows a
# RemoveImage, sparing it the unpack that peapod's PullImage then does. The
# benchmark must not run beside those suites.
crictl_ref() { timeout 300 "$LAB_BIN/crictl" --runtime-endpoint "unix://$ctrd" "$@"; }
others=$(crictl_ref pods -q | wc -l)
if [ "$others" -gt 0 ]; then
	log "removing the $others pods other lab runs left in containerd's CRI"
	crictl_ref rmp -af >/dev/null
fi
# Likewise its images: one sharing a layer with the pulled image keeps that
# layer's snapshot after a RemoveImage, and the pull after it unpacks
# nothing. (The benchmark pulls what it needs.)
crictl_ref --image-endpoint "unix://$ctrd" rmi --prune >/dev/null

peapod_pid=$(cat "$LAB_RUN/peapod-bench.pid")
containerd_pid=$(cat "$LAB_RUN/containerd-2.4.pid")
io_binary=$REPO_DIR/bin/peapod-io # peapod runs the peapod-io beside its own binary
io_dir=$("$LAB_DIR/peapod.sh" state bench)/io # its IO server's, named on its command line
[ -x "$io_binary" ] || die "$io_binary missing (make build)"

(cd "$REPO_DIR" && go build -o "$LAB_STATE/podbench" ./conformance/podbench)
echo "== podbench: peapod beside containerd 2.4's built-in CRI (lower is better; ratio = peapod / containerd's CRI)"
"$LAB_STATE/podbench" -rounds "$rounds" -n "$n" -parallel "$parallel" \
	-scale-pods "$scale_pods" -scale-per-pod "$scale_per_pod" -scale-calls "$scale_calls" \
	-scale-rounds "$scale_rounds" -memory-pods "$memory_pods" -relist-seconds "$relist_seconds" -pulls "$pulls" \
	-metrics "peapod=http://$metrics_address/metrics" \
	-pid "peapod=$peapod_pid" -pid "containerd-2.4-cri=$containerd_pid" \
	-containerd-pid "$containerd_pid" -io-binary "peapod=$io_binary" -io-match "peapod=$io_dir" \
	"peapod=unix://$("$LAB_DIR/peapod.sh" address bench)" \
	"containerd-2.4-cri=unix://$ctrd"

"$LAB_DIR/critest.sh" --endpoint "unix://$("$LAB_DIR/peapod.sh" address bench)" --name bench-peapod --benchmark || true
"$LAB_DIR/critest.sh" --endpoint "unix://$ctrd" --name bench-containerd-2.4-builtin --benchmark || true
