#!/usr/bin/env bash
# Runs critest (cri-tools v1.36.0) against a CRI endpoint and summarizes its
# ginkgo JSON report. Results go to $LAB_STATE/results/<name>/.
#   critest.sh --endpoint unix:///path.sock --name LABEL [--parallel N]
#              [--focus REGEX] [--skip REGEX] [--benchmark] [--expected FILE]
#              [--websocket]
#   --websocket: the streaming specs' exec, attach and port-forward go over
#     WebSocket (critest -websocket-exec/-attach/-portforward), not SPDY.
#   --summarize-only: do not run critest, summarize the last report of <name> again.
# Exit status: 1 on a failure that is neither unavoidable here
# (critest-cannot-pass.txt) nor listed in --expected FILE (ginkgo-summary.sh).
# The last line is always "critest <name>: N passed, N failed, N skipped".
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# Specs that cannot pass on this host, with the reason: critest-cannot-pass.txt.
: "${LAB_BENCH_N:=20}"   # samples per benchmark

endpoint= name= parallel=1 focus= skip= bench=0 expected= again=0 websocket=0
while [ $# -gt 0 ]; do
	case $1 in
	--endpoint) endpoint=$2; shift 2 ;;
	--name) name=$2; shift 2 ;;
	--parallel) parallel=$2; shift 2 ;;
	--focus) focus=$2; shift 2 ;;
	--skip) skip=$2; shift 2 ;;
	--benchmark) bench=1; shift ;;
	--websocket) websocket=1; shift ;;
	--expected) expected=$(realpath -m "$2"); shift 2 ;;
	--summarize-only) again=1; shift ;;
	*) die "unknown argument $1 (see the header of $0)" ;;
	esac
done
[ -n "$name" ] || die "--name is required"
[ -n "$endpoint" ] || [ "$again" = 1 ] || die "--endpoint is required"
[ -z "$expected" ] || [ -r "$expected" ] || die "cannot read $expected"
out=$LAB_STATE/results/$name

run_critest() {
	[ -x "$LAB_BIN/critest" ] || die "$LAB_BIN/critest missing (run build-tools.sh)"

	# critest's own needs: host ports 12000-12003 free and ipcmk.
	command -v ipcmk >/dev/null || die "ipcmk missing (util-linux)"
	busy=$(ss -Htlnu 2>/dev/null | awk '{print $5}' | grep -E ':1200[0-3]$' || true)
	[ -z "$busy" ] || die "host ports in use, critest needs 12000-12003 free: $busy"

	rm -rf "$out" && mkdir -p "$out"
	args=(
		-runtime-endpoint "$endpoint" -image-endpoint "$endpoint"
		-ginkgo.json-report "$out/report.json" -ginkgo.no-color
	)
	[ -z "$focus" ] || args+=(-ginkgo.focus "$focus")
	[ -z "$skip" ] || args+=(-ginkgo.skip "$skip")
	[ "$websocket" = 0 ] || args+=(-websocket-exec -websocket-attach -websocket-portforward)
	if [ "$parallel" -gt 1 ]; then
		command -v ginkgo >/dev/null || die "-parallel needs the ginkgo CLI on PATH (build-tools.sh)"
		args+=(-parallel "$parallel")
	fi
	if [ "$bench" = 1 ]; then
		cat >"$out/benchmark-params.yaml" <<-EOF
		containersNumber: $LAB_BENCH_N
		containersNumberParallel: 1
		podsNumber: $LAB_BENCH_N
		podsNumberParallel: 1
		imagesNumber: $LAB_BENCH_N
		imagesNumberParallel: 1
		EOF
		mkdir -p "$out/benchmark"
		args+=(-benchmark -benchmarking-params-file "$out/benchmark-params.yaml"
			-benchmarking-output-dir "$out/benchmark")
	fi

	log "critest $name against $endpoint (log $out/critest.log)"
	local start=$(date +%s) rc=0
	(cd "$out" && "$LAB_BIN/critest" "${args[@]}") 2>&1 | tee "$out/critest.log" || rc=$?
	echo "$rc $(($(date +%s) - start))" >"$out/critest.rc"
}

[ "$again" = 1 ] || run_critest
{ read -r rc secs <"$out/critest.rc"; } 2>/dev/null || rc=0 secs=-
[ -s "$out/report.json" ] || die "critest exited $rc without a report (see $out/critest.log)"
[ ! -s "$out/benchmark-params.yaml" ] || bench=1

if [ "$bench" = 1 ]; then
	echo "-- benchmark latencies (ms):"
	printf '   %-42s %8s %8s %4s\n' operation p50 p95 n
	for f in "$out"/benchmark/*.json; do
		[ -e "$f" ] || continue
		jq -r '. as $r | range(0; $r.operationsNames | length) as $i
			| [$r.datapoints[].operationsDurationsNs[$i]] | sort as $v | ($v | length) as $n
			| select($n > 0)
			| [$r.operationsNames[$i], ($v[(($n - 1) * 0.5 | floor)] / 1e6), ($v[(($n - 1) * 0.95 | floor)] / 1e6), $n]
			| @tsv' "$f" |
			awk -F'\t' '{printf "   %-42s %8.2f %8.2f %4d\n", $1, $2, $3, $4}'
	done
	# The pod+container start benchmark reports through gmeasure, in the ginkgo report.
	jq -r '.[].SpecReports[].ReportEntries[]? | select(.Name == "start-container-benchmark")
		| .Value.AsJSON | fromjson | .Measurements[]? | select(.Type == "Duration")
		| [.Name, (.Durations | sort | .[((length - 1) * 0.5 | floor)] / 1e6),
		   (.Durations | sort | .[((length - 1) * 0.95 | floor)] / 1e6), (.Durations | length)] | @tsv' \
		"$out/report.json" 2>/dev/null |
		awk -F'\t' '{printf "   %-42s %8.2f %8.2f %4d\n", $1, $2, $3, $4}'
fi

exec "$LAB_DIR/ginkgo-summary.sh" --report "$out/report.json" --out "$out" --suite critest --name "$name" \
	--cannot-pass "$LAB_DIR/critest-cannot-pass.txt" ${expected:+--expected "$expected"} --rc "$rc" --secs "$secs"
