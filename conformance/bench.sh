#!/usr/bin/env bash
# Benchmarks peapod beside containerd 2.4.2's built-in CRI on the same daemon:
# pod start latency (RunPodSandbox + CreateContainer + StartContainer) and the
# latency of ListContainerStats / ListPodSandboxStats with 100 containers
# running (conformance/podbench), with ratios, then critest's benchmark table
# for both.
#   bench.sh [-n PODS] [-c STATS_CONTAINERS]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

n=20 c=100
while [ $# -gt 0 ]; do
	case $1 in
	-n) n=$2; shift 2 ;;
	-c) c=$2; shift 2 ;;
	*) die "unknown option $1" ;;
	esac
done

"$LAB_DIR/prepare.sh"
"$LAB_DIR/containerd.sh" up 2.4
ctrd=$("$LAB_DIR/containerd.sh" address 2.4)
"$LAB_DIR/peapod.sh" up bench "$ctrd"
"$LAB_DIR/peapod.sh" clean bench
trap '"$LAB_DIR/peapod.sh" down bench' EXIT

(cd "$REPO_DIR" && go build -o "$LAB_STATE/podbench" ./conformance/podbench)
echo "== pod start latency, $n pods each (lower is better; ratio to peapod)"
"$LAB_STATE/podbench" -n "$n" -stats-containers "$c" \
	"peapod=unix://$("$LAB_DIR/peapod.sh" address bench)" \
	"containerd-2.4-cri=unix://$ctrd"

"$LAB_DIR/critest.sh" --endpoint "unix://$("$LAB_DIR/peapod.sh" address bench)" --name bench-peapod --benchmark || true
"$LAB_DIR/critest.sh" --endpoint "unix://$ctrd" --name bench-containerd-2.4-builtin --benchmark || true
