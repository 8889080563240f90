#!/usr/bin/env bash
# Runs the project's kubelet end-to-end suite (conformance/kubelet): a stock
# kubelet v1.34.4, standalone, runs static pods on peapod on each lab
# containerd, then on containerd 2.4.2's built-in CRI as the reference.
#
#   kubelet.sh [--targets "2.4 1.6"] [--no-reference] [--run REGEX]
#
# peapod runs get an instance of their own (the kubelet removes every pod it
# did not create), and the suite starts and stops the kubelet itself. Each
# run ends with one line: "kubelet <target>: N passed, N failed". peapod's
# runs must pass, and skip no check the reference passes (compare.sh); the
# reference's result is printed beside them.
# Uses ports 10248, 10250 and 10255: never run it beside another kubelet.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

targets="2.4 1.6" reference=1 run_re=
while [ $# -gt 0 ]; do
	case $1 in
	--targets) targets=$2; shift 2 ;;
	--no-reference) reference=0; shift ;;
	--run) run_re=$2; shift 2 ;;
	*) die "unknown option $1 (see the header of $0)" ;;
	esac
done

"$LAB_DIR/prepare.sh"
[ -x "$LAB_BIN/kubelet" ] || die "$LAB_BIN/kubelet missing (build-tools.sh)"
busy=$(ss -Htln 2>/dev/null | awk '{print $4}' | grep -E ':(10248|10250|10255)$' || true)
[ -z "$busy" ] || die "kubelet ports in use (another kubelet?): $busy"

# Compile the suite once; each run is then the same binary.
suite=$LAB_STATE/kubelet-suite.test
(cd "$REPO_DIR" && go test -c -tags kubelet -o "$suite" ./conformance/kubelet)

failed=() summaries=() peapod_runs=()
# suite_run NAME ENDPOINT HELD [suite flags]: one run of the suite.
suite_run() {
	local name=$1 ep=$2 held=$3 out rc=0 passed failed_n
	shift 3
	out=$LAB_STATE/results/kubelet-$name.txt
	mkdir -p "$(dirname "$out")" "${out%.txt}"
	log "kubelet suite against $name ($ep)"
	"$suite" -test.v -test.count=1 -test.timeout 20m ${run_re:+-test.run "$run_re"} \
		-endpoint "$ep" -kubelet "$LAB_BIN/kubelet" -root "$LAB_STATE/kubelet-$name" "$@" 2>&1 | tee "$out" || rc=$?
	# Leaf checks only: TestKubelet/<group>/<check>.
	passed=$(grep -cE -- '--- PASS: TestKubelet/[^/ ]+/' "$out" || true)
	failed_n=$(grep -cE -- '--- FAIL: TestKubelet/[^/ ]+/' "$out" || true)
	[ "$rc" = 0 ] || [ "$failed_n" -gt 0 ] || failed_n=1   # the suite itself failed
	# specs.tsv for compare.sh: state<TAB>check<TAB>reason, leaf checks only.
	sed -nE 's/^ *--- (PASS|FAIL|SKIP): (TestKubelet\/[^/ ]+\/[^ ]+) .*/\1\t\2\t/p' "$out" |
		sed -e 's/^PASS/passed/' -e 's/^FAIL/failed/' -e 's/^SKIP/skipped/' >"${out%.txt}/specs.tsv"
	summaries+=("kubelet $name: $passed passed, $failed_n failed")
	if [ "$held" = held ]; then
		peapod_runs+=("${out%.txt}")
		[ "$rc" = 0 ] || failed+=("$name")
	fi
}

for t in $targets; do
	"$LAB_DIR/containerd.sh" up "$t"
	inst=kubelet-$t
	"$LAB_DIR/peapod.sh" up "$inst" "$("$LAB_DIR/containerd.sh" address "$t")"
	"$LAB_DIR/peapod.sh" clean "$inst"
	suite_run "peapod-containerd-$t" "unix://$("$LAB_DIR/peapod.sh" address "$inst")" held \
		-runtime-log "$LAB_STATE/logs/peapod-$inst.log" -netns-dir "$LAB_RUN/peapod-$inst/netns"
	# A narrowed run (--run) ends with pods the kubelet had no time to tear
	# down: their hostPorts would take the reference's.
	"$LAB_DIR/peapod.sh" clean "$inst"
	"$LAB_DIR/peapod.sh" down "$inst"
done

if [ "$reference" = 1 ]; then
	"$LAB_DIR/containerd.sh" up 2.4
	suite_run containerd-2.4-builtin "unix://$("$LAB_DIR/containerd.sh" address 2.4)" reported \
		-netns-dir "$LAB_RUN/containerd-2.4/state/netns"
	"$LAB_DIR/containerd.sh" clean 2.4
fi

echo
echo "== kubelet suite summary"
printf '%s\n' "${summaries[@]}"
if [ "$reference" = 1 ]; then
	"$LAB_DIR/compare.sh" --suite kubelet --reference "$LAB_STATE/results/kubelet-containerd-2.4-builtin" \
		"${peapod_runs[@]}" || failed+=("behind containerd-2.4-builtin")
fi
if [ ${#failed[@]} -gt 0 ]; then
	die "kubelet suite runs that failed: ${failed[*]} (see above)"
fi
log "the kubelet ran every pod on peapod"
