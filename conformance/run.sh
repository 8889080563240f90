#!/usr/bin/env bash
# Runs critest v1.36.0 against peapod on each lab containerd, and against
# containerd 2.4.2's built-in CRI as the reference, printing a summary per run.
#
#   run.sh [--targets "2.4 1.6"] [--no-reference] [--parallel N] [--focus RE] [--benchmark]
#
# Without --parallel, peapod is run serially and then with -parallel 2 on
# each target (critest's specs then race each other, as a kubelet's pods do).
# Unless the run is narrowed (--focus, --skip, --benchmark), the Streaming
# specs are run once more on each target with exec, attach and port-forward
# over WebSocket instead of SPDY (critest.sh --websocket).
#
# peapod runs are held to expected-failures.txt: a failure not on the list
# fails the run, a listed spec that passes is reported so the list can shrink.
# They are also held to the reference (compare.sh): a spec containerd's CRI
# passes that peapod fails or skips fails the lab run.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

targets="2.4 1.6" reference=1 critest_args=() parallels="1 2" websocket=1
while [ $# -gt 0 ]; do
	case $1 in
	--targets) targets=$2; shift 2 ;;
	--no-reference) reference=0; shift ;;
	--parallel) parallels=$2; shift 2 ;;
	--focus|--skip) critest_args+=("$1" "$2"); shift 2 ;;
	--benchmark) critest_args+=("$1"); shift ;;
	*) die "unknown option $1" ;;
	esac
done
expected=(--expected "$LAB_DIR/expected-failures.txt")
case " ${critest_args[*]-} " in *" --benchmark "*|*" --focus "*|*" --skip "*) expected=() parallels=${parallels%% *} websocket=0 ;; esac

"$LAB_DIR/prepare.sh"

failed=() summaries=() peapod_runs=()
# run COUNTS NAME ENDPOINT [critest.sh args]: one critest run; when COUNTS is
# "held", a run that misses its expectations fails the whole lab run.
run() {
	local counts=$1 name=$2 ep=$3 rc=0 out
	shift 3
	out=$LAB_STATE/results/$name.txt
	mkdir -p "$(dirname "$out")"
	"$LAB_DIR/critest.sh" --endpoint "unix://$ep" --name "$name" "$@" ${critest_args[@]+"${critest_args[@]}"} 2>&1 | tee "$out" || rc=$?
	summaries+=("$(grep -E "^critest $name: " "$out" | tail -n 1 || echo "critest $name: no summary")")
	if [ "$counts" = held ]; then
		peapod_runs+=("$LAB_STATE/results/$name")
		[ "$rc" -eq 0 ] || failed+=("$name")
	fi
}

for t in $targets; do
	"$LAB_DIR/containerd.sh" up "$t"
	ctrd=$("$LAB_DIR/containerd.sh" address "$t")
	"$LAB_DIR/peapod.sh" up "containerd-$t" "$ctrd"
	# Start from a clean slate: an interrupted earlier run may have left pods
	# (and their hostPort rules) in this lab instance.
	"$LAB_DIR/peapod.sh" clean "containerd-$t"
	for p in $parallels; do
		name=peapod-containerd-$t
		[ "$p" = 1 ] || name=$name-parallel$p
		run held "$name" "$("$LAB_DIR/peapod.sh" address "containerd-$t")" --parallel "$p" ${expected[@]+"${expected[@]}"}
	done
	if [ "$websocket" = 1 ]; then
		run held "peapod-containerd-$t-websocket" "$("$LAB_DIR/peapod.sh" address "containerd-$t")" \
			--websocket --focus Streaming ${expected[@]+"${expected[@]}"}
	fi
	"$LAB_DIR/peapod.sh" down "containerd-$t"
done

if [ "$reference" = 1 ]; then
	# The reference's result is containerd's: reported, never held against peapod.
	"$LAB_DIR/containerd.sh" up 2.4
	run reported containerd-2.4-builtin "$("$LAB_DIR/containerd.sh" address 2.4)"
fi

echo
echo "== conformance summary"
printf '%s\n' "${summaries[@]}"
if [ "$reference" = 1 ]; then
	"$LAB_DIR/compare.sh" --suite critest --reference "$LAB_STATE/results/containerd-2.4-builtin" \
		"${peapod_runs[@]}" || failed+=("behind containerd-2.4-builtin")
fi
if [ ${#failed[@]} -gt 0 ]; then
	die "critest runs that did not meet their expectations: ${failed[*]} (see above)"
fi
log "all conformance runs met their expectations"
