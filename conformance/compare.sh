#!/usr/bin/env bash
# Holds peapod's runs of a suite to the reference's run of the same suite:
# a spec the reference passes must pass on peapod too, not fail, and not be
# skipped at run time (a skip the spec decides itself, with a message, is
# how a runtime that lacks a feature passes unnoticed). Specs a run filtered
# out (--focus, --skip) are not compared.
#
#   compare.sh --suite LABEL --reference DIR PEAPOD_DIR...
#
# Each DIR holds the specs.tsv that ginkgo-summary.sh (or kubelet.sh) wrote:
# state<TAB>full name<TAB>reason. Prints one line per peapod run, and the
# specs it is behind on; exits 1 when any run is behind.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

suite= ref=
while [ $# -gt 0 ]; do
	case $1 in
	--suite) suite=$2; shift 2 ;;
	--reference) ref=$2; shift 2 ;;
	-*) die "unknown option $1 (see the header of $0)" ;;
	*) break ;;
	esac
done
[ -n "$suite" ] && [ -n "$ref" ] && [ $# -gt 0 ] || die "usage: $0 --suite LABEL --reference DIR PEAPOD_DIR..."
[ -s "$ref/specs.tsv" ] || die "$suite: the reference's run left no $ref/specs.tsv"

behind_runs=()
for run in "$@"; do
	name=${run%/} name=${name##*/}
	if [ ! -s "$run/specs.tsv" ]; then
		echo "-- $suite $name: no specs.tsv to compare (the run did not finish)"
		behind_runs+=("$name")
		continue
	fi
	behind=$(awk -F'\t' 'NR == FNR { if ($1 == "passed") ok[$2] = 1; next }
		($1 == "failed" || $1 == "skipped") && ($2 in ok) { printf "   %s: %s%s\n", $1, $2, ($3 == "" ? "" : " (" $3 ")") }' \
		"$ref/specs.tsv" "$run/specs.tsv")
	if [ -n "$behind" ]; then
		echo "-- $suite $name fails or skips what ${ref##*/} passes:"
		echo "$behind"
		behind_runs+=("$name")
	else
		echo "$suite $name passes every spec ${ref##*/} passes"
	fi
done
[ ${#behind_runs[@]} -eq 0 ] || die "$suite: behind the reference: ${behind_runs[*]}"
