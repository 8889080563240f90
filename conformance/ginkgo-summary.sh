#!/usr/bin/env bash
# Summarizes a ginkgo JSON report (critest's, e2e_node's) against the lab's
# rules, and prints its last line as "<suite> <name>: N passed, N failed, N skipped".
#
#   ginkgo-summary.sh --report FILE --out DIR --suite LABEL --name NAME
#                     [--cannot-pass FILE] [--expected FILE] [--rc N] [--secs N]
#
# --cannot-pass FILE: specs that cannot pass on this host, one extended regex
#   a line with its reason after " # "; they are listed apart with the
#   reason, and their failures are not counted against the run.
# --expected FILE: the ratchet, one full spec name a line (# comments): a
#   failure not on it fails the run; a listed spec that passes is reported
#   so that the list can shrink.
# Writes DIR/specs.tsv (state, full name, reason) for other scripts to compare.
# Exit status: 1 on a failure neither unavoidable nor expected, or when the
# suite exited non-zero with no failed spec.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

report= out= suite= name= cannot_file= expected= rc=0 secs=-
while [ $# -gt 0 ]; do
	case $1 in
	--report) report=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--suite) suite=$2; shift 2 ;;
	--name) name=$2; shift 2 ;;
	--cannot-pass) cannot_file=$2; shift 2 ;;
	--expected) expected=$2; shift 2 ;;
	--rc) rc=$2; shift 2 ;;
	--secs) secs=$2; shift 2 ;;
	*) die "unknown argument $1 (see the header of $0)" ;;
	esac
done
[ -s "$report" ] || die "$suite $name: no report at $report (exit status $rc)"

# The cannot-pass regexes joined into one; "^$" matches no spec name.
cannot_pass='^$'
declare -a cp_re=() cp_why=()
if [ -n "$cannot_file" ]; then
	while IFS= read -r line; do
		line=${line%%[[:space:]]}
		case $line in ''|'#'*) continue ;; esac
		cp_re+=("${line%% # *}")
		cp_why+=("${line#* # }")
	done <"$cannot_file"
	[ ${#cp_re[@]} -eq 0 ] || cannot_pass=$(IFS='|'; echo "${cp_re[*]}")
fi

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
	| @tsv' "$report" >"$out/specs.tsv"

count() { awk -F'\t' -v s="$1" '$1 == s' "$out/specs.tsv" | wc -l; }
npass=$(count passed) nfail=$(count failed) nskip=$(count skipped)
echo
echo "== $suite $name: $(count filtered) specs not selected, run time ${secs}s"

awk -F'\t' '$1 == "failed"' "$out/specs.tsv" >"$out/failed.tsv"
grep -E "$cannot_pass" "$out/failed.tsv" >"$out/cannot-pass.tsv" || true
grep -vE "$cannot_pass" "$out/failed.tsv" >"$out/real-failed.tsv" || true

if [ ${#cp_re[@]} -gt 0 ]; then
	listed=$(awk -F'\t' -v re="$cannot_pass" '$2 ~ re && ($1 == "failed" || $1 == "skipped" || $1 == "passed")' "$out/specs.tsv")
	if [ -n "$listed" ]; then
		echo "-- cannot pass on this host (not counted against the result):"
		while IFS=$'\t' read -r st spec why; do
			reason=
			for i in "${!cp_re[@]}"; do
				if grep -qE -- "${cp_re[$i]}" <<<"$spec"; then reason=${cp_why[$i]}; break; fi
			done
			printf '   %-7s %s\n           why: %s\n' "$st" "$spec" "$reason"
			[ "$st" != failed ] || printf '           %s\n' "$why"
		done <<<"$listed"
	fi
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
		[ -n "$spec" ] || continue
		if awk -F'\t' -v s="$spec" '$1 == "passed" && $2 == s {f=1} END {exit !f}' "$out/specs.tsv"; then
			echo "now passes — remove it from the list: $spec"
		fi
	done <<<"$known"
elif [ -s "$out/real-failed.tsv" ]; then
	status=1
fi

[ "$rc" = 0 ] || [ -s "$out/failed.tsv" ] || { echo "$suite exited $rc with no failed spec"; status=1; }
echo "$suite $name: $npass passed, $nfail failed, $nskip skipped"
exit $status
