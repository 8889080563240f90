#!/usr/bin/env bash
# Runs the integration suite's TestChaos again and again on one lab
# containerd, and stops at the first failure: a flake is a defect, and this
# is how one is found, and how its fix is shown to hold.
#
#   chaos-loop.sh [--runs N] [--containerd 2.4|1.6] [--run REGEX]
#
# Each run prints one line: "chaos <containerd> run I/N: PASS|FAIL in Ss
# (TestChaos Ts; K peapod kills; slowest step ...)". The full output of
# every run is kept under $LAB_STATE/chaos/, the failing run's path printed,
# with every peapod's log (each CRI call and how long it took) beside it in
# run-I.peapod/, passed or failed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

runs=15 target=1.6 run_re='^TestChaos$'
while [ $# -gt 0 ]; do
	case $1 in
	--runs) runs=$2; shift 2 ;;
	--containerd) target=$2; shift 2 ;;
	--run) run_re=$2; shift 2 ;;
	*) die "unknown option $1 (see the header of $0)" ;;
	esac
done

"$LAB_DIR/prepare.sh"
"$LAB_DIR/containerd.sh" up "$target"
out=$LAB_STATE/chaos/$target
mkdir -p "$out"
suite=$out/integration.test
(cd "$REPO_DIR" && go test -c -tags integration -o "$suite" ./integration)

export PEAPOD_TEST_CONTAINERD=$("$LAB_DIR/containerd.sh" address "$target")
export PEAPOD_TEST_CONTAINERD_BIN=$("$LAB_DIR/containerd.sh" binary "$target")
export PEAPOD_TEST_RUNC=$LAB_BIN/runc
passed=0
for ((i = 1; i <= runs; i++)); do
	logf=$out/run-$i.log
	rm -rf "$out/run-$i.peapod" && mkdir -p "$out/run-$i.peapod"
	begin=$SECONDS rc=0
	# The suite finds peapod's binaries and test data from the package dir.
	(cd "$REPO_DIR/integration" && PEAPOD_TEST_LOG_DIR=$out/run-$i.peapod "$suite" -test.count=1 -test.timeout 30m -test.v -test.run "$run_re") >"$logf" 2>&1 || rc=$?
	wall=$((SECONDS - begin))
	chaos_time=$(grep -oE -- '--- (PASS|FAIL): TestChaos \([0-9.]+s\)' "$logf" | grep -oE '[0-9.]+s' | tail -n 1 || true)
	summary=$(grep -oE 'peapod SIGKILLed [0-9]+ times.*' "$logf" | tail -n 1 || true)
	if [ "$rc" = 0 ]; then
		passed=$((passed + 1))
		echo "chaos $target run $i/$runs: PASS in ${wall}s (TestChaos ${chaos_time:-?}; ${summary:-no summary})"
	else
		echo "chaos $target run $i/$runs: FAIL in ${wall}s (TestChaos ${chaos_time:-?}; ${summary:-no summary}); log: $logf"
		grep -E -- '^\s+(chaos|losttask|[a-z_]+)_test\.go:[0-9]+: ' "$logf" | grep -vE 'pod .* is [0-9a-f]+, ran in' | head -n 20 >&2 || true
		echo "chaos $target: $passed of $runs runs passed in a row before the first failure"
		exit 1
	fi
done
echo "chaos $target: $passed of $runs runs passed in a row"
