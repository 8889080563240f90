#!/usr/bin/env bash
# Runs critest (cri-tools v1.36.0) against a CRI endpoint and summarizes its
# ginkgo JSON report. Results go to $LAB_STATE/results/<name>/.
#   critest.sh --endpoint unix:///path.sock --name LABEL [--parallel N]
#              [--focus REGEX] [--skip REGEX] [--benchmark] [--expected FILE]
#              [--websocket]
#   --websocket: the streaming specs' exec, attach and port-forward go over
#     WebSocket (critest -websocket-exec/-attach/-portforward), not SPDY.
#   --summarize-only: do not run critest, summarize the last report of <name> again.
# Exit status: 1 on a failure that is neither unavoidable here (see cannot_pass)
# nor listed in --expected FILE (one full spec name a line, # comments).
# The last line is always "critest <name>: N passed, N failed, N skipped".
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# Specs that cannot pass on this host: a pull by a pinned upstream digest
# (offline), and AppArmor (not on this kernel). Matched against full names.
cannot_pass='public image with digest should be pulled and removed|[Aa]pp[Aa]rmor'
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

# One line per It spec: state<TAB>full name<TAB>reason: the failure/skip message
# up to gomega's struct dump, on one line.
# Specs filtered out by focus/skip are "skipped" without a message: not counted.
jq -r '.[].SpecReports[] | select(.LeafNodeType == "It")
	| [ (if (.State == "skipped" and ((.Failure.Message // "") == "")) then "filtered"
	     elif .State == "passed" or .State == "skipped" or .State == "pending" then .State
	     else "failed" end),
	    ((.ContainerHierarchyTexts // []) + [.LeafNodeText] | join(" ")),
	    ((.Failure.Message // "") | split("\n") | map(gsub("^\\s+|\\s+$"; ""))
	     | (first(range(length) as $i | select(.[$i] == "{") | $i) // length) as $n | .[:$n]
	     | map(select(length > 0 and (test("^<[^>]*>:$") | not))) | join(" ")
	     | if length > 240 then .[:240] + "…" else . end) ]
	| @tsv' "$out/report.json" >"$out/specs.tsv"

count() { awk -F'\t' -v s="$1" '$1 == s' "$out/specs.tsv" | wc -l; }
npass=$(count passed) nfail=$(count failed) nskip=$(count skipped)
echo
echo "== critest $name: $(count filtered) specs not selected, run time ${secs}s"

awk -F'\t' '$1 == "failed"' "$out/specs.tsv" >"$out/failed.tsv"
grep -E "$cannot_pass" "$out/failed.tsv" >"$out/cannot-pass.tsv" || true
grep -vE "$cannot_pass" "$out/failed.tsv" >"$out/real-failed.tsv" || true

if [ -s "$out/cannot-pass.tsv" ] || grep -qE "$cannot_pass" <(awk -F'\t' '$1 == "skipped"' "$out/specs.tsv"); then
	echo "-- cannot pass on this host (not counted against the result):"
	awk -F'\t' -v re="$cannot_pass" '$2 ~ re && ($1 == "failed" || $1 == "skipped") {
		printf "   %-7s %s\n", $1, $2; if ($1 == "failed") printf "           %s\n", $3 }' "$out/specs.tsv"
fi
if [ -s "$out/real-failed.tsv" ]; then
	echo "-- failed:"
	awk -F'\t' '{printf "   %s\n       %s\n", $2, $3}' "$out/real-failed.tsv"
fi
other_skips=$(awk -F'\t' -v re="$cannot_pass" '$1 == "skipped" && $2 !~ re' "$out/specs.tsv")
if [ -n "$other_skips" ]; then
	echo "-- skipped at run time:"
	printf '%s\n' "$other_skips" | awk -F'\t' '{printf "   %s\n       %s\n", $2, $3}'
fi

status=0
if [ -n "$expected" ]; then
	known=$(sed -e 's/[[:space:]]*#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$expected")
	while IFS=$'\t' read -r _ spec _; do
		grep -qxF -- "$spec" <<<"$known" || { echo "unexpected failure: $spec"; status=1; }
	done <"$out/real-failed.tsv"
	while IFS= read -r spec; do
		if awk -F'\t' -v s="$spec" '$1 == "passed" && $2 == s {f=1} END {exit !f}' "$out/specs.tsv"; then
			echo "now passes — remove it from the list: $spec"
		fi
	done <<<"$known"
elif [ -s "$out/real-failed.tsv" ]; then
	status=1
fi

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

[ "$rc" = 0 ] || [ -s "$out/failed.tsv" ] || { echo "critest exited $rc with no failed spec (see $out/critest.log)"; status=1; }
echo "critest $name: $npass passed, $nfail failed, $nskip skipped"
exit $status
