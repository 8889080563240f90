#!/usr/bin/env bash
# Benchmarks peapod beside containerd 2.4.2's built-in CRI on the same daemon:
# pods started per second (RunPodSandbox + CreateContainer + StartContainer,
# conformance/podbench) with the ratio, then critest's benchmark table for both.
#   bench.sh [-n PODS]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

n=20
[ "${1:-}" = -n ] && n=$2

"$LAB_DIR/prepare.sh"
"$LAB_DIR/containerd.sh" up 2.4
ctrd=$("$LAB_DIR/containerd.sh" address 2.4)
"$LAB_DIR/peapod.sh" up bench "$ctrd"
"$LAB_DIR/peapod.sh" clean bench
trap '"$LAB_DIR/peapod.sh" down bench' EXIT

(cd "$REPO_DIR" && go build -o "$LAB_STATE/podbench" ./conformance/podbench)
echo "== pod start latency, $n pods each (lower is better; ratio to peapod)"
"$LAB_STATE/podbench" -n "$n" \
	"peapod=unix://$("$LAB_DIR/peapod.sh" address bench)" \
	"containerd-2.4-cri=unix://$ctrd"

"$LAB_DIR/critest.sh" --endpoint "unix://$("$LAB_DIR/peapod.sh" address bench)" --name bench-peapod --benchmark || true
"$LAB_DIR/critest.sh" --endpoint "unix://$ctrd" --name bench-containerd-2.4-builtin --benchmark || true
